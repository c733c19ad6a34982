"""clipped(): the host-side clip of the fast torch path against torch's own composite, value and gradient."""

from __future__ import annotations

import math
import random

import pytest
import torch

from apex_x.kernels._common import clipped

SPECIAL = [0.0, -0.0, 1.0, -3.5, math.inf, -math.inf, math.nan, 3.4e38, 1e-45, 0.1, -2.5e-39]


def _torch_clip(total: float, normalizer: float | torch.Tensor, clip: float) -> tuple[float, float]:
    leaf = torch.tensor(total, dtype=torch.float32, requires_grad=True)
    value = torch.clamp(torch.nan_to_num(leaf / normalizer), max=clip)
    value.backward()
    return value.item(), leaf.grad.item()


def _same(a: float, b: float) -> bool:
    return a == b or (math.isnan(a) and math.isnan(b))


def test_fp32_totals_and_number_normalizers_match_torch_bit_for_bit():
    rng = random.Random(0)
    for _ in range(3000):
        total = rng.choice(SPECIAL) if rng.random() < 0.2 else rng.uniform(-1, 1) * 10 ** rng.uniform(-40, 38)
        total = torch.tensor(total, dtype=torch.float32).item()  # an fp32 value, as a loss sum is
        normalizer = rng.choice(SPECIAL + [3, 1500]) if rng.random() < 0.3 else 10 ** rng.uniform(-45, 39)
        clip = rng.choice([math.inf, 1.0, 1e6, 0.25])
        value, slope = clipped(torch.tensor(total), normalizer, clip)
        ref_value, ref_grad = _torch_clip(total, normalizer, clip)
        assert value.dtype == torch.float32 and value.shape == ()
        assert _same(value.item(), ref_value), (total, normalizer, clip, value.item(), ref_value)
        assert _same(slope, ref_grad), (total, normalizer, clip, slope, ref_grad)


@pytest.mark.parametrize("normalizer", [torch.tensor(4.0), torch.tensor(4.0, dtype=torch.float64), torch.tensor(0.0)])
def test_tensor_normalizers_keep_torch_type_promotion(normalizer):
    for total in [6.0, math.nan, math.inf, 0.0]:
        value, slope = clipped(torch.tensor(total), normalizer, 10.0)
        leaf = torch.tensor(total, requires_grad=True)
        ref = torch.clamp(torch.nan_to_num(leaf / normalizer), max=10.0)
        ref.backward()
        assert value.dtype == ref.dtype
        assert _same(value.item(), ref.item()) and _same(float(slope), leaf.grad.item())
