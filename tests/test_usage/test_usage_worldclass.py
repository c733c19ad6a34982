"""A worldclass (DINOv2 + LoRA) checkpoint through the notebook path, at an input size that is no multiple of 14."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from apex_x.domain import checkpoint_format as fmt
from apex_x.domain.config import ApexConfig
from apex_x.domain.types import CategoryMap

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def worldclass_checkpoint(tmp_path_factory: pytest.TempPathFactory) -> str:
    """A tiny DINOv2 saved locally (never downloaded), a TeacherModelV3 on it, saved as a full checkpoint."""
    from transformers import Dinov2Config, Dinov2Model

    from apex_x.adapters.checkpoints.torch_store import TorchCheckpointStore
    from apex_x.adapters.models.teacher_v3 import TeacherModelFactory

    root = tmp_path_factory.mktemp("usage_worldclass")
    torch.manual_seed(0)
    Dinov2Model(
        Dinov2Config(hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64, patch_size=14, image_size=56)
    ).save_pretrained(str(root / "dinov2"))
    settings = ApexConfig.model_validate({
        "model": {
            "profile": "worldclass", "teacher_backbone": str(root / "dinov2"), "input_height": 64, "input_width": 96,
            "teacher_pyramid_channels": 16, "lora_rank": 2,
        }
    })
    model = TeacherModelFactory().build(settings.model, 3)
    ema = {key: value + 0.01 if value.is_floating_point() else value for key, value in model.state_dict().items()}
    payload = {
        fmt.KEY_FORMAT: fmt.FORMAT_TAG, fmt.KEY_VERSION: fmt.FORMAT_VERSION, fmt.KEY_PROFILE: "worldclass",
        fmt.KEY_TEACHER: model.state_dict(), fmt.KEY_EMA: ema, fmt.KEY_CONFIG: settings.to_plain(),
        fmt.KEY_CATEGORIES: CategoryMap((1, 2, 3), ("circle", "rectangle", "triangle")).to_plain(),
        fmt.KEY_INPUT_SIZE: [64, 96], fmt.KEY_ARCHITECTURE: model.architecture(),
    }
    path = root / "best.pt"
    TorchCheckpointStore().save(payload, str(path))
    return str(path)


def test_worldclass_checkpoint_predicts_through_the_notebook_path(worldclass_checkpoint, tmp_path) -> None:
    from apex_x.notebook import load_checkpoint, smoke_run

    image = tmp_path / "wide.png"
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (50, 90, 3), dtype=np.uint8)).save(image)
    model = load_checkpoint(worldclass_checkpoint, device="cpu")
    assert model.inference.profile == "worldclass" and model.inference.weights == "ema"
    result = model.predict(image, score_threshold=0.0)
    assert result.detections.masks.shape[1:] == (50, 90) and result.input_size == (64, 96)
    report = smoke_run(worldclass_checkpoint, image, ["cpu", "cuda"])
    cpu = report["devices"]["cpu"]
    assert cpu["status"] == "ok" and cpu["retried_with_square_resize"] is False and cpu["input_size"] == [64, 96]
    expected_cuda = "ok" if torch.cuda.is_available() else "skip"
    assert report["devices"]["cuda"]["status"] == expected_cuda


def _moved_backbone_copy(checkpoint: str, folder, backbone: str):
    """The checkpoint with its config naming a backbone this machine does not have (moved or never cached)."""
    from apex_x.adapters.checkpoints.torch_store import TorchCheckpointStore

    store = TorchCheckpointStore()
    payload = store.load(checkpoint)
    payload[fmt.KEY_CONFIG]["model"]["teacher_backbone"] = backbone
    path = folder / "moved_backbone.pt"
    store.save(payload, str(path))
    return path


def _offline_empty_cache_env(tmp_path) -> dict[str, str]:
    env = {key: value for key, value in os.environ.items() if not key.startswith(("HF_", "HUGGINGFACE_", "TRANSFORMERS_"))}
    (tmp_path / "empty_hf_home").mkdir()
    return {**env, "HF_HUB_OFFLINE": "1", "HF_HOME": str(tmp_path / "empty_hf_home"), "PYTHONPATH": str(ROOT)}


def test_worldclass_checkpoint_predicts_offline_with_an_empty_cache(worldclass_checkpoint, tmp_path) -> None:
    """The checkpoint alone rebuilds TeacherModelV3 (its stored DINOv2 config): no cache, folder or network."""
    checkpoint = _moved_backbone_copy(worldclass_checkpoint, tmp_path, "facebook/dinov2-large")
    image = tmp_path / "wide.png"
    Image.fromarray(np.random.default_rng(1).integers(0, 255, (50, 90, 3), dtype=np.uint8)).save(image)
    env = _offline_empty_cache_env(tmp_path)
    started = time.monotonic()
    result = subprocess.run(
        [sys.executable, "-m", "apex_x.cli", "predict", "--checkpoint", str(checkpoint), "--image", str(image),
         "--output", str(tmp_path / "pred"), "--device", "cpu", "--score-threshold", "0.0"],
        env=env, cwd=tmp_path, capture_output=True, text=True, timeout=300,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    assert time.monotonic() - started < 120  # no hub retries (they took ~25 s before)
    assert not any((tmp_path / "empty_hf_home").rglob("*.json"))  # nothing was fetched into the cache
    smoke = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "notebook_checkpoint_smoke.py"), "--checkpoint", str(checkpoint),
         "--image", str(image), "--devices", "cpu", "--output-json", str(tmp_path / "smoke.json")],
        env=env, cwd=tmp_path, capture_output=True, text=True, timeout=300,
    )
    assert smoke.returncode == 0, smoke.stdout + smoke.stderr[-2000:]
    assert json.loads((tmp_path / "smoke.json").read_text())["devices"]["cpu"]["status"] == "ok"


def test_worldclass_checkpoint_loads_with_its_backbone_folder_moved(worldclass_checkpoint, tmp_path, monkeypatch) -> None:
    from apex_x.notebook import load_checkpoint

    checkpoint = _moved_backbone_copy(worldclass_checkpoint, tmp_path, str(tmp_path / "moved" / "dinov2"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HOME", str(tmp_path / "empty"))
    model = load_checkpoint(checkpoint, device="cpu")
    original = load_checkpoint(worldclass_checkpoint, device="cpu")
    assert model.inference.network.backbone.dinov2.config.hidden_size == 32
    for (name, mine), (_, theirs) in zip(model.inference.network.state_dict().items(),
                                         original.inference.network.state_dict().items(), strict=True):
        assert torch.equal(mine, theirs), name  # the same weights, from the checkpoint alone


def test_square_resize_retry_succeeds_on_the_real_model(worldclass_checkpoint, tmp_path, monkeypatch) -> None:
    """An injected DINOv2 token-grid failure on a non-square input: the retry's size is one the model accepts."""
    from apex_x.adapters.models.dinov2_backbone import Dinov2PatchGrid
    from apex_x.notebook import smoke_run

    original_forward = Dinov2PatchGrid.forward

    def square_only(self, pixels):
        height, width = pixels.shape[-2:]
        if height != width:
            raise RuntimeError(f"shape '[1, 32, {height // 14}, {width // 14}]' is invalid for input of size 999")
        return original_forward(self, pixels)

    monkeypatch.setattr(Dinov2PatchGrid, "forward", square_only)
    image = tmp_path / "wide.png"
    Image.fromarray(np.random.default_rng(2).integers(0, 255, (50, 90, 3), dtype=np.uint8)).save(image)
    cpu = smoke_run(worldclass_checkpoint, image, ["cpu"])["devices"]["cpu"]
    assert cpu["status"] == "ok", cpu
    assert cpu["retried_with_square_resize"] is True and cpu["input_size"] == [96, 96]
    assert "is invalid for input of size" in cpu["first_error"] and isinstance(cpu["num_detections"], int)


