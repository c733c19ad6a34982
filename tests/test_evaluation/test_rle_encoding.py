"""The bounded RLE encoder gives pycocotools' own bytes for every mask shape that matters."""

from __future__ import annotations

import numpy as np
import pytest
from pycocotools import mask as mask_utils

from apex_x.adapters.evaluation.rle import SMALL_IMAGE_PIXELS, encode_mask, encode_masks


def _pycocotools(mask: np.ndarray) -> dict:
    encoded = mask_utils.encode(np.asfortranarray(mask.astype(np.uint8)))
    encoded["counts"] = encoded["counts"].decode("ascii")
    return encoded


def _masks() -> list[np.ndarray]:
    rng = np.random.default_rng(0)
    masks = [np.zeros((7, 5), bool), np.ones((7, 5), bool), np.ones((1, 1), bool), np.zeros((1, 1), bool)]
    column_runs = np.zeros((6, 4), bool)
    column_runs[4:, 0] = column_runs[:3, 1] = True  # a run crossing the column boundary: bottom of 0, top of 1
    masks.append(column_runs)
    corner = np.zeros((9, 11), bool)
    corner[-1, -1] = corner[0, 0] = True
    masks.append(corner)
    for _ in range(40):
        height, width = rng.integers(1, 40, 2)
        mask = rng.random((height, width)) > rng.uniform(0.2, 0.9)
        y0, x0 = rng.integers(0, height), rng.integers(0, width)
        mask[:y0] = False  # mostly box-shaped support, like a pasted prediction
        mask[:, :x0] = False
        masks.append(mask)
    return masks


@pytest.mark.parametrize("index", range(46))
def test_encode_mask_matches_pycocotools_bytes(index: int) -> None:
    mask = _masks()[index]
    ours = encode_mask(mask)
    assert ours == _pycocotools(mask)
    assert np.array_equal(mask_utils.decode({**ours, "counts": ours["counts"].encode()}).astype(bool), mask)


@pytest.mark.parametrize("height,width", [(37, 53), (300, 260)], ids=["small-image", "large-image"])
def test_encode_masks_of_a_stack_match_pycocotools(height: int, width: int) -> None:
    assert (height * width > SMALL_IMAGE_PIXELS) == (height == 300)  # one case on each side of the switch
    rng = np.random.default_rng(1)
    masks = np.zeros((5, height, width), bool)
    for mask in masks:
        y0, x0 = rng.integers(0, height // 2), rng.integers(0, width // 2)
        mask[y0 : y0 + height // 3, x0 : x0 + width // 4] = rng.random((height // 3, width // 4)) > 0.3
    assert encode_masks(masks) == [_pycocotools(mask) for mask in masks]
    assert encode_masks(np.zeros((0, height, width), bool)) == []
