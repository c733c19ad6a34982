"""Repeat-factor sampling for rare classes (`data.repeat_factor_threshold`), from LVIS (Gupta et al. 2019,
"LVIS: A Dataset for Large Vocabulary Instance Segmentation", section 4.1) as Detectron2's
RepeatFactorTrainingSampler does it.

For each class c, f_c = the share of train images holding c, and r_c = max(1, sqrt(t / f_c)); an image is
repeated r_i = max over its classes of r_c times per epoch on average (1 for an image without instances).
Each epoch draws its images by systematic sampling of r_i (floor or ceil copies, r_i on average),
deterministically per (seed, epoch), with the epoch's length fixed at floor(sum r_i) so every epoch has the
same number of steps (the schedule, resume and the progress bar count on it).
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Callable, Collection, Mapping, Sequence
from typing import Any

import numpy as np


def class_repeat_factors(image_classes: Sequence[Collection[int]], threshold: float) -> dict[int, float]:
    """r_c = max(1, sqrt(threshold / f_c)) for every class that occurs, f_c = images with c / all images."""
    images = max(1, len(image_classes))
    counts = Counter(label for classes in image_classes for label in set(classes))
    return {label: max(1.0, math.sqrt(threshold / (count / images))) for label, count in sorted(counts.items())}


def image_repeat_factors(image_classes: Sequence[Collection[int]], threshold: float) -> np.ndarray:
    """(N,) float64: r_i = max over the image's classes of r_c (1 for an image without instances)."""
    per_class = class_repeat_factors(image_classes, threshold)
    return np.array([max((per_class[label] for label in set(classes)), default=1.0) for classes in image_classes],
                    dtype=np.float64)


def epoch_indices(factors: np.ndarray, seed: int, epoch: int) -> list[int]:
    """The image indices of one epoch (the sampler shuffles them), exactly epoch_length(factors) of them.

    Systematic sampling over the images in a random order: with cumulative factors C (images shuffled per
    epoch) and one uniform offset u, position u + k (k = 0 .. L-1) picks the image whose interval holds it, so
    image i appears floor(r_i) or ceil(r_i) times and r_i times on average (less a share of frac(sum r) / N).
    Same (factors, seed, epoch), same list.
    """
    rng = np.random.default_rng([int(seed), int(epoch), 0x52_46_53])  # "RFS"
    order = rng.permutation(len(factors))
    bounds = np.cumsum(factors[order])
    positions = rng.random() + np.arange(epoch_length(factors))
    picked = np.minimum(np.searchsorted(bounds, positions, side="right"), len(factors) - 1)
    return order[picked].tolist()


def epoch_length(factors: np.ndarray) -> int:
    """Images per epoch: floor(sum r_i) (at least the number of images, as every r_i >= 1)."""
    return max(len(factors), int(math.floor(float(factors.sum()) + 1e-9)))


def describe_repeat_factors(image_classes: Sequence[Collection[int]], threshold: float,
                            names: Mapping[int, str]) -> dict[str, Any]:
    """What the report and log say: the threshold, images per epoch and the repeated classes with r_c."""
    per_class = class_repeat_factors(image_classes, threshold)
    factors = image_repeat_factors(image_classes, threshold)
    repeated = {names.get(label, str(label)): round(value, 3) for label, value in per_class.items() if value > 1.0}
    return {"threshold": threshold, "images": len(image_classes), "images_per_epoch": epoch_length(factors),
            "images_repeated": int((factors > 1.0).sum()), "class_repeat_factors": repeated}


def repeat_sampling(image_classes: Callable[[], Sequence[Collection[int]]], threshold: float | None,
                    names: Sequence[str]) -> tuple[np.ndarray | None, dict[str, Any] | None]:
    """(r_i per image, the description for the report), logged once; (None, None) when `threshold` is None.
    `image_classes`: gives the contiguous class ids per train image (called only when sampling is on: at COCO
    scale they cost seconds); `names`: class names by contiguous id."""
    if threshold is None:
        return None, None
    classes = image_classes()
    import structlog

    info = describe_repeat_factors(classes, threshold, dict(enumerate(names)))
    structlog.get_logger(__name__).info("repeat_factor_sampling", **info)
    return image_repeat_factors(classes, threshold), info
