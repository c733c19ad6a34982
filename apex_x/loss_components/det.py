"""`det`: quality focal classification + box_scale * box_weight * GIoU + quality_weight * BCE(quality, IoU).

Knobs: train.loss_box_weight, train.loss_quality_weight, the box ramp (train.loss_box_warmup_epochs,
loss_box_scale_start, loss_box_scale_end) and train.loss_det_component_clip. The only component of the
small profile's first (detection stability) stage.
"""

from __future__ import annotations

import torch

from apex_x import kernels
from apex_x.domain.config import TrainConfig
from apex_x.domain.ports import LossInputs
from apex_x.domain.registry import LOSS_COMPONENTS
from apex_x.domain.types import LossSettings
from apex_x.kernels.reference import pairwise_box_iou
from apex_x.loss_components._base import BaseLossComponent

CLS_GAMMA = 2.0  # quality focal loss exponent


def box_scale(epoch_progress: float, train: TrainConfig) -> float:
    """Box (GIoU) weight scale: linear from loss_box_scale_start to loss_box_scale_end over
    loss_box_warmup_epochs (0 = the end value from the start)."""
    warmup = train.loss_box_warmup_epochs
    if warmup <= 0:
        return train.loss_box_scale_end
    ramp = min(1.0, max(0.0, epoch_progress / warmup))
    return train.loss_box_scale_start + (train.loss_box_scale_end - train.loss_box_scale_start) * ramp


@LOSS_COMPONENTS.register
class Detection(BaseLossComponent):
    """Classification, box and quality terms on the task-aligned targets, clipped."""

    name = "det"
    clip_field = "loss_det_component_clip"
    in_first_stage = True

    def params(self, epoch_progress: float | None, train: TrainConfig) -> dict[str, float]:
        scale = train.loss_box_scale_end if epoch_progress is None else box_scale(epoch_progress, train)
        return {"box_scale": scale, "box_weight": train.loss_box_weight, "quality_weight": train.loss_quality_weight}

    def compute(self, inputs: LossInputs, settings: LossSettings) -> torch.Tensor:
        outputs, targets, params = inputs.outputs, inputs.detection_targets(), self.params_in(settings)
        cls_logits = outputs["cls_logits"]
        num_classes = cls_logits.shape[-1]
        foreground, target_scores = targets.foreground, targets.target_scores
        normalizer = target_scores.sum().clamp(min=1.0)
        cls = kernels.focal_loss(
            cls_logits.reshape(-1, num_classes),
            target_scores.reshape(-1, num_classes),
            weights=targets.anchor_weights,
            gamma=CLS_GAMMA,
            alpha=None,
            normalizer=normalizer,
        )
        pred_boxes = outputs["boxes"][foreground].float()  # (N, 4)
        target_boxes = targets.target_boxes[foreground]
        box = kernels.giou_loss(
            pred_boxes, target_boxes, weights=target_scores.sum(-1)[foreground], normalizer=normalizer
        )
        total = cls + (params["box_scale"] * params["box_weight"]) * box
        if params["quality_weight"] > 0:
            with torch.no_grad():
                achieved = pairwise_box_iou(pred_boxes, target_boxes).clamp(0.0, 1.0)
            quality = kernels.focal_loss(
                outputs["quality"][foreground].float().unsqueeze(1),
                achieved.unsqueeze(1),
                gamma=0.0,
                alpha=None,
                normalizer=max(int(foreground.sum()), 1),
            )
            total = total + params["quality_weight"] * quality
        return kernels.clip_component(total, self.clip_in(settings))
