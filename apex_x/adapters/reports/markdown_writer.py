"""MarkdownReportWriter: train_report.md for people, with the PNG curves it links (plots/)."""

from __future__ import annotations

import math
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from apex_x.adapters.atomic_files import write_run_file
from apex_x.adapters.reports.evaluation_plots import CONFUSION_PLOT, PR_PLOT, write_evaluation_plots
from apex_x.adapters.reports.model_section import model_lines
from apex_x.adapters.reports.plots import LOSS_PLOT, METRICS_PLOT, validation_series, write_plots

REPORT_FILE = "train_report.md"
PLOTS_DIR = "plots"


def _fmt(value: Any, digits: int = 4) -> str:
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        return "nan" if math.isnan(value) else f"{value:.{digits}g}" if abs(value) < 1e-3 and value else f"{value:.{digits}f}"
    return str(value)


def _metric(value: Any) -> str:
    """A metric value: None is n/a (COCO has no ground truth for it; never shown as a number)."""
    return "n/a" if value is None else _fmt(value)


def _relative(path: str | None, base: Path) -> str:
    if not path:
        return "-"
    try:
        return f"[{Path(path).name}]({Path(path).resolve().relative_to(base.resolve()).as_posix()})"
    except ValueError:
        return f"`{path}`"


def _history_table(history: list[Mapping[str, Any]], metric: str) -> list[str]:
    components = sorted({name for entry in history for name in (entry.get("train") or {}) if name != "total_loss"})
    header = ["epoch", "stage", "steps", "loss", *components, "grad max", "skipped", "lr", metric, "best", "s"]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for entry in history:
        train = entry.get("train") or {}
        diagnostics = entry.get("diagnostics") or {}
        row = [
            str(entry.get("epoch")), str(entry.get("stage")), str(entry.get("steps")), _fmt(train.get("total_loss")),
            *(_fmt(train.get(name)) for name in components),
            _fmt(diagnostics.get("grad_norm_max"), 3),
            str(diagnostics.get("skipped_steps", 0) + diagnostics.get("oom_skipped_steps", 0)),
            _fmt(entry.get("lr"), 3), _metric((entry.get("metric") or {}).get("value")),
            "**yes**" if entry.get("is_best") else "", _fmt(entry.get("seconds"), 3),
        ]
        lines.append("| " + " | ".join(row) + " |")
    return lines


def _diagnostics_table(report: Mapping[str, Any]) -> list[str]:
    diagnostics = report.get("loss_diagnostics") or {}
    rows = [("run", diagnostics.get("run") or {})] + list((diagnostics.get("per_stage") or {}).items())
    header = ["scope", "steps", "applied", "grad last", "grad max", "NaN loss", "Inf loss", "NaN grad", "Inf grad",
              "skipped", "OOM skipped", "bad components", "clipped steps", "zero-grad steps", "images skipped"]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for name, values in rows:
        bad = ", ".join(f"{key}: {count}" for key, count in (values.get("bad_components") or {}).items()) or "-"
        clipped = ", ".join(f"{key}: {count}" for key, count in (values.get("clipped_steps") or {}).items()) or "-"
        cells = [name, values.get("steps"), values.get("applied_steps"), _fmt(values.get("grad_norm_last"), 3),
                 _fmt(values.get("grad_norm_max"), 3), values.get("nan_loss"), values.get("inf_loss"),
                 values.get("nan_grad"), values.get("inf_grad"), values.get("skipped_steps"),
                 values.get("oom_skipped_steps"), bad, clipped, values.get("zero_grad_steps", 0),
                 values.get("bad_images_skipped", 0)]
        lines.append("| " + " | ".join(_fmt(cell) if not isinstance(cell, str) else cell for cell in cells) + " |")
    return lines


def _stage_table(report: Mapping[str, Any]) -> list[str]:
    header = ["stage", "epochs", "losses", "trainable", "lr scale", "best in stage", "last metrics"]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    frozen = {stage.get("name"): stage.get("frozen") for stage in report.get("stages") or [] if isinstance(stage, dict)}
    for name, values in (report.get("stage_metrics") or {}).items():
        best = values.get("best") or {}
        last = values.get("last_metrics") or {}
        shown = ", ".join(f"{key} {_metric(last[key])}" for key in ("segm_AP", "bbox_AP", "val_loss") if key in last)
        cells = [
            name, f"{len(values.get('epochs_done') or [])}/{values.get('planned_epochs')}",
            ", ".join(f"{key}={weight}" for key, weight in (values.get("losses") or {}).items()),
            ", ".join(values.get("trainable") or [])
            + (f" (frozen: {', '.join(frozen[name])})" if frozen.get(name) else ""), _fmt(values.get("lr_scale")),
            f"{best.get('name')} {_fmt(best.get('value'))} (epoch {best.get('epoch')})" if best else "-",
            shown or "-",
        ]
        lines.append("| " + " | ".join(cells) + " |")
    return lines


