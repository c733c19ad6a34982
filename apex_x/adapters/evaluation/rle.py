"""COCO compressed RLE of predicted masks, with the work bounded by each mask's extent, not the image's.

pycocotools' `encode` walks every pixel of the full-resolution mask (about 5 ms per megapixel), which at 100
detections per 1280x720 photo is half a second per image. A predicted mask is zero outside its box, so the
run starts are found only inside the mask's bounding rows/columns (numpy), mapped to column-major positions
in the full image, and the uncompressed counts are compressed by pycocotools (`frPyObjects`). The result is
byte-identical to `mask_utils.encode` of the full mask. Small images take pycocotools' own batched encode.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from pycocotools import mask as mask_utils


def _run_starts(mask: np.ndarray) -> np.ndarray:
    """Column-major positions in the full (H, W) mask where the value changes, in increasing order."""
    height, _ = mask.shape
    rows = np.flatnonzero(mask.any(1))
    if rows.size == 0:
        return np.zeros(0, np.int64)
    cols = np.flatnonzero(mask.any(0))
    y0, y1, x0, x1 = int(rows[0]), int(rows[-1]) + 1, int(cols[0]), int(cols[-1]) + 1
    span = y1 - y0 + 2
    padded = np.zeros((x1 - x0, span), np.uint8)  # each column of the crop with a 0 above and below
    padded[:, 1:-1] = mask[y0:y1, x0:x1].T
    flat = padded.ravel()
    changes = np.flatnonzero(flat[1:] != flat[:-1]) + 1  # first padded index of each new run
    column, row = np.divmod(changes, span)
    starts = (x0 + column).astype(np.int64) * height + (y0 + row - 1)
    # a run ending at the bottom of a column and one starting at the top of the next meet at one position:
    # the two changes cancel (one run goes on across the column boundary)
    unique, count = np.unique(starts, return_counts=True)
    starts = unique[count == 1]
    return starts[starts < mask.size]  # a run reaching the last pixel ends there (no empty run after it)


def encode_mask(mask: np.ndarray) -> dict[str, Any]:
    """(H, W) bool/uint8 mask -> COCO compressed RLE {"size": [H, W], "counts": str}."""
    height, width = mask.shape
    starts = _run_starts(np.asarray(mask, dtype=bool))
    counts = np.diff(np.concatenate([[0], starts, [height * width]])).tolist()
    encoded = mask_utils.frPyObjects({"counts": counts, "size": [height, width]}, height, width)
    encoded["counts"] = encoded["counts"].decode("ascii")
    return encoded


SMALL_IMAGE_PIXELS = 1 << 16  # up to here pycocotools' one call over all masks beats the per-mask bound


def encode_masks(masks: np.ndarray) -> list[dict[str, Any]]:
    """(n, H, W) bool masks -> n compressed RLEs. Small images: one pycocotools call over the stack (its C
    loop beats per-mask Python); larger ones: `encode_mask`, whose work is bounded by each mask's extent."""
    count, height, width = masks.shape
    if count == 0:
        return []
    if height * width > SMALL_IMAGE_PIXELS:
        return [encode_mask(mask) for mask in masks]
    # (n, W, H) C order is (H, W, n) Fortran order: each mask column-major, as pycocotools reads it
    stacked = np.ascontiguousarray(masks.transpose(0, 2, 1), dtype=np.uint8).transpose(2, 1, 0)
    encoded = mask_utils.encode(stacked)
    for item in encoded:
        item["counts"] = item["counts"].decode("ascii")
    return encoded
