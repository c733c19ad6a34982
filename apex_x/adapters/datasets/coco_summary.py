"""Per-split summary of a COCO split (counts, sizes, instances per class) and the dataset-level rules."""

from __future__ import annotations

from collections import Counter
from typing import Any

from apex_x.adapters.datasets.findings import FindingLog


def summarize_split(
    split: str,
    annotations_key: str,
    files: tuple[str, str],
    images: list[dict[str, Any]],
    categories: list[dict[str, Any]],
    counts: tuple[int, int],
    referenced: list[tuple[int, int, bool]],
    log: FindingLog,
) -> dict[str, Any]:
    """Counts over every annotation whose image and category exist (even if another rule rejects it).

    files = (images folder, annotations file); counts = (annotations in the file, usable annotations).
    """
    images_dir, file = files
    total_annotations, usable_annotations = counts
    names = {c["id"]: c["name"] for c in categories}
    per_class: Counter[int] = Counter()  # by category id: two categories may share a name
    crowd_per_class: Counter[int] = Counter()
    crowd = 0
    for _, category_id, is_crowd in referenced:
        if is_crowd:
            crowd += 1
            crowd_per_class[category_id] += 1
        else:
            per_class[category_id] += 1
    annotated = {image_id for image_id, _, _ in referenced}
    empty = sum(1 for image in images if image["id"] not in annotated)
    widths = [image["width"] for image in images]
    heights = [image["height"] for image in images]
    if not images:
        log.error("dataset.no_images", f"{annotations_key}: the split lists no usable images", file=file)
    if images and total_annotations == 0:
        if split == "train":
            log.error(
                "dataset.no_annotations",
                f"{annotations_key}: zero annotations: there is nothing to learn",
                file=file,
            )
        else:
            log.warning(
                "dataset.no_annotations",
                f"{annotations_key}: zero annotations: AP on this split is undefined",
                file=file,
            )
    trainable = sum(per_class.values())
    if images and total_annotations and not trainable:
        why = f"all {crowd} are crowd regions (iscrowd=1), which are ignore regions, never positives" if crowd \
            else "none of them is usable"
        if split == "train":
            log.error(
                "dataset.no_trainable_instances",
                f"{annotations_key}: {total_annotations} annotation(s) but zero trainable instances ({why}): "
                "there is nothing to learn",
                file=file,
            )
        else:
            log.warning(
                "dataset.no_trainable_instances",
                f"{annotations_key}: zero non-crowd instances ({why}): COCO AP on this split is n/a",
                file=file,
            )
    if empty and total_annotations:
        log.info(
            "dataset.empty_images", f"{empty} image(s) have no annotations (used as negatives)", file=file
        )
    unused = [cid for cid in sorted(names) if per_class[cid] == 0]
    if unused and trainable:
        def label(cid: int) -> str:
            crowd_only = f", {crowd_per_class[cid]} crowd only" if crowd_per_class[cid] else ""
            return f"{cid} {names[cid]!r}{crowd_only}"

        shown = ", ".join(label(cid) for cid in unused[:8]) + (", ..." if len(unused) > 8 else "")
        if split == "train":  # one warning naming every such category (a long list is one line, not 80)
            count = f"{len(unused)} of {len(names)} categories have" if len(unused) > 1 else "category"
            log.warning(
                "dataset.category_without_instances",
                f"{count} zero trainable instances in {split}: {', '.join(label(cid) for cid in unused)}; the "
                "model cannot learn them (their AP will be n/a or 0): add examples, or remove the categories",
                file=file,
            )
        else:
            log.info(
                "dataset.unused_categories",
                f"{len(unused)} of {len(names)} categories have no instances in {split}: {shown}",
                file=file,
            )
    return {
        "images_dir": images_dir,
        "annotations_file": file,
        "images": len(images),
        "annotations": total_annotations,
        "usable_annotations": usable_annotations,
        "instances": trainable,
        "crowd": crowd,
        "empty_images": empty,
        "categories": len(names),
        "instances_per_class": {  # keyed by category id (as text), the name beside it
            str(cid): {"name": names[cid], "instances": per_class[cid], "crowd": crowd_per_class[cid]}
            for cid in sorted(names)
        },
        "width_range": [min(widths), max(widths)] if widths else None,
        "height_range": [min(heights), max(heights)] if heights else None,
    }
