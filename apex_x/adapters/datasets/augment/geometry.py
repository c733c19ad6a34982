"""Affine maps, image warps (PIL) and instance masks at input resolution kept as tight crops.

Coordinates are continuous pixels: pixel (i, j) covers [j, j + 1) x [i, i + 1), so its centre is
(j + 0.5, i + 0.5); a (3, 3) matrix M maps a source point p to M @ p (homogeneous). PIL's affine
transform and the mask warp below both sample at output pixel centres, so image and masks agree.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from PIL import Image

PAD_VALUE = 114
PRE_RESIZE_BELOW = 0.8  # a warp that shrinks more than this first resizes (antialiased) with PIL


def translation(tx: float, ty: float) -> np.ndarray:
    return np.array([[1.0, 0.0, tx], [0.0, 1.0, ty], [0.0, 0.0, 1.0]])


def scaling(sx: float, sy: float) -> np.ndarray:
    return np.array([[sx, 0.0, 0.0], [0.0, sy, 0.0], [0.0, 0.0, 1.0]])


def rotation(degrees: float) -> np.ndarray:
    """Counter-clockwise on screen (y points down) about the origin."""
    angle = np.deg2rad(degrees)
    cos, sin = np.cos(angle), np.sin(angle)
    return np.array([[cos, sin, 0.0], [-sin, cos, 0.0], [0.0, 0.0, 1.0]])


def mirror(width: float) -> np.ndarray:
    """x -> width - x."""
    return np.array([[-1.0, 0.0, width], [0.0, 1.0, 0.0], [0.0, 0.0, 1.0]])


def zoom_of(matrix: np.ndarray) -> float:
    """The map's area scale as a length factor: sqrt(|det|) of its linear part."""
    return float(np.sqrt(abs(np.linalg.det(matrix[:2, :2]))))


def warp_image(
    image: np.ndarray, matrix: np.ndarray, width: int, height: int, window: tuple[float, ...] | None = None
) -> np.ndarray:
    """(h, w, 3) uint8 -> (height, width, 3) uint8 sampled bilinearly at output pixel centres; grey outside.

    matrix maps image pixels to output pixels; window (x0, y0, x1, y1) in image pixels limits the source.
    A strong shrink first resizes with PIL's antialiased filter, so small outputs do not alias.
    """
    if window is not None:
        x0, y0 = max(0, int(np.floor(window[0]))), max(0, int(np.floor(window[1])))
        x1 = min(image.shape[1], int(np.ceil(window[2])))
        y1 = min(image.shape[0], int(np.ceil(window[3])))
        image = image[y0:y1, x0:x1]
        matrix = matrix @ translation(x0, y0)
    if image.size == 0:
        return np.full((height, width, 3), PAD_VALUE, dtype=np.uint8)
    picture = Image.fromarray(np.ascontiguousarray(image))
    zoom = zoom_of(matrix)
    if zoom < PRE_RESIZE_BELOW:
        small = (max(1, round(image.shape[1] * zoom)), max(1, round(image.shape[0] * zoom)))
        picture = picture.resize(small, Image.Resampling.BILINEAR)
        matrix = matrix @ scaling(image.shape[1] / small[0], image.shape[0] / small[1])
    inverse = np.linalg.inv(matrix)
    coefficients = tuple(float(v) for v in inverse[:2].reshape(-1))
    warped = picture.transform(
        (width, height), Image.Transform.AFFINE, coefficients, resample=Image.Resampling.BILINEAR,
        fillcolor=(PAD_VALUE, PAD_VALUE, PAD_VALUE),
    )
    return np.asarray(warped)


def source_pixels(
    inverse: np.ndarray, x0: int, y0: int, x1: int, y1: int
) -> tuple[np.ndarray, np.ndarray]:
    """Integer source pixel (column, row) under each output pixel centre of [x0, x1) x [y0, y1): (h, w) each."""
    xs = np.arange(x0, x1, dtype=np.float64) + 0.5
    ys = np.arange(y0, y1, dtype=np.float64) + 0.5
    src_x = inverse[0, 0] * xs[None, :] + (inverse[0, 1] * ys + inverse[0, 2])[:, None]
    src_y = inverse[1, 0] * xs[None, :] + (inverse[1, 1] * ys + inverse[1, 2])[:, None]
    return np.floor(src_x).astype(np.int64), np.floor(src_y).astype(np.int64)


def output_region(matrix: np.ndarray, box: tuple[float, float, float, float], width: int, height: int
                  ) -> tuple[int, int, int, int] | None:
    """Integer output rectangle [x0, x1) x [y0, y1) covering the image of a source box, clipped; None if empty."""
    bx0, by0, bx1, by1 = box
    corners = np.array([[bx0, by0, 1.0], [bx1, by0, 1.0], [bx0, by1, 1.0], [bx1, by1, 1.0]]) @ matrix.T
    x0 = max(0, int(np.floor(corners[:, 0].min())))
    y0 = max(0, int(np.floor(corners[:, 1].min())))
    x1 = min(width, int(np.ceil(corners[:, 0].max())))
    y1 = min(height, int(np.ceil(corners[:, 1].max())))
    return (x0, y0, x1, y1) if x1 > x0 and y1 > y0 else None


def window_mask(matrix: np.ndarray, window: tuple[float, float, float, float], width: int, height: int
                ) -> np.ndarray:
    """(height, width) bool: output pixels whose centre maps inside the source window (continuous coords).
    Only the rectangle the window lands in is evaluated."""
    inside = np.zeros((height, width), dtype=bool)
    region = output_region(matrix, window, width, height)
    if region is None:
        return inside
    x0, y0, x1, y1 = region
    inverse = np.linalg.inv(matrix)
    xs = np.arange(x0, x1, dtype=np.float64) + 0.5
    ys = np.arange(y0, y1, dtype=np.float64) + 0.5
    src_x = inverse[0, 0] * xs[None, :] + (inverse[0, 1] * ys + inverse[0, 2])[:, None]
    part = (src_x >= window[0]) & (src_x < window[2])
    src_y = inverse[1, 0] * xs[None, :] + (inverse[1, 1] * ys + inverse[1, 2])[:, None]
    part &= (src_y >= window[1]) & (src_y < window[3])
    inside[y0:y1, x0:x1] = part
    return inside


