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
def tiny_dinov2_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A local folder holding a tiny random DINOv2 (config.json + model.safetensors)."""
    import torch
    from transformers import Dinov2Config, Dinov2Model

    torch.manual_seed(0)
    folder = tmp_path_factory.mktemp("tiny_dinov2")
    Dinov2Model(Dinov2Config(**TINY_DINOV2)).save_pretrained(str(folder))
    return folder


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
def tiny_hub_cache(tmp_path_factory: pytest.TempPathFactory, tiny_dinov2_dir: Path) -> Path:
    """A hub cache folder where `facebook/dinov2-large` is the tiny model (for the checklist as written)."""
    cache_dir = tmp_path_factory.mktemp("hf_hub_cache")
    populate_hub_cache(cache_dir, "facebook/dinov2-large", tiny_dinov2_dir)
    return cache_dir


@pytest.fixture
def offline_hub_cache(monkeypatch: pytest.MonkeyPatch, tiny_hub_cache: Path) -> Path:
    """Offline mode with HF_HUB_CACHE pointing at the fake cache holding the tiny dinov2-large."""
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HUB_CACHE", str(tiny_hub_cache))
    return tiny_hub_cache
