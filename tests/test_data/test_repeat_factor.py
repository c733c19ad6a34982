"""Repeat-factor sampling (data.repeat_factor_threshold, LVIS): the factors, the per-epoch draw (fixed length,
deterministic, right on average) and the train loader that uses it."""

from __future__ import annotations

import math

import numpy as np
import pytest

from apex_x.adapters.config_yaml import load_config
from apex_x.adapters.datasets.loader import EpochBatchSampler
from apex_x.adapters.datasets.repeat_factor import (
    class_repeat_factors,
    epoch_indices,
    epoch_length,
    image_repeat_factors,
)

# 100 images: class 0 in every one, class 1 in images 0 and 1, class 2 in image 2, image 99 has no instances
CLASSES = [{0, 1}, {0, 1}, {0, 2}] + [{0}] * 96 + [set()]


def test_rare_classes_get_lvis_factors_and_an_image_the_max_of_its_classes() -> None:
    per_class = class_repeat_factors(CLASSES, 0.1)
    assert per_class[0] == 1.0  # f = 0.99: common, never repeated
    assert per_class[1] == pytest.approx(math.sqrt(0.1 / 0.02)) and per_class[2] == pytest.approx(math.sqrt(10))
    factors = image_repeat_factors(CLASSES, 0.1)
    assert factors[:3] == pytest.approx([math.sqrt(5), math.sqrt(5), math.sqrt(10)])
    assert factors[3:].tolist() == [1.0] * 97  # class 0 only, and the image without instances


def test_each_epoch_has_a_fixed_length_is_deterministic_and_right_on_average() -> None:
    factors = image_repeat_factors(CLASSES, 0.1)
    length = epoch_length(factors)
    assert length == math.floor(97 + 2 * math.sqrt(5) + math.sqrt(10))
    epochs = [epoch_indices(factors, seed=3, epoch=epoch) for epoch in range(400)]
    assert all(len(indices) == length for indices in epochs)
    for indices in epochs:  # floor or ceil of r_i copies, one less for at most one image (the cut-off tail)
        counts = np.bincount(indices, minlength=100)
        assert all(math.floor(r) - 1 <= c <= math.ceil(r) for c, r in zip(counts, factors, strict=True))
        assert sum(int(c < math.floor(r)) for c, r in zip(counts, factors, strict=True)) <= 1
    assert epoch_indices(factors, seed=3, epoch=7) == epochs[7] and epochs[7] != epochs[8]
    seen = np.bincount(np.concatenate(epochs), minlength=100) / len(epochs)
    assert seen[:3] == pytest.approx(factors[:3], rel=0.05)  # sqrt(5) and sqrt(10) times per epoch on average
    assert seen[3:] == pytest.approx(np.ones(97), abs=0.06)


def test_the_sampler_shards_the_repeated_epoch_across_ranks() -> None:
    factors = image_repeat_factors(CLASSES, 0.1)
    samplers = [EpochBatchSampler(100, 4, shuffle=True, seed=1, rank=rank, world_size=2, drop_last=True,
                                  repeat_factors=factors) for rank in range(2)]
    pool = epoch_indices(factors, seed=1, epoch=5)
    assert len(pool) % 2 == 0  # 104 entries: no padding needed
    assert sorted(samplers[0]._indices(5) + samplers[1]._indices(5)) == sorted(pool)  # disjoint, complete
    assert samplers[0].num_batches() == len(pool) // 2 // 4


def test_the_train_loader_uses_it_and_the_dataset_description_says_so() -> None:
    from apex_x.adapters.datasets.synthetic_source import SyntheticDatasetSource

    settings = load_config(None, ["data.format=synthetic", "data.synthetic_train_images=24",
                                  "data.repeat_factor_threshold=0.9", "model.input_height=64", "model.input_width=64"])
    source = SyntheticDatasetSource(settings)
    loader = source.train_loader(4, seed=0)
    info = source.describe()["repeat_factor_sampling"]
    assert info["threshold"] == 0.9 and info["images"] == 24 and info["images_per_epoch"] >= 24
    assert len(loader) == info["images_per_epoch"] // 4
    plain = SyntheticDatasetSource(load_config(None, ["data.format=synthetic", "data.synthetic_train_images=24"]))
    plain.train_loader(4, seed=0)
    assert plain.describe()["repeat_factor_sampling"] is None
