"""Fast torch GIoU loss: coordinate-major contiguous rows, gradient in closed form in the same pass.

Box-pair losses are tiny tensors (hundreds to a few thousand pairs), so the cost is the number of
ops and their layout, not memory: torchvision runs ~30 ops forward and autograd replays ~50 nodes
backward, many on (N, 2) column slices (a strided op costs several times a contiguous one at this
size). Here the boxes are written as contiguous rows of N with negated starts, z = (-x0, -y0, x1,
y1): every side length is then `z_start + z_end`, the intersection box is the elementwise min of
the two boxes and the enclosure their max, so the (w, h) of prediction, intersection and enclosure
fill one (3, 2, N) tensor in a few ops. The forward also writes the gradient (torch's rules: clamp
passes strictly inside its bound, min/max split ties half and half), reusing its temporaries in
place; the backward only scales it.

The min/max shares and the clamp gate are `(1 -/+ sign(z_target - z_pred)) / 2` and `sign(side)`
factors, exact for finite inputs; when the sum is not finite (NaN/Inf boxes) or off the CPU (no
host sync to check it), the same formulas run with torch's own masking (torch.where), because
factor * NaN is not a masked zero.
"""

from __future__ import annotations

import math

import torch

from apex_x.kernels._common import StoredGradLoss, weighted_total

EPS = 1e-7
_Z_SIGNS: dict[tuple[torch.device, float], torch.Tensor] = {}  # (4, 1) sign columns, see _z_signs


def _z_signs(device: torch.device, scale: float = 1.0) -> torch.Tensor:
    """(4, 1) column -scale, -scale, scale, scale on `device` (cached: made on first use)."""
    signs = _Z_SIGNS.get((device, scale))
    if signs is None:
        signs = _Z_SIGNS[(device, scale)] = torch.tensor([[-scale], [-scale], [scale], [scale]], device=device)
    return signs


def _z_boxes(boxes: torch.Tensor) -> torch.Tensor:
    """(N, 4) xyxy fp32 -> (2, 2, N) coordinate-major -x0, -y0 | x1, y1 (a side is start row + end row)."""
    z = torch.empty(2, 2, boxes.shape[0], device=boxes.device)
    torch.mul(boxes.t(), _z_signs(boxes.device), out=z.view(4, -1))
    return z


