"""Kind 6 of issue 14: a frozen DDP rank (SIGSTOP, not killed) is named and the others stop fast.

Two CPU processes (gloo) under torchrun run the fake training; rank 1 is stopped mid-run. With heartbeats
(runtime.peer_timeout_s=3) rank 0 names rank 1 and exits 3 within seconds; with heartbeats slower than
the collective timeout (runtime.collective_timeout_s=5), the timed-out collective becomes "peer failed".
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from apex_x.adapters.checkpoints.torch_store import TorchCheckpointStore

from .conftest import REPO


def _workers(parent: int) -> dict[int, int]:
    """rank -> pid of the torchrun workers under `parent` (read from /proc)."""
    found: dict[int, int] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            ppid = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            environ = (entry / "environ").read_bytes().split(b"\0")
        except (OSError, IndexError, ValueError):
            continue
        rank = next((item[5:] for item in environ if item.startswith(b"RANK=")), None)
        if ppid == parent and rank is not None:
            found[int(rank)] = int(entry.name)
    return found


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


def _freeze_rank_1(run: Path, *overrides: str) -> tuple[str, float, bool]:
    """Start the run, SIGSTOP rank 1 once epoch 1 is written; (stderr, seconds until rank 0 ended, ended)."""
    env = {**os.environ, "PYTHONPATH": str(REPO / "tests"), "OMP_NUM_THREADS": "1", "APEX_X_PROGRESS": "log"}
    sets = [item for pair in (("--set", text) for text in ("train.epochs=200", "train.steps_per_stage=2",
                                                            *overrides)) for item in pair]
    process = subprocess.Popen(
        [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
         "-m", "test_training.fake_run", str(run), *sets],
        cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    frozen: int | None = None
    try:
        deadline = time.monotonic() + 240
        while time.monotonic() < deadline and not (run / "checkpoints" / "epoch_0001.pt").exists():
            assert process.poll() is None, process.communicate()[1][-3000:]
            time.sleep(0.2)
        workers = _workers(process.pid)
        assert sorted(workers) == [0, 1], workers
        frozen = workers[1]
        os.kill(frozen, signal.SIGSTOP)
        stopped = time.monotonic()
        while time.monotonic() - stopped < 90 and _alive(workers[0]):
            time.sleep(0.1)
        seconds = time.monotonic() - stopped
        ended = not _alive(workers[0])
    finally:
        if frozen is not None:
            os.kill(frozen, signal.SIGKILL)
        _, err = process.communicate(timeout=120)
    return err, seconds, ended


@pytest.mark.slow
def test_a_frozen_rank_is_named_by_heartbeat_and_rank_0_exits_3_in_seconds(tmp_path: Path) -> None:
    err, seconds, ended = _freeze_rank_1(tmp_path / "run", "runtime.peer_timeout_s=3")
    assert ended and seconds < 20, (seconds, err[-3000:])
    assert "peer failed: rank(s) [1] stopped answering: no heartbeat for over 3 s" in err, err[-3000:]
    assert "internal error" not in err and re.search(r"exitcode\s*:\s*3\b", err), err[-3000:]
    TorchCheckpointStore().load(str(tmp_path / "run" / "checkpoints" / "last.pt"))  # still loadable


@pytest.mark.slow
def test_a_collective_timeout_becomes_peer_failed_not_an_internal_error(tmp_path: Path) -> None:
    err, seconds, ended = _freeze_rank_1(tmp_path / "run", "runtime.peer_timeout_s=600",
                                         "runtime.collective_timeout_s=5")
    assert ended and seconds < 40, (seconds, err[-3000:])
    assert "error: peer failed: another rank died or stopped answering" in err, err[-3000:]
    assert "runtime.collective_timeout_s=5" in err and "internal error" not in err
