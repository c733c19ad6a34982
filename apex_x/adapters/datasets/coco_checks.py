"""The dataset contract of one COCO instances JSON: structure, ids, references, boxes, polygons and RLE."""

from __future__ import annotations

import hashlib
import json
import math
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any

from apex_x.adapters.datasets.coco_categories import apply_grouping_rule, check_categories, note_id_gaps
from apex_x.adapters.datasets.coco_summary import summarize_split
from apex_x.adapters.datasets.findings import FindingLog
from apex_x.adapters.datasets.json_values import (
    NUMBER_TYPES,
    PARSE_MEMORY_FACTOR,
    JsonRefused,
    describe,
    is_int,
    is_number,
    parse_json,
)
from apex_x.adapters.datasets.rle_checks import check_segmentation
from apex_x.domain.text_rules import text_problem

BOX_TOLERANCE_PX = 2.0  # a box may exceed the image by this much (or 1% of the side) before it is an error


@dataclass(frozen=True)
class SplitPaths:
    """One split's config keys and resolved paths."""

    split: str  # "train" or "val"
    images_key: str
    annotations_key: str
    images_dir: Path
    annotations_path: Path


@dataclass(frozen=True)
class SplitLimits:
    """Bounds of one COCO file, checked before its entries are kept (data.max_annotations_per_image,
    data.max_categories)."""

    max_annotations_per_image: int = 10_000
    max_categories: int = 10_000


@dataclass
class CheckedSplit:
    """A parsed split: the usable entries, the summary, and whether the structure was readable at all."""

    paths: SplitPaths
    readable: bool = False
    images: list[dict[str, Any]] = field(default_factory=list)
    annotations: dict[int, list[dict[str, Any]]] = field(
        default_factory=dict
    )  # image id -> usable annotations
    categories: list[dict[str, Any]] = field(default_factory=list)  # {"id", "name"} sorted by id
    summary: dict[str, Any] = field(default_factory=dict)
    left_out: list[dict[str, Any]] = field(default_factory=list)  # grouping categories left out of the classes
    raw: dict[str, Any] | None = None
    content_sha256: str = ""


