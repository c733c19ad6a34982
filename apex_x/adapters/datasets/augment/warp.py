"""One source image and its instances through one affine map into an input canvas."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from pycocotools import mask as mask_utils

from apex_x.adapters.datasets.augment.geometry import (
    Instances,
    output_region,
    scaling,
    source_pixels,
    tighten,
    translation,
    warp_image,
    window_mask,
    zoom_of,
)
from apex_x.adapters.datasets.segmentation import rle_crop
from apex_x.adapters.datasets.transforms import RawSample

MIN_VISIBLE = 0.1  # an instance keeping less of its (warped) area inside the canvas is dropped


@dataclass
class Canvas:
    """An input image being built, with its instances."""

    image: np.ndarray  # (H, W, 3) uint8
    instances: Instances

    @property
    def height(self) -> int:
        return int(self.image.shape[0])

    @property
    def width(self) -> int:
        return int(self.image.shape[1])


def warp_instances(
    raw: RawSample, matrix: np.ndarray, width: int, height: int,
    window: tuple[float, float, float, float] | None = None, valid: np.ndarray | None = None,
) -> Instances:
    """raw's instance masks (original pixels) through `matrix` into a (height, width) canvas, nearest at pixel
    centres, limited to `window` (original pixels; None = the whole image). Instances left with less than
    MIN_VISIBLE of their warped area are dropped. valid: window_mask(matrix, window, ...) when known."""
    count = len(raw.rles)
    if count == 0:
        return Instances.empty()
    if window is not None and valid is None:
        valid = window_mask(matrix, window, width, height)
    _, _, fx, fy = raw.mask_frame  # the RLEs may be smaller than the original (RawSample.mask_size)
    if fx != 1.0 or fy != 1.0:
        matrix = matrix @ scaling(1.0 / fx, 1.0 / fy)
        if window is not None:
            window = (window[0] * fx, window[1] * fy, window[2] * fx, window[3] * fy)
    inverse = np.linalg.inv(matrix)
    area_scale = zoom_of(matrix) ** 2
    bounds = mask_utils.toBbox(list(raw.rles)).reshape(-1, 4)  # (N, 4) xywh, integer pixel bounds
    areas = mask_utils.area(list(raw.rles)).reshape(-1)
    labels, crowd, origins, crops = [], [], [], []
    for i in range(count):
        bx, by, bw, bh = (int(round(v)) for v in bounds[i])
        sx0, sy0, sx1, sy1 = bx, by, bx + bw, by + bh
        if window is not None:
            sx0, sy0 = max(sx0, int(np.floor(window[0]))), max(sy0, int(np.floor(window[1])))
            sx1, sy1 = min(sx1, int(np.ceil(window[2]))), min(sy1, int(np.ceil(window[3])))
        if sx1 <= sx0 or sy1 <= sy0:
            continue
        region = output_region(matrix, (sx0, sy0, sx1, sy1), width, height)
        if region is None:
            continue
        x0, y0, x1, y1 = region
        src_x, src_y = source_pixels(inverse, x0, y0, x1, y1)
        inside = (src_x >= sx0) & (src_x < sx1) & (src_y >= sy0) & (src_y < sy1)
        if valid is not None:  # exact window test in continuous coordinates (pixel centres)
            inside &= valid[y0:y1, x0:x1]
        crop = rle_crop(raw.rles[i], sx0, sy0, sx1, sy1)  # only the columns of the box are decoded
        values = crop[np.minimum(np.maximum(src_y - sy0, 0), sy1 - sy0 - 1),
                      np.minimum(np.maximum(src_x - sx0, 0), sx1 - sx0 - 1)] & inside
        visible = int(values.sum())
        if visible == 0 or visible < MIN_VISIBLE * float(areas[i]) * area_scale:
            continue
        tight = tighten(values, x0, y0)
        if tight is None:
            continue
        labels.append(int(raw.labels[i]))
        crowd.append(bool(raw.crowd[i]))
        crops.append(tight[0])
        origins.append((tight[1], tight[2]))
    if not crops:
        return Instances.empty()
    return Instances(np.array(labels, np.int64), np.array(crowd, bool), np.array(origins, np.int64), crops)


def image_matrix(raw: RawSample, matrix: np.ndarray) -> np.ndarray:
    """The map of raw.image's pixels, given the map of original pixels (the image may be decoded smaller)."""
    return matrix @ scaling(raw.orig_width / raw.image.shape[1], raw.orig_height / raw.image.shape[0])


def warp_raw(raw: RawSample, matrix: np.ndarray, width: int, height: int) -> Canvas:
    """A whole image through `matrix` (original pixels -> canvas pixels) onto a grey canvas."""
    image = warp_image(raw.image, image_matrix(raw, matrix), width, height)
    return Canvas(image, warp_instances(raw, matrix, width, height))


def paste_window(
    canvas: Canvas, raw: RawSample, matrix: np.ndarray, window: tuple[float, float, float, float]
) -> Canvas:
    """Warp the `window` (original pixels) of raw onto the canvas where it lands (mosaic tiles); the tiles'
    windows land on disjoint pixels, so a pasted tile never covers another's instances. The canvas's image
    is painted in place."""
    width, height = canvas.width, canvas.height
    region = output_region(matrix, window, width, height)
    if region is None:
        return canvas
    x0, y0, x1, y1 = region
    fx, fy = raw.image.shape[1] / raw.orig_width, raw.image.shape[0] / raw.orig_height
    image_window = (window[0] * fx, window[1] * fy, window[2] * fx, window[3] * fy)
    warped = warp_image(raw.image, translation(-x0, -y0) @ image_matrix(raw, matrix), x1 - x0, y1 - y0, image_window)
    valid = window_mask(matrix, window, width, height)
    np.copyto(canvas.image[y0:y1, x0:x1], warped, where=valid[y0:y1, x0:x1, None])  # painted in place
    return Canvas(canvas.image, canvas.instances.concat(warp_instances(raw, matrix, width, height, window, valid)))
