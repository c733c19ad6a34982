"""Mask and boundary losses: every backend against the torch reference, values and gradients."""

from __future__ import annotations

import math

import pytest
import torch

from apex_x import kernels
from apex_x.kernels import reference

from .cases import BACKENDS, DTYPES, assert_matches, mask_boxes, use_backend, value_and_grad

# the interpreter's numpy warns on NaN/Inf arithmetic that the tests provoke on purpose
pytestmark = pytest.mark.filterwarnings("ignore::RuntimeWarning")

MASK_CASES = {
    # id: (instances, height, width, target dtype, boxes, weights, normalizer, clip, logit scale)
    "no-boxes": (3, 17, 23, torch.float32, False, False, None, math.inf, 2.0),
    "boxes-weights": (4, 13, 9, torch.float32, True, True, None, math.inf, 2.0),
    "uint8-targets-clip-active": (3, 11, 15, torch.uint8, True, False, None, 0.5, 2.0),
    "bool-targets-tensor-normalizer": (2, 9, 31, torch.bool, True, True, "tensor", math.inf, 2.0),
    "saturated-logits-ties": (3, 12, 10, torch.float32, False, False, 2.0, math.inf, 40.0),
    "more-than-a-block": (1, 50, 47, torch.float32, True, False, None, math.inf, 2.0),
    "one-pixel": (2, 1, 1, torch.float32, False, False, None, math.inf, 2.0),
}


def mask_inputs(count, height, width, target_dtype, with_boxes, with_weights, scale, seed=0):
    gen = torch.Generator().manual_seed(seed)
    logits = torch.randn(count, height, width, generator=gen) * scale
    targets = (torch.rand(count, height, width, generator=gen) > 0.6).to(target_dtype)
    boxes = mask_boxes(count, height, width, gen) if with_boxes else None
    weights = torch.rand(count, generator=gen) if with_weights else None
    return logits, targets, boxes, weights


def _on(tensor, device):
    return None if tensor is None else tensor.to(device)


LOSSES = [
    pytest.param((kernels.mask_loss, reference.mask_loss_reference), id="mask"),
    pytest.param((kernels.boundary_loss, reference.boundary_loss_reference), id="boundary"),
]


@pytest.mark.parametrize("loss", LOSSES)
@pytest.mark.parametrize("backend,device", BACKENDS)
@pytest.mark.parametrize("case", MASK_CASES.values(), ids=MASK_CASES.keys())
def test_mask_losses_match_reference(monkeypatch, loss, backend, device, case):
    fast, slow = loss
    count, height, width, target_dtype, with_boxes, with_weights, normalizer, clip, scale = case
    logits, targets, boxes, weights = mask_inputs(count, height, width, target_dtype, with_boxes, with_weights, scale)
    norm = torch.tensor(1.5) if normalizer == "tensor" else normalizer
    ref = value_and_grad(slow, logits, targets, boxes, weights=weights, normalizer=norm, clip=clip)
    use_backend(monkeypatch, backend)
    ours = value_and_grad(
        fast, logits.to(device), targets.to(device), _on(boxes, device), weights=_on(weights, device),
        normalizer=norm.to(device) if torch.is_tensor(norm) else norm, clip=clip,
    )  # fmt: skip
    assert_matches(ours, ref)


@pytest.mark.parametrize("loss", LOSSES)
@pytest.mark.parametrize("backend,device", BACKENDS)
def test_mask_losses_custom_weights(monkeypatch, loss, backend, device):
    fast, slow = loss
    logits, targets, boxes, _ = mask_inputs(2, 10, 13, torch.float32, True, False, 2.0, seed=4)
    kwargs = {"bce_weight": 0.3, "dice_weight": 2.0, "smooth": 0.5}
    ref = value_and_grad(slow, logits, targets, boxes, **kwargs)
    use_backend(monkeypatch, backend)
    ours = value_and_grad(fast, logits.to(device), targets.to(device), boxes.to(device), **kwargs)
    assert_matches(ours, ref)


@pytest.mark.parametrize("loss", LOSSES)
@pytest.mark.parametrize("backend,device", BACKENDS)
@pytest.mark.parametrize("dtype_tol", DTYPES)
def test_mask_losses_dtypes(monkeypatch, loss, backend, device, dtype_tol):
    fast, slow = loss
    dtype, value_rtol, grad_atol, grad_rtol = dtype_tol
    logits, targets, boxes, weights = mask_inputs(2, 11, 14, torch.float32, True, True, 2.0, seed=1)
    logits = logits.to(dtype)
    ref = value_and_grad(slow, logits, targets, boxes, weights=weights)
    use_backend(monkeypatch, backend)
    ours = value_and_grad(fast, logits.to(device), targets.to(device), boxes.to(device), weights=weights.to(device))
    assert ours[1].dtype == dtype
    assert_matches(ours, ref, value_rtol, grad_atol, grad_rtol)


@pytest.mark.parametrize("loss", LOSSES)
@pytest.mark.parametrize("backend,device", BACKENDS)
@pytest.mark.parametrize("poison", [math.nan, math.inf, -math.inf], ids=["nan", "+inf", "-inf"])
@pytest.mark.parametrize("clip", [math.inf, 0.5], ids=["no-clip", "clip"])
def test_mask_losses_non_finite_follow_reference(monkeypatch, loss, backend, device, poison, clip):
    fast, slow = loss
    logits, targets, boxes, _ = mask_inputs(2, 9, 11, torch.float32, True, False, 2.0, seed=2)
    logits[0, 4, 5] = poison
    logits[1, 0, 0] = poison  # outside the box: the reference's NaN * 0 still poisons the sum
    ref = value_and_grad(slow, logits, targets, boxes, clip=clip)
    use_backend(monkeypatch, backend)
    ours = value_and_grad(fast, logits.to(device), targets.to(device), boxes.to(device), clip=clip)
    assert_matches(ours, ref)
