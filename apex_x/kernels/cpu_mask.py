"""Fast torch mask loss (BCE + Dice inside the box): whole instances per cache-sized chunk, one pass.

Each chunk holds complete instances, so their BCE and Dice sums are known inside the chunk and the
gradient (which needs them) is written in the same pass; the backward only scales it. The box crop
is a product of row and column factors; per-instance sums are batched dot products (no temporaries).
"""

from __future__ import annotations

import torch

from apex_x.kernels._common import dice_bce_terms, instance_losses_forward, stored_instance_loss

CHUNK_ELEMENTS = 1 << 15


def rowdot(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """(K, L) x (K, L) -> (K,) row-wise dot products in one batched BLAS call."""
    return torch.bmm(a.unsqueeze(1), b.unsqueeze(2)).view(-1)


def _chunk(x, t, crop, area, settings, grad_out):
    """Per-instance losses of a chunk (K,); writes the unscaled gradient into grad_out (K, H*W)."""
    bce_weight, dice_weight, smooth = settings
    p = torch.sigmoid(x)
    ls = torch.neg(p).add_(1.0)  # 1 - p
    q = torch.mul(p, ls) if grad_out is not None else None
    torch.maximum(p, ls, out=ls).log_()  # logsigmoid(|x|) = -log(1 + exp(-|x|))
    bce = torch.clamp(x, max=0.0).neg_().addcmul_(torch.neg(t).add_(1.0), x).sub_(ls)  # (1 - t)x - logsigmoid(x)
    t_crop = t if crop is None else torch.mul(t, crop)
    bce_sum = bce.sum(1) if crop is None else rowdot(bce, crop)
    pred_sum = p.sum(1) if crop is None else rowdot(p, crop)
    loss, coef_a, coef_b, coef_c = dice_bce_terms(
        bce_sum, rowdot(p, t_crop), pred_sum, t_crop.sum(1), area, bce_weight, dice_weight, smooth
    )
    if grad_out is not None:  # crop * (a (p - t) + p (1 - p) (b + c t))
        torch.sub(p, t, out=grad_out).mul_(coef_a.unsqueeze(1))
        grad_out.addcmul_(q, torch.addcmul(coef_b.unsqueeze(1), coef_c.unsqueeze(1), t))
        if crop is not None:
            grad_out.mul_(crop)
    return loss


def mask_losses_forward(mask_logits, target_masks, boxes, weights, settings, want_grad):
    """(sum of w * per-instance loss, unscaled d sum / d logits in the logits' dtype or None)."""
    return instance_losses_forward(
        mask_logits, target_masks, boxes, weights, settings, want_grad, _chunk, CHUNK_ELEMENTS, flat=True
    )


def mask_loss_torch(
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
    settings = (bce_weight, dice_weight, smooth)

    def sum_and_grad(logits: torch.Tensor, want_grad: bool):
        return mask_losses_forward(logits, target_masks, boxes, weights, settings, want_grad)

    return stored_instance_loss(mask_logits, sum_and_grad, normalizer, clip)
