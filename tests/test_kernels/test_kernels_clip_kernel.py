"""The one-launch clip of the Triton losses against clipped(): sum, normalise, nan_to_num, clip, slope."""

from __future__ import annotations

import math

import pytest
import torch

from apex_x.kernels._common import clipped

from .cases import HAS_CUDA, INTERPRETED

pytestmark = [
    pytest.mark.skipif(not (INTERPRETED or HAS_CUDA), reason="Triton needs CUDA or TRITON_INTERPRET=1"),
    pytest.mark.filterwarnings("ignore::RuntimeWarning"),
]
DEVICE = "cpu" if INTERPRETED else "cuda"
INF, NAN = math.inf, math.nan


class FakeContext:
    """What the autograd context gives the host forward: saved tensors and attributes."""

    def save_for_backward(self, *tensors):
        self.saved = tensors


def _kernel_clip(partials, weights, normalizer, clip):
    from apex_x.kernels._triton_common import clip_partials_and_save

    ctx = FakeContext()
    marker = torch.ones(1)
    value = clip_partials_and_save(ctx, partials.to(DEVICE), weights, normalizer, clip, marker, None)
    assert ctx.saved == (marker, None)
    return value, ctx.slope


CASES = {
    # id: (partials, normalizer, clip)
    "plain": ([1.5, 2.25, -0.5, 4.0], 2.0, INF),
    "many-partials": ([0.01 * i for i in range(2500)], 7.0, INF),  # more than one block of the kernel
    "clip-active": ([3.0, 4.0], 1.0, 5.0),
    "clip-equal-is-clipped": ([2.5, 2.5], 1.0, 5.0),
    "nan": ([1.0, NAN, 2.0], 1.0, 10.0),
    "plus-inf": ([1.0, INF], 4.0, INF),
    "minus-inf": ([-INF, 1.0], 4.0, INF),
    "inf-minus-inf": ([INF, -INF], 1.0, INF),
    "zero-normalizer": ([1.0, 2.0], 0.0, INF),
    "zero-total-zero-normalizer": ([0.0], 0.0, INF),
    "int-normalizer": ([1.0, 2.0, 4.0], 3, 100.0),
}


@pytest.mark.parametrize("tensor_normalizer", [False, True], ids=["float-normalizer", "fp32-tensor-normalizer"])
@pytest.mark.parametrize("case", CASES.values(), ids=CASES.keys())
def test_value_and_slope_match_clipped(case, tensor_normalizer):
    values, normalizer, clip = case
    partials = torch.tensor(values, dtype=torch.float32)
    norm = torch.tensor(float(normalizer), device=DEVICE) if tensor_normalizer else normalizer
    value, slope = _kernel_clip(partials, None, norm, clip)
    ref_value, ref_slope = clipped(partials.sum(), torch.tensor(float(normalizer)) if tensor_normalizer else normalizer,
                                   clip)  # fmt: skip
    assert value.dtype == torch.float32 and value.shape == ()
    torch.testing.assert_close(value.cpu(), ref_value.float(), rtol=1e-6, atol=1e-6, equal_nan=True)
    torch.testing.assert_close(slope.cpu(), torch.as_tensor(ref_slope, dtype=torch.float32), equal_nan=True)


def test_weights_multiply_each_partial():
    partials = torch.tensor([1.0, 2.0, 3.0, NAN])
    weights = torch.tensor([0.5, 0.0, 2.0, 1.0])
    value, slope = _kernel_clip(partials[:3], weights[:3].to(DEVICE), 2.0, INF)
    assert float(value) == pytest.approx((0.5 + 6.0) / 2.0) and float(slope) == pytest.approx(0.5)
    value, slope = _kernel_clip(partials, weights.to(DEVICE), 2.0, INF)  # NaN * weight poisons the total
    assert float(value) == 0.0 and float(slope) == 0.0


def test_other_normalizers_take_the_torch_ops_and_keep_their_dtype():
    partials = torch.tensor([1.0, 2.0])
    value, slope = _kernel_clip(partials, None, torch.tensor(4.0, dtype=torch.float64, device=DEVICE), INF)
    assert value.dtype == torch.float64 and float(value) == pytest.approx(0.75)
    assert float(slope) == pytest.approx(0.25)
