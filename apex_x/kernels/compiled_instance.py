"""Compiled torch mask and boundary losses: one `torch.compile` (Inductor) graph per loss, loss and gradient.

The fast eager path (cpu_mask.py, cpu_boundary.py) is bound by the number of passes over memory: each
torch op reads and writes the whole chunk. Here the per-instance BCE + Dice sums and the analytic
gradient are written as one function of whole tensors, and Inductor fuses it into a few C++ loops
(OpenMP, vectorised). The boundary loss keeps the reference's 3x3 max/min windows and their first-maximum
routing (max_pool2d_with_indices and its backward, which Inductor lowers to fused loops).

Compiled once per process and loss with dynamic shapes (any N and mask size; square and non-square mask
grids are one recompile apart, as torch's duck sizing makes equal H and W one symbol; Inductor caches the
generated code on disk, so later runs start in seconds). A compile or run failure (no C++ compiler, an Inductor bug) is
logged once (dispatch.record_compile_failure, in the train report) and the eager path runs from then on:
the losses never fail because of the compiler. Logits with NaN take the eager path (max_pool2d's NaN rule).
"""

from __future__ import annotations

from collections.abc import Callable

import structlog
import torch
import torch.nn.functional as F

from apex_x.kernels._common import dice_bce_terms, stored_instance_loss
from apex_x.kernels.cpu_boundary import boundary_losses_forward
from apex_x.kernels.cpu_mask import mask_losses_forward
from apex_x.kernels.dispatch import compiled_unavailable_reason, record_compile_failure

_compiled_functions: dict[str, Callable[..., tuple[torch.Tensor, torch.Tensor, torch.Tensor]]] = {}
_WINDOW = ([3, 3], [1, 1], [1, 1], [1, 1], False)  # kernel, stride, padding, dilation, ceil_mode


