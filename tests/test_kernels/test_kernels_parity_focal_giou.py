"""Focal and GIoU: every backend against the torch reference, values and gradients."""

from __future__ import annotations

import math

import pytest
import torch

from apex_x import kernels
from apex_x.kernels import reference

from .cases import BACKENDS, DTYPES, assert_matches, box_batch, use_backend, value_and_grad

FOCAL_CASES = {
    # id: (rows, classes, target kind, weights, gamma, alpha, normalizer, clip)
    "ids-default": (37, 13, "ids", False, 2.0, 0.25, 1.0, math.inf),
    "ids-weights-clip-active": (37, 13, "ids", True, 2.0, 0.25, 4.0, 5.0),
    "ids-int32-no-alpha": (29, 7, "ids32", False, 2.0, None, 1.0, math.inf),
    "ids-uint8-gamma1.5": (17, 5, "ids8", True, 1.5, 0.4, 2.0, math.inf),
    "soft-qfl": (23, 11, "soft", False, 2.0, None, 1.0, math.inf),
    "soft-weights-tensor-normalizer": (23, 11, "soft", True, 2.0, 0.25, "tensor", math.inf),
    "soft-gamma0-bce": (19, 3, "soft", False, 0.0, 0.5, 1.0, math.inf),
    "bool-targets": (13, 6, "bool", False, 2.0, 0.25, 1.0, math.inf),
    "wide-classes": (3, 2500, "ids", False, 2.0, 0.25, 1.0, math.inf),
    "one-row": (1, 1, "ids", False, 2.0, 0.25, 1.0, math.inf),
}


def focal_inputs(rows, classes, kind, with_weights, normalizer, seed=0):
    gen = torch.Generator().manual_seed(seed)
    logits = torch.randn(rows, classes, generator=gen) * 3.0
    if kind.startswith("ids"):
        dtype = {"ids": torch.int64, "ids32": torch.int32, "ids8": torch.uint8}[kind]
        low = 0 if dtype == torch.uint8 else -1
        targets = torch.randint(low, classes, (rows,), generator=gen).to(dtype)
    elif kind == "bool":
        targets = torch.rand(rows, classes, generator=gen) > 0.7
    else:
        targets = torch.rand(rows, classes, generator=gen)
    weights = torch.rand(rows, generator=gen) if with_weights else None
    norm = torch.tensor(3.5) if normalizer == "tensor" else normalizer
    return logits, targets, weights, norm


@pytest.mark.parametrize("backend,device", BACKENDS)
@pytest.mark.parametrize("case", FOCAL_CASES.values(), ids=FOCAL_CASES.keys())
def test_focal_matches_reference(monkeypatch, backend, device, case):
    rows, classes, kind, with_weights, gamma, alpha, normalizer, clip = case
    logits, targets, weights, norm = focal_inputs(rows, classes, kind, with_weights, normalizer)
    kwargs = {"gamma": gamma, "alpha": alpha, "clip": clip}
    ref = value_and_grad(reference.focal_loss_reference, logits, targets, weights=weights, normalizer=norm, **kwargs)
    use_backend(monkeypatch, backend)
    to = {"device": device}
    ours = value_and_grad(
        kernels.focal_loss, logits.to(**to), targets.to(**to),
        weights=None if weights is None else weights.to(**to), normalizer=norm if not torch.is_tensor(norm)
        else norm.to(**to), **kwargs,
    )  # fmt: skip
    assert_matches(ours, ref)


@pytest.mark.parametrize("backend,device", BACKENDS)
@pytest.mark.parametrize("dtype_tol", DTYPES)
def test_focal_dtypes(monkeypatch, backend, device, dtype_tol):
    dtype, value_rtol, grad_atol, grad_rtol = dtype_tol
    logits, targets, weights, _ = focal_inputs(31, 9, "ids", True, 1.0, seed=3)
    logits = logits.to(dtype)
    ref = value_and_grad(reference.focal_loss_reference, logits, targets, weights=weights)
    use_backend(monkeypatch, backend)
    ours = value_and_grad(kernels.focal_loss, logits.to(device), targets.to(device), weights=weights.to(device))
    assert ours[1].dtype == dtype
    assert_matches(ours, ref, value_rtol, grad_atol, grad_rtol)


