"""Process-level faults: kill -9 (also mid checkpoint write), read-only output folder, failing writes."""

from __future__ import annotations

import os
import random
import signal
import stat
import subprocess
import sys
import time
from pathlib import Path

import torch

from apex_x.adapters.checkpoints.torch_store import TorchCheckpointStore
from apex_x.domain import checkpoint_format as fmt

from .helpers import flat_state, make_use_case

REPO = Path(__file__).resolve().parents[2]
RUN = ("--set", "train.checkpoint_every_steps=1",)  # 2 stages x 4 steps, last.pt after each step
OVERRIDES = ("train.checkpoint_every_steps=1",)


def child(output: Path, *extra: str) -> subprocess.Popen[str]:
    env = {**os.environ, "PYTHONPATH": str(REPO / "tests"), "APEX_X_PROGRESS": "log", "PYTHONUNBUFFERED": "1"}
    return subprocess.Popen(
        [sys.executable, "-m", "test_training.fake_run", str(output), *RUN, *extra],
        cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )


def wait_for_line(process: subprocess.Popen[str], prefix: str, count: int, timeout: float = 120.0) -> None:
    deadline = time.monotonic() + timeout
    seen = 0
    assert process.stdout is not None
    while time.monotonic() < deadline:
        line = process.stdout.readline()
        if not line:
            raise AssertionError(f"child ended before {count} x {prefix!r}: {process.stderr.read()[-2000:]}")
        if line.startswith(prefix):
            seen += 1
            if seen == count:
                return
    raise AssertionError(f"timed out waiting for {prefix!r}")


def kill9(process: subprocess.Popen[str]) -> None:
    process.send_signal(signal.SIGKILL)
    process.wait(timeout=60)
    assert process.returncode == -signal.SIGKILL


def test_kill_9_mid_write_and_at_a_random_moment_then_resume_matches_a_straight_run(tmp_path: Path) -> None:
    run = tmp_path / "run"
    last = run / "checkpoints" / "last.pt"
    store = TorchCheckpointStore()
    # 1) killed while a checkpoint is half written (the writer pauses after the first half).
    process = child(run, "--slow-writes", "0.2")
    wait_for_line(process, "WRITING", 3)
    kill9(process)
    assert list((run / "checkpoints").glob(".*.tmp"))  # the half-written temp file, never renamed
    steps_before = store.load(str(last))[fmt.KEY_PROGRESS]["global_step"]  # the previous last.pt loads
    assert steps_before >= 1
    # 2) a resumed run killed at a random moment (APEX_X_KILL_SEED=<seed> replays a failure).
    seed = int(os.environ.get("APEX_X_KILL_SEED", time.time_ns() % 1_000_000))
    delay = random.Random(seed).uniform(0.0, 0.6)
    process = child(run, "--resume", str(last))
    wait_for_line(process, "", 1)  # the child has started logging (imports done)
    time.sleep(delay)
    killed_again = process.poll() is None
    if killed_again:
        kill9(process)
    else:
        assert process.wait() == 0, f"APEX_X_KILL_SEED={seed}: {process.stderr.read()[-2000:]}"
    payload = store.load(str(last))  # loads, whatever the moment
    assert payload[fmt.KEY_PROGRESS]["global_step"] >= steps_before, f"APEX_X_KILL_SEED={seed}"
    # 3) resume to the end (unless the child finished before the kill): identical to a run never killed.
    if not payload[fmt.KEY_PROGRESS]["finished"]:
        resumed = make_use_case(run, *OVERRIDES, reports=False).execute(resume_from=str(last))
        assert resumed.status == "finished"
    assert not list((run / "checkpoints").glob(".*.tmp"))  # stale temp files are cleaned up
    make_use_case(tmp_path / "straight", *OVERRIDES, reports=False).execute()
    killed = store.load(str(last))
    straight = store.load(str(tmp_path / "straight" / "checkpoints" / "last.pt"))
    for key in (fmt.KEY_MODEL, fmt.KEY_EMA, fmt.KEY_OPTIMIZER):
        pairs = zip(flat_state(killed[key]), flat_state(straight[key]), strict=True)
        assert all(torch.equal(a, b) for (_, a), (_, b) in pairs), key


def test_read_only_output_folder_is_a_clear_error_and_checkpoints_stay(tmp_path: Path) -> None:
    run = tmp_path / "run"
    make_use_case(run, "train.steps_per_stage=1", reports=False).execute(stop_after_steps=1)
    last = run / "checkpoints" / "last.pt"
    before = last.read_bytes()
    for folder in (run, run / "checkpoints"):
        folder.chmod(stat.S_IRUSR | stat.S_IXUSR | stat.S_IRGRP | stat.S_IXGRP | stat.S_IROTH | stat.S_IXOTH)
    tmp_path.chmod(0o755)
    try:
        process = child(run, "--resume", str(last), "--drop-privileges")
        out, err = process.communicate(timeout=300)
    finally:
        for folder in (run, run / "checkpoints"):
            folder.chmod(0o755)
    assert process.returncode == 2, err[-3000:]
    assert "train.output_dir" in err and "not writable" in err and str(run) in err
    assert last.read_bytes() == before


def test_a_failing_checkpoint_write_stops_with_a_clear_error_and_keeps_earlier_files(tmp_path: Path) -> None:
    run = tmp_path / "run"
    make_use_case(run, "train.steps_per_stage=1", reports=False).execute(stop_after_steps=1)
    last = run / "checkpoints" / "last.pt"
    before = last.read_bytes()
    process = child(run, "--resume", str(last), "--fsize-limit", str(len(before) // 2))
    out, err = process.communicate(timeout=300)
    assert process.returncode == 2, err[-3000:]
    assert "cannot write" in err and "File too large" in err
    assert last.read_bytes() == before
    assert not list((run / "checkpoints").glob(".*.tmp"))
