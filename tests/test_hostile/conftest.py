"""Hostile-input fixtures: a tiny real run (its checkpoints and config), the CLI under a memory limit."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
MEASURE = Path(__file__).with_name("measure.py")
SMOKE = REPO / "entrypoints" / "scripts" / "notebook_checkpoint_smoke.py"
AS_LIMIT = 5 << 30  # address space: torch's import alone maps ~3.3 GB, a 2 GiB bomb would not fit
RSS_BOUND_KB = 1200 * 1024  # every refusal below stays well under the size of what it refuses

TINY = """\
model:
  profile: small
  input_height: 64
  input_width: 64
  backbone: mobilenetv3_small_050
  width_multiplier: 0.25
train:
  epochs: 1
  batch_size: 8
  warmup_steps: 0
  checkpoint_metric: bbox_AP
  output_dir: {output_dir}
data:
  coco_train_images: {train_images}
  coco_train_annotations: {train_annotations}
  coco_val_images: {val_images}
  coco_val_annotations: {val_annotations}
runtime:
  device: cpu
"""


@dataclass(frozen=True)
class Outcome:
    code: int
    stdout: str
    stderr: str
    seconds: float
    peak_rss_kb: int

    @property
    def error_line(self) -> str:
        lines = [line for line in self.stderr.splitlines() if line.startswith(("error:", "internal error"))]
        return lines[-1] if lines else ""


def run_limited(args: list[str], *, timeout: float = 120.0, cwd: Path = REPO, env: dict[str, str] | None = None,
                limit: int = AS_LIMIT) -> Outcome:
    """`python measure.py LIMIT args...` with the worktree on PYTHONPATH; the peak RSS comes from the child."""
    environment = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")]),
                   "APEX_X_PROGRESS": "log", "OMP_NUM_THREADS": "1", **(env or {})}
    started = time.monotonic()
    result = subprocess.run([sys.executable, str(MEASURE), str(limit), *args], cwd=cwd, env=environment,
                            capture_output=True, text=True, timeout=timeout)
    found = re.findall(r"PEAK_RSS_KB=(-?\d+)", result.stderr)
    return Outcome(result.returncode, result.stdout, result.stderr, time.monotonic() - started,
                   int(found[-1]) if found else -1)


def cli(*args: str, **kwargs: object) -> Outcome:
    return run_limited(["-m", "apex_x.cli", *args], **kwargs)  # type: ignore[arg-type]


@dataclass(frozen=True)
class TinyRun:
    config: Path
    output_dir: Path
    image: Path

    @property
    def last(self) -> Path:
        return self.output_dir / "checkpoints" / "last.pt"


@pytest.fixture(scope="session")
def tiny_run(tmp_path_factory: pytest.TempPathFactory, shapes_dataset) -> TinyRun:  # noqa: ANN001
    """A real 2-epoch run of the small profile on the shapes dataset (1 step per epoch), trained once."""
    from apex_x.api import train

    root = tmp_path_factory.mktemp("hostile_run")
    paths = shapes_dataset
    config = root / "tiny.yaml"
    config.write_text(TINY.format(output_dir=root / "run", train_images=paths.train_images,
                                  train_annotations=paths.train_annotations, val_images=paths.val_images,
                                  val_annotations=paths.val_annotations))
    result = train(str(config), steps_per_stage=1, seed=0, log_level="warning")
    assert result.status == "finished"
    image = next(Path(paths.val_images).iterdir())
    return TinyRun(config, root / "run", image)


@pytest.fixture(scope="session")
def bomb(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A 2 MB torch.save archive holding one 2 GiB tensor of zeros ('backbone.weight'), deflated."""
    from .builders import write_torch_bomb

    return write_torch_bomb(tmp_path_factory.mktemp("bomb") / "bomb.pt")
