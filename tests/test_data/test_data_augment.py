"""Real-data augmentation: exact geometry, boxes that agree with their masks, determinism, multi-scale sizes."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from pycocotools import mask as mask_utils

from apex_x.adapters.config_yaml import load_config
from apex_x.adapters.datasets.augment.copy_paste import copy_paste
from apex_x.adapters.datasets.augment.geometry import Instances, rotation, scaling, translation, warp_image
from apex_x.adapters.datasets.augment.multi_scale import batch_input_size
from apex_x.adapters.datasets.augment.pipeline import augment_canvas, augment_rng, augment_sample
from apex_x.adapters.datasets.augment.warp import Canvas, warp_instances
from apex_x.adapters.datasets.coco_source import CocoDatasetSource
from apex_x.adapters.datasets.segmentation import encode_mask, to_rle
from apex_x.adapters.datasets.transforms import RawSample, Sample, TransformSettings
from apex_x.domain.augment import AugmentPlan
from apex_x.domain.input_size import INPUT_SIZE_MULTIPLE

STAR = [[40, 8, 50, 30, 74, 32, 55, 46, 62, 70, 40, 56, 18, 70, 25, 46, 6, 32, 30, 30]]  # a 10-point star
COLOURS = np.array([[255, 0, 0], [0, 255, 0], [0, 0, 255]], np.uint8)  # class k is painted in channel k


def _settings(height: int = 64, width: int = 96, **changes: object) -> TransformSettings:
    values = dict(input_height=height, input_width=width, mask_stride=4, hflip_prob=0.5, scale_jitter=(0.75, 1.25),
                  hsv_jitter=(0.0, 0.0, 0.0), max_instances=100)
    values.update(changes)
    return TransformSettings(**values)  # type: ignore[arg-type]


def _raw(index: int) -> RawSample:
    """Image `index` of a small dataset: a few disjoint rectangles and discs, class k painted in channel k."""
    rng = np.random.default_rng(index)
    height, width = int(rng.integers(40, 90)), int(rng.integers(40, 90))
    image = np.full((height, width, 3), 30, np.uint8)
    occupied = np.zeros((height, width), bool)
    masks, labels = [], []
    ys, xs = np.mgrid[0:height, 0:width]
    for _ in range(int(rng.integers(1, 5))):
        label = int(rng.integers(0, 3))
        cx, cy, r = int(rng.integers(5, width - 5)), int(rng.integers(5, height - 5)), int(rng.integers(3, 14))
        mask = ((xs - cx) ** 2 + (ys - cy) ** 2 < r * r) if label == 1 else (abs(xs - cx) < r) & (abs(ys - cy) < r // 2 + 1)
        if (mask & occupied).any() or not mask.any():
            continue
        occupied |= mask
        image[mask] = COLOURS[label]
        masks.append(mask.astype(np.uint8))
        labels.append(label)
    rles = [encode_mask(m) for m in masks]
    boxes = np.array([mask_utils.toBbox(r) for r in rles], np.float32).reshape(-1, 4)
    boxes[:, 2:] += boxes[:, :2]
    crowd = np.zeros(len(labels), bool)
    if len(labels) > 2:
        crowd[-1] = True
    return RawSample(image, width, height, boxes, np.array(labels, np.int64), crowd, rles, index + 1, f"{index}.png")


def _within_one_pixel(a: np.ndarray, b: np.ndarray) -> bool:
    """Every pixel where the two masks differ has a pixel of each value in its 3 x 3 neighbourhood in both."""
    def near(mask: np.ndarray, value: bool) -> np.ndarray:
        padded = np.pad(mask == value, 1)
        out = np.zeros(mask.shape, bool)
        for dy in range(3):
            for dx in range(3):
                out |= padded[dy : dy + mask.shape[0], dx : dx + mask.shape[1]]
        return out
    differ = a != b
    return bool(np.all(~differ | (near(a, True) & near(a, False) & near(b, True) & near(b, False))))


@pytest.mark.parametrize("degrees,zoom,shift", [(0.0, 1.0, (3.0, -2.0)), (23.0, 0.7, (20.0, 10.0)),
                                                (-71.0, 1.6, (-10.0, 30.0)), (180.0, 0.45, (50.0, 40.0))])
def test_a_warped_polygon_rasterises_to_the_warped_mask(degrees: float, zoom: float, shift: tuple[float, float]) -> None:
    height, width, out_h, out_w = 80, 80, 96, 128
    rle = to_rle(STAR, height, width)
    raw = RawSample(np.zeros((height, width, 3), np.uint8), width, height, np.zeros((1, 4), np.float32),
                    np.array([0]), np.array([False]), [rle], 1, "star.png")
    matrix = translation(out_w / 2 + shift[0], out_h / 2 + shift[1]) @ rotation(degrees) @ scaling(zoom, zoom) \
        @ translation(-width / 2, -height / 2)
    instances = warp_instances(raw, matrix, out_w, out_h)
    warped = instances.union(out_h, out_w)
    points = np.array(STAR[0], np.float64).reshape(-1, 2)
    moved = (np.c_[points, np.ones(len(points))] @ matrix.T)[:, :2]
    reference = mask_utils.decode(to_rle([moved.reshape(-1).tolist()], out_h, out_w)).astype(bool)
    assert warped.any() and _within_one_pixel(warped, reference)
    box = instances.boxes()[0]  # the box is exactly the warped mask's extent
    rows, cols = np.flatnonzero(warped.any(1)), np.flatnonzero(warped.any(0))
    assert box.tolist() == [cols[0], rows[0], cols[-1] + 1, rows[-1] + 1]
    # the image goes through the same map: the painted star lands on the warped mask (within a pixel)
    painted = np.zeros((height, width, 3), np.uint8)
    painted[mask_utils.decode(rle).astype(bool)] = 255
    image = warp_image(painted, matrix, out_w, out_h)[..., 0] > 127
    assert _within_one_pixel(image, warped)


PLANS = {
    "mosaic": AugmentPlan(mosaic=1.0),
    "affine": AugmentPlan(affine_degrees=30.0, affine_translate=0.2, affine_scale=0.5),
    "copy_paste": AugmentPlan(copy_paste=1.0),
    "mixup": AugmentPlan(mixup=1.0),
    "all": AugmentPlan(mosaic=0.7, copy_paste=0.5, mixup=0.3, affine_degrees=15.0, affine_translate=0.1,
                       affine_scale=0.5),
}


def _check_canvas(canvas: Canvas, settings: TransformSettings, *, colours: bool) -> None:
    """Full input resolution: each box is exactly its mask's extent, masks lie on their own colour."""
    height, width = settings.input_height, settings.input_width
    boxes = canvas.instances.boxes()
    for box, (x0, y0), crop, label in zip(boxes, canvas.instances.origins, canvas.instances.crops,
                                          canvas.instances.labels, strict=True):
        assert crop.dtype == bool and crop[0].any() and crop[-1].any() and crop[:, 0].any() and crop[:, -1].any()
        assert box.tolist() == [x0, y0, x0 + crop.shape[1], y0 + crop.shape[0]]
        assert 0 <= box[0] < box[2] <= width and 0 <= box[1] < box[3] <= height
        inner = crop[1:-1, 1:-1] & crop[:-2, 1:-1] & crop[2:, 1:-1] & crop[1:-1, :-2] & crop[1:-1, 2:]
        if colours and inner.sum() >= 4:  # away from edges (where bilinear blends), the instance's own colour
            pixels = canvas.image[y0 + 1 : y0 + crop.shape[0] - 1, x0 + 1 : x0 + crop.shape[1] - 1][inner]
            assert np.mean(pixels[:, label] > 150) > 0.9, "a mask off its instance's pixels"


