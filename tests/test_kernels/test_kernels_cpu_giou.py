"""The fast torch GIoU's two gradient paths (sign factors, and torch's masks used off the CPU) against autograd."""

from __future__ import annotations

import math

import pytest
import torch

from apex_x.kernels import reference
from apex_x.kernels.cpu_giou import giou_sum_and_grad

from .cases import box_batch

pytestmark = pytest.mark.filterwarnings("ignore::RuntimeWarning")


def _autograd_sum(pred: torch.Tensor, target: torch.Tensor, weights: torch.Tensor | None):
    """Unclipped sum(w * (1 - GIoU)) and its gradient, as the reference's own autograd gives them."""
    leaf = pred.detach().clone().requires_grad_(True)
    losses = 1.0 - reference.pairwise_giou(leaf, target)
    total = (losses if weights is None else losses * weights).sum()
    total.backward()
    return total.detach(), leaf.grad


def _layout(name: str, pairs: int = 31) -> tuple[torch.Tensor, torch.Tensor]:
    gen = torch.Generator().manual_seed(5)
    pred, target = box_batch(pairs, gen), box_batch(pairs, gen)
    if name == "ties":  # identical boxes, shared edges, a zero-area prediction touching the target
        target[:10] = pred[:10]
        target[10:20, 0] = pred[10:20, 0]
        target[10:20, 3] = pred[10:20, 3]
        pred[25, 2] = pred[25, 0]
    elif name == "disjoint-and-inverted":
        pred[:8] += 1000.0  # no intersection: the clamp closes
        pred[8:12, 2] = pred[8:12, 0] - 3.0  # inverted width
        pred[12:16, 3] = pred[12:16, 1] - 0.0  # zero height
    elif name == "non-finite":  # only the masking path is exact here
        pred[3, 1] = math.nan
        pred[5, 2] = math.inf
        target[5, 2] = math.inf  # Inf == Inf: a tie for torch
        target[7, 0] = -math.inf
        pred[9] = math.nan
    return pred, target


@pytest.mark.parametrize("exact", [False, True], ids=["sign-factors", "torch-masks"])
@pytest.mark.parametrize("weighted", [False, True], ids=["unweighted", "weighted"])
@pytest.mark.parametrize("layout", ["random", "ties", "disjoint-and-inverted"])
def test_both_paths_match_autograd_on_finite_boxes(layout, weighted, exact):
    pred, target = _layout(layout)
    weights = torch.rand(pred.shape[0], generator=torch.Generator().manual_seed(1)) if weighted else None
    total, grad = giou_sum_and_grad(pred, target, weights, want_grad=True, exact=exact)
    ref_total, ref_grad = _autograd_sum(pred, target, weights)
    torch.testing.assert_close(total, ref_total, rtol=1e-6, atol=1e-6)
    torch.testing.assert_close(grad, ref_grad, rtol=1e-5, atol=1e-6)


def test_the_masking_path_is_exact_with_nan_and_inf_boxes():
    pred, target = _layout("non-finite")
    total, grad = giou_sum_and_grad(pred, target, None, want_grad=True, exact=True)
    ref_total, ref_grad = _autograd_sum(pred, target, None)
    assert math.isnan(float(total)) and math.isnan(float(ref_total))
    torch.testing.assert_close(grad, ref_grad, rtol=1e-5, atol=1e-6, equal_nan=True)
    finite_rows = torch.isfinite(pred).all(1) & torch.isfinite(target).all(1)
    assert torch.isfinite(grad[finite_rows]).all()  # a poisoned pair does not leak into the others


def test_forward_only_gives_the_same_total_and_no_gradient():
    pred, target = _layout("random")
    total, grad = giou_sum_and_grad(pred, target, None, want_grad=False)
    assert grad is None
    torch.testing.assert_close(total, _autograd_sum(pred, target, None)[0], rtol=1e-6, atol=1e-6)


def test_half_precision_boxes_are_computed_in_fp32():
    pred, target = _layout("random")
    total, grad = giou_sum_and_grad(pred.bfloat16(), target.bfloat16(), None, want_grad=True)
    ref_total, ref_grad = _autograd_sum(pred.bfloat16().float(), target.bfloat16().float(), None)
    assert total.dtype == torch.float32 and grad.dtype == torch.float32
    torch.testing.assert_close(grad, ref_grad, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(total, ref_total, rtol=1e-6, atol=1e-6)
