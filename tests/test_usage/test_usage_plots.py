"""The plots people look at, written with every report: PR curves and the confusion matrix of the latest
validation beside the loss and metric curves (linked from train_report.md), and the same from `apex-x eval`."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from PIL import Image


def test_the_training_report_links_pr_curves_and_a_confusion_matrix(trained_run: Any) -> None:
    report = trained_run.report()
    curves = report["evaluation_curves"]
    names = report["dataset"]["categories"]
    assert curves["confusion"]["labels"] == [*names, "background"]
    assert len(curves["confusion"]["counts"]) == len(names) + 1
    assert len(curves["pr_curves"]["recall"]) == 101
    assert all("curves" not in (entry.get("evaluation") or {}) for entry in report["history"])  # not per epoch
    plots = trained_run.output_dir / "plots"
    for name in ("pr_curves.png", "confusion_matrix.png", "loss_components.png", "val_metrics.png"):
        assert Image.open(plots / name).size[0] >= 400, name
    markdown = (trained_run.output_dir / "train_report.md").read_text()
    assert "(plots/pr_curves.png)" in markdown and "(plots/confusion_matrix.png)" in markdown


def test_the_training_report_shows_val_predictions_of_a_fixed_choice_of_images(trained_run: Any) -> None:
    report = trained_run.report()
    overlays = report["prediction_overlays"]
    assert overlays["file"] == "plots/val_predictions.png" and overlays["epoch"] == report["epochs_done"]
    assert report["artifacts"]["val_predictions"] == str(trained_run.output_dir / "plots" / "val_predictions.png")
    images = overlays["images"]
    assert len(images) == 6  # the whole 6-image val split (train.val_preview_images 12 by default)
    assert all(image["true"] >= 1 for image in images) and overlays["score_threshold"] == 0.25
    with Image.open(trained_run.output_dir / "plots" / "val_predictions.png") as grid:
        assert grid.size[0] >= 2 * 320 and grid.size[1] >= 320  # each 64 px image enlarged to 320, truth beside
    markdown = (trained_run.output_dir / "train_report.md").read_text()
    assert "(plots/val_predictions.png)" in markdown


def test_eval_writes_the_same_plots_beside_its_report(trained_run: Any, tmp_path: Path) -> None:
    import apex_x

    output = tmp_path / "eval" / "eval_report.json"
    report = apex_x.evaluate(str(trained_run.config), str(trained_run.best), output_json=str(output))
    assert set(report.result.curves) == {"pr_curves", "confusion"}
    for name in ("eval_pr_curves.png", "eval_confusion_matrix.png"):
        assert (output.parent / name).stat().st_size > 1000
    assert "(eval_confusion_matrix.png)" in output.with_suffix(".md").read_text()
    overlays = report.to_plain()["prediction_overlays"]
    train_overlays = trained_run.report()["prediction_overlays"]
    assert [item["image_id"] for item in overlays["images"]] == [item["image_id"] for item in train_overlays["images"]]
    assert (output.parent / "eval_val_predictions.png").stat().st_size > 1000
    assert str(output.parent / "eval_val_predictions.png") in report.extra["files"]
    assert "(eval_val_predictions.png)" in output.with_suffix(".md").read_text()