def _check_sample(sample: Sample, settings: TransformSettings) -> None:
    """Mask grid: every kept instance has a mask, and its cells lie within its box."""
    height, width, stride = settings.input_height, settings.input_width, settings.mask_stride
    assert sample.image.shape == (3, height, width) and sample.masks.shape[1:] == (height // stride, width // stride)
    assert len(sample.boxes) == len(sample.labels) == len(sample.crowd) == len(sample.masks)
    for box, mask in zip(sample.boxes, sample.masks, strict=True):
        rows, cols = np.flatnonzero(mask.any(1)), np.flatnonzero(mask.any(0))
        assert rows.size, "a kept instance has an empty mask"
        assert cols[0] * stride < box[2] and (cols[-1] + 1) * stride > box[0]
        assert rows[0] * stride < box[3] and (rows[-1] + 1) * stride > box[1]
        assert box[0] // stride <= cols[0] and cols[-1] < -(-box[2] // stride)
        assert box[1] // stride <= rows[0] and rows[-1] < -(-box[3] // stride)


@pytest.mark.parametrize("name", list(PLANS))
def test_no_box_disagrees_with_its_mask(name: str) -> None:
    plan, settings = PLANS[name], _settings()
    for seed in range(40):
        canvas, _ = augment_canvas(seed % 7, plan, settings, _raw, 7, augment_rng(seed, 3, seed % 7))
        _check_canvas(canvas, settings, colours=name not in ("mixup", "all"))
        _check_sample(augment_sample(seed % 7, plan, settings, _raw, 7, augment_rng(seed, 3, seed % 7)), settings)


def test_same_seed_epoch_index_same_sample() -> None:
    plan, settings = PLANS["all"], _settings()
    first = augment_sample(3, plan, settings, _raw, 7, augment_rng(5, 2, 3))
    again = augment_sample(3, plan, settings, _raw, 7, augment_rng(5, 2, 3))
    other = augment_sample(3, plan, settings, _raw, 7, augment_rng(5, 3, 3))
    assert np.array_equal(first.image, again.image) and np.array_equal(first.masks, again.masks)
    assert np.array_equal(first.boxes, again.boxes) and not np.array_equal(first.image, other.image)


def test_mosaic_brings_instances_of_several_images() -> None:
    settings = _settings(128, 128)
    counts = [len(augment_sample(i % 7, PLANS["mosaic"], settings, _raw, 7, augment_rng(0, 0, i)).labels)
              for i in range(20)]
    single = [len(_raw(i % 7).labels) for i in range(20)]
    assert sum(counts) > sum(single)


def test_multi_scale_sizes_are_multiples_of_the_stride_within_range() -> None:
    sizes = {batch_input_size(0, epoch, batch, (256, 320), (0.5, 1.5)) for epoch in range(3) for batch in range(50)}
    assert len(sizes) > 5
    for height, width in sizes:
        assert height % INPUT_SIZE_MULTIPLE == 0 and width % INPUT_SIZE_MULTIPLE == 0
        assert 128 <= height <= 384 and 160 <= width <= 480
    assert batch_input_size(1, 2, 3, (256, 320), (0.5, 1.5)) == batch_input_size(1, 2, 3, (256, 320), (0.5, 1.5))


ALL_ON = ("data.mosaic=1.0", "data.copy_paste=0.5", "data.mixup=0.3", "data.affine_degrees=10",
          "data.affine_translate=0.1", "data.affine_scale=0.5", "data.multi_scale=[0.5,1.5]")


def _source(shapes_dataset, *overrides: str) -> CocoDatasetSource:  # noqa: ANN001
    settings = load_config(None, [*shapes_dataset.config_overrides(), "model.input_height=64",
                                  "model.input_width=64", *overrides])
    return CocoDatasetSource(settings)


def test_loader_batches_are_the_same_for_any_worker_count(shapes_dataset) -> None:  # noqa: ANN001
    serial = list(_source(shapes_dataset, *ALL_ON).train_loader(4, seed=3).iter_epoch(1))
    parallel = list(_source(shapes_dataset, *ALL_ON, "data.num_workers=2").train_loader(4, seed=3).iter_epoch(1))
    assert len(serial) == len(parallel) == 6
    sizes = set()
    for a, b in zip(serial, parallel, strict=True):
        sizes.add(tuple(a.images.shape[2:]))
        for field in ("images", "boxes", "labels", "masks", "valid", "crowd"):
            assert torch.equal(getattr(a, field), getattr(b, field)), field
        assert a.masks.shape[2:] == (a.images.shape[2] // 4, a.images.shape[3] // 4)
    assert len(sizes) > 1 and all(32 <= h <= 96 and h % 32 == 0 for h, _ in sizes)


def test_loader_follows_the_plan_it_is_given_and_validation_stays_fixed(shapes_dataset) -> None:  # noqa: ANN001
    source = _source(shapes_dataset, *ALL_ON)
    loader = source.train_loader(4, seed=3)
    plain = list(_source(shapes_dataset).train_loader(4, seed=3).iter_epoch(2))
    off = list(loader.iter_epoch(2, augment=AugmentPlan()))  # e.g. the closing epochs: the basic transform only
    assert all(torch.equal(a.images, b.images) and torch.equal(a.masks, b.masks) for a, b in zip(plain, off, strict=True))
    val = source.val_loader(4)
    assert val is not None
    assert {tuple(batch.images.shape[2:]) for batch in val.iter_epoch(0, augment=PLANS["all"])} == {(64, 64)}


def _canvas(boxes: list[tuple[int, int, int, int]], value: int) -> Canvas:
    image = np.full((32, 32, 3), value, np.uint8)
    crops = [np.ones((y1 - y0, x1 - x0), bool) for x0, y0, x1, y1 in boxes]
    origins = np.array([(x0, y0) for x0, y0, _, _ in boxes], np.int64).reshape(-1, 2)
    return Canvas(image, Instances(np.zeros(len(boxes), np.int64), np.zeros(len(boxes), bool), origins, crops))


def test_copy_paste_cuts_what_it_covers_from_the_masks_below() -> None:
    canvas = _canvas([(0, 0, 20, 20), (24, 24, 26, 26)], 10)  # a big square, and a tiny one under the paste
    donor = _canvas([(12, 0, 32, 30)], 200)  # overlaps the big square by 8 x 20 = 40 % of it, 27 % of itself
    pasted = copy_paste(canvas, donor, np.random.default_rng(0))
    assert pasted.instances.boxes().tolist() == [[0, 0, 12, 20], [12, 0, 32, 30]]  # the tiny one is covered
    assert (pasted.image[0:30, 12:32] == 200).all() and (pasted.image[0:20, 0:12] == 10).all()
    crowded = _canvas([(12, 0, 32, 30)], 200)
    crowded.instances.crowd[:] = True  # crowd regions are never pasted
    assert copy_paste(canvas, crowded, np.random.default_rng(0)) is canvas


def test_decoders_keep_the_detail_the_largest_zoom_needs() -> None:
    config = load_config(None, ["data.affine_scale=0.5", "data.multi_scale=[0.5,1.5]", "data.scale_jitter=[1.0,1.0]",
                                "train.stages=[{name: a, augment: {multi_scale: [1.0, 2.0]}}]"])
    settings = TransformSettings.from_config(config)
    assert settings.max_zoom == pytest.approx(3.0)
    assert settings.decode_size(1000, 1000, augment=True) == (768, 768)
    assert settings.decode_size(1000, 1000, augment=False) == (256, 256)
