"""Plots of an evaluation's curves (adapters/evaluation/curves.py): per-class precision-recall curves and the
normalised confusion matrix with background; matplotlib without pyplot state, written atomically."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from apex_x.adapters.atomic_files import write_run_file

PR_PLOT = "pr_curves.png"
CONFUSION_PLOT = "confusion_matrix.png"
MAX_PR_CLASSES = 20  # beyond this the legend lists the 20 best APs; the mean curve is always drawn


def _figure(width: float, height: float) -> tuple[Any, Any]:
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    figure = Figure(figsize=(width, height), layout="constrained")
    FigureCanvasAgg(figure)
    return figure, figure.subplots()


def draw_pr_curves(axis: Any, curves: Mapping[str, Any]) -> None:
    """Precision vs recall at IoU 0.5 per class (thin), and their mean (thick); AP50 in the legend."""
    recall = curves["recall"]
    per_class = sorted(curves["per_class"].values(), key=lambda item: -sum(item["precision_50"]))
    for item in per_class[:MAX_PR_CLASSES]:
        ap50 = sum(item["precision_50"]) / len(item["precision_50"])
        axis.plot(recall, item["precision_50"], linewidth=1, label=f"{item['name']} {ap50:.3f}")
    if per_class:
        mean = [sum(values) / len(per_class) for values in zip(*(item["precision_50"] for item in per_class),
                                                                  strict=True)]
        axis.plot(recall, mean, linewidth=3, color="black", label=f"all classes {sum(mean) / len(mean):.3f}")
    axis.set_xlim(0, 1)
    axis.set_ylim(0, 1.02)
    axis.set_xlabel("recall")
    axis.set_ylabel("precision")
    axis.grid(alpha=0.3)
    axis.set_title(f"Precision-recall ({curves['iou_type']} masks, IoU 0.5; legend: AP50)", fontsize="medium")
    if per_class:
        axis.legend(fontsize="x-small", loc="center left", bbox_to_anchor=(1.01, 0.5))  # beside the curves
    else:
        axis.text(0.5, 0.5, "no class with ground truth", ha="center", va="center", transform=axis.transAxes)


def draw_confusion(axis: Any, confusion: Mapping[str, Any]) -> None:
    """Row-normalised matrix (true class rows, predicted columns, background last), shares printed in the cells
    when there are at most 30 classes."""
    matrix = confusion["normalised"]
    labels = confusion["labels"]
    image = axis.imshow(matrix, cmap="Blues", vmin=0.0, vmax=1.0)
    axis.figure.colorbar(image, ax=axis, fraction=0.046, pad=0.04)
    ticks = range(len(labels))
    # The background row holds detections that matched no object, its column objects no detection found: say so.
    axis.set_xticks(list(ticks), labels=[*labels[:-1], f"{labels[-1]} (missed)"], rotation=90, fontsize="x-small")
    totals = [sum(row) for row in confusion["counts"]]  # a sparse row looks as solid as a full one: say n
    rows = [*labels[:-1], f"{labels[-1]}: false detections"]
    axis.set_yticks(list(ticks), labels=[f"{label} (n={total})" for label, total in zip(rows, totals, strict=True)],
                    fontsize="x-small")
    axis.set_xlabel("predicted")
    axis.set_ylabel("true")
    if len(labels) <= 31:
        size = "small" if len(labels) <= 11 else "xx-small"  # a few classes: cells big enough for readable shares
        for row, values in enumerate(matrix):
            for column, value in enumerate(values):
                if value >= 0.005:
                    axis.text(column, row, f"{value:.2f}", ha="center", va="center", fontsize=size,
                              color="white" if value > 0.5 else "black")
    axis.set_title(f"Confusion, rows normalised\n(mask IoU >= {confusion['iou']}, score >= "
                   f"{confusion['score_threshold']})", fontsize="medium")  # two lines: fits a small matrix


def write_evaluation_plots(curves: Mapping[str, Any], folder: Path, prefix: str = "") -> list[str]:
    """FOLDER/<prefix>pr_curves.png and <prefix>confusion_matrix.png of an evaluation's curves (those it has)."""
    import io

    written = []
    size = len((curves.get("confusion") or {}).get("labels") or [])
    for name, key, draw, shape in ((PR_PLOT, "pr_curves", draw_pr_curves, (7.0, 5.0)),
                                   (CONFUSION_PLOT, "confusion", draw_confusion,
                                    (max(6.5, 0.35 * size + 4.5), max(5.0, 0.35 * size + 3.0)))):
        if not curves.get(key):
            continue
        figure, axis = _figure(*shape)
        draw(axis, curves[key])
        buffer = io.BytesIO()
        figure.savefig(buffer, format="png", dpi=100)
        data = buffer.getvalue()
        path = folder / f"{prefix}{name}"
        write_run_file(path, lambda handle, data=data: handle.write(data), what="plot")
        written.append(str(path))
    return written