def read_split(paths: SplitPaths, log: FindingLog, *, keep_grouping: bool = False,
               grouping_decided: tuple[set[int], set[int]] | None = None,
               limits: SplitLimits = SplitLimits()) -> CheckedSplit:
    """Parse and check one split's JSON (no image files are touched here). A grouping category (no
    annotations, the supercategory of all others) is left out of the classes unless `keep_grouping`;
    `grouping_decided` (the train split's left-out ids, all its category ids) makes a val split follow train's
    decision. Beyond `limits` (categories per file, annotations per image) an error names the count and the key
    that raises it, and the entries over the limit are not kept."""
    result = CheckedSplit(paths=paths)
    file = str(paths.annotations_path)
    if not paths.images_dir.exists():
        log.error(
            "file.not_found",
            f"{paths.images_key}: images folder not found: {paths.images_dir}",
            file=str(paths.images_dir),
        )
    elif not paths.images_dir.is_dir():
        log.error(
            "file.not_a_directory",
            f"{paths.images_key}: not a folder: {paths.images_dir}",
            file=str(paths.images_dir),
        )
    if not paths.annotations_path.exists():
        log.error("file.not_found", f"{paths.annotations_key}: annotations file not found: {file}", file=file)
        return result
    if not paths.annotations_path.is_file():
        log.error("file.not_a_file", f"{paths.annotations_key}: not a file: {file}", file=file)
        return result
    try:
        content = paths.annotations_path.read_bytes()
    except OSError as error:
        log.error(
            "file.unreadable", f"{paths.annotations_key}: cannot read {file}: {error.strerror}", file=file
        )
        return result
    result.content_sha256 = hashlib.sha256(content).hexdigest()
    try:
        data = parse_json(content)
    except UnicodeDecodeError as error:
        log.error(
            "json.parse",
            f"{paths.annotations_key}: not UTF-8 text: {error.reason} at byte {error.start}",
            file=file,
        )
        return result
    except json.JSONDecodeError as error:
        log.error(
            "json.parse",
            f"{paths.annotations_key}: invalid JSON at line {error.lineno}, column {error.colno}: {error.msg}",
            file=file,
        )
        return result
    except JsonRefused as error:
        log.error(error.rule, f"{paths.annotations_key}: {error}", file=file)
        return result
    except MemoryError:
        log.error("json.too_large", f"{paths.annotations_key}: not enough memory to parse {len(content) / 2**20:.0f} "
                  f"MB of JSON (its values take about {PARSE_MEMORY_FACTOR}x that); free memory or raise the "
                  "process's memory limit", file=file)
        return result
    del content  # the file's bytes (hundreds of MB at COCO scale) are not needed next to the parsed values
    if not isinstance(data, dict):
        log.error(
            "json.top_level",
            f"the top level must be an object with images/annotations/categories, got {type(data).__name__}",
            file=file,
        )
        return result
    missing = [key for key in ("images", "annotations", "categories") if key not in data]
    wrong = [
        key
        for key in ("images", "annotations", "categories")
        if key in data and not isinstance(data[key], list)
    ]
    for key in missing:
        log.error(
            "json.missing_key",
            f"required COCO key {key!r} is missing (a COCO instances file has images, annotations, categories)",
            file=file,
        )
    for key in wrong:
        log.error("json.wrong_type", f"{key!r} must be a list, got {type(data[key]).__name__}", file=file)
    if missing or wrong:
        return result
    if len(data["categories"]) > limits.max_categories:
        log.error(
            "json.too_many_categories",
            f"{paths.annotations_key}: {len(data['categories'])} categories, over the limit of "
            f"{limits.max_categories} (data.max_categories; LVIS has 1,203): raise it if this is meant",
            file=file,
        )
        return result
    result.readable = True
    result.raw = {"info": data.get("info")}  # the rest is kept as checked entries only
    rejected_categories: set[int] = set()
    categories = check_categories(data["categories"], file, log, rejected_categories)
    rejected: set[int] = set()
    images = _check_images(data["images"], file, log, rejected)
    rejected |= _crowded_images(data["annotations"], images, limits.max_annotations_per_image,
                                paths.annotations_key, file, log)
    referenced: list[tuple[int, int, bool]] = []
    annotations = _check_annotations(data["annotations"], images, set(categories), file, log, referenced,
                                     rejected - set(images), rejected_categories - set(categories))
    result.categories = apply_grouping_rule(
        [categories[cid] for cid in sorted(categories)], {category_id for _, category_id, _ in referenced},
        keep=keep_grouping, key=paths.annotations_key, file=file, log=log, decided=grouping_decided,
    )
    result.left_out = [categories[cid] for cid in sorted(categories)
                       if cid not in {c["id"] for c in result.categories}]
    note_id_gaps(result.categories, file, log)
    result.images = list(images.values())
    result.annotations = annotations
    usable = sum(len(anns) for anns in annotations.values())
    result.summary = summarize_split(
        paths.split,
        paths.annotations_key,
        (str(paths.images_dir), file),
        result.images,
        result.categories,
        (len(data["annotations"]), usable),
        referenced,
        log,
    )
    return result


