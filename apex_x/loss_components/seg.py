"""`seg`: mask BCE + Dice of the prototype-assembled masks of the matched positives, inside the object's box
(at model.mask_stride). Knob: train.loss_seg_component_clip."""

from __future__ import annotations

import torch

from apex_x import kernels
from apex_x.domain.ports import LossInputs
from apex_x.domain.registry import LOSS_COMPONENTS
from apex_x.domain.types import LossSettings
from apex_x.loss_components._base import BaseLossComponent


@LOSS_COMPONENTS.register
class Segmentation(BaseLossComponent):
    """Instance-mask BCE + Dice, clipped; a zero touching the mask branch when nothing is matched."""

    name = "seg"
    clip_field = "loss_seg_component_clip"

    def compute(self, inputs: LossInputs, settings: LossSettings) -> torch.Tensor:
        masks = inputs.matched_masks()
        if masks.empty:
            return masks.zero
        return kernels.mask_loss(masks.logits, masks.targets, masks.crop_boxes, clip=self.clip_in(settings))
