"""Fast torch GIoU loss: per-coordinate vector ops, gradient in closed form computed in the same pass.

Box-pair losses are tiny tensors, so the cost is the number of ops and their layout, not memory:
the reference and torchvision run ~30 ops forward and autograd replays ~50 nodes backward, many on
(N, 2) column slices that torch cannot vectorise. Here the side lengths of the prediction, target,
intersection and enclosure sit in one (4, 2, N) tensor (x and y rows contiguous, one op for all
sixteen), the forward also writes the gradient (torch's rules: clamp passes strictly inside its
bound, min/max split ties half and half) and the backward only scales it. The min/max shares are
0/1/half factors; when the sum is not finite (NaN/Inf inputs), factor * NaN would differ from
torch's masking, so such inputs take the same formulas with torch.where (exact, a little slower).
"""

from __future__ import annotations

import math

import torch

from apex_x.kernels._common import StoredGradLoss, weighted_total

EPS = 1e-7


def giou_sum_and_grad(
    pred_boxes: torch.Tensor,  # (N, 4) xyxy
    target_boxes: torch.Tensor,  # (N, 4) xyxy
    weights: torch.Tensor | None,  # (N,)
    want_grad: bool,
    exact: bool = False,
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """(sum of w * (1 - GIoU) as a 0-d fp32 tensor, its gradient w.r.t. pred_boxes or None).

    Temporaries are dropped as soon as they are used: the peak stays near torchvision's autograd peak."""
    pred, target = pred_boxes.float(), target_boxes.float()
    count = pred.shape[0]
    high, low = torch.maximum(pred, target), torch.minimum(pred, target)  # (N, 4)
    sides = torch.empty(3, 2, count, device=pred.device)  # side lengths (w, h) of pred, inter, enclosure
    torch.sub(pred[:, 2:].t(), pred[:, :2].t(), out=sides[0])
    torch.sub(low[:, 2:].t(), high[:, :2].t(), out=sides[1])  # intersection: min of ends - max of starts
    torch.sub(high[:, 2:].t(), low[:, :2].t(), out=sides[2])  # enclosure: max of ends - min of starts
    del high, low
    sides.clamp_(min=0.0)  # > 0 exactly where the raw side is > 0 (NaN stays NaN)
    tw, th = (target[:, 2:].t() - target[:, :2].t()).clamp_(min=0.0)
    areas = sides[:, 0] * sides[:, 1]  # (3, N)
    u = areas[0].add_(tw.mul_(th)).sub_(areas[1]).add_(EPS)  # union + eps
    inv_e = areas[2].add_(EPS).reciprocal_()  # 1 / (enclosure + eps)
    iou = areas[1].div_(u)
    losses = torch.mul(u, inv_e).neg_().add_(2.0).sub_(iou)  # 1 - iou + (enclosure - union)/(enclosure + eps)
    total, w = weighted_total(losses, weights)
    del losses, tw, th
    if not want_grad:
        return total, None
    coef = torch.empty(3, count, device=pred.device)  # dL/d(area) of pred, inter, enclosure
    torch.div(iou, u, out=coef[0]).sub_(inv_e)
    torch.add(iou, 1.0, out=coef[1]).div_(u).neg_().add_(inv_e)
    torch.mul(u, inv_e, out=coef[2]).mul_(inv_e)
    del areas, u, iou, inv_e
    if w is not None:
        coef.mul_(w)
    side_grad = sides.flip(1).mul_(coef.unsqueeze(1))  # dL/d(side) = dL/d(area) * other side
    del coef
    if exact:  # torch's clamp passes strictly inside its bound; masking keeps NaN out of closed gates
        side_grad = torch.where(sides > 0, side_grad, 0.0)
    else:  # finite: sign(clamped side) is that 0/1 gate, without a bool tensor
        side_grad.mul_(sides.sign_())
    del sides
    g_pred, g_inter, g_encl = side_grad  # (2, N) each, rows x and y
    # starts: d(side)/d(start) = -1, inter starts at max(starts), enclosure at min(starts); ends mirrored
    grad = torch.empty(count, 4, device=pred.device)
    grad[:, :2] = _corner(g_pred, g_inter, g_encl, pred[:, :2].t(), target[:, :2].t(), exact).neg_().t()
    grad[:, 2:] = _corner(g_pred, g_encl, g_inter, pred[:, 2:].t(), target[:, 2:].t(), exact).t()
    return total, grad


def _corner(own, via_max, via_min, p, t, exact: bool) -> torch.Tensor:
    """own + the shares of via_max / via_min that torch's max(p, t) / min(p, t) hand to p: all of it,
    half on ties, none when the other is larger. Finite inputs: as a 1 / 0.5 / 0 factor; otherwise
    with torch's own masking (factor * NaN would not be a masked zero)."""
    if not exact:
        wins = torch.sub(p, t).sign_().add_(1.0).mul_(0.5)
        return wins.mul_(torch.sub(via_max, via_min)).add_(own).add_(via_min)
    ties = p == t
    via_max = torch.where(ties, via_max * 0.5, via_max).masked_fill_(p < t, 0.0)
    via_min = torch.where(ties, via_min * 0.5, via_min).masked_fill_(p > t, 0.0)
    return own + via_max + via_min


def _forward_fn(pred_boxes, target_boxes, weights):
    def forward_fn(want_grad: bool):
        exact = pred_boxes.device.type != "cpu"  # no data-dependent host sync on accelerators
        total, grad = giou_sum_and_grad(pred_boxes, target_boxes, weights, want_grad, exact)
        if grad is not None and not exact and not math.isfinite(float(total)):  # finite inputs: finite total
            total, grad = giou_sum_and_grad(pred_boxes, target_boxes, weights, want_grad, exact=True)
        return total, None if grad is None else grad.to(pred_boxes.dtype)

    return forward_fn


def giou_loss_torch(
    pred_boxes: torch.Tensor,  # (N, 4) xyxy
    target_boxes: torch.Tensor,  # (N, 4) xyxy
    weights: torch.Tensor | None,  # (N,)
    normalizer: float | torch.Tensor,
    clip: float,
) -> torch.Tensor:
    """min(nan_to_num(sum(w * (1 - GIoU)) / normalizer), clip), differentiable in `pred_boxes` only."""
    forward_fn = _forward_fn(pred_boxes.detach(), target_boxes, weights)
    return StoredGradLoss.apply(pred_boxes, forward_fn, normalizer, clip)
