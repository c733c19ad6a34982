"""Instance masks from original pixels to the model's mask grid: coverage >= 1/2 of each mask pixel.

A point sample at every mask pixel's centre is exact inside and outside the object; only pixels on the
sampled boundary can be wrong, so those alone are refined with stride x stride samples at input
resolution (cheap: the boundary is a thin band). Binary area targets let a model reach noticeably higher
mask AP at strict IoU thresholds than point-sampled ones.
"""

from __future__ import annotations

import numpy as np


def _source_index(
    coords: np.ndarray, offset: int, scale: float, flip_width: int | None, size: int
) -> tuple[np.ndarray, np.ndarray]:
    """Input-pixel coordinates -> (source pixel index clipped into the image, inside-the-image flag)."""
    if flip_width is not None:
        coords = flip_width - coords
    index = np.floor((coords - offset) / scale).astype(np.int64)
    inside = (index >= 0) & (index < size)
    return index.clip(0, size - 1), inside


def resample_masks(
    full: np.ndarray,
    *,
    scale_x: float,
    scale_y: float,
    offset_x: int,
    offset_y: int,
    flip: bool,
    width: int,
    height: int,
    stride: int,
) -> np.ndarray:
    """full (h, w, N) uint8 in original pixels -> (N, height // stride, width // stride) uint8 {0, 1}."""
    orig_h, orig_w, count = full.shape
    grid_h, grid_w = height // stride, width // stride
    flip_width = width if flip else None
    centres_x = (np.arange(grid_w) + 0.5) * stride
    centres_y = (np.arange(grid_h) + 0.5) * stride
    src_x, in_x = _source_index(centres_x, offset_x, scale_x, flip_width, orig_w)
    src_y, in_y = _source_index(centres_y, offset_y, scale_y, None, orig_h)
    gathered = full[src_y[:, None], src_x[None, :], :] * (in_y[:, None] & in_x[None, :])[..., None]
    masks = np.ascontiguousarray(gathered.transpose(2, 0, 1)).astype(np.uint8)  # (N, Hm, Wm)
    if stride == 1 or count == 0:
        return masks

    padded = np.pad(masks, ((0, 0), (1, 1), (1, 1)), mode="edge")
    boundary = np.zeros(masks.shape, dtype=bool)
    for dy in range(3):
        for dx in range(3):
            if dy != 1 or dx != 1:
                boundary |= padded[:, dy : dy + grid_h, dx : dx + grid_w] != masks
    which, rows, cols = np.nonzero(boundary)
    if which.size == 0:
        return masks
    offsets = np.arange(stride) + 0.5
    sub_y, sub_in_y = _source_index(
        rows[:, None] * stride + offsets, offset_y, scale_y, None, orig_h
    )  # (K, s)
    sub_x, sub_in_x = _source_index(cols[:, None] * stride + offsets, offset_x, scale_x, flip_width, orig_w)
    samples = full[sub_y[:, :, None], sub_x[:, None, :], which[:, None, None]]  # (K, s, s)
    samples = samples * (sub_in_y[:, :, None] & sub_in_x[:, None, :])
    masks[which, rows, cols] = samples.sum(axis=(1, 2), dtype=np.int64) * 2 >= stride * stride
    return masks
