"""Issue 13, kinds 3 and 4: pycocotools' -1 is never a score (n/a / null everywhere, best.pt falls back to
val_loss with the reason), a size range without ground truth is n/a even with zero detections, and an
all-tied checkpoint metric is broken by val loss."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from pycocotools import mask as mask_utils

from apex_x.adapters.evaluation.coco_evaluator import PycocotoolsEvaluator
from apex_x.application.engine.run_support import choose_metric
from apex_x.domain.types import CategoryMap, Detections, EvalResult

from .fakes import FakeDatasetSource, FakeEvaluator
from .helpers import make_use_case

CATEGORIES = CategoryMap(original_ids=(7, 3), names=("square", "disc"))
H, W = 60, 80


def _annotation(ann_id: int, image_id: int, category_id: int, box: tuple[int, int, int, int]) -> dict[str, Any]:
    mask = np.zeros((H, W), np.uint8)
    x0, y0, x1, y1 = box
    mask[y0:y1, x0:x1] = 1
    rle = mask_utils.encode(np.asfortranarray(mask))
    rle["counts"] = rle["counts"].decode("ascii")
    return {"id": ann_id, "image_id": image_id, "category_id": category_id, "segmentation": rle,
            "area": float(mask.sum()), "bbox": [x0, y0, x1 - x0, y1 - y0], "iscrowd": 0}


def _truth(annotations: list[dict[str, Any]]) -> dict[str, Any]:
    return {"images": [{"id": i, "file_name": f"{i}.png", "height": H, "width": W} for i in (1, 2)],
            "annotations": annotations,
            "categories": [{"id": 7, "name": "square"}, {"id": 3, "name": "disc"}]}


def _one_detection(label: int = 0) -> Detections:
    mask = torch.zeros(1, H, W, dtype=torch.bool)
    mask[0, 5:25, 5:30] = True
    return Detections(torch.tensor([[5.0, 5.0, 30.0, 25.0]]), torch.tensor([0.9]), torch.tensor([label]), mask)


def _nothing() -> Detections:
    return Detections(torch.zeros(0, 4), torch.zeros(0), torch.zeros(0, dtype=torch.long), torch.zeros(0, H, W, dtype=torch.bool))


def test_a_val_split_without_annotations_gives_none_never_minus_one() -> None:
    result = PycocotoolsEvaluator().evaluate(_truth([]), [(1, _one_detection()), (2, _nothing())], CATEGORIES)
    assert result.num_detections == 1
    assert all(value is None for value in result.metrics.values()), result.metrics
    assert result.per_class == {"7": {"name": "square", "bbox_AP": None, "bbox_AP50": None, "segm_AP": None,
                                      "segm_AP50": None},
                                "3": {"name": "disc", "bbox_AP": None, "bbox_AP50": None, "segm_AP": None,
                                      "segm_AP50": None}}
    assert "-1" not in json.dumps(result.to_plain())


def test_zero_detections_keep_ranges_without_ground_truth_as_none() -> None:
    truth = _truth([_annotation(1, 1, 7, (5, 5, 45, 35)), _annotation(2, 2, 7, (2, 2, 8, 8))])  # 1200 px, 36 px
    result = PycocotoolsEvaluator().evaluate(truth, [(1, _nothing()), (2, _nothing())], CATEGORIES)
    for iou in ("bbox", "segm"):
        assert result.metrics[f"{iou}_AP"] == 0.0 and result.metrics[f"{iou}_APs"] == 0.0
        assert result.metrics[f"{iou}_APm"] == 0.0  # 1200 px is medium (32^2 .. 96^2)
        assert result.metrics[f"{iou}_APl"] is None  # no large object: n/a, not 0
        assert result.metrics[f"{iou}_ARl"] is None
    assert result.per_class["7"]["segm_AP"] == 0.0 and result.per_class["3"]["segm_AP"] is None


def test_with_detections_a_range_without_ground_truth_is_none_too() -> None:
    truth = _truth([_annotation(1, 1, 7, (5, 5, 30, 25))])
    result = PycocotoolsEvaluator().evaluate(truth, [(1, _one_detection()), (2, _nothing())], CATEGORIES)
    assert result.metrics["segm_AP"] == pytest.approx(1.0) and result.metrics["segm_APl"] is None
    assert result.metrics["segm_APm"] is None and result.per_class["3"]["bbox_AP"] is None


class _NoAnnotationsSource(FakeDatasetSource):
    def val_ground_truth(self) -> dict[str, Any] | None:
        truth = super().val_ground_truth()
        assert truth is not None
        return {**truth, "annotations": [], "categories": [{"id": 1, "name": "a"}, {"id": 2, "name": "b"}]}


class _SmallObjectsSource(FakeDatasetSource):
    def val_ground_truth(self) -> dict[str, Any] | None:
        truth = super().val_ground_truth()
        assert truth is not None  # the fake boxes are at most 24x12 px: no large (>= 96^2 px) objects
        return {**truth, "annotations": [{**item, "area": item["bbox"][2] * item["bbox"][3]}
                                         for item in truth["annotations"]]}


class _SentinelEvaluator(FakeEvaluator):
    """What pycocotools gives on a val split without ground truth: no score (None) for every metric."""

    def evaluate(self, ground_truth: dict[str, Any], detections: Any, categories: CategoryMap) -> EvalResult:
        self.calls += 1
        return EvalResult(metrics=dict.fromkeys(("segm_AP", "bbox_AP", "segm_AP50", "bbox_AP50")),
                          per_class={}, num_images=len(ground_truth["images"]), num_detections=len(detections))


def test_choose_metric_falls_back_to_val_loss_when_the_metric_has_no_ground_truth() -> None:
    choice = choose_metric("segm_AP", _NoAnnotationsSource())
    assert choice.selected == "val_loss" and "segm_AP is n/a" in choice.reason
    small_only = _SmallObjectsSource()
    assert choose_metric("bbox_APl", small_only).selected == "val_loss"
    assert choose_metric("bbox_AP", small_only).selected == "bbox_AP"


def test_a_run_on_val_without_annotations_selects_best_by_val_loss_and_says_why(tmp_path: Path, capsys) -> None:
    run = tmp_path / "run"
    result = make_use_case(run, "train.steps_per_stage=2", source=_NoAnnotationsSource(),
                           evaluator=_SentinelEvaluator()).execute()
    report = json.loads((run / "train_report.json").read_text())
    assert report["selected_checkpoint_metric"] == "val_loss" and report["requested_checkpoint_metric"] == "segm_AP"
    assert "n/a" in report["checkpoint_metric_reason"]
    losses = [entry["val"]["val_loss"] for entry in report["history"]]
    assert result.best["name"] == "val_loss" and result.best["value"] == min(losses)
    assert all(entry["val"]["segm_AP"] is None for entry in report["history"])
    markdown = (run / "train_report.md").read_text()
    assert "-1.0" not in markdown and "val_loss" in markdown


def test_runtime_n_a_switches_to_val_loss_even_when_not_foreseen(tmp_path: Path) -> None:
    run = tmp_path / "run"  # ground truth present (static check passes), yet the evaluator says n/a
    result = make_use_case(run, "train.steps_per_stage=2", evaluator=_SentinelEvaluator()).execute()
    report = json.loads((run / "train_report.json").read_text())
    assert report["selected_checkpoint_metric"] == "val_loss" and "was n/a at epoch 1" in report["checkpoint_metric_reason"]
    assert result.best is not None and result.best["name"] == "val_loss"
    assert (run / "checkpoints" / "best.pt").exists()


class _ZeroEvaluator(FakeEvaluator):
    def evaluate(self, ground_truth: dict[str, Any], detections: Any, categories: CategoryMap) -> EvalResult:
        self.calls += 1
        return EvalResult(metrics={"segm_AP": 0.0, "bbox_AP": 0.0}, per_class={}, num_images=1, num_detections=0)


def test_a_metric_tied_at_zero_is_broken_by_val_loss(tmp_path: Path) -> None:
    run = tmp_path / "run"
    result = make_use_case(run, "train.steps_per_stage=2", "train.epochs=2", "train.lr=0.05",
                           evaluator=_ZeroEvaluator()).execute()
    report = json.loads((run / "train_report.json").read_text())
    losses = {entry["epoch"]: entry["val"]["val_loss"] for entry in report["history"]}
    assert len(losses) == 4 and len(set(losses.values())) == 4
    expected = min(losses, key=losses.__getitem__)
    assert result.best["epoch"] == expected and result.best["value"] == 0.0
    assert result.best["chosen_by"] == ("metric" if expected == 1 else "val_loss tie-break")
    assert "val_loss" in report["checkpoint_metric_tie_break"]
    assert "broken by val_loss" in (run / "train_report.md").read_text()
