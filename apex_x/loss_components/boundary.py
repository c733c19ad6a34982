"""`boundary`: BCE + Dice of the 3x3 morphological-gradient boundary maps of the matched masks.

Knobs: train.loss_boundary_component_clip and the warm-up ramp of its weight (train.loss_boundary_warmup_epochs,
train.loss_boundary_max_scale).
"""

from __future__ import annotations

import torch

from apex_x import kernels
from apex_x.domain.config import TrainConfig
from apex_x.domain.ports import LossInputs
from apex_x.domain.registry import LOSS_COMPONENTS
from apex_x.domain.types import LossSettings
from apex_x.loss_components._base import BaseLossComponent


def boundary_scale(epoch_progress: float, train: TrainConfig) -> float:
    """Boundary weight scale: 0 for the first loss_boundary_warmup_epochs, then a linear ramp of the same
    length up to loss_boundary_max_scale (warmup 0 = the max scale from the start).

    epoch_progress: fractional epochs done in the whole run (epoch + step / steps_per_epoch).
    """
    warmup = train.loss_boundary_warmup_epochs
    if warmup <= 0:
        return train.loss_boundary_max_scale
    ramp = min(1.0, max(0.0, (epoch_progress - warmup) / warmup))
    return train.loss_boundary_max_scale * ramp


@LOSS_COMPONENTS.register
class Boundary(BaseLossComponent):
    """Boundary-map BCE + Dice, clipped; its stage weight ramps up after a warm-up."""

    name = "boundary"
    clip_field = "loss_boundary_component_clip"

    def weight_scale(self, epoch_progress: float, train: TrainConfig) -> float:
        return boundary_scale(epoch_progress, train)

    def compute(self, inputs: LossInputs, settings: LossSettings) -> torch.Tensor:
        masks = inputs.matched_masks()
        if masks.empty:
            return masks.zero
        return kernels.boundary_loss(masks.logits, masks.targets, masks.crop_boxes, clip=self.clip_in(settings))