def _compile_note(compile_model: Any) -> str:
    """', network compiled' / ', network eager (reason)' when runtime.compile_model was asked for; '' otherwise."""
    if not isinstance(compile_model, Mapping) or not compile_model.get("requested"):
        return ""
    return ", network compiled" if compile_model.get("active") else f", network eager ({compile_model.get('reason')})"


def render_markdown(report: Mapping[str, Any], folder: Path) -> str:
    best = report.get("best_metric") or {}
    run = report.get("run") or {}
    dataset = report.get("dataset") or {}
    artifacts = report.get("artifacts") or {}
    kernels = report.get("kernels") or {}
    config = report.get("config") or {}
    lines = [
        "# Apex-X training report",
        "",
        f"- **status**: {report.get('status')}" + (f" ({report['message']})" if report.get("message") else ""),
        f"- **checkpoint metric**: {report.get('selected_checkpoint_metric')} (requested "
        f"{report.get('requested_checkpoint_metric')}: {report.get('checkpoint_metric_reason')})",
        _best_line(best, report),
        f"- **epochs**: {report.get('epochs_done')} of {report.get('epochs_planned')}; "
        f"training time {_fmt((report.get('timing') or {}).get('train_seconds_total'), 1)} s",
        f"- **model**: profile {(config.get('model') or {}).get('profile')}, "
        f"input {(config.get('model') or {}).get('input_height')}x{(config.get('model') or {}).get('input_width')}",
        f"- **dataset**: mode **{report.get('dataset_mode')}**, backend {report.get('dataset_backend')}, "
        f"fingerprint `{str(dataset.get('fingerprint'))[:12]}`",
        f"- **device**: {run.get('device')}, world size {run.get('world_size')}, amp {run.get('amp')}, "
        f"kernels {kernels.get('backend', '-')}{_compile_note(run.get('compile_model'))}, seed {run.get('seed')}",
        f"- **files**: best {_relative(artifacts.get('best_checkpoint'), folder)}, "
        f"last {_relative(artifacts.get('last_checkpoint'), folder)}, "
        f"weights {_relative(artifacts.get('weights'), folder)}, [config.json](config.json), "
        "[train_report.json](train_report.json)",
    ]
    dropped = {name: split for name, split in (dataset.get("splits") or {}).items()
               if isinstance(split, dict) and split.get("instances_dropped")}
    if dropped:
        lines.append(f"- **instances dropped** (data.max_instances={dataset.get('max_instances')}): " + ", ".join(
            f"{name} {split['instances_dropped']} in {split.get('images_over_max_instances')} image(s)"
            for name, split in dropped.items()))
    for stop in (report.get("early_stopping") or {}).get("stops") or []:
        lines.append(f"- **early stop**: {stop.get('message')}")
    if report.get("auxiliary_losses"):
        lines.append(f"- **auxiliary losses**: {', '.join(report['auxiliary_losses'])}")
    lines += model_lines(report)
    lines += extra_train_lines(dataset)
    if report.get("warnings"):
        lines += ["", "## Warnings: the run could not (fully) learn", ""]
        lines += [f"- **{item.get('kind')}**" + (f" (epoch {item['epoch']})" if item.get("epoch") is not None else "")
                  + f": {item.get('message')}" for item in report["warnings"]]
    lines += [
        "",
        "## Curves",
        "",
        f"![loss components per epoch]({PLOTS_DIR}/{LOSS_PLOT})",
        "",
        f"![validation AP and val loss per epoch]({PLOTS_DIR}/{METRICS_PLOT})",
        "",
        *_evaluation_plot_lines(report),
        *_validation_note(list(report.get("history") or [])),
        "## History",
        "",
        *_history_table(list(report.get("history") or []), str(report.get("selected_checkpoint_metric"))),
        "",
        "## Stages",
        "",
        *_stage_table(report),
        "",
        "## Loss diagnostics",
        "",
        *_diagnostics_table(report),
    ]
    last_eval = next((entry.get("evaluation") for entry in reversed(report.get("history") or []) if entry.get("evaluation")), None)
    per_class = (last_eval or {}).get("per_class") or {}
    if per_class:
        lines += ["", "## Per-class AP (last validation; n/a = no ground truth of that class)", "",
                  *per_class_table(per_class)]
    return "\n".join(lines) + "\n"


