"""Tiny in-memory shapes batches (rectangles, ellipses, triangles) with exact masks, for model tests."""

from __future__ import annotations

import numpy as np
import torch

from apex_x.domain.types import Batch, ImageMeta

CLASSES = ("rectangle", "ellipse", "triangle")


def shape_mask(kind: int, box: np.ndarray, height: int, width: int) -> np.ndarray:
    """(H, W) bool mask of a filled shape of class `kind` inscribed in box xyxy (pixel centres)."""
    ys, xs = np.mgrid[0:height, 0:width].astype(np.float32) + 0.5
    x0, y0, x1, y1 = box
    if kind == 0:
        return (xs >= x0) & (xs < x1) & (ys >= y0) & (ys < y1)
    if kind == 1:
        cx, cy, rx, ry = (x0 + x1) / 2, (y0 + y1) / 2, (x1 - x0) / 2, (y1 - y0) / 2
        return ((xs - cx) / rx) ** 2 + ((ys - cy) / ry) ** 2 <= 1.0
    # Triangle: apex at the top centre, base along the bottom edge.
    cx = (x0 + x1) / 2
    inside_y = (ys >= y0) & (ys < y1)
    half = (ys - y0) / max(y1 - y0, 1e-6) * (x1 - x0) / 2
    return inside_y & (np.abs(xs - cx) <= half)


def make_shapes_batch(
    batch_size: int = 2,
    size: int = 64,
    *,
    objects: tuple[int, int] = (1, 3),
    mask_stride: int = 4,
    seed: int = 0,
    empty_images: tuple[int, ...] = (),
) -> Batch:
    """Non-overlapping shapes on a noisy background; masks at size // mask_stride (as the data layer stores)."""
    rng = np.random.default_rng(seed)
    images = np.zeros((batch_size, size, size, 3), np.uint8)
    all_boxes, all_labels, all_masks = [], [], []
    for b in range(batch_size):
        images[b] = rng.integers(0, 60, (1, 1, 3)) + rng.integers(0, 20, (size, size, 3))
        count = 0 if b in empty_images else int(rng.integers(objects[0], objects[1] + 1))
        boxes, labels, masks = [], [], []
        occupied = np.zeros((size, size), bool)
        for _ in range(50):
            if len(boxes) == count:
                break
            side = rng.uniform(0.25, 0.45) * size
            x0, y0 = rng.uniform(0, size - side, 2)
            box = np.array([x0, y0, x0 + side, y0 + side * rng.uniform(0.7, 1.0)], np.float32).round()
            mask = shape_mask(int(len(boxes) % 3 if count > 1 else rng.integers(0, 3)), box, size, size)
            if (mask & occupied).any() or mask.sum() < 16:
                continue
            kind = int(len(boxes) % 3 if count > 1 else 0)
            mask = shape_mask(kind, box, size, size)
            occupied |= mask
            rows, cols = np.flatnonzero(mask.any(1)), np.flatnonzero(mask.any(0))
            boxes.append([cols[0], rows[0], cols[-1] + 1, rows[-1] + 1])
            labels.append(kind)
            masks.append(mask)
            images[b][mask] = np.array([200, 60, 60]) if kind == 0 else (
                np.array([60, 200, 60]) if kind == 1 else np.array([60, 60, 220]))
        all_boxes.append(boxes)
        all_labels.append(labels)
        all_masks.append(masks)
    width = max(1, max(len(b) for b in all_boxes))
    low = size // mask_stride
    boxes_t = torch.zeros(batch_size, width, 4)
    labels_t = torch.full((batch_size, width), -1, dtype=torch.long)
    masks_t = torch.zeros(batch_size, width, low, low, dtype=torch.uint8)
    valid = torch.zeros(batch_size, width, dtype=torch.bool)
    for b in range(batch_size):
        for i, (box, label, mask) in enumerate(zip(all_boxes[b], all_labels[b], all_masks[b], strict=True)):
            boxes_t[b, i] = torch.tensor(box, dtype=torch.float32)
            labels_t[b, i] = label
            centre = mask[mask_stride // 2 :: mask_stride, mask_stride // 2 :: mask_stride]
            masks_t[b, i] = torch.from_numpy(centre.astype(np.uint8))
            valid[b, i] = True
    metas = [ImageMeta(b, f"{b}.png", size, size, 1.0, 0, 0) for b in range(batch_size)]
    return Batch(
        images=torch.from_numpy(images).permute(0, 3, 1, 2).contiguous(),
        boxes=boxes_t,
        labels=labels_t,
        masks=masks_t,
        valid=valid,
        crowd=torch.zeros(batch_size, width, dtype=torch.bool),
        metas=metas,
    )
