"""Fast torch boundary loss: 3x3 morphological gradients, BCE + Dice on the edge maps, one pass per chunk.

As in the mask loss, chunks hold whole instances, so the forward also writes the gradient: the
edge-map gradient is routed back through the 3x3 max/min windows to each window's first maximum
(max_pool2d's argmax and tie rule), then through the sigmoid. On CPU the 3x3 windows are computed
separably with a few vectorised ops (torch's CPU max_pool2d with indices is scalar code, ~30 ns
per pixel, most of the reference's time).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from apex_x.kernels._common import dice_bce_terms, instance_losses_forward, stored_instance_loss
from apex_x.kernels.cpu_mask import CHUNK_ELEMENTS, rowdot

_POOL = (3, 1, 1)  # kernel, stride, padding of the reference's max_pool2d


def _pool_backward(grad: torch.Tensor, like: torch.Tensor, indices: torch.Tensor) -> torch.Tensor:
    return torch.ops.aten.max_pool2d_with_indices_backward(grad, like, [3, 3], [1, 1], [1, 1], [1, 1], False, indices)


def _window_pass(v: torch.Tensor, dim: int, want_masks: bool):
    """3-wide max along `dim` of (K, 1, H, W), out-of-bounds ignored; masks of the first maximum."""
    size = v.shape[dim]
    padded = F.pad(v, (1, 1) if dim == 3 else (0, 0, 1, 1), value=-math.inf)
    low, mid, high = (padded.narrow(dim, k, size) for k in range(3))
    best = torch.maximum(low, mid)
    torch.maximum(best, high, out=best)
    if not want_masks:
        return best, None
    first = low == best
    return best, (first, (mid == best).gt_(first))  # mid wins only where low did not


def window_max(v: torch.Tensor, want_masks: bool):
    """3x3 max of (K, 1, H, W) like max_pool2d(3, 1, 1), separably: rows then columns. The masks pick
    the first maximum in row-major window order, max_pool2d's argmax (inputs without NaN)."""
    rows, row_masks = _window_pass(v, 3, want_masks)
    best, col_masks = _window_pass(rows, 2, want_masks)
    return best, (None if not want_masks else (row_masks, col_masks))


def _route_pass(grad: torch.Tensor, masks, dim: int) -> torch.Tensor:
    first, second = (m.to(grad.dtype) for m in masks)
    size = grad.shape[dim]
    shape = list(grad.shape)
    shape[dim] += 2
    out = grad.new_zeros(shape)
    out.narrow(dim, 0, size).addcmul_(grad, first)
    out.narrow(dim, 1, size).addcmul_(grad, second)
    out.narrow(dim, 2, size).addcmul_(grad, first.add_(second).neg_().add_(1.0))
    return out.narrow(dim, 1, size)


def window_max_backward(grad: torch.Tensor, masks) -> torch.Tensor:
    """Route the gradient of window_max to each window's first maximum (columns, then rows)."""
    row_masks, col_masks = masks
    return _route_pass(_route_pass(grad, col_masks, 2), row_masks, 3)


def _edges_with_routing(p: torch.Tensor):
    """(dilation - erosion of p, routing of d(edge) back to p). Separable on CPU without NaN; torch's
    max_pool2d elsewhere (NaN windows route to the NaN like the reference; no host sync on GPUs)."""
    neg_p = torch.neg(p)
    if p.device.type == "cpu" and not bool(torch.isnan(p).any()):
        dilated, max_masks = window_max(p, True)
        neg_eroded, min_masks = window_max(neg_p, True)

        def route(g: torch.Tensor) -> torch.Tensor:
            return window_max_backward(g, max_masks).sub_(window_max_backward(g, min_masks))

    else:
        dilated, arg_max = F.max_pool2d_with_indices(p, *_POOL)
        neg_eroded, arg_min = F.max_pool2d_with_indices(neg_p, *_POOL)

        def route(g: torch.Tensor) -> torch.Tensor:
            return _pool_backward(g, p, arg_max).sub_(_pool_backward(g, p, arg_min))

    return dilated.add_(neg_eroded), route


def _target_edges(t: torch.Tensor) -> torch.Tensor:
    """Morphological gradient of (K, 1, H, W) targets (no gradient needed)."""
    if t.device.type == "cpu" and not bool(torch.isnan(t).any()):
        return window_max(t, False)[0].add_(window_max(t.neg(), False)[0])
    return F.max_pool2d(t, *_POOL).add_(F.max_pool2d(t.neg(), *_POOL))


def _chunk(x, t, crop, area, settings, grad_out):
    """Per-instance losses (K,) of a chunk of (K, 1, H, W) logits; writes the unscaled gradient."""
    bce_weight, dice_weight, smooth, eps = settings
    count = x.shape[0]
    p = torch.sigmoid(x)
    raw, route = _edges_with_routing(p)  # dilation - erosion of sigmoid(x)
    edges = raw.clamp(eps, 1.0 - eps)
    t_edges = _target_edges(t)
    log_e = torch.log(edges)
    log_1me = torch.neg(edges).add_(1.0).log_()
    bce = torch.sub(log_e, log_1me).mul_(t_edges).add_(log_1me).neg_()  # -(te log e + (1 - te) log(1 - e))
    flat = (count, -1)
    e2, te2, bce2 = edges.view(flat), t_edges.view(flat), bce.view(flat)
    te_crop = te2 if crop is None else torch.mul(te2, crop)
    loss, coef_a, coef_b, coef_c = dice_bce_terms(
        bce2.sum(1) if crop is None else rowdot(bce2, crop),
        rowdot(e2, te_crop),
        e2.sum(1) if crop is None else rowdot(e2, crop),
        te_crop.sum(1),
        area,
        bce_weight,
        dice_weight,
        smooth,
    )
    if grad_out is not None:
        # d loss / d edge = crop * gate * (a (e - te) / (e (1 - e)) + b + c te); gate: the clamp passed
        one_minus = torch.neg(edges).add_(1.0)
        g_edges = torch.sub(edges, t_edges).div_(one_minus.mul_(edges)).mul_(coef_a.view(-1, 1, 1, 1))
        g_edges.add_(torch.addcmul(coef_b.view(-1, 1, 1, 1), coef_c.view(-1, 1, 1, 1), t_edges))
        g_edges.mul_((raw > eps).logical_and_(raw < 1.0 - eps))
        if crop is not None:
            g_edges.view(flat).mul_(crop)
        torch.mul(route(g_edges), p, out=grad_out.view_as(p)).mul_(torch.neg(p).add_(1.0))  # * sigmoid'(x)
    return loss


def boundary_losses_forward(mask_logits, target_masks, boxes, weights, settings, want_grad):
    """(sum of w * per-instance boundary loss, unscaled d sum / d logits in the logits' dtype or None)."""
    return instance_losses_forward(
        mask_logits, target_masks, boxes, weights, settings, want_grad, _chunk, CHUNK_ELEMENTS, flat=False
    )


def boundary_loss_torch(
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
    settings = (bce_weight, dice_weight, smooth, eps)

    def sum_and_grad(logits: torch.Tensor, want_grad: bool):
        return boundary_losses_forward(logits, target_masks, boxes, weights, settings, want_grad)

    return stored_instance_loss(mask_logits, sum_and_grad, normalizer, clip)