def extra_train_lines(dataset: Mapping[str, Any]) -> list[str]:
    """The train datasets of a run with data.extra_train: each extra one, its files and its class mapping."""
    extra = list(dataset.get("extra_train") or [])
    if not extra:
        return []
    lines = ["", "## Train datasets (data.extra_train; classes matched by name to the main dataset's)", "",
             "| dataset | format | files | images | classes (its id name -> class index name) |", "|---|---|---|---|---|"]
    for entry in extra:
        files = ", ".join(f"{key}=`{value}`" for key, value in (entry.get("config") or {}).items())
        classes = "; ".join(f"{item['id']} {item['name']!r} -> {item['class_index']} {item['class_name']!r}"
                            for item in entry.get("classes") or []) or "-"
        lines.append(f"| {entry.get('dataset')} | {entry.get('format')} | {files} | {_fmt(entry.get('images'))} | "
                     f"{classes} |")
    return lines


def _evaluation_plot_lines(report: Mapping[str, Any]) -> list[str]:
    """Links to the latest validation's prediction overlays, PR curves and confusion matrix (when it had them)."""
    curves = report.get("evaluation_curves") or {}
    lines = []
    overlays = report.get("prediction_overlays") or {}
    if overlays.get("file"):
        lines += [f"Val predictions of the validation after epoch {overlays.get('epoch')} (ground truth left, "
                  f"predictions with score >= {overlays.get('score_threshold')} right):", "",
                  f"![val predictions after epoch {overlays.get('epoch')}]({overlays['file']})", ""]
    if curves.get("pr_curves"):
        lines += [f"![precision-recall per class, latest validation]({PLOTS_DIR}/{PR_PLOT})", ""]
    if curves.get("confusion"):
        lines += [f"![confusion matrix with background, latest validation]({PLOTS_DIR}/{CONFUSION_PLOT})", ""]
    return lines


def _validation_note(history: list[Mapping[str, Any]]) -> list[str]:
    """Under the validation plot: AP that is n/a (no ground truth) is said, with the val loss it shows instead."""
    _, losses, note = validation_series(history)
    if not note:
        return []
    shown = f"; val loss shown (last {_fmt(losses[-1][1])} at epoch {losses[-1][0]})" if losses else ""
    return [f"_{note}{shown}._", ""]


def per_class_table(per_class: Mapping[str, Mapping[str, Any]]) -> list[str]:
    """Markdown rows keyed by category id, the name beside it; n/a where the class has no ground truth."""
    columns = sorted({key for values in per_class.values() for key in values if key != "name"})
    lines = ["| id | class | " + " | ".join(columns) + " |", "|---|---|" + "---|" * len(columns)]
    for key, values in per_class.items():
        lines.append(f"| {key} | {values.get('name', '-')} | " + " | ".join(_metric(values.get(column)) for column in columns) + " |")
    return lines


def _best_line(best: Mapping[str, Any], report: Mapping[str, Any]) -> str:
    if not best:
        return "- **best**: none yet"
    line = f"- **best**: {best.get('name')} {_metric(best.get('value'))} at epoch {best.get('epoch')}"
    if best.get("chosen_by") == "val_loss tie-break":
        line += f" (a tie on {best.get('name')}, broken by the lower val_loss {_fmt(best.get('val_loss'))})"
    note = report.get("checkpoint_metric_tie_break")
    return line + (f"; {note}" if note else "")


class MarkdownReportWriter:
    """ReportWriter adapter: train_report.md plus plots/loss_components.png and plots/val_metrics.png."""

    def __init__(self) -> None:
        self._plotted: dict[str, Any] = {}  # folder -> the history the plots there show
        self._curves: dict[str, list[str]] = {}  # folder -> the evaluation plots written there

    def write(self, report: Mapping[str, Any], output_dir: str) -> list[str]:
        folder = Path(output_dir)
        history = list(report.get("history") or [])
        plots = [folder / PLOTS_DIR / LOSS_PLOT, folder / PLOTS_DIR / METRICS_PLOT]
        key = repr([(entry.get("epoch"), entry.get("train"), entry.get("val")) for entry in history])
        curves = dict(report.get("evaluation_curves") or {})
        if self._plotted.get(str(folder)) != key or not all(path.exists() for path in plots):
            write_plots(history, folder / PLOTS_DIR)
            written_curves = write_evaluation_plots(curves, folder / PLOTS_DIR)
            self._plotted[str(folder)] = key
            self._curves[str(folder)] = written_curves
        written = [str(path) for path in plots] + self._curves.get(str(folder), [])
        text = render_markdown(report, folder)
        path = folder / REPORT_FILE
        write_run_file(path, lambda handle: handle.write(text.encode("utf-8")), what="report")
        return [str(path), *written]
