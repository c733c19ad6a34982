"""Triton focal loss: one fused pass forward (loss, row weights, block sums), one recompute pass backward.

Liger-Kernel style: Triton kernels, host forward/backward, one autograd.Function. Tiles are
(BLOCK_R rows x BLOCK_C classes); class-id targets are compared in registers (no one-hot), so the
forward reads the logits once and the backward reads them once more and writes the gradient. The
clip gate and grad_output reach the backward kernel as a device scalar: no host synchronisation.
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl

from apex_x.kernels._common import check_class_ids, is_class_targets
from apex_x.kernels._triton_common import (
    ELEMENTS_PER_PROGRAM,
    autocast_off,
    bce_with_logits,
    clip_partials_and_save,
    kernel_view,
    launch_guard,
    pow2_at_least,
    scalar_pointer,
)


@triton.jit
def _focal_terms(x, t, gamma, alpha, HAS_ALPHA: tl.constexpr, GAMMA_MODE: tl.constexpr):
    """Elementwise alpha_t |t - p|^gamma BCE(x, t) and its derivative in x (fp32)."""
    p = tl.sigmoid(x)
    q = p * (1.0 - p)
    bce = bce_with_logits(x, t, p)
    d = p - t
    if GAMMA_MODE == 2:  # gamma == 2
        mod = d * d
        dmod = 2.0 * d * q
    elif GAMMA_MODE == 0:  # gamma == 0: plain BCE
        mod = tl.full(d.shape, 1.0, tl.float32)
        dmod = tl.zeros(d.shape, tl.float32)
    else:
        ad = tl.abs(d)
        log_ad = tl.log2(ad)
        mod = tl.where(ad == 0.0, 0.0, tl.exp2(gamma * log_ad))
        sign = tl.where(d > 0.0, 1.0, tl.where(d < 0.0, -1.0, 0.0))
        dmod = tl.where(ad == 0.0, 0.0, gamma * tl.exp2((gamma - 1.0) * log_ad)) * sign * q
        dmod = tl.where(d != d, d, dmod)  # NaN stays NaN
    loss = bce * mod
    grad = dmod * bce + mod * d
    if HAS_ALPHA:
        alpha_t = alpha * t + (1.0 - alpha) * (1.0 - t)
        loss = loss * alpha_t
        grad = grad * alpha_t
    return loss, grad


@triton.jit
def _focal_tile(x_ptr, t_ptr, w_ptr, n_rows, n_cols, gamma, alpha, CLASS_IDS: tl.constexpr,
                HAS_WEIGHTS: tl.constexpr, HAS_ALPHA: tl.constexpr, GAMMA_MODE: tl.constexpr,
                BLOCK_R: tl.constexpr, BLOCK_C: tl.constexpr):  # fmt: skip
    """Loads one tile; returns (offsets, mask, loss * w, d(loss * w)/dx)."""
    rows = tl.program_id(0) * BLOCK_R + tl.arange(0, BLOCK_R)
    cols = tl.program_id(1) * BLOCK_C + tl.arange(0, BLOCK_C)
    row_ok = rows < n_rows
    mask = row_ok[:, None] & (cols < n_cols)[None, :]
    offsets = rows.to(tl.int64)[:, None] * n_cols + cols[None, :]
    x = tl.load(x_ptr + offsets, mask=mask, other=0.0).to(tl.float32)
    if CLASS_IDS:  # (N,) class ids, negative = background: compare in registers
        ids = tl.load(t_ptr + rows, mask=row_ok, other=0).to(tl.int32)
        t = tl.where(cols[None, :] == ids[:, None], 1.0, 0.0)
    else:
        t = tl.load(t_ptr + offsets, mask=mask, other=0.0).to(tl.float32)
    loss, grad = _focal_terms(x, t, gamma, alpha, HAS_ALPHA, GAMMA_MODE)
    if HAS_WEIGHTS:
        w = tl.load(w_ptr + rows, mask=row_ok, other=0.0).to(tl.float32)[:, None]
        loss = loss * w
        grad = grad * w
    return offsets, mask, loss, grad


@triton.jit
def _focal_forward_kernel(x_ptr, t_ptr, w_ptr, partial_ptr, n_rows, n_cols, gamma, alpha,
                          CLASS_IDS: tl.constexpr, HAS_WEIGHTS: tl.constexpr, HAS_ALPHA: tl.constexpr,
                          GAMMA_MODE: tl.constexpr, BLOCK_R: tl.constexpr, BLOCK_C: tl.constexpr):  # fmt: skip
    _, mask, loss, _ = _focal_tile(x_ptr, t_ptr, w_ptr, n_rows, n_cols, gamma, alpha, CLASS_IDS,
                                   HAS_WEIGHTS, HAS_ALPHA, GAMMA_MODE, BLOCK_R, BLOCK_C)  # fmt: skip
    block_sum = tl.sum(tl.sum(tl.where(mask, loss, 0.0), axis=1), axis=0)
    tl.store(partial_ptr + tl.program_id(0) * tl.num_programs(1) + tl.program_id(1), block_sum)


@triton.jit
def _focal_backward_kernel(x_ptr, t_ptr, w_ptr, scale_ptr, grad_ptr, n_rows, n_cols, gamma, alpha,
                           CLASS_IDS: tl.constexpr, HAS_WEIGHTS: tl.constexpr, HAS_ALPHA: tl.constexpr,
                           GAMMA_MODE: tl.constexpr, BLOCK_R: tl.constexpr, BLOCK_C: tl.constexpr):  # fmt: skip
    offsets, mask, _, grad = _focal_tile(x_ptr, t_ptr, w_ptr, n_rows, n_cols, gamma, alpha, CLASS_IDS,
                                         HAS_WEIGHTS, HAS_ALPHA, GAMMA_MODE, BLOCK_R, BLOCK_C)  # fmt: skip
    scale = tl.load(scale_ptr)
    tl.store(grad_ptr + offsets, (grad * scale).to(grad_ptr.dtype.element_ty), mask=mask)


def _launch_shape(n_rows: int, n_cols: int) -> tuple[tuple[int, int], dict[str, int]]:
    block_c = min(pow2_at_least(n_cols), ELEMENTS_PER_PROGRAM)
    block_r = min(max(1, ELEMENTS_PER_PROGRAM // block_c), pow2_at_least(n_rows))
    grid = (triton.cdiv(n_rows, block_r), triton.cdiv(n_cols, block_c))
    return grid, {"BLOCK_R": block_r, "BLOCK_C": block_c}


def _forward(ctx, logits, targets, weights, gamma, alpha, normalizer, clip):
    """Host forward: one fused pass writes per-tile sums; one more launch sums and clips them."""
    x = logits.contiguous()
    n_rows, n_cols = x.shape
    class_ids = is_class_targets(targets)
    if class_ids:
        check_class_ids(targets, n_cols)
    t = kernel_view(targets)
    w = x if weights is None else weights.contiguous()
    grid, blocks = _launch_shape(n_rows, n_cols)
    mode = 2 if gamma == 2.0 else (0 if gamma == 0.0 else 1)
    flags = {"CLASS_IDS": class_ids, "HAS_WEIGHTS": weights is not None, "HAS_ALPHA": alpha is not None,
             "GAMMA_MODE": mode, **blocks}  # fmt: skip
    partials = torch.empty(grid[0] * grid[1], dtype=torch.float32, device=x.device)
    args = (n_rows, n_cols, float(gamma), 0.0 if alpha is None else float(alpha))
    with launch_guard(x, _focal_forward_kernel):
        _focal_forward_kernel[grid](x, t, w, partials, *args, **flags)
    ctx.launch = (grid, args, flags)
    return clip_partials_and_save(ctx, partials, None, normalizer, clip, x, t, w)


class FocalLossTriton(torch.autograd.Function):
    """Clipped focal component; the backward recomputes the elementwise terms from the inputs."""

    forward = autocast_off(_forward)

    @staticmethod
    def backward(ctx, grad_value):  # type: ignore[override]
        x, t, w = ctx.saved_tensors
        grid, args, flags = ctx.launch
        grad = torch.empty_like(x)
        with launch_guard(x, _focal_backward_kernel):
            _focal_backward_kernel[grid](x, t, w, scalar_pointer(grad_value * ctx.slope), grad, *args, **flags)
        return grad, None, None, None, None, None, None


def focal_loss_triton(
    logits: torch.Tensor,  # (N, C)
    targets: torch.Tensor,  # (N,) class ids or (N, C) soft
    weights: torch.Tensor | None,  # (N,)
    gamma: float,
    alpha: float | None,
    normalizer: float | torch.Tensor,
    clip: float,
) -> torch.Tensor:
    """min(nan_to_num(sum(w * focal) / normalizer), clip), differentiable in `logits` only."""
    return FocalLossTriton.apply(logits, targets, weights, gamma, alpha, normalizer, clip)