@pytest.mark.parametrize("name", ["onnx", "torchscript"])
def test_worldclass_exports_and_its_file_matches_eager_torch(worldclass_checkpoint, tmp_path, name) -> None:
    """TeacherModelV3 (DINOv2 + LoRA + simple pyramid) exports in both formats; raw outputs equal eager torch."""
    pytest.importorskip("onnxruntime")
    import apex_x
    from apex_x.adapters.export.graph import ExportGraph
    from apex_x.adapters.export.onnx_exporter import OnnxModelExporter
    from apex_x.adapters.export.torchscript_exporter import TorchScriptModelExporter
    from apex_x.api import load_model

    result = apex_x.export(worldclass_checkpoint, name, output=tmp_path / f"teacher.{name}")
    images = torch.randint(0, 255, (1, 3, 64, 96), dtype=torch.uint8, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        eager = ExportGraph(load_model(worldclass_checkpoint, device="cpu").network).eval()(images)
    runner = OnnxModelExporter() if name == "onnx" else TorchScriptModelExporter()
    for expected, actual in zip(eager, runner.load(result.path, torch.device("cpu"))(images), strict=True):
        assert actual.shape == expected.shape and torch.allclose(actual, expected, atol=1e-3, rtol=1e-3)
    assert json.loads(Path(result.metadata_path).read_text())["profile"] == "worldclass"
