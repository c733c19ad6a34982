"""Triton boundary loss: 3x3 morphological gradients of sigmoid(logits) and targets, BCE + Dice, fused.

Liger-Kernel style: Triton kernels, host forward/backward, one autograd.Function. The forward reads
each pixel's 3x3 neighbourhood (cached) and writes four per-block sums per instance. The backward
recomputes the windows: a first kernel writes d(loss)/d(edge) and the argmax/argmin window codes
(first maximum in row-major order, NaN wins: max_pool2d's rule), a second gathers, for every pixel,
the gradients of the windows whose max or min it is (deterministic, no atomics) and applies the
sigmoid's derivative. No host synchronisation: coefficients stay on the device.
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl

from apex_x.kernels._triton_common import (
    NAN_ALL,
    autocast_off,
    box_crop,
    finish_instance_forward,
    instance_backward_inputs,
    instance_launch,
    launch_guard,
)


@triton.jit
def _windows(x_ptr, t_ptr, base, rows, cols, ok, height, width, WANT_CODES: tl.constexpr):
    """3x3 max/min of sigmoid(x) (with window codes 0..8 of the chosen pixel) and the target edge."""
    best = tl.full(rows.shape, float("-inf"), tl.float32)
    worst = tl.full(rows.shape, float("inf"), tl.float32)
    t_max = tl.full(rows.shape, float("-inf"), tl.float32)
    t_min = tl.full(rows.shape, float("inf"), tl.float32)
    code_max = tl.zeros(rows.shape, tl.int32)
    code_min = tl.zeros(rows.shape, tl.int32)
    for k in tl.static_range(9):
        r = rows + (k // 3 - 1)
        c = cols + (k % 3 - 1)
        valid = ok & (r >= 0) & (r < height) & (c >= 0) & (c < width)
        offset = base + r * width + c
        p = tl.sigmoid(tl.load(x_ptr + offset, mask=valid, other=0.0).to(tl.float32))
        t = tl.load(t_ptr + offset, mask=valid, other=0).to(tl.float32)
        up = valid & ((p > best) | (p != p))  # max_pool2d: strictly greater, or NaN
        down = valid & ((p < worst) | (p != p))
        best = tl.where(up, p, best)
        worst = tl.where(down, p, worst)
        if WANT_CODES:
            code_max = tl.where(up, k, code_max)
            code_min = tl.where(down, k, code_min)
        t_max = tl.where(valid, tl.maximum(t_max, t, propagate_nan=NAN_ALL), t_max)
        t_min = tl.where(valid, tl.minimum(t_min, t, propagate_nan=NAN_ALL), t_min)
    return best - worst, t_max - t_min, code_max, code_min


@triton.jit
def _pixels(height, width, BLOCK: tl.constexpr):
    instance = tl.program_id(0)
    pixels = tl.program_id(1) * BLOCK + tl.arange(0, BLOCK)
    ok = pixels < height * width
    rows = pixels // width
    return instance, pixels, ok, rows, pixels - rows * width, instance.to(tl.int64) * height * width


@triton.jit
def _boundary_forward_kernel(x_ptr, t_ptr, box_ptr, partial_ptr, height, width, eps,
                             HAS_BOXES: tl.constexpr, BLOCK: tl.constexpr):  # fmt: skip
    instance, _, ok, rows, cols, base = _pixels(height, width, BLOCK)
    raw, t_edge, _, _ = _windows(x_ptr, t_ptr, base, rows, cols, ok, height, width, False)
    edge = tl.minimum(tl.maximum(raw, eps, propagate_nan=NAN_ALL), 1.0 - eps, propagate_nan=NAN_ALL)
    crop = tl.where(ok, box_crop(box_ptr, instance, rows, cols, HAS_BOXES), 0.0)
    t_edge = tl.where(ok, t_edge, 0.0)
    bce = -(t_edge * tl.log(edge) + (1.0 - t_edge) * tl.log(1.0 - edge))
    out = partial_ptr + (instance.to(tl.int64) * tl.num_programs(1) + tl.program_id(1)) * 4
    tl.store(out, tl.sum(bce * crop, axis=0))
    tl.store(out + 1, tl.sum(edge * t_edge * crop, axis=0))
    tl.store(out + 2, tl.sum(edge * crop, axis=0))
    tl.store(out + 3, tl.sum(t_edge * crop, axis=0))


@triton.jit
def _edge_grad_kernel(x_ptr, t_ptr, box_ptr, coef_ptr, edge_grad_ptr, code_max_ptr, code_min_ptr, height, width,
                      eps, HAS_BOXES: tl.constexpr, BLOCK: tl.constexpr):  # fmt: skip
    instance, pixels, ok, rows, cols, base = _pixels(height, width, BLOCK)
    raw, t_edge, code_max, code_min = _windows(x_ptr, t_ptr, base, rows, cols, ok, height, width, True)
    edge = tl.minimum(tl.maximum(raw, eps, propagate_nan=NAN_ALL), 1.0 - eps, propagate_nan=NAN_ALL)
    crop = box_crop(box_ptr, instance, rows, cols, HAS_BOXES)
    coef = coef_ptr + instance.to(tl.int64) * 3
    d_edge = tl.load(coef) * (edge - t_edge) / (edge * (1.0 - edge)) + tl.load(coef + 1) + tl.load(coef + 2) * t_edge
    gate = (raw > eps) & (raw < 1.0 - eps)  # torch's clamp passes strictly inside its bounds
    tl.store(edge_grad_ptr + base + pixels, tl.where(gate, d_edge * crop, 0.0), mask=ok)
    tl.store(code_max_ptr + base + pixels, code_max.to(tl.int8), mask=ok)
    tl.store(code_min_ptr + base + pixels, code_min.to(tl.int8), mask=ok)


@triton.jit
def _gather_grad_kernel(x_ptr, edge_grad_ptr, code_max_ptr, code_min_ptr, grad_ptr, height, width,
                        BLOCK: tl.constexpr):  # fmt: skip
    _, pixels, ok, rows, cols, base = _pixels(height, width, BLOCK)
    acc = tl.zeros(rows.shape, tl.float32)
    for k in tl.static_range(9):  # the window centred at (pixel - offset_k) sees this pixel at code k
        r = rows - (k // 3 - 1)
        c = cols - (k % 3 - 1)
        valid = ok & (r >= 0) & (r < height) & (c >= 0) & (c < width)
        offset = base + r * width + c
        g = tl.load(edge_grad_ptr + offset, mask=valid, other=0.0)
        hit_max = valid & (tl.load(code_max_ptr + offset, mask=valid, other=0).to(tl.int32) == k)
        hit_min = valid & (tl.load(code_min_ptr + offset, mask=valid, other=0).to(tl.int32) == k)
        acc += tl.where(hit_max, g, 0.0) - tl.where(hit_min, g, 0.0)
    p = tl.sigmoid(tl.load(x_ptr + base + pixels, mask=ok, other=0.0).to(tl.float32))
    tl.store(grad_ptr + base + pixels, (acc * p * (1.0 - p)).to(grad_ptr.dtype.element_ty), mask=ok)


def _forward(
    ctx, mask_logits, target_masks, boxes, weights, bce_weight, dice_weight, normalizer, clip, smooth, eps
):
    """Host forward: per-block partial sums of the edge maps, then the per-instance algebra."""
    x, t, box, grid, block, partials = instance_launch(mask_logits, target_masks, boxes)
    with launch_guard(x, _boundary_forward_kernel):
        _boundary_forward_kernel[grid](x, t, box, partials, x.shape[1], x.shape[2], eps,
                                       HAS_BOXES=boxes is not None, BLOCK=block)  # fmt: skip
    ctx.launch = (grid, block, boxes is not None, eps)
    return finish_instance_forward(ctx, partials, x, t, box, boxes, weights, bce_weight, dice_weight, smooth,
                                   normalizer, clip)  # fmt: skip


class BoundaryLossTriton(torch.autograd.Function):
    """Clipped boundary component; the backward recomputes the windows from the inputs."""

    forward = autocast_off(_forward)

    @staticmethod
    def backward(ctx, grad_value):  # type: ignore[override]
        x, t, box, coef = instance_backward_inputs(ctx, grad_value)
        grid, block, has_boxes, eps = ctx.launch
        height, width = x.shape[1], x.shape[2]
        edge_grad = torch.empty(x.shape, dtype=torch.float32, device=x.device)
        code_max = torch.empty(x.shape, dtype=torch.int8, device=x.device)
        code_min = torch.empty_like(code_max)
        grad = torch.empty_like(x)
        with launch_guard(x, _edge_grad_kernel):
            _edge_grad_kernel[grid](x, t, box, coef, edge_grad, code_max, code_min, height, width, eps,
                                    HAS_BOXES=has_boxes, BLOCK=block)  # fmt: skip
            _gather_grad_kernel[grid](x, edge_grad, code_max, code_min, grad, height, width,
                                      BLOCK=block)  # fmt: skip
        return grad, None, None, None, None, None, None, None, None, None


def boundary_loss_triton(
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
    """The reference's boundary component (clipped), differentiable in the logits."""
    return BoundaryLossTriton.apply(
        mask_logits, target_masks, boxes, weights, bce_weight, dice_weight, normalizer, clip, smooth, eps
    )
