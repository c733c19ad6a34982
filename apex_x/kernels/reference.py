"""Torch reference of the clipped loss components: the definition every fast path is tested against.

Every function returns one reduced scalar `min(nan_to_num(value), clip)`: a clipped component has
zero gradient, NaN becomes 0 and +Inf becomes the clip. These are plain, readable composites; the
fast CPU path and the Triton kernels live beside this file and must match it (values and grads).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

INF = math.inf


def clip_component(value: torch.Tensor, clip: float) -> torch.Tensor:
    """min(nan_to_num(value), clip): NaN -> 0, +Inf -> clip, gradient zero where clipped."""
    return torch.clamp(torch.nan_to_num(value), max=clip)


def as_soft_targets(targets: torch.Tensor, num_classes: int) -> torch.Tensor:
    """(N,) int64 class ids (-1 = background) or (N, C) soft targets -> (N, C) float targets."""
    if targets.dtype in (torch.int64, torch.int32, torch.int16, torch.uint8) and targets.dim() == 1:
        one_hot = torch.zeros(targets.shape[0], num_classes + 1, dtype=torch.float32, device=targets.device)
        one_hot.scatter_(1, torch.where(targets < 0, num_classes, targets).long().unsqueeze(1), 1.0)
        return one_hot[:, :num_classes]
    return targets.float()


def focal_loss_reference(
    logits: torch.Tensor,  # (N, C)
    targets: torch.Tensor,  # (N,) int64 (-1 = background) or (N, C) soft targets in [0, 1]
    *,
    weights: torch.Tensor | None = None,  # (N,) per-anchor weight, 0 = ignored
    gamma: float = 2.0,
    alpha: float | None = 0.25,
    normalizer: float | torch.Tensor = 1.0,
    clip: float = INF,
) -> torch.Tensor:
    """Sigmoid focal / quality focal loss: sum(alpha_t * |t - p|^gamma * BCE(x, t)) / normalizer, clipped."""
    x = logits.float()
    t = as_soft_targets(targets, x.shape[1])
    p = torch.sigmoid(x)
    loss = F.binary_cross_entropy_with_logits(x, t, reduction="none") * (t - p).abs().pow(gamma)
    if alpha is not None:
        loss = loss * (alpha * t + (1.0 - alpha) * (1.0 - t))
    if weights is not None:
        loss = loss * weights.float().unsqueeze(1)
    return clip_component(loss.sum() / normalizer, clip)


def pairwise_box_iou(boxes1: torch.Tensor, boxes2: torch.Tensor, eps: float = 1e-7) -> torch.Tensor:
    """IoU of boxes that broadcast against each other, (..., 4) xyxy -> (...)."""
    lt = torch.maximum(boxes1[..., :2], boxes2[..., :2])
    rb = torch.minimum(boxes1[..., 2:], boxes2[..., 2:])
    inter = (rb - lt).clamp(min=0).prod(-1)
    area1 = (boxes1[..., 2:] - boxes1[..., :2]).clamp(min=0).prod(-1)
    area2 = (boxes2[..., 2:] - boxes2[..., :2]).clamp(min=0).prod(-1)
    return inter / (area1 + area2 - inter + eps)


def pairwise_giou(pred: torch.Tensor, target: torch.Tensor, eps: float = 1e-7) -> torch.Tensor:
    """GIoU of aligned box pairs, (N, 4) xyxy each -> (N,)."""
    pred = pred.float()
    target = target.float()
    area_p = (pred[:, 2] - pred[:, 0]).clamp(min=0) * (pred[:, 3] - pred[:, 1]).clamp(min=0)
    area_t = (target[:, 2] - target[:, 0]).clamp(min=0) * (target[:, 3] - target[:, 1]).clamp(min=0)
    lt = torch.maximum(pred[:, :2], target[:, :2])
    rb = torch.minimum(pred[:, 2:], target[:, 2:])
    wh = (rb - lt).clamp(min=0)
    inter = wh[:, 0] * wh[:, 1]
    union = area_p + area_t - inter
    iou = inter / (union + eps)
    enclose_wh = (torch.maximum(pred[:, 2:], target[:, 2:]) - torch.minimum(pred[:, :2], target[:, :2])).clamp(min=0)
    enclose = enclose_wh[:, 0] * enclose_wh[:, 1]
    return iou - (enclose - union) / (enclose + eps)


def giou_loss_reference(
    pred_boxes: torch.Tensor,  # (N, 4) xyxy
    target_boxes: torch.Tensor,  # (N, 4) xyxy
    *,
    weights: torch.Tensor | None = None,  # (N,)
    normalizer: float | torch.Tensor = 1.0,
    clip: float = INF,
) -> torch.Tensor:
    """sum(w * (1 - GIoU)) / normalizer, clipped."""
    loss = 1.0 - pairwise_giou(pred_boxes, target_boxes)
    if weights is not None:
        loss = loss * weights.float()
    return clip_component(loss.sum() / normalizer, clip)


def box_crop_mask(boxes: torch.Tensor | None, height: int, width: int, like: torch.Tensor) -> torch.Tensor:
    """(N, 4) xyxy boxes in mask pixels -> (N, H, W) float {0,1}: pixel centres inside the box."""
    if boxes is None:
        return torch.ones_like(like, dtype=torch.float32)
    boxes = boxes.float()
    xs = torch.arange(width, device=like.device, dtype=torch.float32) + 0.5
    ys = torch.arange(height, device=like.device, dtype=torch.float32) + 0.5
    inside_x = (xs[None, :] >= boxes[:, 0:1]) & (xs[None, :] < boxes[:, 2:3])  # (N, W)
    inside_y = (ys[None, :] >= boxes[:, 1:2]) & (ys[None, :] < boxes[:, 3:4])  # (N, H)
    return (inside_y[:, :, None] & inside_x[:, None, :]).float()


def _instance_reduce(
    per_instance: torch.Tensor, weights: torch.Tensor | None, normalizer: float | torch.Tensor | None
) -> torch.Tensor:
    if weights is not None:
        per_instance = per_instance * weights.float()
    if normalizer is None:
        normalizer = max(per_instance.shape[0], 1)
    return per_instance.sum() / normalizer


def mask_loss_reference(
    mask_logits: torch.Tensor,  # (N, H, W)
    target_masks: torch.Tensor,  # (N, H, W) {0, 1} (any dtype)
    boxes: torch.Tensor | None = None,  # (N, 4) xyxy in mask pixels: loss only inside the box
    *,
    weights: torch.Tensor | None = None,  # (N,)
    bce_weight: float = 1.0,
    dice_weight: float = 1.0,
    normalizer: float | torch.Tensor | None = None,  # None = number of instances
    clip: float = INF,
    smooth: float = 1.0,
) -> torch.Tensor:
    """Per instance: bce_weight * mean BCE inside the box + dice_weight * (1 - Dice inside the box)."""
    x = mask_logits.float()
    t = target_masks.float()
    crop = box_crop_mask(boxes, x.shape[1], x.shape[2], x)
    area = crop.sum(dim=(1, 2)).clamp(min=1.0)
    bce = (F.binary_cross_entropy_with_logits(x, t, reduction="none") * crop).sum(dim=(1, 2)) / area
    p = torch.sigmoid(x) * crop
    tc = t * crop
    dice = 1.0 - (2.0 * (p * tc).sum(dim=(1, 2)) + smooth) / (p.sum(dim=(1, 2)) + tc.sum(dim=(1, 2)) + smooth)
    return clip_component(_instance_reduce(bce_weight * bce + dice_weight * dice, weights, normalizer), clip)


def morphological_gradient(masks: torch.Tensor) -> torch.Tensor:
    """Boundary map of (N, H, W) soft masks in [0, 1]: 3x3 dilation minus 3x3 erosion.

    Pixels outside the image are ignored (max_pool2d pads with -inf), not treated as zeros: a mask
    touching the border has no edge along the border."""
    m = masks.unsqueeze(1)
    dilated = F.max_pool2d(m, kernel_size=3, stride=1, padding=1)
    eroded = -F.max_pool2d(-m, kernel_size=3, stride=1, padding=1)
    return (dilated - eroded).squeeze(1)


def boundary_loss_reference(
    mask_logits: torch.Tensor,  # (N, H, W)
    target_masks: torch.Tensor,  # (N, H, W) {0, 1}
    boxes: torch.Tensor | None = None,  # (N, 4) xyxy in mask pixels
    *,
    weights: torch.Tensor | None = None,  # (N,)
    bce_weight: float = 1.0,
    dice_weight: float = 1.0,
    normalizer: float | torch.Tensor | None = None,
    clip: float = INF,
    smooth: float = 1.0,
    eps: float = 1e-6,
) -> torch.Tensor:
    """BCE + Dice between the boundary maps (3x3 morphological gradient) of sigmoid(pred) and target."""
    x = mask_logits.float()
    crop = box_crop_mask(boxes, x.shape[1], x.shape[2], x)
    area = crop.sum(dim=(1, 2)).clamp(min=1.0)
    pred_edges = morphological_gradient(torch.sigmoid(x)).clamp(eps, 1.0 - eps)
    target_edges = morphological_gradient(target_masks.float())
    bce = -(target_edges * pred_edges.log() + (1.0 - target_edges) * (1.0 - pred_edges).log())
    bce = (bce * crop).sum(dim=(1, 2)) / area
    pc = pred_edges * crop
    tc = target_edges * crop
    dice = 1.0 - (2.0 * (pc * tc).sum(dim=(1, 2)) + smooth) / (pc.sum(dim=(1, 2)) + tc.sum(dim=(1, 2)) + smooth)
    return clip_component(_instance_reduce(bce_weight * bce + dice_weight * dice, weights, normalizer), clip)
