"""`distill`: teacher distillation (class, box and mask logits of a frozen teacher as soft targets).

Its value comes from the AuxiliaryLoss of the same name that the container builds when
train.distill_weight > 0 (adapters/models/distillation.py: it holds the teacher); the trainer weights it by
the stage's `distill` weight, or train.distill_weight when the stage does not list it. Clip:
train.loss_det_component_clip.
"""

from __future__ import annotations

import torch

from apex_x.domain.config import TrainConfig
from apex_x.domain.ports import LossInputs
from apex_x.domain.registry import LOSS_COMPONENTS
from apex_x.domain.types import LossSettings
from apex_x.loss_components._base import BaseLossComponent


@LOSS_COMPONENTS.register
class Distillation(BaseLossComponent):
    """Auxiliary: computed by the trainer's AuxiliaryLoss `distill`, never by the model's loss."""

    name = "distill"
    clip_field = "loss_det_component_clip"
    auxiliary = True

    def default_weight(self, train: TrainConfig) -> float:
        return float(train.distill_weight)

    def compute(self, inputs: LossInputs, settings: LossSettings) -> torch.Tensor:
        raise NotImplementedError("distill is computed by its AuxiliaryLoss (it holds the teacher), not by the model")