def giou_sum_and_grad(
    pred_boxes: torch.Tensor,  # (N, 4) xyxy
    target_boxes: torch.Tensor,  # (N, 4) xyxy
    weights: torch.Tensor | None,  # (N,)
    want_grad: bool,
    exact: bool = False,
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """(sum of w * (1 - GIoU) as a 0-d fp32 tensor, its gradient w.r.t. pred_boxes (fp32) or None).

    Temporaries are reused in place and dropped as soon as they are used: the peak stays under
    torchvision's autograd peak (about 68 bytes a pair against 76, the 16 of the gradient included).
    Views are taken by unbinding once (each Python-level index costs about an op at this size)."""
    pred, target = pred_boxes.float(), target_boxes.float()
    count = pred.shape[0]
    z_pred, z_target = _z_boxes(pred), _z_boxes(target)  # (2, 2, N) each: start/end, x/y
    pred_start, pred_end = z_pred
    target_start, target_end = z_target
    target_w, target_h = torch.add(target_start, target_end).clamp_(min=0.0)
    u = torch.mul(target_w, target_h)  # target area; becomes union + eps
    del target_w, target_h
    sides = torch.empty(3, 2, count, device=pred.device)  # (w, h) rows: prediction, intersection, enclosure
    pred_sides, inter_sides, enclose_sides = sides
    torch.add(pred_start, pred_end, out=pred_sides)
    torch.minimum(pred_start, target_start, out=inter_sides).add_(torch.minimum(pred_end, target_end))
    torch.maximum(pred_start, target_start, out=enclose_sides).add_(torch.maximum(pred_end, target_end))
    sides.clamp_(min=0.0)  # NaN stays NaN, as torch's clamp keeps it
    if not want_grad:
        order = None
    elif exact:  # torch's masks: NaN compares false (the gradient passes to both), Inf == Inf is a tie
        order = torch.stack((z_pred < z_target, z_pred == z_target, z_pred > z_target))
    else:
        order = z_target.sub_(z_pred).sign_()  # sign(z_target - z_pred): who wins the min and the max
    del z_pred, z_target, pred_start, pred_end, target_start, target_end
    widths, heights = sides.unbind(1)
    areas = torch.mul(widths, heights)  # (3, N)
    area_pred, inter, inv_e = areas  # the enclosure's row becomes 1 / (enclosure + eps)
    u.add_(area_pred).sub_(inter).add_(EPS)
    inv_e.add_(EPS).reciprocal_()
    iou = inter.div_(u)
    losses = torch.addcmul(iou, u, inv_e).neg_().add_(2.0)  # 1 - iou + (enclosure - union)/(enclosure + eps)
    total, w = weighted_total(losses, weights)
    del losses
    if order is None:
        return total, None
    coef = areas  # rows become dL/d(area) of the prediction, the intersection and the enclosure
    coef_pred, coef_inter, _ = coef
    torch.div(iou, u, out=coef_pred).sub_(inv_e)
    torch.reciprocal(u, out=coef_inter).add_(coef_pred).neg_()  # 1/e - (1 + iou)/u
    inv_e.mul_(inv_e).mul_(u)  # coef's enclosure row = u / e^2
    del u, iou, inv_e, area_pred, inter
    if w is not None:
        coef.mul_(w)
    side_grad = _side_grad(sides, widths, heights, coef, exact)  # (3, 2, N)
    twice_grad_z = _through_min_max(side_grad, order, exact)  # (2, 2, N): 2 dL/d(z_pred)
    grad = torch.empty(count, 4, device=pred.device)
    torch.mul(twice_grad_z.view(4, count), _z_signs(pred.device, 0.5), out=grad.t())  # z_start = -start
    return total, grad


def _side_grad(
    sides: torch.Tensor, widths: torch.Tensor, heights: torch.Tensor, coef: torch.Tensor, exact: bool
) -> torch.Tensor:
    """dL/d(w) = dL/d(area) * h and dL/d(h) = dL/d(area) * w, each where the clamp passed (raw side
    strictly > 0, i.e. clamped side > 0), written over `sides` (3, 2, N; widths and heights are its
    (3, N) views) when the inputs are finite."""
    if exact:
        passed = sides > 0.0
        swapped = torch.stack((heights * coef, widths * coef), dim=1)
        return torch.where(passed, swapped, 0.0)
    width = widths.clone()
    torch.mul(heights, coef, out=widths)  # h * c
    heights.sign_().mul_(width).mul_(coef)  # [h > 0] * w * c
    widths.mul_(width.sign_())  # [w > 0] * h * c
    return sides


def _through_min_max(side_grad: torch.Tensor, order: torch.Tensor, exact: bool) -> torch.Tensor:
    """2 dL/d(z_pred) as (2, 2, N): d(side)/d(z_start) = d(side)/d(z_end) = 1; the intersection is
    min(z_pred, z_target), the enclosure the max; torch gives the winner all, each half on a tie.
    `order`: sign(z_target - z_pred) (2, 2, N), overwritten; exact: the masks (3, 2, 2, N) of
    z_pred < z_target, z_pred == z_target and z_pred > z_target. (Twice the gradient: the caller's
    sign flip of the starts takes the 1/2 in the same op.)"""
    own, via_min, via_max = side_grad  # (2, N) each
    if exact:
        lower, ties, higher = order
        via_min = torch.where(ties, via_min, via_min * 2.0).masked_fill_(higher, 0.0)
        via_max = torch.where(ties, via_max, via_max * 2.0).masked_fill_(lower, 0.0)
        return via_min.add_(via_max).add_(own, alpha=2.0)
    # min share (1 + order) / 2, max share (1 - order) / 2: 2 own + sum + order * difference
    own.mul_(2.0).add_(via_min).add_(via_max)
    via_min.sub_(via_max)
    return order.mul_(via_min).add_(own)


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
