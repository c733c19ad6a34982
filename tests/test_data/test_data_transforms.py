"""Transforms keep image, boxes and masks consistent; letterbox maps back; randomness is per (seed, epoch, index)."""

from __future__ import annotations

import numpy as np
import pytest

from apex_x.adapters.datasets.segmentation import encode_mask
from apex_x.adapters.datasets.transforms import (
    RawSample,
    TransformSettings,
    choose_placement,
    hsv_jitter,
    sample_rng,
    transform_sample,
)


def _settings(**changes: object) -> TransformSettings:
    values = dict(
        input_height=64,
        input_width=96,
        mask_stride=4,
        hflip_prob=0.5,
        scale_jitter=(0.5, 1.5),
        hsv_jitter=(0.015, 0.5, 0.3),
        max_instances=100,
    )
    values.update(changes)
    return TransformSettings(**values)  # type: ignore[arg-type]


def _raw(width: int = 80, height: int = 60) -> RawSample:
    """An image whose red channel marks instance 0 (a rectangle) and green instance 1 (a triangle-ish blob)."""
    image = np.zeros((height, width, 3), dtype=np.uint8)
    masks = np.zeros((2, height, width), dtype=np.uint8)
    masks[0, 10:30, 5:45] = 1
    ys, xs = np.mgrid[0:height, 0:width]
    masks[1] = ((xs - 60) ** 2 + (ys - 40) ** 2 < 12**2).astype(np.uint8)
    image[masks[0] == 1, 0] = 255
    image[masks[1] == 1, 1] = 255
    boxes = np.array([[5, 10, 45, 30], [48, 28, 73, 53]], dtype=np.float32)
    return RawSample(
        image=image,
        orig_width=width,
        orig_height=height,
        boxes=boxes,
        labels=np.array([0, 1]),
        crowd=np.array([False, True]),
        rles=[encode_mask(m) for m in masks],
        image_id=7,
        file_name="x.png",
    )


def test_validation_letterbox_is_centred_and_maps_back() -> None:
    settings = _settings()
    sample = transform_sample(_raw(), settings, rng=None)
    meta = sample.meta
    assert sample.image.shape == (3, 64, 96) and sample.masks.shape == (2, 16, 24)
    assert meta.scale == pytest.approx(64 / 60) and not meta.flipped
    assert meta.pad_top == 0 and meta.pad_left == (96 - round(80 * 64 / 60)) // 2
    back = (sample.boxes - [meta.pad_left, meta.pad_top, meta.pad_left, meta.pad_top]) / meta.scale
    np.testing.assert_allclose(back, _raw().boxes, atol=0.5 / meta.scale)
    assert sample.crowd.tolist() == [False, True] and sample.labels.tolist() == [0, 1]


