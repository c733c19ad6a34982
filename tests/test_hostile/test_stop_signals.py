"""Kind 7 of issue 14: SIGTERM stops a run at the next step or validation batch, saves last.pt, exits 143.

In-process runs on the fake ports send SIGTERM to themselves at chosen moments; CLI runs check the exit
code (143, whenever SIGTERM arrives) and the time from the signal to the exit.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import torch
from test_training.fakes import FakeBatchLoader, FakeDatasetSource, FakeEvaluator
from test_training.helpers import flat_state, make_use_case

from apex_x.application.engine.progress import SilentProgress
from apex_x.domain import checkpoint_format as fmt
from apex_x.domain.types import Batch

from .conftest import REPO, TinyRun

STEPS = "train.steps_per_stage=2"  # 2 stages x 1 epoch x 2 steps


class SignalAtStep(SilentProgress):
    """Sends SIGTERM to this process when batch `step` of epoch `epoch` (1-based) is done."""

    def __init__(self, epoch: int, step: int) -> None:
        self.epoch, self.step, self.current = epoch, step, 0
        self.sent_at: float | None = None

    def start_epoch(self, *, epoch: int, **_: Any) -> None:
        self.current = epoch

    def update(self, *, step: int, loss: float | None, lr: float) -> None:
        if (self.current, step) == (self.epoch, self.step) and self.sent_at is None:
            self.sent_at = time.perf_counter()
            os.kill(os.getpid(), signal.SIGTERM)


class SignalInValidation(FakeDatasetSource):
    """Sends SIGTERM as the first of 4 validation batches is handed out; counts the batches handed out."""

    def __init__(self) -> None:
        super().__init__()
        self.val_batches = 0

    def val_loader(self, batch_size: int, *, rank: int = 0, world_size: int = 1) -> FakeBatchLoader | None:
        source = self

        class Loader(FakeBatchLoader):
            def iter_epoch(self, epoch: int, start_batch: int = 0, augment: object = None) -> Iterator[Batch]:
                for batch in super().iter_epoch(epoch, start_batch):
                    source.val_batches += 1
                    if source.val_batches == 1:
                        os.kill(os.getpid(), signal.SIGTERM)
                    yield batch

        return Loader(range(10_000, 10_008), 2, 0, False, rank, world_size)


def _finish(run: Path) -> dict[str, Any]:
    result = make_use_case(run, STEPS, reports=False).execute(resume_from=str(run / "checkpoints" / "last.pt"))
    assert result.status == "finished"
    return torch.load(run / "checkpoints" / "last.pt", weights_only=True)


def test_sigterm_at_the_last_step_of_an_epoch_skips_its_validation_and_resumes_exactly(tmp_path: Path) -> None:
    evaluator = FakeEvaluator()
    progress = SignalAtStep(epoch=1, step=2)
    result = make_use_case(tmp_path / "run", STEPS, reports=False, evaluator=evaluator,
                           progress=progress).execute()
    seconds = time.perf_counter() - (progress.sent_at or 0.0)
    assert result.status == "interrupted" and result.stop_signal == signal.SIGTERM
    assert evaluator.calls == 0  # the epoch's validation did not run
    assert seconds < 5.0
    saved = torch.load(tmp_path / "run" / "checkpoints" / "last.pt", weights_only=True)
    assert saved[fmt.KEY_PROGRESS]["step_in_epoch"] == 2 and saved[fmt.KEY_PROGRESS]["epoch_complete"] is False
    assert "before validation" in result.report["message"]
    resumed = _finish(tmp_path / "run")
    make_use_case(tmp_path / "straight", STEPS, reports=False).execute()
    straight = torch.load(tmp_path / "straight" / "checkpoints" / "last.pt", weights_only=True)
    pairs = zip(flat_state(resumed[fmt.KEY_MODEL]), flat_state(straight[fmt.KEY_MODEL]), strict=True)
    assert all(torch.equal(a, b) for (_, a), (_, b) in pairs)
    assert resumed[fmt.KEY_BEST] == straight[fmt.KEY_BEST]


def test_sigterm_inside_validation_stops_before_the_next_batch(tmp_path: Path) -> None:
    source = SignalInValidation()
    evaluator = FakeEvaluator()
    started = time.perf_counter()
    result = make_use_case(tmp_path / "run", STEPS, reports=False, source=source, evaluator=evaluator).execute()
    assert result.status == "interrupted" and result.stop_signal == signal.SIGTERM
    assert source.val_batches == 1 and evaluator.calls == 0  # stopped before batch 1 was scored, none after
    saved = torch.load(tmp_path / "run" / "checkpoints" / "last.pt", weights_only=True)
    assert saved[fmt.KEY_PROGRESS]["step_in_epoch"] == 2 and saved[fmt.KEY_PROGRESS]["epoch_number"] == 1
    assert time.perf_counter() - started < 60
    assert _finish(tmp_path / "run")[fmt.KEY_PROGRESS]["finished"] is True


def test_sigterm_between_steps_stops_before_another_step(tmp_path: Path) -> None:
    """The signal comes once step 1 is done (as if during its backward): no further step runs (single process
    checks the flag before each step), last.pt holds step 1."""
    progress = SignalAtStep(epoch=1, step=1)
    result = make_use_case(tmp_path / "run", "train.steps_per_stage=4", reports=False, progress=progress).execute()
    assert result.status == "interrupted"
    saved = torch.load(tmp_path / "run" / "checkpoints" / "last.pt", weights_only=True)
    assert saved[fmt.KEY_PROGRESS]["step_in_epoch"] == 1 and saved[fmt.KEY_PROGRESS]["global_step"] == 1


def _spawn(*args: str) -> subprocess.Popen[str]:
    env = {**os.environ, "PYTHONPATH": str(REPO), "APEX_X_PROGRESS": "log", "PYTHONUNBUFFERED": "1",
           "OMP_NUM_THREADS": "1"}
    return subprocess.Popen([sys.executable, "-m", "apex_x.cli", *args], cwd=REPO, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


@pytest.mark.slow
def test_cli_exit_code_is_143_for_sigterm_during_start_up_and_during_training(tiny_run: TinyRun,
                                                                             tmp_path: Path) -> None:
    early = _spawn("train", str(tiny_run.config), "--set", f"train.output_dir={tmp_path / 'early'}")
    time.sleep(1.0)  # inside the imports of start-up
    early.send_signal(signal.SIGTERM)
    _, err = early.communicate(timeout=60)
    assert early.returncode == 143, err[-2000:]
    assert "stopped by SIGTERM" in err and "Traceback" not in err
    run = tmp_path / "late"
    late = _spawn("train", str(tiny_run.config), "--set", f"train.output_dir={run}", "--set", "train.epochs=50",
                  "--steps-per-stage", "2")
    assert late.stdout is not None
    deadline = time.monotonic() + 240
    while time.monotonic() < deadline and not (run / "checkpoints" / "epoch_0001.pt").exists():
        time.sleep(0.2)
    late.send_signal(signal.SIGTERM)
    sent = time.monotonic()
    out, err = late.communicate(timeout=120)
    assert late.returncode == 143, err[-2000:]
    assert time.monotonic() - sent < 30  # one step (or validation batch) and a checkpoint write
    assert "interrupted:" in out and (run / "checkpoints" / "last.pt").is_file()


def test_a_stop_that_surfaces_as_a_library_error_still_exits_143(monkeypatch: pytest.MonkeyPatch,
                                                                 capsys: pytest.CaptureFixture[str]) -> None:
    """A SIGTERM raised inside library code can come out as that library's own error (seen once as a
    ValueError during start-up): it is still the stop, exit 143, not 'internal error'."""
    from apex_x import cli
    from apex_x.commands import preflight as preflight_command
    from apex_x.domain.errors import TerminationRequested

    def interrupted_inside_a_library(args: object) -> int:
        try:
            cli._terminate(signal.SIGTERM, None)
        except TerminationRequested:
            raise ValueError("too many values to unpack (expected 2)") from None
        return 0

    monkeypatch.setattr(preflight_command, "run", interrupted_inside_a_library)
    assert cli.main(["preflight"]) == 143
    err = capsys.readouterr().err
    assert "stopped by SIGTERM" in err and "internal error" not in err and "ValueError" in err
    monkeypatch.setattr(preflight_command, "run", lambda args: (_ for _ in ()).throw(ValueError("a real bug")))
    assert cli.main(["preflight"]) == 1  # without a stop signal, a ValueError is still a bug


class SignalOnClose(SilentProgress):
    """Sends SIGTERM to this process while the ended run tears down (the progress display is closed)."""

    def close(self) -> None:
        os.kill(os.getpid(), signal.SIGTERM)


def test_sigterm_after_the_run_ended_changes_nothing(tmp_path: Path) -> None:
    """The run's weights and report are written: a signal during the teardown neither kills the process nor
    turns the finished run into a stopped one (the CLI exits 0 for it, not 143)."""
    result = make_use_case(tmp_path / "run", STEPS, reports=False, progress=SignalOnClose()).execute()
    assert result.status == "finished" and result.stop_signal is None
    assert (tmp_path / "run" / "model.safetensors").exists()


def test_a_teacher_checkpoint_that_distillation_does_not_use_is_said(tmp_path: Path) -> None:
    """train.teacher_checkpoint with train.distill_weight 0 (the default): the run says the teacher is unused
    (it is never loaded, so even a hostile file there is harmless) instead of passing over it in silence."""
    from structlog.testing import capture_logs

    with capture_logs() as logs:
        make_use_case(tmp_path / "run", STEPS, "train.teacher_checkpoint=/nowhere/teacher.pt", reports=False,
                      auxiliary_losses=()).execute(stop_after_steps=1)
    warning = next(entry for entry in logs if entry["event"] == "teacher_unused")
    assert warning["teacher_checkpoint"] == "/nowhere/teacher.pt" and "distill_weight is 0" in warning["reason"]