def tighten(crop: np.ndarray, x0: int, y0: int) -> tuple[np.ndarray, int, int] | None:
    """Trim empty border rows/columns of a bool crop at (x0, y0); None when nothing is left."""
    rows, cols = np.flatnonzero(crop.any(axis=1)), np.flatnonzero(crop.any(axis=0))
    if rows.size == 0:
        return None
    r0, r1, c0, c1 = rows[0], rows[-1] + 1, cols[0], cols[-1] + 1
    return crop[r0:r1, c0:c1], x0 + int(c0), y0 + int(r0)


@dataclass
class Instances:
    """Instances of one input image: masks at full input resolution, each as its tight bool crop."""

    labels: np.ndarray  # (N,) int64
    crowd: np.ndarray  # (N,) bool
    origins: np.ndarray  # (N, 2) int64: (x0, y0) of each crop in input pixels
    crops: list[np.ndarray]  # N bool (h_i, w_i), tight: every border row and column holds a pixel

    @classmethod
    def empty(cls) -> Instances:
        return cls(np.zeros(0, np.int64), np.zeros(0, bool), np.zeros((0, 2), np.int64), [])

    def __len__(self) -> int:
        return len(self.crops)

    def boxes(self) -> np.ndarray:
        """(N, 4) float32 xyxy: exactly the extent of each mask."""
        if not self.crops:
            return np.zeros((0, 4), np.float32)
        sizes = np.array([[crop.shape[1], crop.shape[0]] for crop in self.crops], np.int64)
        return np.concatenate([self.origins, self.origins + sizes], axis=1).astype(np.float32)

    def areas(self) -> np.ndarray:
        return np.array([int(crop.sum()) for crop in self.crops], np.int64)

    def take(self, indices: np.ndarray | list[int]) -> Instances:
        chosen = [int(i) for i in indices]
        return Instances(self.labels[chosen], self.crowd[chosen], self.origins[chosen].reshape(-1, 2),
                         [self.crops[i] for i in chosen])

    def concat(self, other: Instances) -> Instances:
        return Instances(np.concatenate([self.labels, other.labels]), np.concatenate([self.crowd, other.crowd]),
                         np.concatenate([self.origins, other.origins]).reshape(-1, 2), self.crops + other.crops)

    def mirrored(self, width: int) -> Instances:
        origins = self.origins.copy()
        origins[:, 0] = width - (self.origins[:, 0] + [crop.shape[1] for crop in self.crops])
        return Instances(self.labels, self.crowd, origins, [crop[:, ::-1] for crop in self.crops])

    def union(self, height: int, width: int) -> np.ndarray:
        """(height, width) bool: pixels of any instance."""
        out = np.zeros((height, width), dtype=bool)
        for (x0, y0), crop in zip(self.origins.tolist(), self.crops, strict=True):
            out[y0 : y0 + crop.shape[0], x0 : x0 + crop.shape[1]] |= crop
        return out

    def occluded_by(self, cover: np.ndarray, min_visible: float) -> Instances:
        """Masks minus the `cover` (H, W) bool pixels; an instance keeping < min_visible of its area is dropped."""
        keep: list[int] = []
        origins, crops = self.origins.copy(), list(self.crops)
        for i, ((x0, y0), crop) in enumerate(zip(self.origins.tolist(), self.crops, strict=True)):
            left = crop & ~cover[y0 : y0 + crop.shape[0], x0 : x0 + crop.shape[1]]
            before, after = int(crop.sum()), int(left.sum())
            if after == before:
                keep.append(i)
                continue
            tight = tighten(left, x0, y0) if after >= min_visible * before else None
            if tight is not None:
                crops[i], origins[i] = tight[0], tight[1:]
                keep.append(i)
        return Instances(self.labels, self.crowd, origins, crops).take(keep)

    def grid_masks(self, height: int, width: int, stride: int) -> np.ndarray:
        """(N, height // stride, width // stride) uint8: cells at least half covered (an instance whose every
        cell is less than half covered keeps its best-covered cell, so no kept instance has an empty mask)."""
        grid_h, grid_w = height // stride, width // stride
        out = np.zeros((len(self), grid_h, grid_w), dtype=np.uint8)
        for i, ((x0, y0), crop) in enumerate(zip(self.origins.tolist(), self.crops, strict=True)):
            gx0, gy0 = x0 // stride, y0 // stride
            gx1, gy1 = -(-(x0 + crop.shape[1]) // stride), -(-(y0 + crop.shape[0]) // stride)
            block = np.zeros(((gy1 - gy0) * stride, (gx1 - gx0) * stride), dtype=np.uint16)
            block[y0 - gy0 * stride :][: crop.shape[0], x0 - gx0 * stride :][:, : crop.shape[1]] = crop
            counts = block.reshape(gy1 - gy0, stride, gx1 - gx0, stride).sum(axis=(1, 3))
            counts = counts[: grid_h - gy0, : grid_w - gx0]
            if counts.size == 0:
                continue
            cells = counts * 2 >= stride * stride
            if not cells.any():
                cells[np.unravel_index(int(np.argmax(counts)), counts.shape)] = True
            out[i, gy0 : gy0 + cells.shape[0], gx0 : gx0 + cells.shape[1]] = cells
        return out
