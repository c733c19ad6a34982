"""Triton mask loss (BCE + Dice inside the box): per-instance block sums forward, one recompute pass backward.

Liger-Kernel style: Triton kernels, host forward/backward, one autograd.Function. The grid is
(instance, pixel block); the forward writes four partial sums per block (BCE, p*t, p, t inside the
crop), the Dice/BCE algebra on the (N,) sums runs in torch on the device, and the backward kernel
recomputes sigmoid/BCE from the inputs with per-instance coefficients (grad_output, clip gate and
weights folded in on the device: no host synchronisation).
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl

from apex_x.kernels._triton_common import (
    autocast_off,
    bce_with_logits,
    box_crop,
    finish_instance_forward,
    instance_backward_inputs,
    instance_launch,
    launch_guard,
)


@triton.jit
def _mask_tile(x_ptr, t_ptr, box_ptr, height, width, HAS_BOXES: tl.constexpr, BLOCK: tl.constexpr):
    instance = tl.program_id(0)
    pixels = tl.program_id(1) * BLOCK + tl.arange(0, BLOCK)
    area = height * width
    ok = pixels < area
    offsets = instance.to(tl.int64) * area + pixels
    x = tl.load(x_ptr + offsets, mask=ok, other=0.0).to(tl.float32)
    t = tl.load(t_ptr + offsets, mask=ok, other=0).to(tl.float32)
    rows = pixels // width
    crop = box_crop(box_ptr, instance, rows, pixels - rows * width, HAS_BOXES)
    return instance, offsets, ok, x, t, tl.where(ok, crop, 0.0)


@triton.jit
def _mask_forward_kernel(x_ptr, t_ptr, box_ptr, partial_ptr, height, width, HAS_BOXES: tl.constexpr,
                         BLOCK: tl.constexpr):  # fmt: skip
    instance, _, _, x, t, crop = _mask_tile(x_ptr, t_ptr, box_ptr, height, width, HAS_BOXES, BLOCK)
    p = tl.sigmoid(x)
    out = partial_ptr + (instance.to(tl.int64) * tl.num_programs(1) + tl.program_id(1)) * 4
    tl.store(out, tl.sum(bce_with_logits(x, t, p) * crop, axis=0))
    tl.store(out + 1, tl.sum(p * t * crop, axis=0))
    tl.store(out + 2, tl.sum(p * crop, axis=0))
    tl.store(out + 3, tl.sum(t * crop, axis=0))


@triton.jit
def _mask_backward_kernel(x_ptr, t_ptr, box_ptr, coef_ptr, grad_ptr, height, width, HAS_BOXES: tl.constexpr,
                          BLOCK: tl.constexpr):  # fmt: skip
    instance, offsets, ok, x, t, crop = _mask_tile(x_ptr, t_ptr, box_ptr, height, width, HAS_BOXES, BLOCK)
    coef = coef_ptr + instance.to(tl.int64) * 3
    coef_a = tl.load(coef)
    coef_b = tl.load(coef + 1)
    coef_c = tl.load(coef + 2)
    p = tl.sigmoid(x)
    grad = (coef_a * (p - t) + p * (1.0 - p) * (coef_b + coef_c * t)) * crop
    tl.store(grad_ptr + offsets, grad.to(grad_ptr.dtype.element_ty), mask=ok)


def _forward(ctx, mask_logits, target_masks, boxes, weights, bce_weight, dice_weight, normalizer, clip, smooth):
    """Host forward: per-block partial sums, then the per-instance algebra on the device."""
    x, t, box, grid, block, partials = instance_launch(mask_logits, target_masks, boxes)
    with launch_guard(x, _mask_forward_kernel):
        _mask_forward_kernel[grid](x, t, box, partials, x.shape[1], x.shape[2], HAS_BOXES=boxes is not None,
                                   BLOCK=block)  # fmt: skip
    ctx.launch = (grid, block, boxes is not None)
    return finish_instance_forward(ctx, partials, x, t, box, boxes, weights, bce_weight, dice_weight, smooth,
                                   normalizer, clip)  # fmt: skip


class MaskLossTriton(torch.autograd.Function):
    """Clipped mask component; only (N, 3) coefficients are kept for the backward besides the inputs."""

    forward = autocast_off(_forward)

    @staticmethod
    def backward(ctx, grad_value):  # type: ignore[override]
        x, t, box, coef = instance_backward_inputs(ctx, grad_value)
        grid, block, has_boxes = ctx.launch
        grad = torch.empty_like(x)
        with launch_guard(x, _mask_backward_kernel):
            _mask_backward_kernel[grid](x, t, box, coef, grad, x.shape[1], x.shape[2], HAS_BOXES=has_boxes,
                                        BLOCK=block)  # fmt: skip
        return grad, None, None, None, None, None, None, None, None


def mask_loss_triton(
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
    """The reference's mask component (BCE + Dice inside the box, clipped), differentiable in the logits."""
    return MaskLossTriton.apply(
        mask_logits, target_masks, boxes, weights, bce_weight, dice_weight, normalizer, clip, smooth
    )
