"""COCO segmentations (polygons, compressed and uncompressed RLE) to compact RLEs and decoded masks."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
from pycocotools import mask as mask_utils


def to_rle(segmentation: Any, height: int, width: int) -> dict[str, Any]:
    """One annotation's segmentation -> one compressed RLE of size (height, width)."""
    if isinstance(segmentation, list):  # polygons: a list of [x1, y1, x2, y2, ...]
        polygons = [[float(value) for value in polygon] for polygon in segmentation]
        return mask_utils.merge(mask_utils.frPyObjects(polygons, height, width))
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
        return mask_utils.merge(mask_utils.frPyObjects(polygons, new_height, new_width))
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
