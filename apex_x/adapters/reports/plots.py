"""Training curves as PNG (matplotlib, no pyplot state): loss components and validation metrics per epoch."""

from __future__ import annotations

import io
import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from apex_x.adapters.checkpoints.torch_store import atomic_write

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


def _figure(series: Mapping[str, list[tuple[int, float]]], title: str, ylabel: str, empty: str) -> bytes:
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    figure = Figure(figsize=(7, 4))
    FigureCanvasAgg(figure)
    axis = figure.subplots()
    figure.subplots_adjust(left=0.1, right=0.97, top=0.9, bottom=0.13)
    for name, points in sorted(series.items()):
        epochs = [epoch for epoch, _ in points]
        values = [value for _, value in points]
        style = "--" if name.startswith("val") else "-"
        axis.plot(epochs, values, marker="o", linewidth=1.5, linestyle=style, label=name)
    axis.set_title(title)
    axis.set_xlabel("epoch")
    axis.set_ylabel(ylabel)
    axis.grid(alpha=0.3)
    if series:
        axis.legend(fontsize="small")
        axis.xaxis.get_major_locator().set_params(integer=True)
    else:
        axis.text(0.5, 0.5, empty, ha="center", va="center", transform=axis.transAxes)
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=100)
    return buffer.getvalue()


def write_plots(history: Sequence[Mapping[str, Any]], folder: Path) -> list[str]:
    """Writes plots/loss_components.png and plots/val_metrics.png; returns their paths."""
    written: list[str] = []
    for name, series, title, ylabel, empty in (
        (LOSS_PLOT, loss_series(history), "Loss per epoch: training means by component, val loss dashed", "loss", "no loss yet"),
        (METRICS_PLOT, metric_series(history), "Validation AP per epoch", "AP", "no validation metrics yet"),
    ):
        data = _figure(series, title, ylabel, empty)
        path = folder / name
        atomic_write(path, lambda handle, data=data: handle.write(data), what="plot")
        written.append(str(path))
    return written
