"""A stop request that lands after the run's final step (stop_after_steps, SIGTERM) ends the run as a normal end
(final validation, report, weights): nothing is left to resume. A pause before the last validation, and a
checkpoint of an older pause at the final step, finish on --resume."""

from __future__ import annotations

import json
import os
import signal
from pathlib import Path
from typing import Any

import pytest
import torch

from apex_x.adapters.checkpoints.torch_store import TorchCheckpointStore
from apex_x.application.engine.resume import RunAlreadyFinished
from apex_x.domain import checkpoint_format as fmt
from apex_x.domain.config import ModelConfig

from .fakes import FakeModel, FakeModelFactory
from .helpers import make_use_case

STEPS = "train.steps_per_stage=2"  # 2 stages x 1 epoch x 2 steps = 4 steps
VAL_BATCHES = 2  # the fake val split: 8 images in batches of 4


class SignalAt:
    """Progress that sends SIGTERM to this process when batch `step` of epoch `epoch` is done."""

    def __init__(self, epoch: int, step: int) -> None:
        self.epoch, self.step, self.current = epoch, step, 0

    def start_epoch(self, *, stage: str, epoch: int, total_epochs: int, total_steps: int, initial_step: int) -> None:
        self.current = epoch

    def update(self, *, step: int, loss: float | None, lr: float) -> None:
        if (self.current, step) == (self.epoch, self.step):
            os.kill(os.getpid(), signal.SIGTERM)

    def end_epoch(self, summary: dict[str, float]) -> None:
        return None

    def close(self) -> None:
        return None


def assert_finished(run: Path, result_status: str, epochs: int = 2) -> dict:
    report = json.loads((run / "train_report.json").read_text())
    assert result_status == "finished" and report["status"] == "finished"
    assert report["epochs_done"] == report["epochs_planned"] == epochs
    assert report["history"][-1]["val"] is not None  # the final validation ran
    assert (run / "model.safetensors").is_file()
    last = TorchCheckpointStore().load(str(run / "checkpoints" / "last.pt"))[fmt.KEY_PROGRESS]
    assert last["epoch_complete"] and last["finished"] and last["global_step"] == 2 * epochs
    return report


def test_stop_after_steps_on_the_last_step_finishes_the_run(tmp_path: Path) -> None:
    run = tmp_path / "run"
    result = make_use_case(run, STEPS).execute(stop_after_steps=4)
    report = assert_finished(run, result.status)
    assert "paused" not in (report["message"] or "")
    assert result.weights_path == str(run / "model.safetensors")
    with pytest.raises(RunAlreadyFinished):  # and it is finished for a resume too
        make_use_case(run, STEPS).execute(resume_from=str(run / "checkpoints" / "last.pt"))


def test_stop_after_steps_before_the_last_step_still_pauses(tmp_path: Path) -> None:
    run = tmp_path / "run"
    result = make_use_case(run, STEPS).execute(stop_after_steps=3)
    assert result.status == "paused" and not (run / "model.safetensors").exists()


def test_sigterm_at_the_last_step_finishes_the_run(tmp_path: Path) -> None:
    """The signal arrives once the run's last step is done (after its poll): the run ends normally."""
    run = tmp_path / "run"
    result = make_use_case(run, STEPS, progress=SignalAt(epoch=2, step=2)).execute()
    assert result.stop_signal is None
    assert_finished(run, result.status)


@pytest.mark.parametrize("epoch", [1, 2])  # in the first epoch / just before the run's last step
def test_sigterm_before_the_last_step_pauses_then_resume_finishes(tmp_path: Path, epoch: int) -> None:
    """A signal before the last step stops before another step runs (last.pt at the step done); resuming
    does the rest and ends the run."""
    run = tmp_path / "run"
    first = make_use_case(run, STEPS, progress=SignalAt(epoch=epoch, step=1)).execute()
    assert first.status == "interrupted" and first.stop_signal == signal.SIGTERM
    saved = TorchCheckpointStore().load(str(run / "checkpoints" / "last.pt"))[fmt.KEY_PROGRESS]
    assert saved["global_step"] == 2 * (epoch - 1) + 1
    second = make_use_case(run, STEPS).execute(resume_from=str(run / "checkpoints" / "last.pt"))
    assert_finished(run, second.status)


class SignalInValidation(FakeModel):
    """SIGTERM arrives during the first validation forward of the epoch numbered `at_epoch`."""

    at_epoch = 2

    def forward(self, images: torch.Tensor) -> dict[str, torch.Tensor]:
        if not self.training:
            self.eval_calls = getattr(self, "eval_calls", 0) + 1
            if self.eval_calls == self.at_epoch * VAL_BATCHES - (VAL_BATCHES - 1):
                os.kill(os.getpid(), signal.SIGTERM)
        return super().forward(images)


class SignalInValidationFactory(FakeModelFactory):
    def build(self, config: ModelConfig, num_classes: int, **options: Any) -> FakeModel:
        return SignalInValidation(num_classes)


def test_a_stop_during_the_final_validation_pauses_and_resume_finishes(tmp_path: Path) -> None:
    run = tmp_path / "run"
    first = make_use_case(run, STEPS, factory=SignalInValidationFactory()).execute()
    assert first.status == "interrupted" and "before validation" in first.report["message"]
    last = TorchCheckpointStore().load(str(run / "checkpoints" / "last.pt"))[fmt.KEY_PROGRESS]
    assert (last["global_step"], last["step_in_epoch"], last["epoch_complete"]) == (4, 2, False)
    resumed = make_use_case(run, STEPS).execute(resume_from=str(run / "checkpoints" / "last.pt"))
    report = assert_finished(run, resumed.status)
    assert [entry["epoch"] for entry in report["history"]] == [1, 2]


