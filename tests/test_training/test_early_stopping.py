"""Early stopping (train.patience): a stage ends after `patience` epochs without a new best metric; the last
stage ending ends the run (finished, reason in the report); a resume does not run a stopped stage again."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest

from apex_x.application.engine.resume import RunAlreadyFinished
from apex_x.application.engine.train_state import StartPoint
from apex_x.domain.types import EvalResult

from .fakes import FakeEvaluator
from .helpers import make_use_case

SHORT = ("train.steps_per_stage=2",)  # 16 fake images in batches of 4: 2 steps per epoch


class ScriptedEvaluator(FakeEvaluator):
    """The n-th validation scores values[n - 1] (every metric)."""

    def __init__(self, values: Sequence[float]) -> None:
        super().__init__()
        self.values = list(values)

    def evaluate(self, ground_truth: dict[str, Any], detections: Any, categories: Any) -> EvalResult:
        result = super().evaluate(ground_truth, detections, categories)
        value = self.values[self.calls - 1]
        return EvalResult({name: value for name in result.metrics}, result.per_class, result.num_images,
                          result.num_detections)


def test_the_last_stage_stopping_ends_the_run_with_the_reason(tmp_path: Path) -> None:
    one_stage = "train.stages=[{name: only, epochs: 6}]"
    result = make_use_case(tmp_path, *SHORT, one_stage, "train.patience=2",
                           evaluator=ScriptedEvaluator([0.5, 0.6, 0.4, 0.3, 0.9, 0.9])).execute()
    assert result.status == "finished" and result.report["epochs_done"] == 4 == result.report["epochs_planned"]
    assert [entry["is_best"] for entry in result.report["history"]] == [True, True, False, False]
    (stop,) = result.report["early_stopping"]["stops"]
    assert (stop["stage"], stop["epoch"], stop["epochs_without_improvement"], stop["patience"]) == ("only", 4, 2, 2)
    assert "did not improve for 2 epoch(s) (train.patience=2); the best segm_AP is 0.6000 (epoch 2); 2 planned" in \
        stop["message"]
    assert f"**early stop**: {stop['message']}" in (tmp_path / "train_report.md").read_text()
    assert result.best is not None and result.best["epoch"] == 2
    with pytest.raises(RunAlreadyFinished) as finished:  # nothing is owed: the stopped stage is not run again
        make_use_case(tmp_path, *SHORT, one_stage, "train.patience=2").execute(
            resume_from=str(tmp_path / "checkpoints" / "last.pt"))
    message = str(finished.value)  # the epochs trained (not the 6 planned), and no flag that would not help
    assert "already finished after 4 epoch(s)" in message and "stopped stage(s) 'only' early" in message
    assert "--set" not in message and "start a new run" in message


def test_a_stage_that_stops_hands_over_to_the_next_and_a_resume_skips_it(tmp_path: Path) -> None:
    stages = "train.stages=[{name: a, epochs: 3}, {name: b, epochs: 3}]"
    first = make_use_case(tmp_path, *SHORT, stages, "train.patience=1",
                          evaluator=ScriptedEvaluator([0.5, 0.4])).execute(stop_after_steps=4)
    assert first.status == "paused"  # at the end of epoch 2, the epoch that stopped stage a
    assert [stop["stage"] for stop in first.report["early_stopping"]["stops"]] == ["a"]
    second = make_use_case(tmp_path, *SHORT, stages, "train.patience=1",
                           evaluator=ScriptedEvaluator([0.6, 0.7, 0.8])).execute(
        resume_from=str(tmp_path / "checkpoints" / "last.pt"))
    assert second.status == "finished"
    assert [(entry["epoch"], entry["stage"]) for entry in second.report["history"]] == [
        (1, "a"), (2, "a"), (3, "b"), (4, "b"), (5, "b")]  # one contiguous numbering, a's 3rd epoch skipped
    assert second.report["epochs_planned"] == 5


def test_skipping_a_stage_renumbers_the_epochs_after_it() -> None:
    from apex_x.application.engine.early_stopping import skip_rest_of_stage

    schedule = [StartPoint(0, 0, 0), StartPoint(0, 1, 0), StartPoint(0, 2, 0), StartPoint(1, 3, 0)]
    assert skip_rest_of_stage(schedule, 1, 0) == [StartPoint(0, 0, 0), StartPoint(1, 1, 0)]
