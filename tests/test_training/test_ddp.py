"""DDP under torchrun with 2 CPU processes (gloo): same decisions on every rank, rank 0 alone writes."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

from apex_x.adapters.checkpoints.torch_store import TorchCheckpointStore
from apex_x.domain import checkpoint_format as fmt

REPO = Path(__file__).resolve().parents[2]


def test_two_process_gloo_run_agrees_on_skips_and_writes_once(tmp_path: Path) -> None:
    run = tmp_path / "ddp"
    env = {**os.environ, "PYTHONPATH": str(REPO / "tests"), "OMP_NUM_THREADS": "1", "APEX_X_PROGRESS": "log"}
    command = [
        sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
        "-m", "test_training.fake_run", str(run), "--set", "train.steps_per_stage=2", "--nan-at", "2@1",
    ]
    result = subprocess.run(command, cwd=REPO, env=env, capture_output=True, text=True, timeout=400)
    assert result.returncode == 0, result.stderr[-4000:]
    lines = sorted(re.findall(r"RESULT \w+ rank=\d+ applied=\d+ skipped=\d+", result.stdout))
    # NaN on rank 1 only, at its 2nd step: both ranks skip that step (4 batches, 3 applied).
    assert lines == ["RESULT finished rank=0 applied=3 skipped=1", "RESULT finished rank=1 applied=3 skipped=1"]
    report = json.loads((run / "train_report.json").read_text())
    assert report["run"]["world_size"] == 2 and report["run"]["backend"] == "gloo"
    assert report["history"][-1]["val"]["segm_AP"] is not None  # validation gathered from both ranks
    assert report["history"][-1]["evaluation"]["num_detections"] == 8  # one per val image, both shards
    names = sorted(path.name for path in (run / "checkpoints").iterdir())
    assert names == ["best.pt", "epoch_0001.pt", "epoch_0002.pt", "last.pt"]
    payload = TorchCheckpointStore().load(str(run / "checkpoints" / "last.pt"))
    assert not any(key.startswith("module.") for key in payload[fmt.KEY_MODEL])
    assert payload[fmt.KEY_PROGRESS]["global_step"] == 4
