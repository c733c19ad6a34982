"""Distillation: the DistillationLoss port adapter, its builder, and a real distilled student run."""

from __future__ import annotations

import copy
import json
from pathlib import Path

import pytest
import torch

from apex_x.adapters.checkpoints.torch_store import TorchCheckpointStore
from apex_x.adapters.models.distillation import DistillationLoss, DistillationLossBuilder, binary_kl
from apex_x.adapters.models.student import StudentModelFactory
from apex_x.adapters.models.teacher_v3 import TeacherModelV3
from apex_x.domain.config import ApexConfig, ModelConfig, TrainConfig
from apex_x.domain.errors import CheckpointError, ConfigError
from apex_x.domain.types import Batch, CategoryMap

SHAPES = CategoryMap((1, 2, 3), ("circle", "rectangle", "triangle"))


def tiny_student(seed: int) -> torch.nn.Module:
    torch.manual_seed(seed)
    config = ModelConfig(backbone="test_efficientnet", input_height=64, input_width=64, neck_channels=32,
                         num_prototypes=8)
    return StudentModelFactory().build(config, num_classes=3)


def image_batch(seed: int = 0) -> Batch:
    generator = torch.Generator().manual_seed(seed)
    images = torch.randint(0, 256, (2, 3, 64, 64), dtype=torch.uint8, generator=generator)
    empty = torch.zeros(2, 0)
    return Batch(images=images, boxes=torch.zeros(2, 0, 4), labels=empty.long(), masks=torch.zeros(2, 0, 16, 16),
                 valid=empty.bool(), crowd=empty.bool())


def test_binary_kl_is_zero_only_when_the_logits_agree() -> None:
    logits = torch.randn(5, 3)
    assert torch.equal(binary_kl(logits, logits, 2.0), torch.zeros(5, 3))
    assert (binary_kl(logits + 1.0, logits, 2.0) > 0).all()


def test_self_distillation_is_zero_and_a_different_student_gets_gradients() -> None:
    teacher = tiny_student(seed=1)
    loss = DistillationLoss(copy.deepcopy(teacher), temperature=2.0)
    batch = image_batch()
    teacher.eval()
    assert loss(batch, teacher(batch.images)).item() == 0.0

    student = tiny_student(seed=2).train()
    value = loss(batch, student(batch.images))
    assert value.item() > 0 and set(loss.last_terms) == {"cls", "box", "mask"}
    value.backward()
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in student.parameters())
    assert all(p.grad is None and not p.requires_grad for p in loss.teacher.parameters())
    loss.teacher.train()  # someone flips it: the loss puts it back in eval mode
    loss(batch, student(batch.images))
    assert not loss.teacher.training


def test_the_loss_is_clipped_and_nan_free() -> None:
    loss = DistillationLoss(tiny_student(seed=1), clip=1e-4)
    student = tiny_student(seed=2)
    value = loss(image_batch(), student(image_batch().images))
    assert value.item() == pytest.approx(1e-4)
    value.backward()
    assert all(p.grad is None or not p.grad.any() for p in student.parameters())  # clipped: no gradient


def test_a_few_steps_bring_the_student_closer_to_the_teacher() -> None:
    loss = DistillationLoss(tiny_student(seed=1))
    student = tiny_student(seed=2).train()
    optimizer = torch.optim.Adam(student.parameters(), lr=3e-3)
    batch = image_batch()
    values = []
    for _ in range(6):
        value = loss(batch, student(batch.images))
        optimizer.zero_grad()
        value.backward()
        optimizer.step()
        values.append(value.item())
    assert values[-1] < 0.7 * values[0]


def test_builder_is_off_by_default_and_explains_a_missing_teacher(tmp_path: Path) -> None:
    store = TorchCheckpointStore()
    cpu = torch.device("cpu")
    assert DistillationLossBuilder(ApexConfig(), store)(categories=SHAPES, device=cpu) == []
    settings = ApexConfig(train=TrainConfig(distill_weight=0.5))
    with pytest.raises(ConfigError, match="train.teacher_checkpoint: train.distill_weight=0.5 turns distillation on"):
        DistillationLossBuilder(settings, store)(categories=SHAPES, device=cpu)
    raw = tmp_path / "raw.pt"
    torch.save({"weight": torch.ones(2)}, raw)
    settings = ApexConfig(train=TrainConfig(distill_weight=0.5, teacher_checkpoint=str(raw)))
    with pytest.raises(CheckpointError, match="must be an Apex-X training checkpoint"):
        DistillationLossBuilder(settings, store)(categories=SHAPES, device=cpu)


def test_builder_loads_the_worldclass_teacher_frozen_and_checks_its_classes(worldclass_run: Path) -> None:
    best = str(worldclass_run / "checkpoints" / "best.pt")
    settings = ApexConfig(train=TrainConfig(distill_weight=1.0, teacher_checkpoint=best, distill_temperature=3.0))
    (loss,) = DistillationLossBuilder(settings, TorchCheckpointStore())(categories=SHAPES, device=torch.device("cpu"))
    assert isinstance(loss.teacher, TeacherModelV3) and loss.teacher.lora_merged and not loss.teacher.training
    assert loss.name == "distill" and loss.temperature == 3.0
    other = CategoryMap((1, 2), ("cat", "dog"))
    with pytest.raises(ConfigError, match=r"trained on classes \['circle', 'rectangle', 'triangle'\]"):
        DistillationLossBuilder(settings, TorchCheckpointStore())(categories=other, device=torch.device("cpu"))


def test_a_student_distils_from_the_worldclass_teacher_with_the_real_trainer(
    worldclass_run: Path, worldclass_workdir: Path, tmp_path: Path
) -> None:
    from apex_x.api import train

    coco = worldclass_workdir / "data" / "coco"
    overrides = [
        "model.profile=small", "model.backbone=test_efficientnet", "model.input_height=64", "model.input_width=64",
        "model.neck_channels=32", "model.num_prototypes=8", "train.epochs=1", "train.batch_size=4",
        f"train.output_dir={tmp_path / 'student'}", "train.distill_weight=0.5",
        f"train.teacher_checkpoint={worldclass_run / 'checkpoints' / 'best.pt'}", "runtime.device=cpu",
        f"data.coco_train_images={coco / 'train2017'}",
        f"data.coco_train_annotations={coco / 'annotations' / 'instances_train2017.json'}",
        f"data.coco_val_images={coco / 'val2017'}",
        f"data.coco_val_annotations={coco / 'annotations' / 'instances_val2017.json'}",
    ]
    train(None, steps_per_stage=2, seed=0, overrides=overrides)
    report = json.loads((tmp_path / "student" / "train_report.json").read_text())
    assert report["auxiliary_losses"] == ["distill"]
    for epoch in report["history"]:
        distill = epoch["train"]["distill"]
        assert distill > 0 and distill == pytest.approx(epoch["diagnostics"]["component_means"]["distill"])
    assert report["config"]["train"]["distill_weight"] == 0.5
