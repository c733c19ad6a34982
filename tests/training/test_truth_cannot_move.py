"""Issue 13, kind 6: a run that cannot move (components at their clip, zero gradient, growing loss) says so:
counted per epoch, stage and run, warned in the log and the report, status finished_with_warnings."""

from __future__ import annotations

import json
from pathlib import Path

from apex_x.application.diagnostics import LossDiagnostics
from apex_x.application.run_health import epoch_warnings
from apex_x.domain.config import TrainConfig

from .helpers import make_use_case

STEPS = "train.steps_per_stage=4"


def test_a_component_at_its_clip_on_most_steps_ends_finished_with_warnings(tmp_path: Path) -> None:
    run = tmp_path / "run"  # a det clip below any cross-entropy of 2 classes: det sits at its clip every step
    result = make_use_case(run, STEPS, "train.loss_det_component_clip=0.01", "train.epochs=1").execute()
    assert result.status == "finished_with_warnings"
    report = json.loads((run / "train_report.json").read_text())
    assert report["status"] == "finished_with_warnings"
    first = report["history"][0]["diagnostics"]
    assert first["clipped_steps"] == {"det": 4} and first["applied_steps"] == 4
    assert report["loss_diagnostics"]["run"]["clipped_steps"]["det"] == 8  # both epochs (both stages use det)
    assert report["loss_diagnostics"]["per_stage"]["det_stability"]["clipped_steps"] == {"det": 4}
    clipped = [w for w in report["warnings"] if w["kind"] == "clipped"]
    assert [(w["component"], w["epoch"], w["steps"], w["of_steps"]) for w in clipped] == [("det", 1, 4, 4), ("det", 2, 4, 4)]
    assert "train.lr" in clipped[0]["message"] and "train.loss_det_component_clip" in clipped[0]["message"]
    markdown = (run / "train_report.md").read_text()
    assert "## Warnings" in markdown and "sat at its clip (0.01) on 4 of 4 steps" in markdown


def test_a_healthy_run_has_no_warnings(tmp_path: Path) -> None:
    result = make_use_case(tmp_path / "run", STEPS).execute()
    assert result.status == "finished" and result.report["warnings"] == []
    assert result.report["loss_diagnostics"]["run"]["clipped_steps"] == {}


def test_zero_gradient_and_divergence_are_named() -> None:
    train = TrainConfig()
    diagnostics = LossDiagnostics()
    for _ in range(3):
        diagnostics.record_applied({"det": 1.0}, 1.0, 0.0)
    diagnostics.record_applied({"det": 1.0}, 1.0, 0.5)
    found = epoch_warnings(diagnostics, epoch=2, stage="s", train=train, lr=10.0, history=[])
    assert [(w["kind"], w["steps"], w["of_steps"]) for w in found] == [("zero_gradient", 3, 4)]
    history = [{"epoch": n, "stage": "s", "train": {"total_loss": value}} for n, value in ((1, 1.0), (2, 1.4), (3, 2.0))]
    found = epoch_warnings(LossDiagnostics(), epoch=3, stage="s", train=train, lr=10.0, history=history)
    assert [w["kind"] for w in found] == ["diverging"] and "1 at epoch 1 -> 2 at epoch 3" in found[0]["message"]
    flat = [{**entry, "train": {"total_loss": 1.0 + 0.01 * entry["epoch"]}} for entry in history]  # grows, but < 25%
    assert epoch_warnings(LossDiagnostics(), epoch=3, stage="s", train=train, lr=1.0, history=flat) == []
