"""Learning-rate schedule, loss ramps, stage plans, resume positions and trainable groups."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch

from apex_x.adapters.config_yaml import load_config
from apex_x.adapters.models.profiles import get_profile
from apex_x.application.engine.curriculum import apply_trainable, check_groups, set_train_mode
from apex_x.application.engine.curriculum import plan_stages as plan_with
from apex_x.application.engine.ema import ModelEma
from apex_x.application.engine.schedules import loss_settings, lr_factor
from apex_x.application.engine.train_state import Position, next_start
from apex_x.domain.errors import ConfigError
from apex_x.loss_components.boundary import boundary_scale
from apex_x.loss_components.det import box_scale

from .fakes import FakeModel


def plan_stages(settings):
    """The curriculum of a config, with its profile's default stages."""
    return plan_with(settings, get_profile(settings.model.profile).default_stages(settings))


def test_warmup_then_cosine_down_to_the_floor() -> None:
    factors = [lr_factor(step, total_steps=110, warmup_steps=10, min_lr_ratio=0.05) for step in range(111)]
    assert factors[0] == pytest.approx(0.1) and factors[9] == pytest.approx(1.0)
    assert factors[10] == pytest.approx(1.0)
    assert factors[60] == pytest.approx(0.05 + 0.95 * 0.5)
    assert factors[110] == pytest.approx(0.05)
    assert all(a >= b for a, b in zip(factors[10:], factors[11:], strict=False))


def test_loss_ramps_follow_the_seed_knobs() -> None:
    train = load_config(None, [
        "train.loss_boundary_warmup_epochs=2", "train.loss_boundary_max_scale=3.0",
        "train.loss_box_warmup_epochs=4", "train.loss_box_scale_start=0.5", "train.loss_box_scale_end=1.5",
    ]).train
    assert boundary_scale(1.9, train) == 0.0
    assert boundary_scale(3.0, train) == pytest.approx(1.5)
    assert boundary_scale(9.0, train) == pytest.approx(3.0)
    assert box_scale(0.0, train) == pytest.approx(0.5)
    assert box_scale(2.0, train) == pytest.approx(1.0)
    assert box_scale(10.0, train) == pytest.approx(1.5)
    early = loss_settings({"det": 1.0, "seg": 2.0, "boundary": 1.0, "distill": 1.0}, 1.0, train)
    assert early.weights == {"det": 1.0, "seg": 2.0}  # boundary still at 0: not computed; distill is the trainer's
    late = loss_settings({"det": 1.0, "boundary": 2.0}, 5.0, train)
    assert late.weights == {"det": 1.0, "boundary": 6.0} and late.clips["det"] == train.loss_det_component_clip
    no_warmup = load_config(None, ["train.loss_boundary_warmup_epochs=0", "train.loss_box_warmup_epochs=0"]).train
    assert boundary_scale(0.0, no_warmup) == no_warmup.loss_boundary_max_scale
    assert box_scale(0.0, no_warmup) == no_warmup.loss_box_scale_end


def test_default_small_curriculum_and_epoch_numbering() -> None:
    stages = plan_stages(load_config(None, ["train.epochs=3"]))
    assert [(s.name, s.epochs, s.first_epoch) for s in stages] == [("det_stability", 3, 0), ("seg_boundary", 3, 3)]
    assert stages[0].losses == {"det": 1.0}
    custom = plan_stages(load_config(None, [
        "train.epochs=2",
        'train.stages=[{name: warm, epochs: 1, losses: {det: 1.0}}, {name: full, lr_scale: 0.5}]',
    ]))
    assert [(s.name, s.epochs, s.first_epoch, s.lr_scale) for s in custom] == [("warm", 1, 0, 1.0), ("full", 2, 1, 0.5)]
    with pytest.raises(ConfigError, match=r"train.stages.0.losses"):
        plan_stages(load_config(None, ['train.stages=[{name: off, losses: {det: 0.0}}]']))


def test_next_start_continues_mid_epoch_and_extends_the_current_stage() -> None:
    stages = plan_stages(load_config(None, ["train.epochs=2"]))
    first = next_start(stages, None)
    assert (first.stage_index, first.epoch, first.start_batch) == (0, 0, 0)
    mid = next_start(stages, Position(0, "det_stability", 1, 1, 5, False, 12))
    assert (mid.stage_index, mid.epoch, mid.start_batch) == (0, 1, 5)
    end_of_stage = Position(0, "det_stability", 1, 1, 8, True, 16)
    start = next_start(stages, end_of_stage)
    assert (start.stage_index, start.epoch, start.start_batch) == (1, 2, 0)
    finished = Position(1, "seg_boundary", 3, 1, 8, True, 32, finished=True)
    assert next_start(stages, finished) is None
    longer = plan_stages(load_config(None, ["train.epochs=3"]))
    start = next_start(longer, end_of_stage)  # the extended first stage continues before stage 2
    assert (start.stage_index, start.epoch) == (0, 2)


def test_trainable_groups_freeze_the_rest_and_unknown_groups_are_named() -> None:
    model = FakeModel(2)
    groups = model.parameter_groups()
    stage = plan_stages(load_config(None, ['train.stages=[{name: heads, trainable: [head, mask]}]']))[0]
    count = apply_trainable(model, groups, stage)
    assert count == sum(p.numel() for p in [*groups["head"], *groups["mask"]])
    assert not any(p.requires_grad for p in groups["backbone"])
    set_train_mode(model)
    assert not model.stem[1].training and model.training  # frozen BatchNorm keeps its statistics
    bad = plan_stages(load_config(None, ['train.stages=[{name: ft, trainable: [lora, head]}]']))
    with pytest.raises(ConfigError, match=r"train.stages.0.trainable.*'lora'"):
        check_groups(bad, groups, from_defaults=False)


def test_ema_follows_with_warmup_and_reloads() -> None:
    model = torch.nn.Linear(2, 1)
    ema = ModelEma(model, decay=0.9, tau=1.0)
    with torch.no_grad():
        model.weight.add_(1.0)
    ema.update()
    decay = 0.9 * (1 - math.exp(-1.0))
    expected = model.weight * (1 - decay) + (model.weight - 1.0) * decay
    assert torch.allclose(ema.weights()["weight"], expected)
    clone = ModelEma(model, decay=0.9, tau=1.0)
    clone.load(ema.weights(), ema.updates)
    assert clone.updates == 1 and torch.equal(clone.weights()["weight"], ema.weights()["weight"])


def test_config_roundtrip_helper_path(tmp_path: Path) -> None:
    settings = load_config(None, [f"train.output_dir={tmp_path}", "train.checkpoint_every_steps=5"])
    assert settings.train.checkpoint_every_steps == 5
