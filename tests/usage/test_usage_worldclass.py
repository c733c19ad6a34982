"""A worldclass (DINOv2 + LoRA) checkpoint through the notebook path, at an input size that is no multiple of 14."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from apex_x.domain import checkpoint_format as fmt
from apex_x.domain.config import ApexConfig
from apex_x.domain.types import CategoryMap


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
        fmt.KEY_INPUT_SIZE: [64, 96],
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