def _box_crop(boxes: torch.Tensor, height: int, width: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(N, H, W) 0/1 crop (pixel centres inside the box, the reference's rule) and its area clamped at 1 (N,)."""
    xs = torch.arange(width, device=boxes.device, dtype=torch.float32) + 0.5
    ys = torch.arange(height, device=boxes.device, dtype=torch.float32) + 0.5
    cols = ((xs[None, :] >= boxes[:, 0:1]) & (xs[None, :] < boxes[:, 2:3])).float()  # (N, W)
    rows = ((ys[None, :] >= boxes[:, 1:2]) & (ys[None, :] < boxes[:, 3:4])).float()  # (N, H)
    return rows[:, :, None] * cols[:, None, :], (rows.sum(1) * cols.sum(1)).clamp(min=1.0)


def _mask_sum_and_grad(
    x: torch.Tensor,  # (N, H, W) logits
    t: torch.Tensor,  # (N, H, W) targets
    boxes: torch.Tensor,  # (N, 4) xyxy mask pixels
    w: torch.Tensor,  # (N,)
    settings: torch.Tensor,  # (3,) bce_weight, dice_weight, smooth
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(sum of w * per-instance loss, unscaled gradient (N, H, W), logits hold NaN); fp32 inputs."""
    bce_weight, dice_weight, smooth = settings[0], settings[1], settings[2]
    crop, area = _box_crop(boxes, x.shape[1], x.shape[2])
    p = torch.sigmoid(x)
    bce = F.binary_cross_entropy_with_logits(x, t, reduction="none")
    t_crop = t * crop
    loss, a, b, c = dice_bce_terms(
        (bce * crop).sum((1, 2)), (p * t_crop).sum((1, 2)), (p * crop).sum((1, 2)), t_crop.sum((1, 2)),
        area, bce_weight, dice_weight, smooth,
    )  # fmt: skip
    a, b, c, wb = (v[:, None, None] for v in (a, b, c, w))
    grad = crop * (a * (p - t) + p * (1.0 - p) * (b + c * t)) * wb
    return (loss * w).sum(), grad, torch.isnan(loss).any()  # NaN logits make their instance's sums NaN


def _boundary_sum_and_grad(
    x: torch.Tensor,  # (N, H, W) logits
    t: torch.Tensor,  # (N, H, W) targets
    boxes: torch.Tensor,  # (N, 4) xyxy mask pixels
    w: torch.Tensor,  # (N,)
    settings: torch.Tensor,  # (4,) bce_weight, dice_weight, smooth, eps
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(sum of w * per-instance boundary loss, unscaled gradient (N, H, W), logits hold NaN); fp32 inputs."""
    bce_weight, dice_weight, smooth, eps = settings[0], settings[1], settings[2], settings[3]
    crop, area = _box_crop(boxes, x.shape[1], x.shape[2])
    crop = crop[:, None]
    x, t = x[:, None], t[:, None]  # (N, 1, H, W)
    p = torch.sigmoid(x)
    dilated, arg_max = F.max_pool2d_with_indices(p, 3, 1, 1)
    neg_eroded, arg_min = F.max_pool2d_with_indices(-p, 3, 1, 1)
    raw = dilated + neg_eroded  # morphological gradient of sigmoid(x)
    edges = torch.minimum(torch.maximum(raw, eps), 1.0 - eps)
    t_edges = F.max_pool2d(t, 3, 1, 1) + F.max_pool2d(-t, 3, 1, 1)
    bce = -(t_edges * torch.log(edges) + (1.0 - t_edges) * torch.log(1.0 - edges))
    t_crop = t_edges * crop
    loss, a, b, c = dice_bce_terms(
        (bce * crop).sum((1, 2, 3)), (edges * t_crop).sum((1, 2, 3)), (edges * crop).sum((1, 2, 3)),
        t_crop.sum((1, 2, 3)), area, bce_weight, dice_weight, smooth,
    )  # fmt: skip
    a, b, c, wb = (v[:, None, None, None] for v in (a, b, c, w))
    gate = ((raw > eps) & (raw < 1.0 - eps)).float()  # the clamp passed the gradient
    g_edges = crop * gate * (a * (edges - t_edges) / (edges * (1.0 - edges)) + b + c * t_edges) * wb
    back = torch.ops.aten.max_pool2d_with_indices_backward
    g = back(g_edges, p, *_WINDOW, arg_max) - back(g_edges, p, *_WINDOW, arg_min)
    return (loss * w).sum(), (g * p * (1.0 - p))[:, 0], torch.isnan(loss).any()  # NaN logits: NaN sums


_FUNCTIONS: dict[str, Callable[..., tuple[torch.Tensor, torch.Tensor, torch.Tensor]]] = {
    "mask": _mask_sum_and_grad,
    "boundary": _boundary_sum_and_grad,
}


def _compiled(name: str) -> Callable[..., tuple[torch.Tensor, torch.Tensor, torch.Tensor]]:
    compiled = _compiled_functions.get(name)
    if compiled is None:
        structlog.get_logger(__name__).info(
            "compiling loss kernel", loss=name, note="torch.compile, once per process; cached on disk after"
        )
        compiled = _compiled_functions[name] = torch.compile(_FUNCTIONS[name], dynamic=True)
    return compiled


def _run_compiled(name: str, logits, target_masks, boxes, weights, settings):
    """(total, gradient in the logits' dtype, NaN in the logits) from the compiled graph."""
    count, height, width = logits.shape
    if boxes is None:  # the whole grid: every pixel centre inside, area H * W (as without a crop)
        boxes = logits.new_tensor([[0.0, 0.0, float(width), float(height)]], dtype=torch.float32).expand(count, 4)
    w = logits.new_ones(count, dtype=torch.float32) if weights is None else weights.float()
    x, t, b = logits.float(), target_masks.float(), boxes.float()  # one graph whatever the input dtypes
    if count == 1:  # a second, zero-weight copy: N stays symbolic (no 0/1 specialisation, no recompile)
        x, t, b = (torch.cat([v, v]) for v in (x, t, b))
        w = torch.cat([w, w.new_zeros(1)])
    values = torch.tensor(settings, dtype=torch.float32)  # a tensor: no recompile per setting value
    total, grad, has_nan = _compiled(name)(x.contiguous(), t.contiguous(), b.contiguous(), w, values)
    return total, grad[:count].to(logits.dtype), bool(has_nan)


def _sum_and_grad(name: str, eager: Callable, logits, target_masks, boxes, weights, settings, want_grad: bool):
    """The compiled sum and gradient, or the eager path's (no compiler, after a failure, or NaN logits)."""
    if compiled_unavailable_reason() is None:
        try:
            total, grad, has_nan = _run_compiled(name, logits, target_masks, boxes, weights, settings)
            if not has_nan:  # NaN: the eager path follows max_pool2d's NaN rule exactly
                return total, (grad if want_grad else None)  # cheaper than an eager forward alone
        except Exception as error:  # noqa: BLE001 - any compiler failure falls back to the eager path
            record_compile_failure(error)
    return eager(logits, target_masks, boxes, weights, settings, want_grad)


def mask_loss_compiled(
    mask_logits: torch.Tensor,  # (N, H, W)
    target_masks: torch.Tensor,  # (N, H, W)
    boxes: torch.Tensor | None,  # (N, 4)
    weights: torch.Tensor | None,  # (N,)
    bce_weight: float,
    dice_weight: float,
    normalizer: float | torch.Tensor | None,
    clip: float,
    smooth: float,
) -> torch.Tensor:
    """The reference's mask component (clipped) through the compiled graph; differentiable in the logits."""
    settings = (bce_weight, dice_weight, smooth)

    def sum_and_grad(logits: torch.Tensor, want_grad: bool):
        return _sum_and_grad("mask", mask_losses_forward, logits, target_masks, boxes, weights, settings, want_grad)

    return stored_instance_loss(mask_logits, sum_and_grad, normalizer, clip)


def boundary_loss_compiled(
    mask_logits: torch.Tensor,  # (N, H, W)
    target_masks: torch.Tensor,  # (N, H, W)
    boxes: torch.Tensor | None,  # (N, 4)
    weights: torch.Tensor | None,  # (N,)
    bce_weight: float,
    dice_weight: float,
    normalizer: float | torch.Tensor | None,
    clip: float,
    smooth: float,
    eps: float,
) -> torch.Tensor:
    """The reference's boundary component (clipped) through the compiled graph; differentiable in the logits."""
    settings = (bce_weight, dice_weight, smooth, eps)

    def sum_and_grad(logits: torch.Tensor, want_grad: bool):
        return _sum_and_grad(
            "boundary", boundary_losses_forward, logits, target_masks, boxes, weights, settings, want_grad
        )

    return stored_instance_loss(mask_logits, sum_and_grad, normalizer, clip)
