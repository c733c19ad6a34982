"""Gradient accumulation to train.nominal_batch_size: the plan (accumulate count, lr/weight-decay scale), one
accumulated step equal to one step over the whole batch, and a run that counts optimizer steps throughout."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from apex_x.adapters.config_yaml import load_config
from apex_x.application.engine.accumulation import BatchPlan, plan_batches
from apex_x.application.engine.curriculum import Stage
from apex_x.application.engine.diagnostics import RunDiagnostics
from apex_x.application.engine.distributed import DistContext
from apex_x.application.engine.schedules import loss_settings
from apex_x.application.engine.trainer import Trainer

from .fakes import FakeDatasetSource, FakeModel, FakeModelFactory, collate
from .helpers import make_use_case


@pytest.mark.parametrize(
    ("nominal", "batch", "world", "batches", "accumulate", "scale"),
    [
        (None, 8, 1, 10, 1, 1.0),  # off: one batch per step, nothing scaled
        (64, 8, 1, 100, 8, 1.0),
        (64, 6, 1, 100, 11, 66 / 64),  # round(10.67) = 11 batches: 66 images, lr and weight decay x 66/64
        (64, 8, 4, 100, 2, 1.0),  # 4 processes: 2 batches each
        (64, 128, 1, 100, 1, 2.0),  # a batch bigger than nominal: no accumulation, scaled up
        (64, 8, 1, 3, 3, 24 / 64),  # an epoch of 3 batches caps it (warned)
    ],
)
def test_the_plan_rounds_to_the_nominal_batch_size(nominal, batch, world, batches, accumulate, scale) -> None:
    overrides = [f"train.batch_size={batch}"] + ([f"train.nominal_batch_size={nominal}"] if nominal else [])
    plan = plan_batches(load_config(None, overrides).train, world, batches)
    assert (plan.accumulate, plan.effective) == (accumulate, batch * world * accumulate)
    assert plan.scale == pytest.approx(scale)
    assert plan.limited_by_epoch == (batches == 3)
    assert plan.to_plain()["unused_batches_per_epoch"] == batches % accumulate  # the dropped partial group


def test_the_batches_a_partial_group_leaves_out_are_reported() -> None:
    plan = plan_batches(load_config(None, ["train.batch_size=4", "train.nominal_batch_size=16"]).train, 1, 6)
    assert (plan.accumulate, plan.unused_batches) == (4, 2)  # 1 step per epoch; 2 of 6 batches never trained on


def _trainer(model: FakeModel, accumulate: int) -> Trainer:
    train = load_config(None, ["train.batch_size=2", "train.grad_clip_norm=null"]).train
    return Trainer(model=model, optimizer=torch.optim.SGD(model.parameters(), lr=0.5), train=train,
                   context=DistContext(), ema=None, diagnostics=RunDiagnostics(),
                   batch_plan=BatchPlan(2, 1, accumulate, 4 if accumulate > 1 else None))


def test_an_accumulated_step_equals_one_step_over_the_whole_batch() -> None:
    """The losses are means over images, so two micro-batches of 2 weighted 1/2 give the gradient of one batch
    of 4: with SGD the updates (lr x gradient) agree to float precision."""
    torch.manual_seed(0)
    whole, split = FakeModel(2).eval(), FakeModel(2).eval()  # eval: no dropout, BatchNorm on running stats
    split.load_state_dict(whole.state_dict())
    stage = Stage(0, "all", 1, {"det": 1.0, "seg": 1.0}, ("all",), 1.0, 0)
    trainers = _trainer(whole, 1), _trainer(split, 2)
    for trainer in trainers:
        trainer.begin_stage(stage, trainer.model.parameter_groups())
    settings = loss_settings(stage.losses, 1.0, load_config(None).train)
    one = trainers[0].step([collate([0, 1, 2, 3])], stage, settings)
    two = trainers[1].step([collate([0, 1]), collate([2, 3])], stage, settings)
    assert one.kind == two.kind == "applied"
    assert one.total == pytest.approx(two.total, rel=1e-5)
    for (name, a), (_, b) in zip(whole.named_parameters(), split.named_parameters(), strict=True):
        assert torch.allclose(a, b, atol=1e-6), name


def test_a_run_counts_optimizer_steps_and_reports_the_plan(tmp_path: Path) -> None:
    factory = FakeModelFactory()
    result = make_use_case(tmp_path / "run", "train.nominal_batch_size=8", source=FakeDatasetSource(train_images=16),
                           factory=factory).execute()
    assert result.status == "finished"
    plan = result.report["run"]["batch_plan"]
    assert (plan["accumulate"], plan["effective_batch_size"], plan["lr_weight_decay_scale"]) == (2, 8, 1.0)
    # 16 images in batches of 4 = 4 batches = 2 optimizer steps per epoch, 2 stages of 1 epoch
    assert result.report["run"]["steps_per_epoch"] == 2 and result.report["run"]["global_step"] == 4
    assert factory.built[0].forward_calls == 8  # every loader batch went forward once


def test_a_pause_inside_an_accumulating_epoch_resumes_bit_for_bit(tmp_path: Path) -> None:
    from .test_resume import assert_identical, load

    steps = ("train.nominal_batch_size=8", "train.steps_per_stage=3")
    source = FakeDatasetSource(train_images=32)  # 8 batches = 4 steps per epoch, capped at 3
    make_use_case(tmp_path / "straight", *steps, source=source, reports=False).execute()
    paused = tmp_path / "paused"
    assert make_use_case(paused, *steps, source=source, reports=False).execute(stop_after_steps=2).status == "paused"
    progress = load(paused / "checkpoints" / "last.pt")["progress"]
    assert (progress["global_step"], progress["step_in_epoch"]) == (2, 2)  # optimizer steps, not batches
    resumed = make_use_case(paused, *steps, source=source, reports=False).execute(
        resume_from=str(paused / "checkpoints" / "last.pt"))
    assert resumed.status == "finished"
    assert_identical(load(tmp_path / "straight" / "checkpoints" / "last.pt"), load(paused / "checkpoints" / "last.pt"))
