"""Masks decoded only inside their boxes (rle_crop) and resampled per instance equal the full-image path."""

from __future__ import annotations

import numpy as np
import pytest
from pycocotools import mask as mask_utils

from apex_x.adapters.datasets.mask_resample import resample_crops, resample_masks
from apex_x.adapters.datasets.segmentation import encode_mask, rle_crop, rle_runs, to_rle
from apex_x.adapters.datasets.transforms import mask_crops


def _masks(seed: int, height: int = 61, width: int = 77, count: int = 5) -> list[dict]:
    rng = np.random.default_rng(seed)
    rles = []
    for _ in range(count):
        mask = np.zeros((height, width), np.uint8)
        x0, y0 = rng.integers(0, width - 2), rng.integers(0, height - 2)
        mask[y0 : y0 + rng.integers(1, 30), x0 : x0 + rng.integers(1, 40)] = 1
        mask &= rng.random((height, width)) < 0.9  # holes: many runs, large counts (multi-character deltas)
        rles.append(encode_mask(mask))
    rles.append(to_rle([[3.0, 3.0, 70.5, 8.2, 40.0, 59.9]], height, width))  # a polygon
    rles.append(encode_mask(np.zeros((height, width), np.uint8)))  # an empty mask
    return rles


def test_rle_runs_and_crops_match_pycocotools() -> None:
    rng = np.random.default_rng(0)
    for rle in _masks(1):
        full = mask_utils.decode(rle).astype(bool)
        assert int(rle_runs(rle).sum()) == full.size
        for _ in range(10):
            x0, x1 = sorted(rng.integers(0, full.shape[1] + 1, 2).tolist())
            y0, y1 = sorted(rng.integers(0, full.shape[0] + 1, 2).tolist())
            assert np.array_equal(rle_crop(rle, x0, y0, x1, y1), full[y0:y1, x0:x1])


@pytest.mark.parametrize("seed", range(6))
def test_resample_crops_equals_resample_masks(seed: int) -> None:
    rles = _masks(seed)
    full = mask_utils.decode(rles)  # (h, w, N)
    crops, origins = mask_crops(rles)
    rng = np.random.default_rng(seed)
    for _ in range(8):
        settings = dict(scale_x=float(rng.uniform(0.3, 3.0)), scale_y=float(rng.uniform(0.3, 3.0)),
                        offset_x=int(rng.integers(-60, 60)), offset_y=int(rng.integers(-60, 60)),
                        flip=bool(rng.random() < 0.5), width=96, height=64, stride=int(rng.choice([1, 4, 8])))
        expected = resample_masks(full, **settings)
        assert np.array_equal(resample_crops(crops, origins, full.shape[:2], **settings), expected)
