"""TeacherModelV3: built by its factory, the dense heads' outputs, parameter groups, checkpoint keys."""

from __future__ import annotations

import io
from pathlib import Path

import pytest
import torch

from apex_x.adapters.checkpoints.torch_store import apply_model_state
from apex_x.adapters.config_yaml import load_config
from apex_x.adapters.models.profiles import get_profile
from apex_x.adapters.models.teacher_v3 import TeacherModelFactory, TeacherModelV3
from apex_x.domain.config import ModelConfig
from apex_x.domain.errors import ConfigError
from apex_x.domain.ports import SegmentationModel


def teacher_config(folder: Path, **changes: object) -> ModelConfig:
    values = {
        "profile": "worldclass", "teacher_backbone": str(folder), "input_height": 64, "input_width": 96,
        "teacher_pyramid_channels": 32, "num_prototypes": 8, "lora_rank": 4, **changes,
    }
    return ModelConfig(**values)


@pytest.fixture(scope="module")
def teacher(tiny_dinov2_dir: Path) -> TeacherModelV3:
    torch.manual_seed(0)
    return TeacherModelFactory().build(teacher_config(tiny_dinov2_dir), num_classes=3)


def test_forward_gives_the_dense_outputs_on_a_size_that_is_not_a_multiple_of_14(teacher: TeacherModelV3) -> None:
    assert isinstance(teacher, SegmentationModel)
    images = torch.randint(0, 256, (2, 3, 64, 96), dtype=torch.uint8)
    outputs = teacher(images)
    anchors = 8 * 12 + 4 * 6 + 2 * 3  # strides 8 / 16 / 32 of 64 x 96
    assert outputs["cls_logits"].shape == (2, anchors, 3)
    assert outputs["boxes"].shape == (2, anchors, 4)
    assert outputs["prototypes"].shape == (2, 8, 16, 24)  # mask stride 4
    assert all(torch.isfinite(value).all() for value in outputs.values())


def test_parameter_groups_split_frozen_base_lora_and_heads(teacher: TeacherModelV3) -> None:
    groups = teacher.parameter_groups()
    assert set(groups) == {"backbone", "lora", "neck", "head", "mask"}
    names = {id(parameter): name for name, parameter in teacher.named_parameters()}
    ids = [id(parameter) for group in groups.values() for parameter in group]
    assert len(ids) == len(set(ids)) == len(names)  # disjoint and complete
    assert groups["lora"] and all("lora_" in names[id(p)] for p in groups["lora"])
    assert all(names[id(p)].startswith("backbone.") and "lora_" not in names[id(p)] for p in groups["backbone"])
    assert all(names[id(p)].startswith("neck.") for p in groups["neck"])
    lora_count = sum(p.numel() for p in groups["lora"])
    assert lora_count == 2 * 2 * (4 * 32 + 32 * 4)  # 2 layers x (q, v) x (A + B) at rank 4


def test_state_dict_survives_weights_only_and_loads_into_a_fresh_teacher(
    teacher: TeacherModelV3, tiny_dinov2_dir: Path
) -> None:
    with torch.no_grad():  # make the adapters matter
        for parameter in teacher.parameter_groups()["lora"]:
            parameter.add_(0.1)
    buffer = io.BytesIO()
    torch.save({"teacher": teacher.state_dict()}, buffer)
    buffer.seek(0)
    payload = torch.load(buffer, weights_only=True)
    fresh = TeacherModelFactory().build(teacher_config(tiny_dinov2_dir), num_classes=3, pretrained=False)
    report = apply_model_state(fresh, payload["teacher"], strict=True)
    assert report.ok and list(fresh.state_dict()) == list(teacher.state_dict())
    images = torch.randint(0, 256, (1, 3, 64, 96), dtype=torch.uint8)
    teacher.eval()
    fresh.eval()
    with torch.no_grad():
        assert torch.equal(fresh(images)["cls_logits"], teacher(images)["cls_logits"])
        merged = fresh.merge_lora_()(images)["cls_logits"]
    assert torch.allclose(merged, teacher(images)["cls_logits"], atol=1e-4)
    with pytest.raises(RuntimeError, match="merged"):
        fresh.save_lora_adapters("unused")


def test_gradient_checkpointing_gives_the_same_gradients(tiny_dinov2_dir: Path) -> None:
    images = torch.randint(0, 256, (1, 3, 64, 64), dtype=torch.uint8)
    grads = []
    for checkpointing in (False, True):
        torch.manual_seed(0)
        model = TeacherModelFactory().build(
            teacher_config(tiny_dinov2_dir, input_width=64, gradient_checkpointing=checkpointing), num_classes=2
        )
        model.train()
        lora = model.parameter_groups()["lora"]
        with torch.no_grad():
            for parameter in lora:
                parameter.fill_(0.05)
        outputs = model(images)
        (outputs["cls_logits"].sum() + outputs["prototypes"].mean()).backward()
        grads.append(torch.cat([parameter.grad.flatten() for parameter in lora]))
    assert grads[0].abs().sum() > 0
    assert torch.allclose(grads[0], grads[1], atol=1e-6)


def test_factory_refuses_other_profiles_and_sizes_not_multiple_of_32(tiny_dinov2_dir: Path) -> None:
    with pytest.raises(ConfigError, match="model.profile"):
        get_profile("worldclass").build(teacher_config(tiny_dinov2_dir, profile="small"), num_classes=3)
    with pytest.raises(ConfigError, match=r"model.input_height: must be a multiple of 32 \(the worldclass profile's "
                                          r"coarsest stride\), got 70; nearest valid: 64 or 96"):
        load_config(None, ["model.profile=worldclass", "model.input_height=70"])
    unchecked = teacher_config(tiny_dinov2_dir).model_copy(update={"input_height": 70})  # model_copy skips validation
    with pytest.raises(ConfigError, match=r"input size 70x96 must be a multiple of 32 .*height 70 \(nearest valid: 64 or 96\)"):
        TeacherModelFactory().build(unchecked, num_classes=3)


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_cuda_bf16_step_with_and_without_checkpointing(tiny_dinov2_dir: Path) -> None:
    images = torch.randint(0, 256, (2, 3, 64, 96), dtype=torch.uint8, device="cuda")
    grads = []
    for checkpointing in (False, True):
        torch.manual_seed(0)
        model = TeacherModelFactory().build(teacher_config(tiny_dinov2_dir, gradient_checkpointing=checkpointing), 3)
        model.cuda().train()
        lora = model.parameter_groups()["lora"]
        with torch.no_grad():
            for parameter in lora:
                parameter.fill_(0.05)
        with torch.autocast("cuda", dtype=torch.bfloat16):
            outputs = model(images)
            total = outputs["cls_logits"].float().sum() + outputs["prototypes"].float().mean()
        total.backward()
        grads.append(torch.cat([parameter.grad.flatten() for parameter in lora]))
        assert all(torch.isfinite(value).all() for value in outputs.values())
    assert torch.isfinite(grads[0]).all() and grads[0].abs().sum() > 0
    assert torch.allclose(grads[0], grads[1], rtol=0.05, atol=1e-3)
