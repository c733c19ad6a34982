"""Learning-rate schedule (linear warmup + cosine) and the loss ramps of the user guide's train.loss_* knobs."""

from __future__ import annotations

import math
from collections.abc import Mapping

from apex_x.domain.config import TrainConfig
from apex_x.domain.types import LossSettings

MODEL_COMPONENTS = ("det", "seg", "boundary")


def lr_factor(step: int, *, total_steps: int, warmup_steps: int, min_lr_ratio: float) -> float:
    """Multiplier of the peak lr at optimizer step `step` (0-based): linear warmup, then cosine to min_lr_ratio."""
    if warmup_steps > 0 and step < warmup_steps:
        return (step + 1) / warmup_steps
    decay_steps = max(1, total_steps - warmup_steps)
    progress = min(1.0, max(0.0, (step - warmup_steps) / decay_steps))
    return min_lr_ratio + (1.0 - min_lr_ratio) * 0.5 * (1.0 + math.cos(math.pi * progress))


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


def box_scale(epoch_progress: float, train: TrainConfig) -> float:
    """Box (GIoU) weight scale: linear from loss_box_scale_start to loss_box_scale_end over
    loss_box_warmup_epochs (0 = the end value from the start)."""
    warmup = train.loss_box_warmup_epochs
    if warmup <= 0:
        return train.loss_box_scale_end
    ramp = min(1.0, max(0.0, epoch_progress / warmup))
    return train.loss_box_scale_start + (train.loss_box_scale_end - train.loss_box_scale_start) * ramp


def loss_settings(stage_losses: Mapping[str, float], epoch_progress: float, train: TrainConfig) -> LossSettings:
    """What the model's loss needs for one step: the stage's model components with ramped weights.

    A component whose ramped weight is 0 is left out (not computed). `distill` is the trainer's
    auxiliary loss, never the model's, so it is not passed on.
    """
    weights: dict[str, float] = {}
    for name in MODEL_COMPONENTS:
        if name not in stage_losses:
            continue
        weight = float(stage_losses[name])
        if name == "boundary":
            weight *= boundary_scale(epoch_progress, train)
        if weight > 0.0:
            weights[name] = weight
    return LossSettings(
        weights=weights,
        box_scale=box_scale(epoch_progress, train),
        box_weight=train.loss_box_weight,
        quality_weight=train.loss_quality_weight,
        det_clip=train.loss_det_component_clip,
        seg_clip=train.loss_seg_component_clip,
        boundary_clip=train.loss_boundary_component_clip,
    )


def evaluation_loss_settings(train: TrainConfig) -> LossSettings:
    """Validation loss: every model component at weight 1 and full box scale, comparable across stages."""
    return LossSettings(
        weights={name: 1.0 for name in MODEL_COMPONENTS},
        box_scale=train.loss_box_scale_end,
        box_weight=train.loss_box_weight,
        quality_weight=train.loss_quality_weight,
        det_clip=train.loss_det_component_clip,
        seg_clip=train.loss_seg_component_clip,
        boundary_clip=train.loss_boundary_component_clip,
    )
