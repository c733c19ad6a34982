"""COCO segmentations (polygons, compressed and uncompressed RLE) to compact RLEs and decoded masks."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
from pycocotools import mask as mask_utils


def bounded_polygons(polygons: Sequence[Sequence[float]], height: int, width: int) -> list[list[float]]:
    """Polygons with every coordinate clamped to one image side outside the image (the dataset check refuses
    more): pycocotools' rasteriser walks every pixel of an edge's length, so a coordinate of 1e12 would crash
    it. Within the bound, what lies inside the image is unchanged."""
    bounded = []
    side = min(height, width)
    for polygon in polygons:
        if min(polygon) >= -side and max(polygon) <= 2 * side:  # the usual case: nothing to clamp
            bounded.append([float(value) for value in polygon])
            continue
        points = np.asarray(polygon, dtype=np.float64).reshape(-1, 2)
        points[:, 0] = np.clip(points[:, 0], -width, 2 * width)
        points[:, 1] = np.clip(points[:, 1], -height, 2 * height)
        bounded.append(points.reshape(-1).tolist())
    return bounded


def to_rle(segmentation: Any, height: int, width: int) -> dict[str, Any]:
    """One annotation's segmentation -> one compressed RLE of size (height, width)."""
    if isinstance(segmentation, list):  # polygons: a list of [x1, y1, x2, y2, ...]
        return mask_utils.merge(mask_utils.frPyObjects(bounded_polygons(segmentation, height, width), height, width))
    counts = segmentation["counts"]
    if isinstance(counts, list):  # uncompressed RLE
        return mask_utils.frPyObjects(segmentation, height, width)
    return {
        "size": [int(height), int(width)],
        "counts": counts.encode("ascii") if isinstance(counts, str) else counts,
    }


def rescaled_rle(segmentation: Any, rle: dict[str, Any], height: int, width: int, new_height: int, new_width: int
                 ) -> dict[str, Any]:
    """One annotation's mask at (new_height, new_width): polygons rasterised at that size (exact), RLE masks
    sampled at the new pixels' centres (nearest). `rle` is the mask at the original (height, width)."""
    fx, fy = new_width / width, new_height / height
    if isinstance(segmentation, list):
        polygons = [[float(v) * (fx if k % 2 == 0 else fy) for k, v in enumerate(polygon)] for polygon in segmentation]
        return mask_utils.merge(mask_utils.frPyObjects(bounded_polygons(polygons, new_height, new_width), new_height,
                                                       new_width))
    full = mask_utils.decode(rle)  # (height, width) uint8, Fortran order
    rows = np.minimum(((np.arange(new_height) + 0.5) / fy).astype(np.int64), height - 1)
    cols = np.minimum(((np.arange(new_width) + 0.5) / fx).astype(np.int64), width - 1)
    return encode_mask(full[rows[:, None], cols[None, :]])


def rle_area(rle: dict[str, Any]) -> float:
    return float(mask_utils.area(rle))


def rle_to_plain(rle: dict[str, Any]) -> dict[str, Any]:
    """A compressed RLE with `counts` as text (JSON-able)."""
    counts = rle["counts"]
    return {
        "size": [int(v) for v in rle["size"]],
        "counts": counts.decode("ascii") if isinstance(counts, bytes) else counts,
    }


def decode_stack(rles: Sequence[dict[str, Any]], height: int, width: int) -> np.ndarray:
    """RLEs -> (H, W, N) uint8 {0, 1} (N may be 0)."""
    if not rles:
        return np.zeros((height, width, 0), dtype=np.uint8)
    return mask_utils.decode(list(rles))


def encode_mask(mask: np.ndarray) -> dict[str, Any]:
    """(H, W) {0, 1} -> compressed RLE (bytes counts)."""
    return mask_utils.encode(np.asfortranarray(mask.astype(np.uint8)))


def rle_bbox(rle: dict[str, Any]) -> list[float]:
    """Tight [x, y, w, h] of an RLE's pixels."""
    return [float(v) for v in mask_utils.toBbox(rle)]


def rle_runs(rle: dict[str, Any]) -> np.ndarray:
    """The run lengths of an RLE (column-major, starting with a run of zeros), int64; vectorised decoding of
    pycocotools' compressed string (6-bit groups from '0', continuation bit 0x20, sign bit 0x10, each count
    after the second a delta to the one two before)."""
    counts = rle["counts"]
    if isinstance(counts, list):
        return np.asarray(counts, dtype=np.int64)
    chars = np.frombuffer(counts if isinstance(counts, bytes) else counts.encode("ascii"), np.uint8).astype(np.int64)
    chars -= 48
    if chars.size == 0:
        return np.zeros(0, np.int64)
    last = (chars & 0x20) == 0  # the last character of each count
    ends = np.flatnonzero(last)
    starts = np.concatenate([[0], ends[:-1] + 1])
    position = np.arange(chars.size) - np.repeat(starts, ends - starts + 1)
    values = np.add.reduceat((chars & 0x1F) << (5 * position), starts)
    negative = (chars[ends] & 0x10) != 0
    values[negative] -= np.int64(1) << (5 * (ends - starts + 1)[negative])
    out = values.copy()
    if out.size > 3:
        out[3::2] = np.cumsum(values[1::2])[1:]  # odd counts: x[m] = d[m] + x[m - 2] for m >= 3
    if out.size > 4:
        out[4::2] = np.cumsum(values[2::2])[1:]  # even counts from the third on
    return out


def rle_crop(rle: dict[str, Any], x0: int, y0: int, x1: int, y1: int) -> np.ndarray:
    """(y1 - y0, x1 - x0) bool: the mask's pixels in a window of its image (within the image), decoding only the
    window's columns. Equals decode(rle)[y0:y1, x0:x1].astype(bool)."""
    height = int(rle["size"][0])
    if x1 <= x0 or y1 <= y0:
        return np.zeros((max(y1 - y0, 0), max(x1 - x0, 0)), bool)
    runs = rle_runs(rle)
    ends = np.cumsum(runs)
    low, high = x0 * height, x1 * height
    lengths = np.clip(ends, low, high) - np.clip(ends - runs, low, high)
    values = (np.arange(runs.size) % 2).astype(bool)
    flat = np.repeat(values, lengths)
    if flat.size < high - low:  # a short RLE: the rest is background
        flat = np.concatenate([flat, np.zeros(high - low - flat.size, bool)])
    return np.ascontiguousarray(flat.reshape(x1 - x0, height)[:, y0:y1].T)
