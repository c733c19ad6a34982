"""Training curves of a run for notebooks: loss components and validation AP per epoch, one figure.

The series are the ones the train report's own plots use (apex_x.adapters.reports.plots).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from apex_x.adapters.reports.plots import draw_losses, draw_validation
from apex_x.domain.errors import UserError

REPORT_FILE = "train_report.json"


def read_train_report(run: str | Path) -> dict[str, Any]:
    """A run folder (or the report file itself) -> the parsed train_report.json."""
    path = Path(run)
    if path.is_dir():
        path = path / REPORT_FILE
    if not path.is_file():
        raise UserError(f"{path}: no train report here (expected {REPORT_FILE} in the run's train.output_dir)")
    try:
        report = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        raise UserError(f"{path}: cannot read the train report: {error}") from None
    if not isinstance(report, dict) or not isinstance(report.get("history"), list):
        raise UserError(f"{path}: not an Apex-X train report (no 'history' list of epochs)")
    return report


def plot_training_curves(run: str | Path) -> Any:
    """A matplotlib Figure (not attached to pyplot): losses per epoch on the left, val AP on the right."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    report = read_train_report(run)
    history = [entry for entry in report["history"] if isinstance(entry, Mapping) and "epoch" in entry]
    figure = Figure(figsize=(11, 4), layout="constrained")
    FigureCanvasAgg(figure)
    left, right = figure.subplots(1, 2)
    draw_losses(left, history, "loss components per epoch (training means; stages dotted)")
    draw_validation(right, history, "validation per epoch (AP; val loss dashed)")
    best = report.get("best_metric") or {}
    if isinstance(best, Mapping) and best.get("name"):
        value = best.get("value")
        shown = f"{value:.4f}" if isinstance(value, (int, float)) else "n/a"
        figure.suptitle(f"best {best.get('name')} = {shown} at epoch {best.get('epoch')}")
    return figure
