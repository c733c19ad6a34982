"""The train report (a plain dict, versioned schema): history by epoch, diagnostics, metrics, dataset, run."""

from __future__ import annotations

import math
import platform
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import torch

from apex_x.application.engine.curriculum import Stage
from apex_x.application.engine.diagnostics import RunDiagnostics

REPORT_SCHEMA = "apex-x-train-report"
REPORT_SCHEMA_VERSION = 1
COCO_METRICS = tuple(
    f"{kind}_{name}" for kind in ("segm", "bbox") for name in ("AP", "AP50", "AP75", "APs", "APm", "APl")
)
LOSS_METRICS = ("val_loss", "train_loss")


def lower_is_better(metric: str) -> bool:
    return metric.endswith("loss")


TIE_BREAK_NOTE = "ties of the checkpoint metric are broken by val_loss (lower wins)"
NO_TIE_BREAK_NOTE = "ties of the checkpoint metric keep the earlier epoch (train.val_loss=false: no val loss to break them)"


def _finite(value: float | None) -> bool:
    return value is not None and math.isfinite(value)


def is_improvement(metric: str, value: float | None, best: float | None, *, tie_loss: float | None = None,
                   best_tie_loss: float | None = None) -> bool:
    """A NaN/Inf or missing (n/a) value is never best. An equal value (e.g. AP 0 at every epoch of a model
    that finds nothing yet) is better when its val loss (`tie_loss`) is lower than the best's."""
    if not _finite(value):
        return False
    assert value is not None
    if best is None or not math.isfinite(best):
        return True
    if value == best and not metric.endswith("loss"):
        return _finite(tie_loss) and (not _finite(best_tie_loss) or tie_loss < best_tie_loss)  # type: ignore[operator]
    return value < best if lower_is_better(metric) else value > best


@dataclass
class ReportState:
    """What the report accumulates; kept in checkpoints (plain values) so a resumed run's report is whole."""

    history: list[dict[str, Any]] = field(default_factory=list)
    best: dict[str, Any] | None = None  # {"name", "value", "epoch"}
    elapsed_s: float = 0.0  # training time of earlier sessions (before this resume)
    sessions: int = 0
    warnings: list[dict[str, Any]] = field(default_factory=list)  # run_health: clipped, zero gradient, diverging
    early_stops: list[dict[str, Any]] = field(default_factory=list)  # early_stopping.early_stop, one per stage
    curves: dict[str, Any] = field(default_factory=dict)  # the latest validation's PR curves and confusion matrix
    init_from: dict[str, Any] | None = None  # train.init_from: what the run started from (engine/init_from.py)
    previews: dict[str, Any] | None = None  # the latest validation's prediction overlays (plots/val_predictions.png)

    def ended_stages(self) -> tuple[str, ...]:
        """Names of the stages that stopped early (a resume does not run their remaining epochs)."""
        return tuple(str(item["stage"]) for item in self.early_stops)

    def to_plain(self) -> dict[str, Any]:
        plain = {"history": list(self.history), "best": self.best, "elapsed_s": self.elapsed_s,
                 "sessions": self.sessions, "warnings": list(self.warnings), "early_stops": list(self.early_stops),
                 "curves": dict(self.curves)}
        if self.init_from is not None:
            plain["init_from"] = dict(self.init_from)
        if self.previews is not None:
            plain["previews"] = dict(self.previews)
        return plain

    @classmethod
    def from_plain(cls, plain: Mapping[str, Any] | None) -> ReportState:
        if not plain:
            return cls()
        return cls(
            history=[dict(item) for item in plain.get("history") or []],
            best=dict(plain["best"]) if plain.get("best") else None,
            elapsed_s=float(plain.get("elapsed_s") or 0.0),
            sessions=int(plain.get("sessions") or 0),
            warnings=[dict(item) for item in plain.get("warnings") or []],
            early_stops=[dict(item) for item in plain.get("early_stops") or []],
            curves=dict(plain.get("curves") or {}),
            init_from=dict(plain["init_from"]) if isinstance(plain.get("init_from"), Mapping) else None,
            previews=dict(plain["previews"]) if isinstance(plain.get("previews"), Mapping) else None,
        )


