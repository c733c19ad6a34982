"""`apex-x train` end to end with the real adapters: the user guide's smoke example as written, fail-fast data
policy, resume of a finished run, the importable API, and torchrun with 2 CPU processes."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch

import apex_x
from apex_x.domain.errors import DatasetError

REPO = Path(__file__).resolve().parents[2]
SMOKE = ["train", "examples/smoke_cpu.yaml", "--steps-per-stage", "1", "--set", "train.allow_synthetic_fallback=true"]
TINY = ["--set", "model.input_height=64", "--set", "model.input_width=64", "--set", "train.batch_size=2",
        "--set", "data.synthetic_train_images=4", "--set", "data.synthetic_val_images=2"]


def cli(arguments: list[str], cwd: Path, *, launcher: list[str] | None = None, timeout: int = 600) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "APEX_X_PROGRESS": "log", "OMP_NUM_THREADS": "1"}
    command = [*(launcher or [sys.executable]), "-m", "apex_x.cli", *arguments]
    return subprocess.run(command, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)


@pytest.fixture()
def workdir(tmp_path: Path) -> Path:
    """A fresh working folder holding the user guide's examples/smoke_cpu.yaml, so relative paths are as written."""
    (tmp_path / "examples").mkdir()
    shutil.copyfile((REPO / "examples" / "smoke_cpu.yaml").resolve(), tmp_path / "examples" / "smoke_cpu.yaml")
    return tmp_path


@pytest.mark.slow
def test_seed_smoke_example_runs_as_written_then_resume_says_finished(workdir: Path) -> None:
    result = cli(SMOKE, workdir)
    assert result.returncode == 0, result.stderr[-4000:]
    assert "report: artifacts/smoke_cpu/train_report.json" in result.stdout
    assert "val AP (segm):" in result.stdout and "dataset mode: synthetic" in result.stdout
    run = workdir / "artifacts" / "smoke_cpu"
    report = json.loads((run / "train_report.json").read_text())
    assert report["status"] == "finished" and report["dataset_mode"] == "synthetic"
    assert report["selected_checkpoint_metric"] == "segm_AP" and len(report["history"]) == 2
    assert report["kernels"]["backend"] == "torch"
    for name in ("checkpoints/last.pt", "checkpoints/best.pt", "checkpoints/epoch_0002.pt", "model.safetensors",
                 "config.json", "train_report.md", "plots/loss_components.png", "plots/val_metrics.png"):
        assert (run / name).is_file(), name
    log_lines = (run / "logs" / "train.jsonl").read_text().splitlines()
    assert any(json.loads(line).get("event") == "checkpoint_saved" for line in log_lines)

    again = cli(["train", "examples/smoke_cpu.yaml", "--resume", "artifacts/smoke_cpu/checkpoints/last.pt",
                 "--set", "train.allow_synthetic_fallback=true"], workdir)
    assert again.returncode == 2
    assert "already finished" in again.stderr and "--set train.epochs=" in again.stderr
    assert "Traceback" not in again.stderr


def test_missing_dataset_with_fallback_off_exits_2_naming_the_key(workdir: Path) -> None:
    result = cli(["train", "examples/smoke_cpu.yaml", "--steps-per-stage", "1"], workdir)
    assert result.returncode == 2
    assert "data.coco_train_images" in result.stderr and "Traceback" not in result.stderr
    assert not (workdir / "artifacts" / "smoke_cpu" / "checkpoints").exists()


def test_api_train_validates_like_the_cli(workdir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(workdir)
    with pytest.raises(DatasetError, match="data.coco_train_images"):
        apex_x.train("examples/smoke_cpu.yaml", steps_per_stage=1)


@pytest.mark.slow
def test_torchrun_two_cpu_processes_train_through_the_cli(workdir: Path) -> None:
    output = workdir / "ddp"
    launcher = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2"]
    result = cli([*SMOKE, *TINY, "--set", f"train.output_dir={output}"], workdir, launcher=launcher)
    assert result.returncode == 0, result.stderr[-4000:]
    report = json.loads((output / "train_report.json").read_text())
    assert report["status"] == "finished" and report["run"]["world_size"] == 2 and report["run"]["backend"] == "gloo"
    assert report["history"][-1]["val"]["segm_AP"] is not None
    assert (output / "checkpoints" / "last.pt").is_file() and (output / "model.safetensors").is_file()


@pytest.mark.slow
def test_real_student_and_loader_resume_mid_epoch_bit_identical(tmp_path: Path) -> None:
    """The equivalence of test_resume.py with the real synthetic source, student and evaluator."""
    from apex_x.train.checkpoint import load_checkpoint

    from .helpers import flat_state

    common = ["train.allow_synthetic_fallback=true", "model.input_height=64", "model.input_width=64",
              "train.batch_size=2", "data.synthetic_train_images=4", "data.synthetic_val_images=2",
              "runtime.device=cpu", "train.steps_per_stage=2", "train.epochs=1",
              "train.stages=[{name: all_losses, losses: {det: 1.0, seg: 1.0, boundary: 1.0}}]"]
    apex_x.train(None, overrides=[*common, f"train.output_dir={tmp_path / 'straight'}"])
    paused = apex_x.train(None, overrides=[*common, f"train.output_dir={tmp_path / 'resumed'}"], stop_after_steps=1)
    assert paused.status == "paused"
    apex_x.train(None, overrides=common, resume=str(tmp_path / "resumed" / "checkpoints" / "last.pt"))
    straight = load_checkpoint(tmp_path / "straight" / "checkpoints" / "last.pt")
    resumed = load_checkpoint(tmp_path / "resumed" / "checkpoints" / "last.pt")
    for key in ("model", "ema", "optimizer"):
        pairs = zip(flat_state(straight[key]), flat_state(resumed[key]), strict=True)
        assert all(torch.equal(a, b) for (_, a), (_, b) in pairs), key


def test_api_takes_a_config_object_and_applies_flags_on_top() -> None:
    from apex_x.api import _as_overrides

    config = apex_x.load_config(REPO / "configs" / "quickstart.yaml", ["train.stages=[{name: a, epochs: 1}]"])
    assert apex_x.load_config(None, _as_overrides(config)) == config
    with_flags = apex_x.load_config(None, _as_overrides(config), seed=7, steps_per_stage=2)
    assert (with_flags.train.seed, with_flags.train.steps_per_stage) == (7, 2)
