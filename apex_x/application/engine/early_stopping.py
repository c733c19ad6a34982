"""Early stopping (`train.patience`): a stage ends after `patience` epochs without a new best checkpoint metric.

As Ultralytics' `patience` (epochs since the best fitness), counted per stage: a stage that switches loss
components on (the curriculum) starts its own count, so a detection-only first stage that cannot improve
segm AP does not end the run. A stage that stops early hands over to the next one; the last stage stopping
ends the run normally (status finished, with the reason in the report). Decided only after a validation
(an epoch without one cannot improve the metric, but it is never the epoch that stops).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from apex_x.application.engine.curriculum import Stage
from apex_x.application.engine.train_state import StartPoint


def epochs_without_improvement(history: Sequence[Mapping[str, Any]], stage_name: str) -> int:
    """Epochs of `stage_name` since its last new best (or since the stage began, if it has none)."""
    count = 0
    for entry in reversed([entry for entry in history if entry.get("stage") == stage_name]):
        if entry.get("is_best"):
            break
        count += 1
    return count


def early_stop(history: Sequence[Mapping[str, Any]], stage: Stage, patience: int | None,
               best: Mapping[str, Any] | None) -> dict[str, Any] | None:
    """The early stop of `stage` after the last epoch of `history` (plain values for the report), or None."""
    if patience is None or not history:
        return None
    last = history[-1]
    metric = last.get("metric") or {}
    if metric.get("value") is None:  # not validated (or n/a): no decision on this epoch
        return None
    waited = epochs_without_improvement(history, stage.name)
    if waited < patience:
        return None
    in_stage = [entry for entry in history if entry.get("stage") == stage.name]
    best_text = (f"the best {best.get('name')} is {best.get('value'):.4f} (epoch {best.get('epoch')})"
                 if best and best.get("value") is not None else f"no {metric.get('name')} value was best yet")
    return {
        "stage": stage.name, "stage_index": stage.index, "epoch": last.get("epoch"), "patience": patience,
        "metric": metric.get("name"), "epochs_without_improvement": waited,
        "stage_epochs_done": len(in_stage), "stage_epochs_planned": stage.epochs,
        "message": f"stage {stage.name!r} stopped early after epoch {last.get('epoch')}: {metric.get('name')} did "
                   f"not improve for {waited} epoch(s) (train.patience={patience}); {best_text}; "
                   f"{stage.epochs - len(in_stage)} planned epoch(s) of the stage were skipped",
    }


def skip_rest_of_stage(schedule: Sequence[StartPoint], done: int, stage_index: int) -> list[StartPoint]:
    """The schedule after its first `done` items without the stopped stage's remaining epochs; the epochs
    after them are renumbered so the run keeps one contiguous epoch numbering."""
    kept = list(schedule[:done])
    number = kept[-1].epoch + 1 if kept else 0
    for item in schedule[done:]:
        if item.stage_index == stage_index:
            continue
        kept.append(StartPoint(item.stage_index, number, item.start_batch))
        number += 1
    return kept
