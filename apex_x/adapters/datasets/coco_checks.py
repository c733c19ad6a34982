"""The dataset contract of one COCO instances JSON: structure, ids, references, boxes, polygons and RLE."""

from __future__ import annotations

import hashlib
import json
import math
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any

import orjson

from apex_x.adapters.datasets.coco_categories import apply_grouping_rule, check_categories, note_id_gaps
from apex_x.adapters.datasets.coco_summary import summarize_split
from apex_x.adapters.datasets.findings import FindingLog
from apex_x.adapters.datasets.json_values import NUMBER_TYPES, describe, is_int, is_number
from apex_x.adapters.datasets.rle_checks import check_segmentation

BOX_TOLERANCE_PX = 2.0  # a box may exceed the image by this much (or 1% of the side) before it is an error


@dataclass(frozen=True)
class SplitPaths:
    """One split's config keys and resolved paths."""

    split: str  # "train" or "val"
    images_key: str
    annotations_key: str
    images_dir: Path
    annotations_path: Path


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


_DIGIT_MARKS = bytes(49 if 48 <= code <= 57 else 48 for code in range(256))  # digit -> b"1", else b"0"
_LONG_RUN = b"1" * 19
_SCAN_CHUNK = 1 << 24


def _has_long_digit_run(content: bytes) -> bool:
    """Any run of 19+ ASCII digits (bytes.translate + find per 16 MiB chunk: C speed, bounded extra memory)."""
    for start in range(0, len(content), _SCAN_CHUNK):
        if content[start : start + _SCAN_CHUNK + 18].translate(_DIGIT_MARKS).find(_LONG_RUN) != -1:
            return True
    return False



def parse_json(content: bytes) -> Any:
    """JSON text -> Python values: orjson (2-3x faster on COCO-scale files) for valid JSON; what it refuses (NaN /
    Infinity literals, invalid text) or reads differently (integers past 64 bits become floats there: any run of
    19+ digits goes the slow way) goes through the standard library, so values, the findings they lead to and the
    parse-error messages stay exactly those of `json.loads`."""
    if not _has_long_digit_run(content):
        try:
            return orjson.loads(content)
        except orjson.JSONDecodeError:
            pass
    return json.loads(content)


def read_split(paths: SplitPaths, log: FindingLog, *, keep_grouping: bool = False,
               grouping_decided: tuple[set[int], set[int]] | None = None) -> CheckedSplit:
    """Parse and check one split's JSON (no image files are touched here). A grouping category (no
    annotations, the supercategory of all others) is left out of the classes unless `keep_grouping`;
    `grouping_decided` (the train split's left-out ids, all its category ids) makes a val split follow train's
    decision."""
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
    result.readable = True
    result.raw = data
    categories = check_categories(data["categories"], file, log)
    rejected: set[int] = set()
    images = _check_images(data["images"], file, log, rejected)
    referenced: list[tuple[int, int, bool]] = []
    annotations = _check_annotations(data["annotations"], images, set(categories), file, log, referenced,
                                     rejected - set(images))
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
) -> dict[int, list[dict[str, Any]]]:
    """Usable annotations per image; `referenced` gets (image, category, crowd) of every well-referenced one.
    Annotations of an image rejected by its own finding (`rejected_images`) are left out without another one."""
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
