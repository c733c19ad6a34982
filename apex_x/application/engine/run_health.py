"""Whether a run can move: components stuck at their clip, a zero gradient, a growing loss. Each becomes a
warning (logged, in the report) and the run ends `finished_with_warnings` instead of `finished`."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

from apex_x.application.engine.diagnostics import LossDiagnostics
from apex_x.domain.config import TrainConfig
from apex_x.domain.registry import LOSS_COMPONENTS

MOST = 0.5  # "most steps": more than this share of an epoch's applied steps
MIN_STEPS = 2  # a one-step epoch says too little
DIVERGING_EPOCHS = 3  # epochs of one stage whose training loss grows each time
DIVERGING_GROWTH = 1.25  # and ends at least this factor above where it started


def _clip_of(name: str, train: TrainConfig) -> tuple[float, str] | None:
    """(clip value, its config key) of a registered component, read through the component."""
    component = LOSS_COMPONENTS.find(name)
    return None if component is None else (component.clip(train), component.clip_key)


def lr_text(train: TrainConfig, scheduled: tuple[float, float] | None) -> str:
    """The configured lr (what the user set) and, if the schedule gave other values on the epoch's steps
    (warmup, cosine decay, the stage's lr_scale), those: `train.lr (set to 10; scheduled 7.07 to 9.5 on these
    steps)`."""
    text = f"train.lr (set to {train.lr:g}"
    if scheduled is None:
        return text + ")"
    low, high = scheduled
    if all(math.isclose(value, train.lr, rel_tol=1e-6) for value in (low, high)):
        return text + ")"
    shown = f"{low:.3g}" if math.isclose(low, high, rel_tol=1e-3) else f"{low:.3g} to {high:.3g}"
    return f"{text}; scheduled {shown} on these steps)"


def warmup_text(train: TrainConfig) -> str:
    """Advice about warmup that cannot be read as "set it to its current value"."""
    if train.warmup_steps == 0:
        return "add warmup (train.warmup_steps is 0 now; e.g. 100)"
    return f"lengthen warmup (train.warmup_steps is {train.warmup_steps} now)"


def epoch_warnings(diagnostics: LossDiagnostics, *, epoch: int, stage: str, train: TrainConfig,
                   history: Sequence[Mapping[str, Any]],
                   scheduled_lr: tuple[float, float] | None = None) -> list[dict[str, Any]]:
    """Warnings about the epoch just finished (`history` holds the earlier epochs, this one last).
    `scheduled_lr`: the lowest and highest lr the schedule gave on the epoch's steps."""
    found: list[dict[str, Any]] = []
    lr = lr_text(train, scheduled_lr)
    steps = diagnostics.applied_steps
    if steps >= MIN_STEPS:
        for component, count in sorted(diagnostics.clipped_steps.items()):
            if count / steps > MOST:
                clip, clip_key = _clip_of(component, train) or (math.nan, "train.loss_*_component_clip")
                found.append({
                    "kind": "clipped", "component": component, "epoch": epoch, "stage": stage,
                    "steps": count, "of_steps": steps, "share": round(count / steps, 4),
                    "message": (
                        f"loss component {component!r} sat at its clip ({clip:g}) on {count} of {steps} steps "
                        f"({100 * count / steps:.0f}%) of epoch {epoch} (stage {stage}): a clipped component has a "
                        f"zero gradient, so it does not learn. Lower {lr}, {warmup_text(train)}, or "
                        f"raise {clip_key}"
                    ),
                })
        if diagnostics.zero_grad_steps / steps > MOST:
            found.append({
                "kind": "zero_gradient", "component": None, "epoch": epoch, "stage": stage,
                "steps": diagnostics.zero_grad_steps, "of_steps": steps, "share": round(diagnostics.zero_grad_steps / steps, 4),
                "message": (
                    f"the gradient norm was 0 on {diagnostics.zero_grad_steps} of {steps} steps of epoch {epoch} "
                    f"(stage {stage}): nothing learns. Check {lr}, the component clips "
                    "(train.loss_*_component_clip) and the stage's trainable groups"
                ),
            })
    losses = [(int(entry["epoch"]), (entry.get("train") or {}).get("total_loss")) for entry in history
              if entry.get("stage") == stage]
    recent = [(number, value) for number, value in losses[-DIVERGING_EPOCHS:]
              if isinstance(value, (int, float)) and math.isfinite(value)]
    if len(recent) == DIVERGING_EPOCHS and all(b[1] > a[1] for a, b in zip(recent, recent[1:], strict=False)) \
            and recent[-1][1] >= DIVERGING_GROWTH * recent[0][1] > 0:
        found.append({
            "kind": "diverging", "component": None, "epoch": epoch, "stage": stage,
            "steps": None, "of_steps": None, "share": None,
            "message": (
                f"the training loss grew for {DIVERGING_EPOCHS} epochs in a row in stage {stage} "
                f"({recent[0][1]:.4g} at epoch {recent[0][0]} -> {recent[-1][1]:.4g} at epoch {recent[-1][0]}): the run "
                f"is diverging. Lower {lr} or {warmup_text(train)}"
            ),
        })
    return found
