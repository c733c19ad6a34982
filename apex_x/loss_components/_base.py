"""What every loss component shares: its clip read through the config, no ramp, no knobs, off by default."""

from __future__ import annotations

import functools
from typing import ClassVar

import torch

from apex_x.domain.config import TrainConfig
from apex_x.domain.ports import LossInputs
from apex_x.domain.types import LossSettings


@functools.cache
def _defaults() -> TrainConfig:
    """The schema's defaults: what a component uses when LossSettings leaves it out."""
    return TrainConfig()


class BaseLossComponent:
    """Defaults of the LossComponent port; a variant sets `name`, `clip_field` and `compute`."""

    name: ClassVar[str]
    clip_field: ClassVar[str]  # TrainConfig field of its clip, e.g. "loss_det_component_clip"
    auxiliary: ClassVar[bool] = False
    in_first_stage: ClassVar[bool] = False

    @property
    def clip_key(self) -> str:
        return f"train.{self.clip_field}"

    def clip(self, train: TrainConfig) -> float:
        return float(getattr(train, self.clip_field))

    def default_weight(self, train: TrainConfig) -> float:  # noqa: ARG002 - the port's signature
        return 0.0

    def weight_scale(self, epoch_progress: float, train: TrainConfig) -> float:  # noqa: ARG002
        return 1.0

    def params(self, epoch_progress: float | None, train: TrainConfig) -> dict[str, float]:  # noqa: ARG002
        return {}

    def clip_in(self, settings: LossSettings) -> float:
        """Its clip of this step (the config default when the settings leave it out)."""
        clip = settings.clips.get(self.name)
        return self.clip(_defaults()) if clip is None else clip

    def params_in(self, settings: LossSettings) -> dict[str, float]:
        """Its knobs of this step (the config defaults, ramps at their end, when the settings leave them out)."""
        params = settings.params.get(self.name)
        return self.params(None, _defaults()) if params is None else params

    def compute(self, inputs: LossInputs, settings: LossSettings) -> torch.Tensor:
        raise NotImplementedError(f"loss component {self.name!r} has no compute function")
