"""Issue 13, kind 6: a run that cannot move (components at their clip, zero gradient, growing loss) says so:
counted per epoch, stage and run, warned in the log and the report, status finished_with_warnings."""

from __future__ import annotations

import json
from pathlib import Path

from apex_x.application.engine.diagnostics import LossDiagnostics
from apex_x.application.engine.run_health import epoch_warnings
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
    found = epoch_warnings(diagnostics, epoch=2, stage="s", train=train, history=[], scheduled_lr=(10.0, 10.0))
    assert [(w["kind"], w["steps"], w["of_steps"]) for w in found] == [("zero_gradient", 3, 4)]
    history = [{"epoch": n, "stage": "s", "train": {"total_loss": value}} for n, value in ((1, 1.0), (2, 1.4), (3, 2.0))]
    found = epoch_warnings(LossDiagnostics(), epoch=3, stage="s", train=train, history=history)
    assert [w["kind"] for w in found] == ["diverging"] and "1 at epoch 1 -> 2 at epoch 3" in found[0]["message"]
    flat = [{**entry, "train": {"total_loss": 1.0 + 0.01 * entry["epoch"]}} for entry in history]  # grows, but < 25%
    assert epoch_warnings(LossDiagnostics(), epoch=3, stage="s", train=train, history=flat) == []


def test_the_clip_advice_names_the_configured_lr_and_the_scheduled_one(tmp_path: Path) -> None:
    """train.lr=10 without warmup: the advice says 10 (what the user set), the cosine-scheduled values of the
    epoch's steps beside it, and that warmup is 0 now (not "train.warmup_steps=0", which reads as advice)."""
    from apex_x.application.engine.schedules import lr_factor

    run = tmp_path / "run"
    result = make_use_case(run, STEPS, "train.lr=10", "train.warmup_steps=0", "train.min_lr_ratio=0.01",
                           "train.loss_det_component_clip=0.01").execute()
    clipped = [w for w in result.report["warnings"] if w["kind"] == "clipped" and w["component"] == "det"]
    assert [w["epoch"] for w in clipped] == [1, 2]
    second = clipped[1]["message"]  # epoch 2 = steps 4..7 of 8: cosine from lr_factor(4) down to lr_factor(7)
    low, high = (10 * lr_factor(step, total_steps=8, warmup_steps=0, min_lr_ratio=0.01) for step in (7, 4))
    assert f"Lower train.lr (set to 10; scheduled {low:.3g} to {high:.3g} on these steps)" in second
    assert "add warmup (train.warmup_steps is 0 now; e.g. 100)" in second
    assert "train.warmup_steps=0" not in second and "now 7.07" not in second
    first = clipped[0]["message"]  # steps 0..3: the first is at the full lr
    assert f"(set to 10; scheduled {10 * lr_factor(3, total_steps=8, warmup_steps=0, min_lr_ratio=0.01):.3g} to 10 on" in first


def test_advice_with_a_warmup_and_a_constant_lr() -> None:
    from apex_x.application.engine.run_health import lr_text, warmup_text

    train = TrainConfig(lr=0.5, warmup_steps=20)
    assert lr_text(train, (0.5, 0.5)) == "train.lr (set to 0.5)"  # the schedule gave what the user set
    assert lr_text(train, (0.1, 0.1)) == "train.lr (set to 0.5; scheduled 0.1 on these steps)"
    assert warmup_text(train) == "lengthen warmup (train.warmup_steps is 20 now)"