def stage_snapshot(stages: list[Stage], history: list[dict[str, Any]], diagnostics: RunDiagnostics,
                   metric: str) -> dict[str, Any]:
    """Per stage: its epochs, the last evaluated metrics, the best selected metric in it, its diagnostics."""
    snapshot: dict[str, Any] = {}
    for stage in stages:
        entries = [entry for entry in history if entry.get("stage") == stage.name]
        evaluated = [entry for entry in entries if entry.get("val")]
        best_entry = None
        for entry in evaluated:
            value = (entry.get("metric") or {}).get("value")
            best_value = (best_entry or {}).get("metric", {}).get("value") if best_entry else None
            best_loss = (best_entry.get("val") or {}).get("val_loss") if best_entry else None
            if is_improvement(metric, value, best_value, tie_loss=(entry.get("val") or {}).get("val_loss"),
                              best_tie_loss=best_loss):
                best_entry = entry
        scope = diagnostics.stages.get(stage.name)
        snapshot[stage.name] = {
            "index": stage.index,
            "planned_epochs": stage.epochs,
            "epochs_done": [entry["epoch"] for entry in entries],
            "losses": dict(stage.losses),
            "trainable": list(stage.trainable),
            "lr_scale": stage.lr_scale,
            "last_metrics": dict(evaluated[-1]["val"]) if evaluated else None,
            "best": {"epoch": best_entry["epoch"], **best_entry["metric"]} if best_entry else None,
            "diagnostics": scope.to_plain() if scope else None,
        }
    return snapshot


def build_report(
    *,
    status: str,
    message: str | None,
    config: Mapping[str, Any],
    stages: list[Stage],
    state: ReportState,
    diagnostics: RunDiagnostics,
    requested_metric: str,
    selected_metric: str,
    metric_reason: str,
    dataset: Mapping[str, Any],
    run: Mapping[str, Any],
    kernels: Mapping[str, Any] | None,
    artifacts: Mapping[str, Any],
    session_started: float,
    auxiliary_losses: list[str],
    epochs_planned: int | None = None,
    model_summary: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """The whole train_report.json content (plain values; NaN is turned into null by the JSON writer)."""
    session_s = time.time() - session_started
    best = state.best
    last_val = next((entry["val"] for entry in reversed(state.history) if entry.get("val")), None)
    return {
        "schema": REPORT_SCHEMA,
        "schema_version": REPORT_SCHEMA_VERSION,
        "status": status,  # running | finished | finished_with_warnings | paused | interrupted | stopped | failed
        "warnings": list(state.warnings),
        "message": message,
        "updated_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "selected_checkpoint_metric": selected_metric,
        "requested_checkpoint_metric": requested_metric,
        "checkpoint_metric_reason": metric_reason,
        "checkpoint_metric_tie_break": None if selected_metric.endswith("loss") else (
            TIE_BREAK_NOTE if (config.get("train") or {}).get("val_loss", True) else NO_TIE_BREAK_NOTE),
        "best_metric_value": best["value"] if best else None,
        "best_metric": best,
        "last_val_metrics": last_val,
        "epochs_done": len(state.history),
        "epochs_planned": epochs_planned if epochs_planned is not None else sum(stage.epochs for stage in stages),
        "dataset_mode": dataset.get("mode"),
        "dataset_backend": dataset.get("backend"),
        "dataset": dict(dataset),
        "stages": [stage.to_plain() for stage in stages],
        "evaluation_curves": dict(state.curves),  # the latest validation's (plots/pr_curves.png, confusion_matrix.png)
        "prediction_overlays": dict(state.previews) if state.previews else None,  # plots/val_predictions.png
        "early_stopping": {"patience": (config.get("train") or {}).get("patience"), "stops": list(state.early_stops)},
        "history": list(state.history),
        "loss_diagnostics": {
            "run": diagnostics.run.to_plain(),
            "per_stage": {name: scope.to_plain() for name, scope in diagnostics.stages.items()},
        },
        "stage_metrics": stage_snapshot(stages, state.history, diagnostics, selected_metric),
        "auxiliary_losses": auxiliary_losses,
        "init_from": dict(state.init_from) if state.init_from else None,
        "model": dict(model_summary) if model_summary else None,
        "kernels": dict(kernels) if kernels else None,
        "timing": {
            "train_seconds_total": round(state.elapsed_s + session_s, 3),
            "this_session_seconds": round(session_s, 3),
            "sessions": state.sessions,
            "epoch_seconds": [entry.get("seconds") for entry in state.history],
        },
        "run": {
            **dict(run),
            "python": platform.python_version(),
            "torch": torch.__version__,
            "platform": platform.platform(),
        },
        "artifacts": dict(artifacts),
        "config": dict(config),
    }
