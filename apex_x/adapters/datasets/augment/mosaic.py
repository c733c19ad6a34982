"""Mosaic of 4 images: each letterboxed to the input size around a random centre of a 2x canvas."""

from __future__ import annotations

import numpy as np

from apex_x.adapters.datasets.augment.geometry import scaling, translation
from apex_x.adapters.datasets.transforms import RawSample

Window = tuple[float, float, float, float]


def mosaic_tiles(
    raws: list[RawSample], width: int, height: int, rng: np.random.Generator
) -> tuple[int, int, list[tuple[np.ndarray, Window]]]:
    """(canvas width, canvas height, per image (map original -> canvas pixels, window in original pixels)).

    The canvas is (2 * height, 2 * width); the centre (xc, yc) is uniform in its middle half. Image k of 4
    is top-left, top-right, bottom-left, bottom-right of the centre, touching it with a corner, at its
    letterbox scale; its window is the part inside the canvas, so the tiles never overlap.
    """
    canvas_w, canvas_h = 2 * width, 2 * height
    xc = rng.uniform(0.5 * width, 1.5 * width)
    yc = rng.uniform(0.5 * height, 1.5 * height)
    tiles: list[tuple[np.ndarray, Window]] = []
    for k, raw in enumerate(raws):
        scale = min(width / raw.orig_width, height / raw.orig_height)
        tile_w, tile_h = raw.orig_width * scale, raw.orig_height * scale
        ox = xc - tile_w if k % 2 == 0 else xc
        oy = yc - tile_h if k < 2 else yc
        window = (
            max(0.0, -ox / scale),
            max(0.0, -oy / scale),
            min(float(raw.orig_width), (canvas_w - ox) / scale),
            min(float(raw.orig_height), (canvas_h - oy) / scale),
        )
        tiles.append((translation(ox, oy) @ scaling(scale, scale), window))
    return canvas_w, canvas_h, tiles
