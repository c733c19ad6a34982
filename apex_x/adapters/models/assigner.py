"""Task-aligned assigner (TOOD / YOLOv8 style), vectorised over the batch, objects and anchors at once.

For every object, the candidates are the anchor points inside its box (the nearest anchor when none is);
the alignment metric is  score(class)^alpha * IoU(pred, gt)^beta;  the top-k candidates by metric become
positives; an anchor claimed by several objects keeps the one it overlaps most. Soft class targets are the
metric normalised per object so that its best anchor's target equals its best IoU. Crowd regions are never
objects; anchors whose centre lies on a crowd mask are ignored (no classification loss) unless positive.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from apex_x.kernels.reference import pairwise_box_iou

__all__ = ["Assignment", "TaskAlignedAssigner", "crowd_ignore_anchors", "pairwise_box_iou"]

EPS = 1e-9


@dataclass
class Assignment:
    """Targets of one batch; B images, A anchors, M (padded) objects, C classes."""

    foreground: torch.Tensor  # (B, A) bool
    gt_index: torch.Tensor  # (B, A) int64 index of the matched object (0 where background)
    target_labels: torch.Tensor  # (B, A) int64 class id, -1 for background
    target_boxes: torch.Tensor  # (B, A, 4) xyxy of the matched object
    target_scores: torch.Tensor  # (B, A, C) soft classification targets
    positive_mask: torch.Tensor  # (B, M, A) bool, one object per anchor
    align_metric: torch.Tensor  # (B, M, A) alignment metric of the positives (0 elsewhere)

    @property
    def num_foreground(self) -> int:
        return int(self.foreground.sum())


class TaskAlignedAssigner:
    """TOOD's task-aligned assignment; all tensors stay on their device, no loop over images or levels."""

    def __init__(self, topk: int = 10, alpha: float = 0.5, beta: float = 6.0) -> None:
        self.topk = topk
        self.alpha = alpha
        self.beta = beta

    @torch.no_grad()
    def __call__(
        self,
        scores: torch.Tensor,  # (B, A, C) class probabilities
        pred_boxes: torch.Tensor,  # (B, A, 4) xyxy
        anchor_points: torch.Tensor,  # (A, 2) xy
        gt_labels: torch.Tensor,  # (B, M) int64
        gt_boxes: torch.Tensor,  # (B, M, 4) xyxy
        gt_valid: torch.Tensor,  # (B, M) bool: objects that may be positives (not padding, not crowd)
    ) -> Assignment:
        batch, num_anchors, num_classes = scores.shape
        num_objects = gt_boxes.shape[1]
        scores, pred_boxes, gt_boxes = scores.float(), pred_boxes.float(), gt_boxes.float()
        if num_objects == 0 or not bool(gt_valid.any()):
            return _empty(scores, gt_boxes, num_objects)

        candidates = self._candidates(anchor_points, gt_boxes, gt_valid)  # (B, M, A)
        labels = gt_labels.clamp(min=0, max=num_classes - 1)
        class_scores = scores.gather(2, labels[:, None, :].expand(batch, num_anchors, num_objects))
        class_scores = class_scores.transpose(1, 2)  # (B, M, A)
        ious = pairwise_box_iou(gt_boxes[:, :, None, :], pred_boxes[:, None, :, :]).clamp(min=0)
        ious = ious * candidates
        align = class_scores.pow(self.alpha) * ious.pow(self.beta) * candidates

        # Top-k candidates per object; candidates outrank non-candidates even at metric 0.
        k = min(self.topk, num_anchors)
        topk_index = (align + EPS * candidates).topk(k, dim=-1).indices  # (B, M, k)
        in_topk = torch.zeros_like(candidates).scatter_(-1, topk_index, True)
        positive = in_topk & candidates  # (B, M, A)

        # An anchor claimed by several objects keeps the one with the highest IoU.
        claims = positive.sum(1)  # (B, A)
        if bool((claims > 1).any()):
            best = (ious * positive).argmax(1)  # (B, A)
            best_one_hot = F.one_hot(best, num_objects).transpose(1, 2).bool()  # (B, M, A)
            positive = torch.where((claims > 1)[:, None, :], best_one_hot, positive)

        foreground = positive.any(1)  # (B, A)
        gt_index = positive.to(torch.uint8).argmax(1)  # (B, A)
        target_labels = torch.where(foreground, gt_labels.gather(1, gt_index), torch.full_like(gt_index, -1))
        target_boxes = gt_boxes.gather(1, gt_index[..., None].expand(batch, num_anchors, 4))

        align = align * positive
        best_align = align.amax(-1, keepdim=True)  # (B, M, 1)
        best_iou = (ious * positive).amax(-1, keepdim=True)  # (B, M, 1)
        normalised = (align * best_iou / best_align.clamp(min=1e-30)).amax(1)  # (B, A)
        one_hot = F.one_hot(target_labels.clamp(min=0), num_classes).float()
        target_scores = one_hot * (normalised * foreground)[..., None]
        return Assignment(foreground, gt_index, target_labels, target_boxes, target_scores, positive, align)

    @staticmethod
    def _candidates(anchor_points: torch.Tensor, gt_boxes: torch.Tensor, gt_valid: torch.Tensor) -> torch.Tensor:
        """(B, M, A) anchors whose centre is inside the object's box; the nearest anchor if none is."""
        left_top = anchor_points[None, None] - gt_boxes[..., None, :2]  # (B, M, A, 2)
        right_bottom = gt_boxes[..., None, 2:] - anchor_points[None, None]
        inside = torch.cat([left_top, right_bottom], dim=-1).amin(-1) > EPS  # (B, M, A)
        lonely = gt_valid & ~inside.any(-1)  # (B, M) valid objects without any inside anchor
        if bool(lonely.any()):
            centres = (gt_boxes[..., :2] + gt_boxes[..., 2:]) / 2  # (B, M, 2)
            distance = (anchor_points[None, None] - centres[..., None, :]).pow(2).sum(-1)  # (B, M, A)
            nearest = F.one_hot(distance.argmin(-1), anchor_points.shape[0]).bool()
            inside = inside | (nearest & lonely[..., None])
        return inside & gt_valid[..., None]