@pytest.mark.parametrize("backend,device", BACKENDS)
@pytest.mark.parametrize("poison", ["nan", "+inf-negative", "-inf", "mixed"])
@pytest.mark.parametrize("clip", [math.inf, 3.0])
def test_focal_non_finite_follows_reference(monkeypatch, backend, device, poison, clip):
    logits, targets, _, _ = focal_inputs(11, 5, "ids", False, 1.0, seed=5)
    targets[2] = -1  # row 2 is background: +inf there gives an infinite (not NaN) loss
    where = {"nan": [(0, 1)], "+inf-negative": [(2, 3)], "-inf": [(4, 0)], "mixed": [(0, 1), (2, 3), (4, 0)]}
    values = {"nan": math.nan, "+inf-negative": math.inf, "-inf": -math.inf}
    for index, (row, col) in enumerate(where[poison]):
        kind = poison if poison != "mixed" else list(values)[index]
        logits[row, col] = values[kind]
    ref = value_and_grad(reference.focal_loss_reference, logits, targets, clip=clip)
    use_backend(monkeypatch, backend)
    ours = value_and_grad(kernels.focal_loss, logits.to(device), targets.to(device), clip=clip)
    assert_matches(ours, ref)


GIOU_CASES = {
    # id: (pairs, layout, weights, normalizer, clip)
    "random": (37, "random", False, 1.0, math.inf),
    "weights-tensor-normalizer": (37, "random", True, "tensor", math.inf),
    "ties": (21, "ties", False, 2.0, math.inf),
    "degenerate": (21, "degenerate", True, 1.0, math.inf),
    "clip-active": (21, "random", False, 1.0, 2.0),
    "non-finite": (13, "non-finite", False, 1.0, math.inf),
    "more-than-a-block": (1500, "random", False, 1500.0, math.inf),
}


def giou_inputs(pairs, layout, with_weights, seed=0):
    gen = torch.Generator().manual_seed(seed)
    pred, target = box_batch(pairs, gen), box_batch(pairs, gen)
    if layout == "ties":  # identical boxes, shared edges: torch splits min/max gradients half and half
        target[: pairs // 2] = pred[: pairs // 2]
        target[pairs // 2 :, 0] = pred[pairs // 2 :, 0]
    elif layout == "degenerate":  # inverted and zero-height predictions
        pred[::3, 2] = pred[::3, 0] - 1.0
        pred[1::3, 3] = pred[1::3, 1]
    elif layout == "non-finite":
        pred[3, 1] = math.nan
        pred[5, 2] = math.inf
    return pred, target, (torch.rand(pairs, generator=gen) if with_weights else None)


@pytest.mark.parametrize("backend,device", BACKENDS)
@pytest.mark.parametrize("case", GIOU_CASES.values(), ids=GIOU_CASES.keys())
def test_giou_matches_reference(monkeypatch, backend, device, case):
    pairs, layout, with_weights, normalizer, clip = case
    pred, target, weights = giou_inputs(pairs, layout, with_weights)
    norm = torch.tensor(7.0) if normalizer == "tensor" else normalizer
    ref = value_and_grad(reference.giou_loss_reference, pred, target, weights=weights, normalizer=norm, clip=clip)
    use_backend(monkeypatch, backend)
    ours = value_and_grad(
        kernels.giou_loss, pred.to(device), target.to(device), clip=clip,
        weights=None if weights is None else weights.to(device), normalizer=norm if not torch.is_tensor(norm)
        else norm.to(device),
    )  # fmt: skip
    assert_matches(ours, ref)


@pytest.mark.parametrize("backend,device", BACKENDS)
@pytest.mark.parametrize("dtype_tol", DTYPES)
def test_giou_dtypes(monkeypatch, backend, device, dtype_tol):
    dtype, value_rtol, grad_atol, grad_rtol = dtype_tol
    pred, target, weights = giou_inputs(29, "random", True, seed=2)
    pred, target = pred.to(dtype), target.to(dtype)
    ref = value_and_grad(reference.giou_loss_reference, pred, target, weights=weights)
    use_backend(monkeypatch, backend)
    ours = value_and_grad(kernels.giou_loss, pred.to(device), target.to(device), weights=weights.to(device))
    assert ours[1].dtype == dtype
    assert_matches(ours, ref, value_rtol, grad_atol, grad_rtol)