def _check_images(entries: list[Any], file: str, log: FindingLog,
                  rejected: set[int] | None = None) -> dict[int, dict[str, Any]]:
    """Usable images by id; `rejected` gets the ids of images refused for a finding already reported (their
    annotations are then not reported again as "not in 'images'": one root cause, one finding)."""
    rejected = rejected if rejected is not None else set()
    images: dict[int, dict[str, Any]] = {}
    file_names: dict[str, int] = {}
    for position, entry in enumerate(entries):
        if not isinstance(entry, dict):
            log.error(
                "image.invalid", f"images[{position}] must be an object, got {describe(entry)}", file=file
            )
            continue
        image_id = entry.get("id")
        if not is_int(image_id):
            log.error(
                "image.id_type",
                f"images[{position}].id must be an integer, got {describe(image_id)}",
                file=file,
                image_id=_plain_id(image_id),
            )
            continue
        if image_id in images:
            log.error(
                "image.duplicate_id",
                f"image id {image_id} appears more than once",
                file=file,
                image_id=image_id,
            )
            continue
        name, width, height = entry.get("file_name"), entry.get("width"), entry.get("height")
        if not isinstance(name, str) or not name:
            log.error(
                "image.missing_field",
                f"image {image_id} needs a non-empty string file_name, got {describe(name)}",
                file=file,
                image_id=image_id,
            )
            rejected.add(image_id)
            continue
        problem = text_problem(name)
        if problem is not None:
            log.error(
                "image.file_name_invalid",
                f"image {image_id}'s file_name {name!r} holds {problem}: file names must be printable Unicode text "
                "(rename the file, and write its name in UTF-8)",
                file=file,
                image_id=image_id,
            )
            rejected.add(image_id)
            continue
        parts = PurePosixPath(name.replace("\\", "/")).parts
        if name.startswith(("/", "\\")) or ".." in parts or (parts and ":" in parts[0]):
            log.error(
                "image.path_unsafe",
                f"file_name {name!r} must be relative to the images folder, without '..'",
                file=file,
                image_id=image_id,
            )
            rejected.add(image_id)
            continue
        if not (is_int(width) and is_int(height) and width > 0 and height > 0):
            log.error(
                "image.size_invalid",
                f"image {image_id} needs positive integer width and height, got {describe(width)} x {describe(height)}",
                file=file,
                image_id=image_id,
            )
            rejected.add(image_id)
            continue
        if name in file_names:
            log.warning(
                "image.duplicate_file",
                f"file_name {name!r} is used by images {file_names[name]} and {image_id}",
                file=file,
                image_id=image_id,
            )
        file_names[name] = image_id
        images[image_id] = entry
    return images


def _crowded_images(entries: list[Any], images: dict[int, dict[str, Any]], limit: int, key: str, file: str,
                    log: FindingLog) -> set[int]:
    """Ids of images listing more than `limit` annotations (one error each, at most 20 named); their entries are
    then left out of the kept annotations, so memory stays proportional to what is kept."""
    if len(entries) <= limit:
        return set()
    counts = Counter(entry.get("image_id") for entry in entries
                     if isinstance(entry, dict) and is_int(entry.get("image_id")))
    crowded = sorted((image_id for image_id, count in counts.items() if count > limit and image_id in images),
                     key=lambda image_id: -counts[image_id])
    for image_id in crowded[:20]:
        log.error(
            "image.too_many_annotations",
            f"{key}: image {image_id} lists {counts[image_id]} annotations, over the limit of {limit} per image "
            "(data.max_annotations_per_image): raise it for data this dense",
            file=file,
            image_id=image_id,
        )
    if len(crowded) > 20:
        log.error("image.too_many_annotations", f"{key}: {len(crowded) - 20} more images over the limit of "
                  f"{limit} annotations", file=file)
    for image_id in crowded:
        images.pop(image_id)
    return set(crowded)


def _plain_id(value: Any) -> int | str | None:
    return value if is_int(value) or isinstance(value, str) else (None if value is None else repr(value))


