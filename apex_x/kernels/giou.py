"""Triton GIoU loss over aligned box pairs: per-pair loss forward, closed-form gradient backward.

Liger-Kernel style: Triton kernels, host forward/backward, one autograd.Function. Each program
takes BLOCK pairs; the backward recomputes the areas from the boxes and applies torch's rules
(clamp passes strictly inside its bound, min/max split ties half and half), so it matches the
reference's autograd. Weights, clip gate and grad_output arrive as one per-pair device scale.
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl

from apex_x.kernels._triton_common import NAN_ALL, autocast_off, clip_partials_and_save, launch_guard

BLOCK = 1024
EPS = 1e-7


@triton.jit
def _max_share(g, a, b):
    """The gradient torch's max(a, b) passes to a: all of g, half on ties, none where a < b (NaN: all)."""
    return tl.where(a < b, 0.0, tl.where(a == b, 0.5 * g, g))


@triton.jit
def _min_share(g, a, b):
    """The gradient torch's min(a, b) passes to a: all of g, half on ties, none where a > b (NaN: all)."""
    return tl.where(a > b, 0.0, tl.where(a == b, 0.5 * g, g))


@triton.jit
def _relu(v):
    return tl.maximum(v, 0.0, propagate_nan=NAN_ALL)  # torch's clamp keeps NaN


@triton.jit
def _max(a, b):
    return tl.maximum(a, b, propagate_nan=NAN_ALL)


@triton.jit
def _min(a, b):
    return tl.minimum(a, b, propagate_nan=NAN_ALL)


@triton.jit
def _load_pairs(pred_ptr, target_ptr, BLOCK: tl.constexpr, n_pairs):
    index = tl.program_id(0) * BLOCK + tl.arange(0, BLOCK)
    ok = index < n_pairs
    base = index.to(tl.int64) * 4
    px0 = tl.load(pred_ptr + base, mask=ok, other=0.0).to(tl.float32)
    py0 = tl.load(pred_ptr + base + 1, mask=ok, other=0.0).to(tl.float32)
    px1 = tl.load(pred_ptr + base + 2, mask=ok, other=1.0).to(tl.float32)
    py1 = tl.load(pred_ptr + base + 3, mask=ok, other=1.0).to(tl.float32)
    tx0 = tl.load(target_ptr + base, mask=ok, other=0.0).to(tl.float32)
    ty0 = tl.load(target_ptr + base + 1, mask=ok, other=0.0).to(tl.float32)
    tx1 = tl.load(target_ptr + base + 2, mask=ok, other=1.0).to(tl.float32)
    ty1 = tl.load(target_ptr + base + 3, mask=ok, other=1.0).to(tl.float32)
    return index, ok, base, px0, py0, px1, py1, tx0, ty0, tx1, ty1


@triton.jit
def _giou_forward_kernel(pred_ptr, target_ptr, loss_ptr, n_pairs, eps, BLOCK: tl.constexpr):
    index, ok, _, px0, py0, px1, py1, tx0, ty0, tx1, ty1 = _load_pairs(pred_ptr, target_ptr, BLOCK, n_pairs)
    area_p = _relu(px1 - px0) * _relu(py1 - py0)
    area_t = _relu(tx1 - tx0) * _relu(ty1 - ty0)
    iw = _relu(_min(px1, tx1) - _max(px0, tx0))
    ih = _relu(_min(py1, ty1) - _max(py0, ty0))
    inter = iw * ih
    union = area_p + area_t - inter
    iou = inter / (union + eps)
    ew = _relu(_max(px1, tx1) - _min(px0, tx0))
    eh = _relu(_max(py1, ty1) - _min(py0, ty0))
    enclose = ew * eh
    loss = 1.0 - (iou - (enclose - union) / (enclose + eps))
    tl.store(loss_ptr + index, loss, mask=ok)