def crowd_ignore_anchors(
    anchor_points: torch.Tensor,  # (A, 2)
    masks: torch.Tensor,  # (B, M, h, w) {0, 1} at mask_stride
    crowd: torch.Tensor,  # (B, M) bool
    mask_stride: int,
) -> torch.Tensor:
    """(B, A) bool: anchors whose centre lies on a crowd region's mask."""
    batch, num_objects, height, width = masks.shape
    if num_objects == 0 or not bool(crowd.any()):
        return torch.zeros(batch, anchor_points.shape[0], dtype=torch.bool, device=masks.device)
    cols = (anchor_points[:, 0] / mask_stride).long().clamp(0, width - 1)
    rows = (anchor_points[:, 1] / mask_stride).long().clamp(0, height - 1)
    on_mask = masks[:, :, rows, cols].bool()  # (B, M, A)
    return (on_mask & crowd[..., None]).any(1)


def _empty(scores: torch.Tensor, gt_boxes: torch.Tensor, num_objects: int) -> Assignment:
    batch, num_anchors, _ = scores.shape
    device = scores.device
    return Assignment(
        foreground=torch.zeros(batch, num_anchors, dtype=torch.bool, device=device),
        gt_index=torch.zeros(batch, num_anchors, dtype=torch.long, device=device),
        target_labels=torch.full((batch, num_anchors), -1, dtype=torch.long, device=device),
        target_boxes=torch.zeros(batch, num_anchors, 4, device=device),
        target_scores=torch.zeros_like(scores),
        positive_mask=torch.zeros(batch, num_objects, num_anchors, dtype=torch.bool, device=device),
        align_metric=torch.zeros(batch, num_objects, num_anchors, device=device),
    )
