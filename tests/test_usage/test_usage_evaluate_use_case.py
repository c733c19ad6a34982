"""EvaluateCheckpoint over fakes: the val split goes through the model into the evaluator; reports."""

from __future__ import annotations

import pytest

from apex_x.application.evaluate import EvaluateCheckpoint, eval_markdown, eval_table
from apex_x.domain.errors import DatasetError
from apex_x.domain.registry import DATASET_FORMATS
from apex_x.domain.types import CategoryMap

COCO = DATASET_FORMATS.get("coco")  # names the data.* keys in the messages


def test_every_val_image_is_detected_and_scored(fakes, fake_inference_model) -> None:
    dataset, evaluator = fakes.FakeDataset(num_images=5), fakes.FakeEvaluator()
    report = EvaluateCheckpoint(fake_inference_model, dataset, evaluator, batch_size=2, dataset_format=COCO).execute()
    assert dataset.batch_sizes == [2]
    assert [image_id for image_id, _ in evaluator.calls[0]] == [1, 2, 3, 4, 5]
    assert all(found.masks.shape == (2, 32, 48) for _, found in evaluator.calls[0])  # original pixels
    assert report.metric("segm_AP") == 1.0 and report.result.num_detections == 10
    assert report.metric("val_loss") == pytest.approx(0.5)  # the trainer's validation loss, from compute_losses
    plain = report.to_plain()
    assert plain["best_metric_check"] == {"name": "segm_AP", "recorded": 1.0, "evaluated": 1.0, "epoch": 2}
    assert plain["model"]["weights"] == "ema" and plain["dataset"]["backend"] == "fake"


def test_markdown_and_table_hold_the_metrics_and_per_class_rows(fakes, fake_inference_model) -> None:
    report = EvaluateCheckpoint(fake_inference_model, fakes.FakeDataset(), fakes.FakeEvaluator(), batch_size=4, dataset_format=COCO).execute()
    markdown = eval_markdown(report)
    assert "| AP | 0.5000 | 1.0000 |" in markdown
    assert "| 3 | circle | 0.5000 | 1.0000 |" in markdown and "| 7 | square |" in markdown
    assert "trainer's best segm_AP (epoch 2): 1.0000; evaluated now: 1.0000" in markdown
    table = eval_table(report)
    assert "square" in table and "1.0000" in table


def test_other_categories_are_refused(fakes, fake_inference_model) -> None:
    dataset = fakes.FakeDataset(categories=CategoryMap((1, 2), ("cat", "dog")))
    with pytest.raises(DatasetError, match="differs from the val file"):
        EvaluateCheckpoint(fake_inference_model, dataset, fakes.FakeEvaluator(), batch_size=2, dataset_format=COCO).execute()


def test_a_val_file_with_swapped_names_is_refused_before_inference(fakes, fake_inference_model) -> None:
    swapped = CategoryMap((3, 7), ("square", "circle"))  # same ids as the checkpoint's (3 circle, 7 square)
    dataset = fakes.FakeDataset(val_categories=swapped)
    evaluator = fakes.FakeEvaluator()
    with pytest.raises(DatasetError) as info:
        EvaluateCheckpoint(fake_inference_model, dataset, evaluator, batch_size=2, dataset_format=COCO).execute()
    message = str(info.value)
    assert "id 3: 'circle' in the checkpoint, 'square' in the val file" in message
    assert "id 7: 'square' in the checkpoint, 'circle' in the val file" in message
    assert dataset.batch_sizes == [] and evaluator.calls == []  # nothing was run


def test_a_val_file_with_other_classes_lists_both_sides(fakes, fake_inference_model) -> None:
    other = CategoryMap((3, 9), ("circle", "star"))
    with pytest.raises(DatasetError) as info:
        EvaluateCheckpoint(fake_inference_model, fakes.FakeDataset(val_categories=other), fakes.FakeEvaluator(),
                           batch_size=2, dataset_format=COCO).execute()
    message = str(info.value)
    assert "id 7 ('square') only in the checkpoint" in message and "id 9 ('star') only in the val file" in message
    assert "checkpoint: [3 'circle', 7 'square']" in message


def test_no_val_split_is_a_clear_error_naming_the_formats_keys(fakes, fake_inference_model) -> None:
    with pytest.raises(DatasetError, match="set data.coco_val_images and data.coco_val_annotations"):
        EvaluateCheckpoint(fake_inference_model, fakes.FakeDataset(has_val=False), fakes.FakeEvaluator(), batch_size=2,
                           dataset_format=COCO).execute()
    synthetic = DATASET_FORMATS.get("synthetic")
    with pytest.raises(DatasetError, match="set data.synthetic_val_images "):
        EvaluateCheckpoint(fake_inference_model, fakes.FakeDataset(has_val=False), fakes.FakeEvaluator(), batch_size=2,
                           dataset_format=synthetic).execute()


def test_n_a_metrics_show_as_n_a_in_the_table_markdown_and_json() -> None:
    from apex_x.application.evaluate import EvalReport
    from apex_x.domain.types import EvalResult

    metrics = {"bbox_AP": 0.25, "bbox_APl": None, "segm_AP": 0.5, "segm_APl": None, "val_loss": 1.5}
    per_class = {"3": {"name": "circle", "bbox_AP": 0.25, "segm_AP": 0.5}, "7": {"name": "square", "bbox_AP": None,
                                                                               "segm_AP": None}}
    report = EvalReport(EvalResult(metrics, per_class, 2, 3), {"checkpoint": "x.pt"}, {}, 0.1,
                        recorded_best={"name": "segm_APl", "value": None, "epoch": 1})
    markdown = eval_markdown(report)
    assert "| APl | n/a | n/a |" in markdown and "| 7 | square | n/a | n/a |" in markdown
    assert "evaluated now: n/a" in markdown and "-1" not in markdown
    table = eval_table(report)
    assert "square (7)" in table and "n/a" in table
    assert report.to_plain()["metrics"]["segm_APl"] is None and report.metric("segm_APl") is None