def _check_annotations(
    entries: list[Any],
    images: dict[int, dict[str, Any]],
    categories: set[int],
    file: str,
    log: FindingLog,
    referenced: list[tuple[int, int, bool]],
    rejected_images: set[int] | frozenset[int] = frozenset(),
    rejected_categories: set[int] | frozenset[int] = frozenset(),
) -> dict[int, list[dict[str, Any]]]:
    """Usable annotations per image; `referenced` gets (image, category, crowd) of every well-referenced one.
    Annotations of an image or category rejected by its own finding (`rejected_images`, `rejected_categories`)
    are left out without another one."""
    usable: dict[int, list[dict[str, Any]]] = {image_id: [] for image_id in images}
    seen_ids: set[int] = set()
    for position, ann in enumerate(entries):
        if not isinstance(ann, dict):
            log.error(
                "annotation.invalid",
                f"annotations[{position}] must be an object, got {describe(ann)}",
                file=file,
            )
            continue
        ann_id, image_id, category_id = ann.get("id"), ann.get("image_id"), ann.get("category_id")
        where = {"file": file, "image_id": _plain_id(image_id), "annotation_id": _plain_id(ann_id)}
        if not is_int(ann_id):
            log.error(
                "annotation.id_type",
                f"annotations[{position}].id must be an integer, got {describe(ann_id)}",
                **where,
            )
            continue
        if ann_id in seen_ids:
            log.error("annotation.duplicate_id", f"annotation id {ann_id} appears more than once", **where)
            continue
        seen_ids.add(ann_id)
        if not is_int(image_id) or not is_int(category_id):
            bad = "image_id" if not is_int(image_id) else "category_id"
            log.error(
                "annotation.reference_type",
                f"{bad} must be an integer id, got {describe(ann.get(bad))}",
                **where,
            )
            continue
        image = images.get(image_id)
        if image is None and image_id in rejected_images:
            continue  # the image's own finding is the root cause
        if image is None:
            log.error("annotation.unknown_image", f"image_id {image_id} is not in 'images'", **where)
            continue
        if category_id not in categories:
            if category_id in rejected_categories:
                continue  # the category's own finding is the root cause
            log.error(
                "annotation.unknown_category", f"category_id {category_id} is not in 'categories'", **where
            )
            continue
        iscrowd = ann.get("iscrowd", 0)
        referenced.append((image_id, category_id, iscrowd == 1))
        if iscrowd not in (0, 1):
            log.error(
                "annotation.iscrowd_invalid", f"iscrowd must be 0 or 1, got {describe(iscrowd)}", **where
            )
            continue
        if "iscrowd" not in ann:
            log.warning("annotation.iscrowd_missing", "no iscrowd field: read as 0 (an object)", **where)
        if not _bbox_ok(ann.get("bbox"), image, log, where):
            continue
        if not check_segmentation(ann, image, log, where):
            continue
        area = ann.get("area")
        if area is not None and not (is_number(area) and math.isfinite(area) and area >= 0):
            log.warning(
                "annotation.area_invalid",
                f"area must be a non-negative number, got {describe(area)}; recomputed from the mask",
                **where,
            )
        usable[image_id].append(ann)
    return usable


def _bbox_ok(bbox: Any, image: dict[str, Any], log: FindingLog, where: dict[str, Any]) -> bool:
    if bbox is None:
        log.error("annotation.bbox_invalid", "bbox is missing ([x, y, width, height] in pixels)", **where)
        return False
    if not (isinstance(bbox, list) and len(bbox) == 4 and set(map(type, bbox)) <= NUMBER_TYPES):
        log.error(
            "annotation.bbox_invalid",
            f"bbox must be 4 numbers [x, y, width, height], got {describe(bbox)}",
            **where,
        )
        return False
    if not all(map(math.isfinite, bbox)):
        log.error("annotation.bbox_invalid", f"bbox has a non-finite value: {bbox}", **where)
        return False
    x, y, w, h = bbox
    if w <= 0 or h <= 0:
        log.error("annotation.bbox_degenerate", f"bbox width and height must be > 0, got {w} x {h}", **where)
        return False
    width, height = image["width"], image["height"]
    tol_x, tol_y = max(BOX_TOLERANCE_PX, 0.01 * width), max(BOX_TOLERANCE_PX, 0.01 * height)
    if x < -tol_x or y < -tol_y or x + w > width + tol_x or y + h > height + tol_y:
        log.error(
            "annotation.bbox_outside",
            f"bbox [{x}, {y}, {w}, {h}] reaches outside the {width}x{height} image (tolerance {tol_x:g}/{tol_y:g} px); "
            "boxes are [x, y, width, height] in pixels",
            **where,
        )
        return False
    return True
