"""Evaluate use case: COCO bbox/segm metrics of a checkpoint's model on the config's val split."""

from __future__ import annotations

import math
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import structlog

from apex_x import kernels as loss_kernels
from apex_x.application.dataset_policy import how_to_set
from apex_x.application.engine.distributed import DistContext
from apex_x.application.engine.previews import (
    EVAL_PREVIEW_FILE,
    choose_preview_ids,
    preview_record,
    preview_title,
)
from apex_x.application.engine.run_support import amp_dtype
from apex_x.application.engine.schedules import evaluation_loss_settings
from apex_x.application.engine.validation import validate
from apex_x.application.inference import InferenceModel
from apex_x.domain.class_lists import categories_from_coco, require_same_classes
from apex_x.domain.errors import ApexError, DatasetError
from apex_x.domain.ports import DatasetFormat, DatasetSource, Evaluator, PreviewRenderer
from apex_x.domain.types import EvalResult, PreviewSample

log = structlog.get_logger(__name__)

EVAL_REPORT_SCHEMA = "apex-x-eval-report/1"
HEADLINE_METRICS = (
    "bbox_AP", "bbox_AP50", "bbox_AP75", "bbox_APs", "bbox_APm", "bbox_APl",
    "segm_AP", "segm_AP50", "segm_AP75", "segm_APs", "segm_APm", "segm_APl",
)  # fmt: skip


@dataclass
class EvalReport:
    """An evaluation and its context: which checkpoint, which data, what the trainer recorded."""

    result: EvalResult
    model: dict[str, Any]
    dataset: dict[str, Any]
    seconds: float
    recorded_best: dict[str, Any] | None = None
    extra: dict[str, Any] = field(default_factory=dict)
    previews: list[PreviewSample] = field(default_factory=list)  # val images to draw (train.val_preview_images)
    previewer: PreviewRenderer | None = None

    def write_previews(self, folder: str) -> list[str]:
        """eval_val_predictions.png in `folder` (beside eval_report.json), when there are images to draw."""
        if not self.previews or self.previewer is None:
            return []
        panels = self.previewer.panels(self.previews, self.model.get("classes") or [])
        return [self.previewer.write_grid(panels, str(Path(folder) / EVAL_PREVIEW_FILE),
                                          preview_title(f"checkpoint {self.model.get('checkpoint')}"))]

    def metric(self, name: str) -> float | None:
        """The metric's value; None when it is n/a (no ground truth for it), NaN when it was not computed."""
        value = self.result.metrics.get(name, math.nan)
        return None if value is None else float(value)

    def to_plain(self) -> dict[str, Any]:
        best = self.recorded_best
        reproduced = None
        if best and isinstance(best.get("name"), str) and best["name"] in self.result.metrics:
            reproduced = {
                "name": best["name"],
                "recorded": best.get("value"),
                "evaluated": self.result.metrics[best["name"]],
                "epoch": best.get("epoch"),
            }
        return {
            "schema": EVAL_REPORT_SCHEMA,
            "model": self.model,
            "dataset": self.dataset,
            **self.result.to_plain(),
            "recorded_best": best,
            "best_metric_check": reproduced,
            "seconds": round(self.seconds, 3),
            **self.extra,
        }


