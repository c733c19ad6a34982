"""Loss components of the dense model: det, seg, boundary, each clipped, all through `apex_x.kernels`.

- det = quality focal classification (soft task-aligned targets)
        + box_scale * box_weight * GIoU (weighted by the targets) + quality_weight * BCE(quality, IoU)
- seg = mask BCE + Dice of prototype-assembled masks inside the object's box (at mask_stride)
- boundary = BCE + Dice of the 3x3 morphological-gradient boundary maps of the same masks
Each component is `min(nan_to_num(value), clip)`; the trainer multiplies by the stage weights.
"""

from __future__ import annotations

import torch

from apex_x import kernels
from apex_x.adapters.models.assigner import (
    Assignment,
    TaskAlignedAssigner,
    crowd_ignore_anchors,
    pairwise_box_iou,
)
from apex_x.adapters.models.heads import assemble_mask_logits
from apex_x.domain.types import Batch, LossSettings

CLS_GAMMA = 2.0  # quality focal loss exponent


class DenseLoss:
    """Assigns targets once per step and computes the active components."""

    def __init__(
        self, *, mask_stride: int, assigner: TaskAlignedAssigner | None = None, masks_per_object: int = 6
    ) -> None:
        self.mask_stride = mask_stride
        self.assigner = assigner or TaskAlignedAssigner()
        self.masks_per_object = masks_per_object  # positives per object that get a mask loss (memory bound)

    def __call__(
        self, outputs: dict[str, torch.Tensor], batch: Batch, settings: LossSettings
    ) -> dict[str, torch.Tensor]:
        active = {name for name, weight in settings.weights.items() if weight > 0}
        wants_masks = bool(active & {"seg", "boundary"})
        if not active & {"det", "seg", "boundary"}:
            return {}
        assignment = self.assign(outputs, batch)
        losses: dict[str, torch.Tensor] = {}
        if "det" in active:
            losses["det"] = self.detection_loss(outputs, batch, assignment, settings)
        if wants_masks:
            mask_logits, target_masks, crop_boxes = self.matched_masks(outputs, batch, assignment)
            if mask_logits.shape[0] == 0:
                # No positives: a zero that still touches the mask branch (DDP sees every parameter used).
                zero = kernels.clip_component((outputs["mask_coeffs"].sum() + outputs["prototypes"].sum()) * 0.0, 0.0)
                losses.update({name: zero for name in ("seg", "boundary") if name in active})
                return losses
            if "seg" in active:
                losses["seg"] = kernels.mask_loss(mask_logits, target_masks, crop_boxes, clip=settings.seg_clip)
            if "boundary" in active:
                losses["boundary"] = kernels.boundary_loss(
                    mask_logits, target_masks, crop_boxes, clip=settings.boundary_clip
                )
        return losses

    def assign(self, outputs: dict[str, torch.Tensor], batch: Batch) -> Assignment:
        positive_objects = batch.valid & ~batch.crowd & (batch.labels >= 0)
        return self.assigner(
            outputs["cls_logits"].detach().float().sigmoid(),
            outputs["boxes"].detach().float(),
            outputs["anchor_points"],
            batch.labels,
            batch.boxes,
            positive_objects,
        )

    def detection_loss(
        self, outputs: dict[str, torch.Tensor], batch: Batch, assignment: Assignment, settings: LossSettings
    ) -> torch.Tensor:
        cls_logits = outputs["cls_logits"]
        num_classes = cls_logits.shape[-1]
        foreground = assignment.foreground
        target_scores = assignment.target_scores
        normalizer = target_scores.sum().clamp(min=1.0)
        ignored = crowd_ignore_anchors(
            outputs["anchor_points"], batch.masks, batch.crowd & batch.valid, self.mask_stride
        )
        anchor_weights = None
        if bool(ignored.any()):
            anchor_weights = (~(ignored & ~foreground)).float().reshape(-1)
        cls = kernels.focal_loss(
            cls_logits.reshape(-1, num_classes),
            target_scores.reshape(-1, num_classes),
            weights=anchor_weights,
            gamma=CLS_GAMMA,
            alpha=None,
            normalizer=normalizer,
        )
        pred_boxes = outputs["boxes"][foreground].float()  # (N, 4)
        target_boxes = assignment.target_boxes[foreground]
        box = kernels.giou_loss(
            pred_boxes, target_boxes, weights=target_scores.sum(-1)[foreground], normalizer=normalizer
        )
        total = cls + (settings.box_scale * settings.box_weight) * box
        if settings.quality_weight > 0:
            with torch.no_grad():
                achieved = pairwise_box_iou(pred_boxes, target_boxes).clamp(0.0, 1.0)
            quality = kernels.focal_loss(
                outputs["quality"][foreground].float().unsqueeze(1),
                achieved.unsqueeze(1),
                gamma=0.0,
                alpha=None,
                normalizer=max(int(foreground.sum()), 1),
            )
            total = total + settings.quality_weight * quality
        return kernels.clip_component(total, settings.det_clip)

    def matched_masks(
        self, outputs: dict[str, torch.Tensor], batch: Batch, assignment: Assignment
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Mask logits (N, h, w), target masks (N, h, w) and crop boxes (N, 4) in mask pixels.

        Up to `masks_per_object` best-aligned positives per object, gathered without a loop over images.
        """
        coeffs, prototypes = outputs["mask_coeffs"], outputs["prototypes"]
        batch_size, num_objects, num_anchors = assignment.positive_mask.shape
        height, width = prototypes.shape[-2:]
        k = min(self.masks_per_object, num_anchors)
        if num_objects == 0 or assignment.num_foreground == 0:
            empty = coeffs.new_zeros(0, height, width)
            return empty, empty, coeffs.new_zeros(0, 4)
        metric = assignment.align_metric + 1e-12 * assignment.positive_mask
        top = metric.topk(k, dim=-1)  # (B, M, k)
        chosen = assignment.positive_mask.gather(-1, top.indices).reshape(batch_size, num_objects * k)
        anchors = top.indices.reshape(batch_size, num_objects * k)
        objects = torch.arange(num_objects, device=coeffs.device).repeat_interleave(k).expand(batch_size, -1)
        # Pack the chosen slots of every image to the front, pad to the busiest image.
        order = torch.argsort((~chosen).to(torch.uint8), dim=1, stable=True)
        slots = int(chosen.sum(1).max())
        order = order[:, :slots]
        chosen = chosen.gather(1, order)  # (B, P)
        anchors = anchors.gather(1, order)
        objects = objects.gather(1, order)
        slot_coeffs = coeffs.gather(1, anchors[..., None].expand(-1, -1, coeffs.shape[-1]))  # (B, P, K)
        logits = assemble_mask_logits(slot_coeffs, prototypes)[chosen]  # (N, h, w)
        image_index = torch.arange(batch_size, device=coeffs.device)[:, None].expand_as(objects)[chosen]
        object_index = objects[chosen]
        target_masks = batch.masks[image_index, object_index]  # (N, h, w)
        if tuple(target_masks.shape[-2:]) != (height, width):
            raise ValueError(
                f"target masks are {tuple(target_masks.shape[-2:])} but prototypes are {(height, width)}: "
                f"the data must store masks at model.mask_stride={self.mask_stride}"
            )
        crop_boxes = batch.boxes[image_index, object_index].float() / self.mask_stride
        return logits, target_masks, crop_boxes

