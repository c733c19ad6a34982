"""Teacher fixtures: a tiny DINOv2 written with save_pretrained (and a fake hub cache), never downloaded."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

TINY_DINOV2 = {
    "hidden_size": 32,
    "num_hidden_layers": 2,
    "num_attention_heads": 2,
    "intermediate_size": 64,
    "patch_size": 14,
    "image_size": 56,
}
FAKE_SNAPSHOT = "0123456789abcdef0123456789abcdef01234567"


@pytest.fixture(scope="session")
def tiny_dinov2_saved(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict]:
    """A tiny random DINOv2 saved with save_pretrained, and its state dict (this transformers' key names)."""
    import torch
    from transformers import Dinov2Config, Dinov2Model

    torch.manual_seed(0)
    folder = tmp_path_factory.mktemp("tiny_dinov2")
    model = Dinov2Model(Dinov2Config(**TINY_DINOV2))
    model.save_pretrained(str(folder))
    return folder, {key: value.detach().clone() for key, value in model.state_dict().items()}


@pytest.fixture(scope="session")
def tiny_dinov2_dir(tiny_dinov2_saved: tuple[Path, dict]) -> Path:
    """A local folder holding a tiny random DINOv2 (config.json + model.safetensors)."""
    return tiny_dinov2_saved[0]


@pytest.fixture(scope="session")
def tiny_dinov2_state(tiny_dinov2_saved: tuple[Path, dict]) -> dict:
    """The tiny DINOv2's weights as Dinov2Model.state_dict() names them (the on-disk names may differ)."""
    return tiny_dinov2_saved[1]


def populate_hub_cache(cache_dir: Path, repo_id: str, source: Path) -> Path:
    """Lays `source` out as huggingface_hub's cache does for `repo_id` (refs/main -> snapshots/<sha>)."""
    repo = cache_dir / ("models--" + repo_id.replace("/", "--"))
    snapshot = repo / "snapshots" / FAKE_SNAPSHOT
    snapshot.mkdir(parents=True, exist_ok=True)
    for file in source.iterdir():
        shutil.copy2(file, snapshot / file.name)
    (repo / "refs").mkdir(exist_ok=True)
    (repo / "refs" / "main").write_text(FAKE_SNAPSHOT)
    return snapshot


@pytest.fixture(scope="session")
def tiny_hub_cache(tmp_path_factory: pytest.TempPathFactory, tiny_dinov2_dir: Path, timm_download) -> Path:
    """A hub cache folder where `facebook/dinov2-large` is the tiny model (for the checklist as written), and
    `timm/lcnet_075.ra2_in1k` a random-init lcnet_075 (configs/coco_baseline.yaml's pretrained backbone)."""
    cache_dir = tmp_path_factory.mktemp("hf_hub_cache")
    populate_hub_cache(cache_dir, "facebook/dinov2-large", tiny_dinov2_dir)
    timm_download(cache_dir, "lcnet_075")
    return cache_dir


@pytest.fixture
def offline_hub_cache(monkeypatch: pytest.MonkeyPatch, tiny_hub_cache: Path) -> Path:
    """Offline mode with HF_HUB_CACHE pointing at the fake cache holding the tiny dinov2-large."""
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HUB_CACHE", str(tiny_hub_cache))
    return tiny_hub_cache


REPO_ROOT = Path(__file__).resolve().parents[2]
WORLDCLASS_CONFIG = REPO_ROOT / "configs" / "worldclass.yaml"
# Overrides that make configs/worldclass.yaml a seconds-long CPU run on the tiny backbone.
SMALL_RUN = [
    "--set", "model.input_height=64",
    "--set", "model.input_width=64",
    "--set", "model.teacher_pyramid_channels=32",
    "--set", "model.num_prototypes=8",
    "--set", "train.epochs=1",
    "--set", "train.batch_size=4",
    "--set", "data.num_workers=0",
]


def run_cli(arguments: list[str], cwd: Path, env: dict[str, str] | None = None, script: str | None = None):
    """`python -m apex_x.cli ARGS` (or `python SCRIPT ARGS`) in `cwd`, offline; returns the CompletedProcess."""
    import os
    import subprocess
    import sys

    command = [sys.executable, script] if script else [sys.executable, "-m", "apex_x.cli"]
    environment = {**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1", **(env or {})}
    return subprocess.run(
        command + arguments, cwd=cwd, env=environment, capture_output=True, text=True, timeout=300, check=False
    )


@pytest.fixture(scope="session")
def worldclass_workdir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A working folder holding data/coco: the built-in shapes dataset in the COCO layout worldclass.yaml reads."""
    from apex_x.api import make_shapes

    workdir = tmp_path_factory.mktemp("worldclass_run")
    make_shapes(workdir / "data" / "coco", train=8, val=4, size=64, seed=0, layout="coco")
    return workdir


@pytest.fixture(scope="session")
def worldclass_run(worldclass_workdir: Path, tiny_dinov2_dir: Path) -> Path:
    """The user guide's CLI step as written (`train configs/worldclass.yaml ...`): both stages, 2 steps each."""
    result = run_cli(
        ["train", str(WORLDCLASS_CONFIG), "--steps-per-stage", "2", "--seed", "0",
         "--set", f"model.teacher_backbone={tiny_dinov2_dir}", "--set", "train.output_dir=run_cli", *SMALL_RUN],
        cwd=worldclass_workdir,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    return worldclass_workdir / "run_cli"
