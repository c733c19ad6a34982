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


def test_eval_writes_the_same_plots_beside_its_report(trained_run: Any, tmp_path: Path) -> None:
    import apex_x

    output = tmp_path / "eval" / "eval_report.json"
    report = apex_x.evaluate(str(trained_run.config), str(trained_run.best), output_json=str(output))
    assert set(report.result.curves) == {"pr_curves", "confusion"}
    for name in ("eval_pr_curves.png", "eval_confusion_matrix.png"):
        assert (output.parent / name).stat().st_size > 1000
    assert "(eval_confusion_matrix.png)" in output.with_suffix(".md").read_text()
