"""The bounded RLE encoder gives pycocotools' own bytes for every mask shape that matters."""

from __future__ import annotations

import numpy as np
import pytest
from pycocotools import mask as mask_utils

from apex_x.adapters.evaluation.rle import encode_mask


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
