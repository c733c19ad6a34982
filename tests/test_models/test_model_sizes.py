"""model.size: named student sizes (n/s/m/l) that scale backbone, neck and heads; parameters and GFLOPs counted
with torch.utils.flop_counter on the meta device (no memory, no download)."""

from __future__ import annotations

import pytest
import torch

from apex_x.adapters.config_yaml import load_config
from apex_x.adapters.models.student import StudentModelFactory
from apex_x.application.model_summary import _flops_on, describe_summary, model_summary
from apex_x.domain.config import ModelConfig
from apex_x.domain.errors import ConfigError
from apex_x.domain.model_sizes import STUDENT_SIZES


def _meta_summary(config: ModelConfig, classes: int = 80) -> dict:
    with torch.device("meta"):
        model = StudentModelFactory().build(config, classes)
    return model_summary(model, config)


def test_each_size_picks_its_backbone_and_grows() -> None:
    summaries = [_meta_summary(ModelConfig(size=size, input_height=320, input_width=320)) for size in STUDENT_SIZES]
    assert [item["backbone"] for item in summaries] == [scale.backbone for scale in STUDENT_SIZES.values()]
    parameters = [item["parameters"] for item in summaries]
    gflops = [item["gflops"] for item in summaries]
    assert parameters == sorted(parameters) and gflops == sorted(gflops) and len(set(parameters)) == len(parameters)
    assert all(item["size"] == size and not item["size_overridden"] for item, size in zip(summaries, STUDENT_SIZES, strict=True))


def test_size_n_is_the_default_student() -> None:
    assert load_config(None, ["model.size=n"]).model.model_dump(exclude={"size"}) == ModelConfig().model_dump(
        exclude={"size"})


def test_a_key_the_config_sets_wins_over_its_size_and_is_reported() -> None:
    config = load_config(None, ["model.size=m", "model.backbone=lcnet_050", "model.input_height=64",
                                "model.input_width=64"]).model
    assert (config.backbone, config.neck_channels, config.neck_depth) == ("lcnet_050", 192, 2)
    summary = _meta_summary(config)
    assert summary["size_overridden"] == {"backbone": {"size": "cs3darknet_focus_m", "set": "lcnet_050"}}
    reloaded = ModelConfig.model_validate(config.model_dump())  # a checkpoint's stored config rebuilds the same
    assert reloaded == config


def test_an_unknown_size_lists_the_valid_ones() -> None:
    with pytest.raises(ConfigError, match=r"model.size: unknown model size 'xl'; valid: n, s, m, l"):
        load_config(None, ["model.size=xl"])


def test_depths_change_the_network_and_depth_1_keeps_the_old_keys() -> None:
    tiny = {"backbone": "lcnet_050", "input_height": 64, "input_width": 64, "neck_channels": 16}
    with torch.device("meta"):
        shallow = StudentModelFactory().build(ModelConfig(**tiny), 3).state_dict()
        deep = StudentModelFactory().build(ModelConfig(**tiny, neck_depth=2, head_depth=3), 3).state_dict()
    assert "neck.top_down.0.0.weight" in shallow and "neck.top_down.0.0.0.weight" not in shallow
    assert "neck.top_down.0.1.0.weight" in deep and "head.cls_towers.0.2.0.weight" in deep
    assert "head.cls_towers.0.2.0.weight" not in shallow


def test_flops_on_meta_equal_a_real_pass_and_scale_with_the_input() -> None:
    config = ModelConfig(backbone="lcnet_050", input_height=64, input_width=64, neck_channels=16)
    model = StudentModelFactory().build(config, 3).eval()
    small, real = _flops_on(model, 64, 64, "meta"), _flops_on(model, 64, 64, None)
    assert small == real > 0
    assert 3.5 < _flops_on(model, 128, 128, "meta") / small < 4.5
    summary = model_summary(model, config)
    assert summary["parameters"] == sum(p.numel() for p in model.parameters()) and model.training is False
    assert describe_summary(summary).startswith("model: small, backbone lcnet_050, ")
