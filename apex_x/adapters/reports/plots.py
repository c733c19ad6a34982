"""Training curves as PNG (matplotlib, no pyplot state): loss components and validation metrics per epoch."""

from __future__ import annotations

import io
import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from apex_x.adapters.atomic_files import write_run_file

LOSS_PLOT = "loss_components.png"
METRICS_PLOT = "val_metrics.png"
_METRIC_NAMES = ("segm_AP", "bbox_AP", "segm_AP50", "bbox_AP50")


def _finite(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def loss_series(history: Sequence[Mapping[str, Any]]) -> dict[str, list[tuple[int, float]]]:
    """name -> [(epoch, mean)] for the total training loss and each component."""
    series: dict[str, list[tuple[int, float]]] = {}
    for entry in history:
        for name, value in (entry.get("train") or {}).items():
            if _finite(value):
                series.setdefault(name, []).append((int(entry["epoch"]), float(value)))
        val_loss = (entry.get("val") or {}).get("val_loss")
        if _finite(val_loss):
            series.setdefault("val_loss", []).append((int(entry["epoch"]), float(val_loss)))
    return series


def metric_series(history: Sequence[Mapping[str, Any]]) -> dict[str, list[tuple[int, float]]]:
    """AP metrics per evaluated epoch."""
    series: dict[str, list[tuple[int, float]]] = {}
    for entry in history:
        for name in _METRIC_NAMES:
            value = (entry.get("val") or {}).get(name)
            if _finite(value):
                series.setdefault(name, []).append((int(entry["epoch"]), float(value)))
    return series


def validation_series(history: Sequence[Mapping[str, Any]]) -> tuple[
        dict[str, list[tuple[int, float]]], list[tuple[int, float]], str | None]:
    """(AP series, val_loss per validated epoch, a note when AP is n/a at validated epochs or None).

    A validation without ground truth for COCO (pycocotools' -1, stored as null) still has its val loss:
    the plot shows that and says AP is n/a, rather than "no validation metrics"."""
    ap = metric_series(history)
    losses: list[tuple[int, float]] = []
    missing: list[int] = []
    for entry in history:
        val = entry.get("val") or {}
        if not val:
            continue
        if _finite(val.get("val_loss")):
            losses.append((int(entry["epoch"]), float(val["val_loss"])))
        if not any(_finite(val.get(name)) for name in _METRIC_NAMES):
            missing.append(int(entry["epoch"]))
    note = None
    if missing:
        where = "" if not ap else f" at epoch(s) {', '.join(str(epoch) for epoch in missing[:8])}"
        note = f"AP n/a{where}: no ground truth in the val split (COCO's -1 is not a score)"
    return ap, losses, note


def draw_validation(axis: Any, history: Sequence[Mapping[str, Any]], title: str) -> None:
    """Validation AP (left axis) and val loss (right axis, dashed) per epoch on a matplotlib axis; AP that is
    n/a is said in the title and on the plot; "no validation metrics yet" only when no validation ran."""
    ap, losses, note = validation_series(history)
    lines = []
    for name, points in sorted(ap.items()):
        lines += axis.plot([epoch for epoch, _ in points], [value for _, value in points], marker="o",
                           linewidth=1.5, label=name)
    axis.set_xlabel("epoch")
    axis.set_ylabel("AP" if ap else "AP (n/a)")
    axis.grid(alpha=0.3)
    mark_stages(axis, history)
    if losses:
        loss_axis = axis.twinx() if ap else axis
        lines += loss_axis.plot([epoch for epoch, _ in losses], [value for _, value in losses], marker="s",
                                linewidth=1.5, linestyle="--", color="tab:gray", label="val_loss")
        loss_axis.set_ylabel("val loss")
        loss_axis.ticklabel_format(axis="y", useOffset=False)
    axis.set_title(title + (f"\n{note}" if note else ""), fontsize="medium")
    if ap:
        axis.set_ylim(bottom=0.0)  # AP from 0: a rise from 0.01 to 0.02 does not look like a leap
    if lines:  # below the axes: over them it would hide the first points of two scales
        axis.legend(lines, [line.get_label() for line in lines], fontsize="small", loc="upper center",
                    bbox_to_anchor=(0.5, -0.16), ncol=min(5, len(lines)), frameon=False)
        axis.xaxis.get_major_locator().set_params(integer=True)
    else:
        axis.text(0.5, 0.5, note or "no validation metrics yet", ha="center", va="center", transform=axis.transAxes)


def _new_figure() -> tuple[Any, Any]:
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    figure = Figure(figsize=(7, 4))
    FigureCanvasAgg(figure)
    axis = figure.subplots()
    figure.subplots_adjust(left=0.1, right=0.9, top=0.86, bottom=0.13)
    return figure, axis


def _png(figure: Any) -> bytes:
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=100)
    return buffer.getvalue()


