"""Multi-scale training: one input size per batch, both sides multiples of the model's stride."""

from __future__ import annotations

import math

import numpy as np

from apex_x.domain.input_size import INPUT_SIZE_MULTIPLE


def _side(base: int, low: float, high: float, factor: float, multiple: int) -> int:
    smallest = max(multiple, math.ceil(base * low / multiple) * multiple)
    largest = max(smallest, math.floor(base * high / multiple) * multiple)
    return int(min(largest, max(smallest, round(base * factor / multiple) * multiple)))


def batch_input_size(
    seed: int, epoch: int, batch: int, base: tuple[int, int], scales: tuple[float, float],
    multiple: int = INPUT_SIZE_MULTIPLE,
) -> tuple[int, int]:
    """(height, width) of batch `batch` of `epoch`: base (height, width) times one factor uniform in
    scales, each side rounded to a multiple of `multiple` inside [low * side, high * side] (at least one
    multiple). A pure function of (seed, epoch, batch): the same on every rank, worker and resume."""
    low, high = scales
    factor = float(np.random.default_rng([int(seed), int(epoch), int(batch), 0x5CA1E]).uniform(low, high))
    return _side(base[0], low, high, factor, multiple), _side(base[1], low, high, factor, multiple)