@pytest.mark.parametrize("index", range(12))
def test_augmented_masks_boxes_and_pixels_agree(index: int) -> None:
    settings = _settings(hsv_jitter=(0.0, 0.0, 0.0), scale_jitter=(0.9, 1.6))
    sample = transform_sample(_raw(), settings, sample_rng(3, 0, index))
    stride = settings.mask_stride
    for k, channel in enumerate((0, 1)):
        mask = sample.masks[k].astype(bool)
        if not mask.any():
            continue
        # the mask matches the instance's colour in the image, block by block (IoU at mask resolution)
        ys, xs = np.nonzero(mask)
        coloured = sample.image[channel] > 128  # (H, W)
        blocks = coloured.reshape(coloured.shape[0] // stride, stride, -1, stride).mean(axis=(1, 3)) >= 0.5
        iou = (blocks & mask).sum() / max((blocks | mask).sum(), 1)
        assert iou > 0.75, iou
        if blocks.sum() >= 8:  # no systematic shift between mask and pixels
            by, bx = np.nonzero(blocks)
            assert abs(by.mean() - ys.mean()) <= 0.6 and abs(bx.mean() - xs.mean()) <= 0.6
        # the box holds the mask (to one mask pixel) and is tight to it
        x1, y1, x2, y2 = sample.boxes[k]
        assert xs.min() * stride >= x1 - stride and (xs.max() + 1) * stride <= x2 + stride
        assert ys.min() * stride >= y1 - stride and (ys.max() + 1) * stride <= y2 + stride


def test_same_seed_epoch_index_same_sample_and_epochs_differ() -> None:
    settings = _settings()
    first = transform_sample(_raw(), settings, sample_rng(1, 2, 3))
    again = transform_sample(_raw(), settings, sample_rng(1, 2, 3))
    other_epochs = [transform_sample(_raw(), settings, sample_rng(1, epoch, 3)) for epoch in range(3, 8)]
    assert np.array_equal(first.image, again.image)
    assert np.array_equal(first.boxes, again.boxes) and np.array_equal(first.masks, again.masks)
    assert any(not np.array_equal(first.image, other.image) for other in other_epochs)


def test_flip_mirrors_image_boxes_and_masks() -> None:
    settings = _settings(
        hflip_prob=1.0, scale_jitter=(1.0, 1.0), hsv_jitter=(0.0, 0.0, 0.0), input_width=80, input_height=60
    )
    flipped = transform_sample(_raw(), settings, sample_rng(0, 0, 0))
    plain = transform_sample(_raw(), _settings(input_width=80, input_height=60), rng=None)
    assert flipped.meta.flipped
    assert np.array_equal(flipped.image, plain.image[:, :, ::-1])
    assert np.array_equal(flipped.masks, plain.masks[:, :, ::-1])
    np.testing.assert_allclose(flipped.boxes[:, [0, 2]], 80 - plain.boxes[:, [2, 0]])


def test_cropped_instances_get_tight_boxes_or_are_dropped() -> None:
    settings = _settings(scale_jitter=(3.0, 3.0), hflip_prob=0.0, hsv_jitter=(0.0, 0.0, 0.0))
    for index in range(10):
        sample = transform_sample(_raw(), settings, sample_rng(0, 0, index))
        assert (sample.boxes[:, 2] - sample.boxes[:, 0] >= 1).all()
        assert (
            (sample.boxes >= 0).all()
            and (sample.boxes[:, [0, 2]] <= 96).all()
            and (sample.boxes[:, [1, 3]] <= 64).all()
        )
        assert len(sample.labels) == len(sample.masks) == len(sample.boxes) == len(sample.crowd)


def test_placement_scale_stays_in_the_jitter_range() -> None:
    settings = _settings(scale_jitter=(0.75, 1.25))
    base = min(96 / 80, 64 / 60)
    scales = [choose_placement(80, 60, settings, sample_rng(0, 0, i)).scale / base for i in range(50)]
    assert min(scales) >= 0.75 and max(scales) <= 1.25 and max(scales) - min(scales) > 0.3


def test_hsv_jitter_identity_and_greys_stay_grey() -> None:
    image = np.random.default_rng(0).integers(0, 256, (8, 8, 3), dtype=np.uint8)
    same = hsv_jitter(image, (0.0, 0.0, 0.0), np.random.default_rng(0))
    assert np.array_equal(same, image.transpose(2, 0, 1))
    grey = np.full((4, 4, 3), 100, dtype=np.uint8)
    out = hsv_jitter(grey, (0.5, 0.9, 0.0), np.random.default_rng(1))
    assert np.array_equal(out[0], out[1]) and np.array_equal(out[1], out[2]) and (out == 100).all()


@pytest.mark.parametrize("flip", [False, True])
def test_mask_pixels_hold_the_majority_of_their_area(flip: bool) -> None:
    from apex_x.adapters.datasets.mask_resample import resample_masks

    rng = np.random.default_rng(0)
    ys, xs = np.mgrid[0:64, 0:96]
    full = np.stack(
        [((xs - cx) ** 2 / rx**2 + (ys - cy) ** 2 / ry**2 < 1) for cx, cy, rx, ry in rng.uniform(10, 40, (5, 4))], axis=2
    ).astype(np.uint8)  # (64, 96, 5) ellipses
    masks = resample_masks(
        full, scale_x=1.0, scale_y=1.0, offset_x=0, offset_y=0, flip=flip, width=96, height=64, stride=4
    )
    source = full[:, ::-1] if flip else full
    coverage = source.reshape(16, 4, 24, 4, 5).mean(axis=(1, 3)).transpose(2, 0, 1)  # (5, 16, 24)
    assert np.array_equal(masks, (coverage >= 0.5).astype(np.uint8))
