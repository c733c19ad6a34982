"""Rules for one annotation's segmentation: polygons (>= 6 even, finite numbers) and RLE (size, counts)."""

from __future__ import annotations

import math
from typing import Any

from apex_x.adapters.datasets.findings import FindingLog
from apex_x.adapters.datasets.json_values import NUMBER_TYPES, is_int


def decode_compressed_counts(text: str) -> list[int] | None:
    """COCO's compressed RLE string -> run lengths (as pycocotools' rleFrString), None when malformed."""
    counts: list[int] = []
    position, length = 0, len(text)
    while position < length:
        value, shift, more = 0, 0, True
        while more:
            if position >= length:
                return None  # the string ends inside a number
            code = ord(text[position]) - 48
            if not 0 <= code < 64:
                return None
            value |= (code & 0x1F) << (5 * shift)
            more = bool(code & 0x20)
            position += 1
            shift += 1
            if not more and code & 0x10:
                value |= -1 << (5 * shift)
        if len(counts) > 2:
            value += counts[-2]
        counts.append(value)
    return counts


def _all_numbers(values: list[Any]) -> bool:
    """Every value a JSON number (int or float, not bool): one C-level pass (COCO-scale files hold ~50M)."""
    return set(map(type, values)) <= NUMBER_TYPES


POLYGON_MARGIN = 1.0  # a polygon coordinate may lie this many image sides outside the image (pycocotools clips)


def _check_polygons(polygons: list[Any], log: FindingLog, where: dict[str, Any], width: int, height: int) -> bool:
    if not polygons:
        log.error("annotation.segmentation_empty", "segmentation is an empty list (no polygon)", **where)
        return False
    if _all_numbers(polygons):
        log.error(
            "annotation.polygon_invalid",
            "segmentation must be a list of polygons ([[x1, y1, x2, y2, ...], ...]), got a flat list of numbers",
            **where,
        )
        return False
    for index, polygon in enumerate(polygons):
        if not isinstance(polygon, list) or not _all_numbers(polygon):
            log.error("annotation.polygon_invalid", f"polygon {index} must be a list of numbers", **where)
            return False
        if len(polygon) == 4:
            log.error(
                "annotation.polygon_too_short",
                f"polygon {index} has exactly 4 numbers: pycocotools would silently read it as a box; "
                "a polygon needs at least 3 points (6 numbers)",
                **where,
            )
            return False
        if len(polygon) < 6:
            log.error(
                "annotation.polygon_too_short",
                f"polygon {index} has {len(polygon)} numbers; at least 6 (3 points) are needed",
                **where,
            )
            return False
        if len(polygon) % 2:
            log.error(
                "annotation.polygon_odd",
                f"polygon {index} has an odd count of numbers ({len(polygon)}); they are x, y pairs",
                **where,
            )
            return False
        if not all(map(math.isfinite, polygon)):
            log.error("annotation.polygon_invalid", f"polygon {index} has a non-finite coordinate", **where)
            return False
        xs, ys = polygon[0::2], polygon[1::2]
        for axis, values, side in (("x", xs, width), ("y", ys, height)):
            low, high = min(values), max(values)
            if low < -POLYGON_MARGIN * side or high > (1 + POLYGON_MARGIN) * side:
                log.error(
                    "annotation.polygon_outside",
                    f"polygon {index} has {axis} coordinates from {low:g} to {high:g}, far outside the image's "
                    f"{side} px (allowed {-POLYGON_MARGIN * side:g} to {(1 + POLYGON_MARGIN) * side:g}): polygon "
                    "coordinates are pixels of this image",
                    **where,
                )
                return False
    return True


def _check_rle(rle: dict[str, Any], height: int, width: int, log: FindingLog, where: dict[str, Any]) -> bool:
    size, counts = rle.get("size"), rle.get("counts")
    if not (
        isinstance(size, list)
        and len(size) == 2
        and all(is_int(v) for v in size)
    ):
        log.error("annotation.rle_invalid", f"RLE size must be [height, width], got {size!r}", **where)
        return False
    if list(size) != [height, width]:
        log.error(
            "annotation.rle_size_mismatch",
            f"RLE size {size} does not match the image's [height, width] = [{height}, {width}]",
            **where,
        )
        return False
    if isinstance(counts, list):
        if not all(is_int(v) and v >= 0 for v in counts):
            log.error(
                "annotation.rle_invalid", "uncompressed RLE counts must be non-negative integers", **where
            )
            return False
        runs = counts
    elif isinstance(counts, str):
        decoded = decode_compressed_counts(counts)
        if decoded is None or any(v < 0 for v in decoded):
            log.error("annotation.rle_invalid", "compressed RLE counts string is malformed", **where)
            return False
        runs = decoded
    else:
        log.error(
            "annotation.rle_invalid",
            f"RLE counts must be a list or a string, got {type(counts).__name__}",
            **where,
        )
        return False
    if sum(runs) != height * width:
        log.error(
            "annotation.rle_invalid",
            f"RLE runs cover {sum(runs)} pixels but the image has {height}x{width} = {height * width}",
            **where,
        )
        return False
    return True


def check_segmentation(
    ann: dict[str, Any], image: dict[str, Any], log: FindingLog, where: dict[str, Any]
) -> bool:
    """True when the annotation's segmentation can be rasterised exactly as its author meant."""
    if "segmentation" not in ann:
        log.error(
            "annotation.segmentation_missing",
            "no segmentation: instance segmentation needs polygons or RLE",
            **where,
        )
        return False
    segmentation = ann["segmentation"]
    if isinstance(segmentation, list):
        return _check_polygons(segmentation, log, where, image["width"], image["height"])
    if isinstance(segmentation, dict):
        return _check_rle(segmentation, image["height"], image["width"], log, where)
    if segmentation is None or segmentation == "":
        log.error("annotation.segmentation_empty", "segmentation is empty", **where)
        return False
    log.error(
        "annotation.segmentation_invalid",
        f"segmentation must be polygons (list) or RLE (object), got {type(segmentation).__name__}",
        **where,
    )
    return False