def stage_starts(history: Sequence[Mapping[str, Any]]) -> list[tuple[int, str]]:
    """(epoch, stage name) of each stage change after the first epoch: where the curriculum switches."""
    starts: list[tuple[int, str]] = []
    for previous, entry in zip(history, history[1:], strict=False):
        if entry.get("stage") != previous.get("stage"):
            starts.append((int(entry["epoch"]), str(entry.get("stage"))))
    return starts


def mark_stages(axis: Any, history: Sequence[Mapping[str, Any]]) -> None:
    """A dotted line between the epochs where the stage changes, labelled with the new stage's name."""
    for epoch, name in stage_starts(history):
        axis.axvline(epoch - 0.5, color="tab:purple", linestyle=":", linewidth=1.2)
        axis.text(epoch - 0.5, 0.98, f" {name}", transform=axis.get_xaxis_transform(), va="top", ha="left",
                  fontsize="x-small", color="tab:purple")


def draw_losses(axis: Any, history: Sequence[Mapping[str, Any]], title: str) -> None:
    """Loss components per epoch; stage changes marked; a component that starts after the first epoch (a stage
    switching it on: a step up of the total, not divergence) is labelled "<name> on" at its first point."""
    series = loss_series(history)
    first_epoch = int(history[0]["epoch"]) if history else 0
    for name, points in sorted(series.items()):
        epochs = [epoch for epoch, _ in points]
        values = [value for _, value in points]
        style = "--" if name.startswith("val") else "-"
        axis.plot(epochs, values, marker="o", linewidth=1.5, linestyle=style, label=name)
        if epochs[0] > first_epoch and not name.startswith("val"):
            axis.annotate(f"{name} on", (epochs[0], values[0]), textcoords="offset points", xytext=(4, 6),
                          fontsize="x-small")
    mark_stages(axis, history)
    axis.set_title(title)
    axis.set_xlabel("epoch")
    axis.set_ylabel("loss")
    axis.grid(alpha=0.3)
    if series:
        axis.legend(fontsize="small")
        axis.xaxis.get_major_locator().set_params(integer=True)
        if len(history) == 1:  # one epoch: a readable axis around the single point, not a bare dot
            axis.set_xlim(first_epoch - 1, first_epoch + 1)
    else:
        axis.text(0.5, 0.5, "no loss yet", ha="center", va="center", transform=axis.transAxes)


def _loss_figure(history: Sequence[Mapping[str, Any]], title: str) -> bytes:
    figure, axis = _new_figure()
    draw_losses(axis, history, title)
    return _png(figure)


def _validation_figure(history: Sequence[Mapping[str, Any]]) -> bytes:
    figure, axis = _new_figure()
    figure.subplots_adjust(bottom=0.25)  # room for the legend under the axes
    draw_validation(axis, history, "Validation per epoch: AP, val loss dashed")
    return _png(figure)


def write_plots(history: Sequence[Mapping[str, Any]], folder: Path) -> list[str]:
    """Writes plots/loss_components.png and plots/val_metrics.png; returns their paths."""
    written: list[str] = []
    for name, data in (
        (LOSS_PLOT, _loss_figure(history, "Loss per epoch: training means by component, val loss dashed; "
                                          "stages dotted")),
        (METRICS_PLOT, _validation_figure(history)),
    ):
        path = folder / name
        write_run_file(path, lambda handle, data=data: handle.write(data), what="plot")
        written.append(str(path))
    return written
