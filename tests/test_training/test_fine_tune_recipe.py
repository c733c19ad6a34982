"""The fine-tuning recipe (domain/fine_tune.py): the backbone's lr multiplier, its frozen BatchNorm statistics
and its frozen first epochs, the values a pretrained start gets, and what the report says ran."""

from __future__ import annotations

import json

import torch

from apex_x.application.engine.curriculum import set_train_mode
from apex_x.domain.config import ApexConfig
from apex_x.domain.fine_tune import PRETRAINED, SCRATCH, resolve_recipe

from .fakes import FakeModelFactory
from .helpers import make_use_case


class _Recording(FakeModelFactory):
    """Keeps the weights the run's model was built with (before any step): the run trains that very model."""

    def build(self, *args, **kwargs):  # noqa: ANN002, ANN003, ANN201
        model = super().build(*args, **kwargs)
        self.initial = {name: value.detach().clone() for name, value in model.state_dict().items()}
        return model


def test_the_recipe_follows_the_backbone_s_start_and_a_key_the_config_sets_wins():
    assert resolve_recipe(ApexConfig()) == SCRATCH
    assert resolve_recipe(ApexConfig.model_validate({"model": {"backbone_pretrained": True}})) == PRETRAINED
    assert resolve_recipe(ApexConfig.model_validate({"model": {"backbone_weights": "/w.pth"}})).name == "pretrained"
    chosen = resolve_recipe(ApexConfig.model_validate(
        {"model": {"backbone_pretrained": "/w.pth"}, "train": {"backbone_lr_mult": 0.2, "freeze_backbone_epochs": 2}}))
    assert (chosen.name, chosen.backbone_lr_mult, chosen.freeze_backbone_epochs) == ("pretrained", 0.2, 2)
    assert chosen.backbone_norm_eval is PRETRAINED.backbone_norm_eval
    assert chosen.set_by_config == ("backbone_lr_mult", "freeze_backbone_epochs")


def _groups(path) -> dict[str, float]:
    from apex_x.adapters.checkpoints.torch_store import TorchCheckpointStore

    payload = TorchCheckpointStore().load(str(path))
    return {group["name"]: group["lr"] for group in payload["optimizer"]["param_groups"]}


def test_the_backbone_steps_at_its_multiple_of_the_lr_and_the_report_names_the_recipe(tmp_path):
    result = make_use_case(tmp_path / "run", "train.backbone_lr_mult=0.25").execute()
    lrs = _groups(tmp_path / "run" / "checkpoints" / "last.pt")
    assert set(lrs) == {"decay", "no_decay", "backbone_decay", "backbone_no_decay"}
    assert lrs["decay"] > 0 and abs(lrs["backbone_decay"] - 0.25 * lrs["decay"]) < 1e-12
    report = json.loads(open(result.report_path).read())
    assert report["run"]["recipe"] == {"name": "scratch", "backbone_lr_mult": 0.25, "backbone_norm_eval": False,
                                       "freeze_backbone_epochs": 0, "set_by_config": ["backbone_lr_mult"]}
    # from scratch, nothing set: the two groups of before (checkpoints of earlier runs still resume)
    make_use_case(tmp_path / "plain").execute()
    assert set(_groups(tmp_path / "plain" / "checkpoints" / "last.pt")) == {"decay", "no_decay"}


def test_freezing_the_backbone_for_the_first_epoch_splits_the_stage_and_leaves_the_backbone_as_it_was(tmp_path):
    from apex_x.adapters.checkpoints.torch_store import TorchCheckpointStore

    overrides = ("train.epochs=2", "train.freeze_backbone_epochs=1", "train.ema=false",
                 "train.stages=[{name: joint, losses: {det: 1.0, seg: 1.0}}]")
    factory = _Recording()
    result = make_use_case(tmp_path / "run", *overrides, factory=factory).execute()
    report = json.loads(open(result.report_path).read())
    assert [(stage["name"], stage["epochs"], stage.get("frozen")) for stage in report["stages"]] == [
        ("joint_backbone_frozen", 1, ["backbone"]), ("joint", 1, None)]
    store = TorchCheckpointStore()
    first = store.load(str(tmp_path / "run" / "checkpoints" / "epoch_0001.pt"))["model"]
    second = store.load(str(tmp_path / "run" / "checkpoints" / "epoch_0002.pt"))["model"]
    fresh = factory.initial
    assert torch.equal(first["stem.0.weight"], fresh["stem.0.weight"])  # frozen in epoch 1
    assert not torch.equal(first["neck.0.weight"], fresh["neck.0.weight"])  # the rest trained
    assert not torch.equal(second["stem.0.weight"], first["stem.0.weight"])  # epoch 2 trains the backbone


def test_freezing_the_backbone_for_the_whole_run_is_a_warning_of_the_report(tmp_path):
    overrides = ("train.epochs=2", "train.freeze_backbone_epochs=5", "train.ema=false",
                 "train.stages=[{name: joint, losses: {det: 1.0, seg: 1.0}}]")
    result = make_use_case(tmp_path / "run", *overrides, factory=_Recording()).execute()
    report = json.loads(open(result.report_path).read())
    assert [(stage["name"], stage["epochs"]) for stage in report["stages"]] == [("joint_backbone_frozen", 2)]
    [warning] = [item for item in report["warnings"] if item["kind"] == "train.freeze_backbone_epochs"]
    assert "covers the whole run of 2 epoch(s): the backbone stays frozen and never trains" in warning["message"]
    assert report["status"] == "finished_with_warnings"
    markdown = (tmp_path / "run" / "train_report.md").read_text()
    assert "(frozen: backbone)" in markdown


def test_norm_eval_keeps_the_backbone_s_batchnorm_statistics_while_its_scale_trains():
    network = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3), torch.nn.BatchNorm2d(4), torch.nn.Conv2d(4, 4, 1),
                                  torch.nn.BatchNorm2d(4))
    backbone = frozenset(id(param) for param in [*network[0].parameters(), *network[1].parameters()])
    set_train_mode(network, backbone)
    assert network[1].training is False and network[3].training is True
    before = network[1].running_mean.clone()
    network(torch.randn(2, 3, 8, 8)).sum().backward()
    assert torch.equal(network[1].running_mean, before) and network[1].weight.grad is not None
    assert not torch.equal(network[3].running_mean, torch.zeros(4))
