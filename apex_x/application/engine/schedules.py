"""Learning-rate schedule (linear warmup + cosine) and the per-step loss settings, read through the registered
loss components (their weights, ramps, clips and knobs: the user guide's train.loss_* knobs)."""

from __future__ import annotations

import math
from collections.abc import Mapping

from apex_x.domain.config import TrainConfig
from apex_x.domain.ports import LossComponent
from apex_x.domain.registry import LOSS_COMPONENTS
from apex_x.domain.types import LossSettings

__all__ = ["evaluation_loss_settings", "loss_settings", "lr_factor"]


def lr_factor(step: int, *, total_steps: int, warmup_steps: int, min_lr_ratio: float) -> float:
    """Multiplier of the peak lr at optimizer step `step` (0-based): linear warmup, then cosine to min_lr_ratio."""
    if warmup_steps > 0 and step < warmup_steps:
        return (step + 1) / warmup_steps
    decay_steps = max(1, total_steps - warmup_steps)
    progress = min(1.0, max(0.0, (step - warmup_steps) / decay_steps))
    return min_lr_ratio + (1.0 - min_lr_ratio) * 0.5 * (1.0 + math.cos(math.pi * progress))


def _model_components() -> tuple[LossComponent, ...]:
    return tuple(component for component in LOSS_COMPONENTS.all() if not component.auxiliary)


def _settings(weights: dict[str, float], epoch_progress: float | None, train: TrainConfig) -> LossSettings:
    components = LOSS_COMPONENTS.all()
    return LossSettings(
        weights=weights,
        clips={component.name: component.clip(train) for component in components},
        params={component.name: component.params(epoch_progress, train) for component in components},
    )


def loss_settings(stage_losses: Mapping[str, float], epoch_progress: float, train: TrainConfig) -> LossSettings:
    """What the model's loss needs for one step: the stage's model components with ramped weights.

    A component whose ramped weight is 0 is left out (not computed). Auxiliary components (distill) are
    the trainer's, never the model's, so their weights are not passed on.
    """
    weights: dict[str, float] = {}
    for component in _model_components():
        name = component.name
        if name not in stage_losses:
            continue
        weight = float(stage_losses[name]) * component.weight_scale(epoch_progress, train)
        if weight > 0.0:
            weights[name] = weight
    return _settings(weights, epoch_progress, train)


def evaluation_loss_settings(train: TrainConfig) -> LossSettings:
    """Validation loss: every model component at weight 1 and its ramps at their end, comparable across stages."""
    return _settings({component.name: 1.0 for component in _model_components()}, None, train)