@triton.jit
def _giou_backward_kernel(pred_ptr, target_ptr, scale_ptr, grad_ptr, n_pairs, eps, SCALE_PER_PAIR: tl.constexpr,
                          BLOCK: tl.constexpr):  # fmt: skip
    index, ok, base, px0, py0, px1, py1, tx0, ty0, tx1, ty1 = _load_pairs(pred_ptr, target_ptr, BLOCK, n_pairs)
    if SCALE_PER_PAIR:
        scale = tl.load(scale_ptr + index, mask=ok, other=0.0)
    else:
        scale = tl.load(scale_ptr)
    pw_raw = px1 - px0
    ph_raw = py1 - py0
    pw = _relu(pw_raw)
    ph = _relu(ph_raw)
    area_t = _relu(tx1 - tx0) * _relu(ty1 - ty0)
    iw_raw = _min(px1, tx1) - _max(px0, tx0)
    ih_raw = _min(py1, ty1) - _max(py0, ty0)
    iw = _relu(iw_raw)
    ih = _relu(ih_raw)
    ew_raw = _max(px1, tx1) - _min(px0, tx0)
    eh_raw = _max(py1, ty1) - _min(py0, ty0)
    ew = _relu(ew_raw)
    eh = _relu(eh_raw)
    inter = iw * ih
    union = pw * ph + area_t - inter
    u = union + eps
    e = ew * eh + eps
    iou = inter / u
    # dL/d(area) of the prediction, the intersection and the enclosing box, times the scale
    c_pred = (iou / u - 1.0 / e) * scale
    c_inter = (1.0 / e - (1.0 + iou) / u) * scale
    c_encl = (u / (e * e)) * scale
    # dL/d(side): other side where the clamp passed (strictly positive raw side)
    gw_p = tl.where(pw_raw > 0.0, c_pred * ph, 0.0)
    gh_p = tl.where(ph_raw > 0.0, c_pred * pw, 0.0)
    gw_i = tl.where(iw_raw > 0.0, c_inter * ih, 0.0)
    gh_i = tl.where(ih_raw > 0.0, c_inter * iw, 0.0)
    gw_e = tl.where(ew_raw > 0.0, c_encl * eh, 0.0)
    gh_e = tl.where(eh_raw > 0.0, c_encl * ew, 0.0)
    # sides -> corners: inter starts at max(lo), ends at min(hi); enclosure the other way round
    g_x0 = -(gw_p + _max_share(gw_i, px0, tx0) + _min_share(gw_e, px0, tx0))
    g_y0 = -(gh_p + _max_share(gh_i, py0, ty0) + _min_share(gh_e, py0, ty0))
    g_x1 = gw_p + _min_share(gw_i, px1, tx1) + _max_share(gw_e, px1, tx1)
    g_y1 = gh_p + _min_share(gh_i, py1, ty1) + _max_share(gh_e, py1, ty1)
    out_ty = grad_ptr.dtype.element_ty
    tl.store(grad_ptr + base, g_x0.to(out_ty), mask=ok)
    tl.store(grad_ptr + base + 1, g_y0.to(out_ty), mask=ok)
    tl.store(grad_ptr + base + 2, g_x1.to(out_ty), mask=ok)
    tl.store(grad_ptr + base + 3, g_y1.to(out_ty), mask=ok)


def _forward(ctx, pred_boxes, target_boxes, weights, normalizer, clip):
    """Host forward: per-pair losses, then one launch for the weighted sum and the clip."""
    pred = pred_boxes.contiguous()
    target = target_boxes.contiguous()
    n_pairs = pred.shape[0]
    losses = torch.empty(n_pairs, dtype=torch.float32, device=pred.device)
    grid = (triton.cdiv(n_pairs, BLOCK),)
    with launch_guard(pred, _giou_forward_kernel):
        _giou_forward_kernel[grid](pred, target, losses, n_pairs, EPS, BLOCK=BLOCK)
    w = None if weights is None else weights.float()
    return clip_partials_and_save(ctx, losses, w, normalizer, clip, pred, target, w)


class GiouLossTriton(torch.autograd.Function):
    """Clipped sum(w * (1 - GIoU)) / normalizer; gradient to the predicted boxes only."""

    forward = autocast_off(_forward)

    @staticmethod
    def backward(ctx, grad_value):  # type: ignore[override]
        pred, target, w = ctx.saved_tensors
        scale = (grad_value * ctx.slope).float().reshape(1)
        if w is not None:
            scale = (scale * w).contiguous()
        grad = torch.empty_like(pred)
        grid = (triton.cdiv(pred.shape[0], BLOCK),)
        with launch_guard(pred, _giou_backward_kernel):
            _giou_backward_kernel[grid](
                pred, target, scale, grad, pred.shape[0], EPS, SCALE_PER_PAIR=w is not None, BLOCK=BLOCK
            )
        return grad, None, None, None, None


def giou_loss_triton(
    pred_boxes: torch.Tensor,  # (N, 4) xyxy
    target_boxes: torch.Tensor,  # (N, 4) xyxy
    weights: torch.Tensor | None,  # (N,)
    normalizer: float | torch.Tensor,
    clip: float,
) -> torch.Tensor:
    """min(nan_to_num(sum(w * (1 - GIoU)) / normalizer), clip), differentiable in `pred_boxes` only."""
    return GiouLossTriton.apply(pred_boxes, target_boxes, weights, normalizer, clip)