class EvaluateCheckpoint:
    """Runs the model over the val split exactly as the trainer's validation does, and scores it with COCOeval."""

    def __init__(self, model: InferenceModel, dataset: DatasetSource, evaluator: Evaluator, *, batch_size: int,
                 dataset_format: DatasetFormat, on_bad_image: str = "error", preview_images: int = 0, seed: int = 0,
                 previewer: PreviewRenderer | None = None, kernels: str = "auto") -> None:
        self.dataset_format = dataset_format  # names the data.* keys in messages
        self.on_bad_image = on_bad_image  # data.on_bad_image: error refuses an undecodable val image, skip counts it
        self.model = model
        self.dataset = dataset
        self.evaluator = evaluator
        self.batch_size = max(1, batch_size)
        self.preview_images, self.seed = preview_images, seed  # train.val_preview_images, train.seed
        self.kernels = kernels  # runtime.kernels of the eval config (APEX_X_KERNELS wins), as training applies it
        self.previewer = previewer  # draws eval_val_predictions.png (EvalReport.write_previews)

    def execute(self) -> EvalReport:
        started = time.perf_counter()
        loss_kernels.set_backend_preference(self.kernels)
        ground_truth = self.dataset.val_ground_truth() if self.dataset.has_val() else None
        if ground_truth is None:
            raise DatasetError(
                f"the config has no val split to evaluate on: {how_to_set(self.dataset_format, 'val')}"
            )
        self._check_categories(ground_truth)  # before any inference
        loader = self.dataset.val_loader(self.batch_size)
        if loader is None:
            raise DatasetError(
                f"the config has no val split to evaluate on: {how_to_set(self.dataset_format, 'val')}"
            )
        device = self.model.device
        validation = validate(  # the trainer's own validation: same weights, batches, autocast and scoring
            model=self.model.network,
            loader=loader,
            ground_truth=ground_truth,
            evaluator=self.evaluator.with_limit(self.model.config.model.max_detections),  # the model's own limit
            categories=self.model.categories,
            settings=evaluation_loss_settings(self.model.config.train),
            context=DistContext(device=device),
            amp_dtype=amp_dtype(self.model.config.train.amp, device),
            with_loss=self.model.config.train.val_loss,
            preview_ids=choose_preview_ids(ground_truth, self.preview_images, self.seed),
        )
        if validation.error or validation.evaluation is None:
            raise ApexError(f"evaluation of {self.model.checkpoint_path} failed: {validation.error}")
        bad = validation.bad_images
        if bad and self.on_bad_image == "error":
            first = bad[0]
            raise DatasetError(
                f"val image {first['image_id']} ({first['file']}) failed to decode: {first['reason']}"
                + (f" (and {len(bad) - 1} more)" if len(bad) > 1 else "")
                + "; fix the file, or evaluate without it with --set data.on_bad_image=skip"
            )
        evaluation = validation.evaluation
        result = EvalResult(
            metrics={key: None if value is None else float(value) for key, value in validation.metrics.items()},
            per_class={key: dict(values) for key, values in evaluation.get("per_class", {}).items()},
            num_images=int(evaluation.get("num_images", validation.num_images)),
            num_detections=int(evaluation.get("num_detections", 0)),
            curves=dict(evaluation.get("curves") or {}),
            max_detections=int(evaluation.get("max_detections", 100)),
            over_limit=evaluation.get("over_limit"),
        )
        seconds = time.perf_counter() - started
        log.info("eval_done", images=result.num_images, detections=result.num_detections, seconds=round(seconds, 2))
        extra: dict[str, Any] = {}
        if bad:
            extra["skipped_images"] = [{"image_id": item["image_id"], "file": item["file"]} for item in bad]
        if validation.previews and self.previewer is not None:
            extra["prediction_overlays"] = preview_record(EVAL_PREVIEW_FILE, None, validation.previews)
        return EvalReport(
            result=result,
            model=self.model.describe(),
            dataset=_plain(self.dataset.describe()),
            seconds=seconds,
            recorded_best=self.model.best,
            extra=extra,
            previews=list(validation.previews) if self.previewer is not None else [],
            previewer=self.previewer,
        )

    def _check_categories(self, ground_truth: Mapping[str, Any]) -> None:
        """The checkpoint's class list (ids and names) against the val file's own categories (not the train
        file's): any difference is refused, listing both sides."""
        val_file = (self.dataset.describe().get("splits") or {}).get("val", {}).get("annotations_file") or "(val split)"
        require_same_classes(
            self.model.categories, categories_from_coco(ground_truth.get("categories")),
            checkpoint=str(self.model.checkpoint_path), data_kind="val file", data_name=str(val_file), action="evaluate",
        )
        if tuple(self.dataset.categories.original_ids) != tuple(self.model.categories.original_ids):
            raise DatasetError(
                f"the config's train categories {list(self.dataset.categories.names)} differ from the checkpoint's "
                f"{list(self.model.categories.names)} ({self.model.checkpoint_path}): the val labels would be mapped "
                f"to other training ids; point {' / '.join(self.dataset_format.split_keys('train'))} at the data "
                "the model was trained on"
            )


