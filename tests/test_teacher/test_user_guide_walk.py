"""The user guide (sections 1-8) walked as a new user would, in a fresh copy of the repository's tracked files.

Each command is the guide's as written, preceded only by the data-making command the README puts before
it; the worldclass lines read `facebook/dinov2-large` from a Hugging Face cache laid out as a first
download leaves it (holding a tiny random DINOv2), offline. `...` in the guide stands for options: the
worldclass lines add the small-run overrides (64 px, 1 step) so the walk takes seconds per command.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from .conftest import REPO_ROOT, SMALL_RUN

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def clone(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The repository's tracked files (symlinks kept as links), as `git clone` would lay them out."""
    listed = subprocess.run(["git", "ls-files", "-z"], cwd=REPO_ROOT, capture_output=True, check=False)
    if listed.returncode != 0 or not listed.stdout:
        pytest.skip("not a git checkout: the walk copies the tracked files of one")
    target = tmp_path_factory.mktemp("fresh_clone")
    for name in filter(None, listed.stdout.decode().split("\0")):
        source, destination = REPO_ROOT / name, target / name
        destination.parent.mkdir(parents=True, exist_ok=True)
        if source.is_symlink():
            os.symlink(os.readlink(source), destination)
        elif source.is_file():
            shutil.copy2(source, destination)
    return target


@pytest.fixture(scope="module")
def guide(clone: Path, tiny_hub_cache: Path):
    """guide(*argv) -> CompletedProcess of `argv` run in the clone, offline, with the fake hub cache."""
    environment = {key: value for key, value in os.environ.items() if not key.startswith(("HF_", "APEX_X_"))}
    environment.update(
        PYTHONPATH=str(clone), HF_HUB_OFFLINE="1", HF_HUB_CACHE=str(tiny_hub_cache), OMP_NUM_THREADS="1",
        MPLBACKEND="Agg",
    )

    def run(*argv: str) -> subprocess.CompletedProcess[str]:
        command = [sys.executable if part == "python" else part for part in argv]
        return subprocess.run(command, cwd=clone, env=environment, capture_output=True, text=True, timeout=600)

    return run


def _ok(result: subprocess.CompletedProcess[str]) -> subprocess.CompletedProcess[str]:
    assert result.returncode == 0, f"{result.args}\n{result.stdout[-2000:]}\n{result.stderr[-3000:]}"
    assert "Traceback" not in result.stderr
    return result


def _report(folder: Path) -> dict:
    return json.loads((folder / "train_report.json").read_text())


def test_walk_the_user_guide_as_written(clone: Path, guide) -> None:
    # The guide's paths exist in a fresh clone (links to entrypoints/).
    for path in ("scripts/train.py", "scripts/train_worldclass_coco.py", "scripts/notebook_checkpoint_smoke.py",
                 "notebooks/checkpoint_image_inference.ipynb"):
        assert (clone / path).is_file(), path

    # 1. Prerequisites: dependency preflight, then the worldclass checklist's entry points.
    preflight = _ok(guide("python", "-m", "apex_x.cli", "preflight", "--profile", "worldclass"))
    assert "facebook/dinov2-large" in preflight.stdout and "cached" in preflight.stdout
    # The README's command before the data examples: the built-in dataset where coco_baseline.yaml reads it.
    _ok(guide("python", "-m", "apex_x.cli", "make-shapes", "data/coco", "--layout", "coco",
              "--train", "8", "--val", "4", "--size", "64"))
    small = [*SMALL_RUN, "--steps-per-stage", "1"]
    _ok(guide("python", "-m", "apex_x.cli", "train", "configs/worldclass.yaml", *small,
              "--set", "train.output_dir=artifacts/worldclass_cli"))
    _ok(guide("python", "scripts/train_worldclass_coco.py", "--config", "configs/worldclass.yaml", *small,
              "--set", "train.output_dir=artifacts/worldclass_wrapper"))
    worldclass = _report(clone / "artifacts" / "worldclass_wrapper")
    assert worldclass["status"].startswith("finished") and worldclass["dataset_mode"] == "real"

    # 2. Canonical entry points: the wrapper, and the minimal example as written.
    _ok(guide("python", "scripts/train.py", "--config", "configs/coco_baseline.yaml", "--steps-per-stage", "1",
              "--set", "model.input_height=64", "--set", "model.input_width=64",
              "--set", "train.output_dir=artifacts/wrapper_small"))
    minimal = ["python", "-m", "apex_x.cli", "train", "configs/coco_baseline.yaml", "--steps-per-stage", "10",
               "--seed", "0", "--num-classes", "3", "--set", "train.epochs=1",
               "--set", "train.output_dir=artifacts/train_output"]
    # Paused after its first step (as Ctrl-C would), so that section 6's resume line has a run to continue.
    _ok(guide(*minimal, "--stop-after-steps", "1"))
    paused = _report(clone / "artifacts" / "train_output")
    assert paused["status"] != "finished"

    # 3. Dataset policy: the explicit preflight, and the synthetic smoke run.
    _ok(guide("python", "-m", "apex_x.cli", "dataset-preflight", "configs/coco_baseline.yaml",
              "--output-json", "artifacts/dataset_preflight.json"))
    assert json.loads((clone / "artifacts" / "dataset_preflight.json").read_text())["ok"] is True
    _ok(guide("python", "-m", "apex_x.cli", "train", "examples/smoke_cpu.yaml", "--steps-per-stage", "1",
              "--set", "train.allow_synthetic_fallback=true"))
    assert _report(clone / "artifacts" / "smoke_cpu")["dataset_mode"] == "synthetic"

    # 6. Resume as written: the paused minimal example runs to its end (its own 1 epoch per stage).
    _ok(guide("python", "-m", "apex_x.cli", "train", "configs/coco_baseline.yaml",
              "--resume", "artifacts/train_output/checkpoints/last.pt"))
    finished = _report(clone / "artifacts" / "train_output")
    assert finished["status"].startswith("finished") and len(finished["history"]) == 2
    # 4/5. The run's files as the guide lists them.
    for name in ("train_report.json", "train_report.md", "config.json", "checkpoints/best.pt",
                 "checkpoints/last.pt", "checkpoints/epoch_0001.pt"):
        assert (clone / "artifacts" / "train_output" / name).is_file(), name

    # 8. The notebook smoke runner as written, on a worldclass checkpoint at the guide's path.
    checkpoint = clone / "outputs" / "a100_v3_1024px" / "best_1024.pt"
    checkpoint.parent.mkdir(parents=True)
    shutil.copy2(clone / "artifacts" / "worldclass_cli" / "checkpoints" / "best.pt", checkpoint)
    image = sorted((clone / "data" / "coco" / "val2017").iterdir())[0]
    smoke = _ok(guide("python", "scripts/notebook_checkpoint_smoke.py", "--checkpoint", str(checkpoint.relative_to(clone)),
                      "--image", str(image), "--devices", "cpu,cuda",
                      "--output-json", "artifacts/notebook_smoke/report.json"))
    report = json.loads((clone / "artifacts" / "notebook_smoke" / "report.json").read_text())
    assert report["devices"]["cpu"]["status"] == "ok"
    assert report["devices"]["cuda"]["status"] == ("ok" if torch.cuda.is_available() else "skip")
    assert "cpu: ok" in smoke.stdout
