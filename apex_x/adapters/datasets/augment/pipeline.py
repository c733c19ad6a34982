"""One training sample under an AugmentPlan: mosaic or a single image, random affine, flip, copy-paste,
mixup, then HSV; boxes are read off the warped masks, masks go to the model's grid.

Randomness: one generator per (seed, epoch, index), separate from the basic transform's, so a plan with
everything off leaves the basic samples unchanged; the partner images (mosaic, copy-paste, mixup) are
drawn from it too, so a sample is the same for any worker count.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from apex_x.adapters.datasets.augment.affine import random_affine
from apex_x.adapters.datasets.augment.copy_paste import copy_paste
from apex_x.adapters.datasets.augment.geometry import PAD_VALUE, Instances, mirror, scaling, translation
from apex_x.adapters.datasets.augment.mixup import mixup
from apex_x.adapters.datasets.augment.mosaic import mosaic_tiles
from apex_x.adapters.datasets.augment.warp import Canvas, paste_window, warp_raw
from apex_x.adapters.datasets.transforms import (
    RawSample,
    Sample,
    TransformSettings,
    choose_placement,
    hsv_jitter,
)
from apex_x.domain.augment import AugmentPlan
from apex_x.domain.types import ImageMeta

Loader = Callable[[int], RawSample]


def augment_rng(seed: int, epoch: int, index: int) -> np.random.Generator:
    return np.random.default_rng([int(seed), int(epoch), int(index), 0xA06])


def _single(raw: RawSample, plan: AugmentPlan, settings: TransformSettings, rng: np.random.Generator) -> Canvas:
    """Letterbox with scale jitter and a random offset (the basic transform's placement), affine, flip."""
    width, height = settings.input_width, settings.input_height
    placement = choose_placement(raw.orig_width, raw.orig_height, settings, rng)
    place = translation(placement.offset_x, placement.offset_y) @ scaling(
        placement.resized_width / raw.orig_width, placement.resized_height / raw.orig_height
    )
    matrix = random_affine(plan, width, height, width, height, rng) @ place
    if placement.flip:
        matrix = mirror(width) @ matrix
    return warp_raw(raw, matrix, width, height)


def _mosaic(raws: list[RawSample], plan: AugmentPlan, settings: TransformSettings, rng: np.random.Generator
            ) -> Canvas:
    width, height = settings.input_width, settings.input_height
    canvas_w, canvas_h, tiles = mosaic_tiles(raws, width, height, rng)
    matrix = random_affine(plan, canvas_w, canvas_h, width, height, rng)
    if rng.random() < settings.hflip_prob:
        matrix = mirror(width) @ matrix
    canvas = Canvas(np.full((height, width, 3), PAD_VALUE, np.uint8), Instances.empty())
    for raw, (tile, window) in zip(raws, tiles, strict=True):
        canvas = paste_window(canvas, raw, matrix @ tile, window)
    return canvas


def compose(index: int, plan: AugmentPlan, settings: TransformSettings, load: Loader, count: int,
            rng: np.random.Generator) -> tuple[Canvas, RawSample]:
    """Image `index` as a mosaic (probability plan.mosaic, with 3 random partners) or alone."""
    raw = load(index)
    if rng.random() < plan.mosaic:
        partners = [load(int(i)) for i in rng.integers(0, count, 3)]
        return _mosaic([raw, *partners], plan, settings, rng), raw
    return _single(raw, plan, settings, rng), raw


def augment_canvas(index: int, plan: AugmentPlan, settings: TransformSettings, load: Loader, count: int,
                   rng: np.random.Generator) -> tuple[Canvas, RawSample]:
    """Image `index` (of `count`, raw images from `load`) with its instances at full input resolution, before
    HSV: mosaic or alone, affine and flip, copy-paste, mixup; at most max_instances (largest first)."""
    canvas, raw = compose(index, plan, settings, load, count, rng)
    if rng.random() < plan.copy_paste:
        donor = load(int(rng.integers(0, count)))
        canvas = copy_paste(canvas, _single(donor, plan, settings, rng), rng)
    if rng.random() < plan.mixup:
        other, _ = compose(int(rng.integers(0, count)), plan, settings, load, count, rng)
        canvas = mixup(canvas, other, rng)
    instances = canvas.instances
    if len(instances) > settings.max_instances:  # largest first, as the providers cap them
        instances = instances.take(np.argsort(-instances.areas(), kind="stable")[: settings.max_instances])
    return Canvas(canvas.image, instances), raw


def augment_sample(index: int, plan: AugmentPlan, settings: TransformSettings, load: Loader, count: int,
                   rng: np.random.Generator) -> Sample:
    """The training sample of image `index`: augment_canvas, HSV, boxes off the masks, masks on the grid."""
    width, height = settings.input_width, settings.input_height
    canvas, raw = augment_canvas(index, plan, settings, load, count, rng)
    instances = canvas.instances
    if any(settings.hsv_jitter):
        chw = hsv_jitter(canvas.image, settings.hsv_jitter, rng)
    else:
        chw = np.ascontiguousarray(canvas.image.transpose(2, 0, 1))
    scale = min(width / raw.orig_width, height / raw.orig_height)
    meta = ImageMeta(raw.image_id, raw.file_name, raw.orig_height, raw.orig_width, float(scale), 0, 0, False)
    return Sample(
        image=chw,
        boxes=instances.boxes(),
        labels=instances.labels.astype(np.int64),
        crowd=instances.crowd.astype(bool),
        masks=instances.grid_masks(height, width, settings.mask_stride),
        meta=meta,
    )