def eval_markdown(report: EvalReport) -> str:
    """The report for people: headline metrics, the trainer's recorded best, and a per-class table."""
    plain = report.to_plain()
    lines = ["# Apex-X evaluation", ""]
    model = report.model
    lines += [
        f"- checkpoint: `{model.get('checkpoint')}` ({model.get('profile')}, {model.get('weights')} weights, "
        f"input {'x'.join(str(v) for v in model.get('input_size', []))}, device {model.get('device')})",
        *([f"- {model['network_line']}"] if model.get("network_line") else []),
        f"- images: {report.result.num_images}, detections: {report.result.num_detections}, "
        f"time: {report.seconds:.1f} s",
    ]
    if "val_loss" in report.result.metrics:
        lines.append(f"- val loss (all components at weight 1, as in training's validation): {_fmt(report.result.metrics['val_loss'])}")
    check = plain["best_metric_check"]
    if check:
        lines.append(
            f"- trainer's best {check['name']} (epoch {check['epoch']}): {_fmt(check['recorded'])}; "
            f"evaluated now: {_fmt(check['evaluated'])}"
        )
    metrics = report.result.metrics
    lines += ["", "## Metrics (n/a: no ground truth of that kind or size in the val split)", "",
              "| metric | bbox | segm |", "|---|---|---|"]
    for suffix in ("AP", "AP50", "AP75", "APs", "APm", "APl"):
        if f"bbox_{suffix}" in metrics or f"segm_{suffix}" in metrics:
            lines.append(f"| {suffix} | {_fmt(metrics.get(f'bbox_{suffix}', math.nan))} | "
                         f"{_fmt(metrics.get(f'segm_{suffix}', math.nan))} |")
    if report.result.per_class:
        columns = sorted({key for values in report.result.per_class.values() for key in values if key != "name"})
        lines += ["", "## Per class (by category id)", "", "| id | class | " + " | ".join(columns) + " |"]
        lines.append("|---|---|" + "---|" * len(columns))
        for key, values in report.result.per_class.items():
            lines.append(f"| {key} | {values.get('name', '-')} | "
                         + " | ".join(_fmt(values.get(column)) for column in columns) + " |")
    curves = report.result.curves
    if curves.get("pr_curves") or curves.get("confusion"):
        lines += ["", "## Plots (beside the JSON report)", ""]
        if curves.get("pr_curves"):
            lines += ["![precision-recall per class](eval_pr_curves.png)", ""]
        if curves.get("confusion"):
            lines += ["![confusion matrix with background](eval_confusion_matrix.png)", ""]
    if report.extra.get("prediction_overlays"):
        lines += ["", f"Val predictions (ground truth left, predictions with score >= "
                  f"{report.extra['prediction_overlays']['score_threshold']} right):", "",
                  f"![val predictions]({EVAL_PREVIEW_FILE})", ""]
    return "\n".join(lines) + "\n"


def eval_table(report: EvalReport) -> str:
    """A compact plain-text table for the terminal."""
    metrics = report.result.metrics
    rows = [("metric", "bbox", "segm")]
    for suffix in ("AP", "AP50", "AP75", "APs", "APm", "APl"):
        rows.append((suffix, _fmt(metrics.get(f"bbox_{suffix}", math.nan)), _fmt(metrics.get(f"segm_{suffix}", math.nan))))
    if report.result.per_class:
        rows.append(("", "", ""))
        rows.append(("class (id)", "bbox_AP", "segm_AP"))
        for key, values in report.result.per_class.items():
            rows.append((f"{values.get('name', '-')} ({key})", _fmt(values.get("bbox_AP")), _fmt(values.get("segm_AP"))))
    widths = [max(len(row[column]) for row in rows) for column in range(3)]
    return "\n".join("  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip() for row in rows)


def _fmt(value: Any) -> str:
    """4 decimals; None (no ground truth of that size or class: COCO's -1) shows as n/a, never as a number."""
    if value is None:
        return "n/a"
    number = float(value)
    if math.isnan(number):
        return "-"
    return "n/a" if number < 0 else f"{number:.4f}"


def format_metric(value: Any) -> str:
    """How the console and reports show a metric value (n/a for None)."""
    return _fmt(value)


def _plain(value: Any) -> Any:
    if isinstance(value, Mapping):
        return {str(key): _plain(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(item) for item in value]
    if isinstance(value, (str, int, float, bool)) or value is None:
        return value
    return str(value)