def test_an_older_pause_at_the_final_step_ends_on_resume(tmp_path: Path) -> None:
    """A checkpoint with every epoch done but no final weights (an older version paused at the last step)."""
    run = tmp_path / "run"
    make_use_case(run, STEPS).execute()
    (run / "model.safetensors").unlink()
    resumed = make_use_case(run, STEPS).execute(resume_from=str(run / "checkpoints" / "last.pt"))
    report = assert_finished(run, resumed.status)
    assert report["timing"]["sessions"] == 2


def test_a_finished_run_resumed_into_another_folder_is_still_finished(tmp_path: Path) -> None:
    run = tmp_path / "run"
    make_use_case(run, STEPS).execute()
    with pytest.raises(RunAlreadyFinished):  # the run that wrote the checkpoint has its weights: it ended
        make_use_case(tmp_path / "elsewhere", STEPS).execute(resume_from=str(run / "checkpoints" / "last.pt"))
    assert not (tmp_path / "elsewhere" / "model.safetensors").exists()


@pytest.mark.slow
def test_cli_stop_after_steps_on_the_last_step_finishes(tmp_path: Path, shapes_dataset) -> None:
    """The reviewer's repro: a 2-stage, 1-epoch-per-stage run with --steps-per-stage 1 --stop-after-steps 2."""
    import subprocess
    import sys

    config = tmp_path / "run.yaml"
    data = shapes_dataset
    config.write_text(
        "model: {input_height: 64, input_width: 64, backbone: mobilenetv3_small_050, width_multiplier: 0.25}\n"
        f"train: {{epochs: 1, batch_size: 4, warmup_steps: 0, output_dir: {tmp_path / 'run'}}}\n"
        f"data: {{coco_train_images: {data.train_images}, coco_train_annotations: {data.train_annotations}, "
        f"coco_val_images: {data.val_images}, coco_val_annotations: {data.val_annotations}}}\n"
        "runtime: {device: cpu}\n")
    result = subprocess.run([sys.executable, "-m", "apex_x.cli", "train", str(config), "--steps-per-stage", "1",
                             "--stop-after-steps", "2"], capture_output=True, text=True, timeout=600,
                            env={**os.environ, "APEX_X_PROGRESS": "log", "OMP_NUM_THREADS": "1"})
    assert result.returncode == 0, result.stderr[-3000:]
    assert "paused" not in result.stdout and "weights: " in result.stdout
    report = json.loads((tmp_path / "run" / "train_report.json").read_text())
    assert report["status"] == "finished" and report["epochs_done"] == 2
    assert (tmp_path / "run" / "model.safetensors").is_file()


def test_a_pause_names_the_resume_command_as_the_caller_spells_it(tmp_path: Path) -> None:
    from apex_x.api import cli_resume_command, python_resume_command

    run = tmp_path / "run"
    last = run / "checkpoints" / "last.pt"
    cli = make_use_case(run, STEPS).execute(stop_after_steps=1, resume_command=cli_resume_command("my cfg.yaml"))
    assert cli.report["message"] == f"paused at batch 1 of epoch 1; resume with: apex-x train 'my cfg.yaml' --resume {last}"
    python = make_use_case(run, STEPS).execute(resume_from=str(last), stop_after_steps=1,
                                               resume_command=python_resume_command("my cfg.yaml"))
    assert python.report["message"] == (
        f"paused after epoch 1; resume with: apex_x.train('my cfg.yaml', resume={str(last)!r})")
    plain = make_use_case(run, STEPS).execute(resume_from=str(last), stop_after_steps=1)  # no caller: the flag
    assert plain.report["message"].endswith(f"resume with: --resume {last}") and "CONFIG" not in plain.report["message"]


def test_the_resumed_log_line_uses_the_run_s_one_based_epochs(tmp_path: Path) -> None:
    from structlog.testing import capture_logs

    run = tmp_path / "run"
    last = str(run / "checkpoints" / "last.pt")
    make_use_case(run, STEPS, reports=False).execute(stop_after_steps=3)  # batch 1 of epoch 2
    with capture_logs() as logs:
        result = make_use_case(run, STEPS, reports=False).execute(resume_from=last, stop_after_steps=1)
    resumed = next(entry for entry in logs if entry["event"] == "resumed")
    assert (resumed["epoch"], resumed["epoch_complete"], resumed["batches_done"], resumed["global_step"]) == (
        2, False, 1, 3)
    assert resumed["at"] == "epoch 2, after batch 1" and resumed["stage"] == "seg_boundary"
    started = next(entry for entry in logs if entry["event"] == "stage_start")
    assert started["stage"] == resumed["stage"]
    assert [entry["epoch"] for entry in result.report["history"]] == [1, 2]  # the same epoch the log named
    assert result.status == "finished"  # the pause at the last step finished the run: extend it
    with capture_logs() as logs:
        make_use_case(run, STEPS, "train.epochs=2", reports=False).execute(resume_from=last, stop_after_steps=1)
    resumed = next(entry for entry in logs if entry["event"] == "resumed")
    assert (resumed["epoch"], resumed["epoch_complete"], resumed["at"]) == (2, True, "after epoch 2")
