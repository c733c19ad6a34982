"""LoRA through peft: targets discovered per naming, explicit lists honoured, adapters alone, merging."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from torch import nn

from apex_x.adapters.models.dinov2_backbone import load_dinov2
from apex_x.adapters.models.lora import (
    apply_lora,
    discover_lora_targets,
    load_lora_adapters,
    lora_parameters,
    merge_lora,
    save_lora_adapters,
)
from apex_x.domain.config import ModelConfig
from apex_x.domain.errors import CheckpointError, ConfigError


class _OldSelfAttention(nn.Module):
    """The attention naming of transformers 4.x DINOv2: attention.attention.{query,key,value}."""

    def __init__(self, width: int) -> None:
        super().__init__()
        self.query, self.key, self.value = nn.Linear(width, width), nn.Linear(width, width), nn.Linear(width, width)


class _OldBlock(nn.Module):
    def __init__(self, width: int) -> None:
        super().__init__()
        self.attention = nn.Module()
        self.attention.attention = _OldSelfAttention(width)
        self.attention.output = nn.Module()
        self.attention.output.dense = nn.Linear(width, width)
        self.mlp = nn.Sequential(nn.Linear(width, 2 * width), nn.Linear(2 * width, width))


class _FusedBlock(nn.Module):
    """timm-style ViT attention: one fused qkv projection."""

    def __init__(self, width: int) -> None:
        super().__init__()
        self.attn = nn.Module()
        self.attn.qkv = nn.Linear(width, 3 * width)
        self.attn.proj = nn.Linear(width, width)


def _lora_wrapped(model: nn.Module) -> set[str]:
    from peft.tuners.lora import LoraLayer

    return {name.split("base_model.model.")[-1] for name, module in model.named_modules() if isinstance(module, LoraLayer)}


def test_targets_are_discovered_for_each_naming(tiny_dinov2_dir: Path) -> None:
    assert discover_lora_targets(load_dinov2(str(tiny_dinov2_dir))) == ["q_proj", "v_proj"]  # transformers 5.x
    assert discover_lora_targets(nn.Sequential(_OldBlock(8), _OldBlock(8))) == ["query", "value"]  # older releases
    assert discover_lora_targets(nn.Sequential(_FusedBlock(8))) == ["qkv"]
    with pytest.raises(ConfigError, match="model.lora_target_modules: cannot discover"):
        discover_lora_targets(nn.Sequential(nn.Linear(4, 4), nn.Linear(4, 4)))


def test_discovered_targets_wrap_only_query_and_value(tiny_dinov2_dir: Path) -> None:
    wrapped = apply_lora(load_dinov2(str(tiny_dinov2_dir)), ModelConfig(lora_rank=4, lora_alpha=8.0))
    assert _lora_wrapped(wrapped) == {f"encoder.layer.{i}.attention.{p}" for i in range(2) for p in ("q_proj", "v_proj")}
    lora_a = wrapped.base_model.model.encoder.layer[0].attention.q_proj.lora_A["default"].weight
    assert lora_a.shape == (4, 32)  # rank from the config
    assert wrapped.base_model.model.encoder.layer[0].attention.q_proj.scaling["default"] == pytest.approx(2.0)
    older = apply_lora(nn.Sequential(_OldBlock(8)), ModelConfig(lora_rank=2))
    assert _lora_wrapped(older) == {"0.attention.attention.query", "0.attention.attention.value"}


def test_an_explicit_list_is_honoured_and_a_wrong_name_is_a_clear_error(tiny_dinov2_dir: Path) -> None:
    config = ModelConfig(lora_target_modules=["k_proj", "o_proj", "fc1"], lora_dropout=0.1)
    wrapped = apply_lora(load_dinov2(str(tiny_dinov2_dir)), config)
    assert _lora_wrapped(wrapped) == {
        f"encoder.layer.{i}.{name}" for i in range(2) for name in ("attention.k_proj", "attention.o_proj", "mlp.fc1")
    }
    with pytest.raises(ConfigError) as caught:
        apply_lora(load_dinov2(str(tiny_dinov2_dir)), ModelConfig(lora_target_modules=["q_proj", "query"]))
    message = str(caught.value)
    assert message.startswith("model.lora_target_modules: ['query'] match no linear layer")
    assert "q_proj" in message and "v_proj" in message  # the valid names are listed


def _trained_like(wrapped: nn.Module, seed: int) -> None:
    """Give every LoRA B matrix non-zero values (fresh adapters are zero: no effect to compare)."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for parameter in lora_parameters(wrapped):
            parameter.copy_(torch.randn(parameter.shape, generator=generator) * 0.5)


def test_adapters_alone_round_trip_and_merged_inference_equals_unmerged(tiny_dinov2_dir: Path, tmp_path: Path) -> None:
    from safetensors.torch import load_file

    config = ModelConfig(lora_rank=4)
    pixels = torch.randn(2, 3, 56, 70)
    trained = apply_lora(load_dinov2(str(tiny_dinov2_dir)), config).eval()
    _trained_like(trained, seed=0)
    with torch.no_grad():
        expected = trained(pixel_values=pixels).last_hidden_state

    weights_file = save_lora_adapters(trained, tmp_path / "adapters")
    assert weights_file.name == "adapter_model.safetensors" and (tmp_path / "adapters" / "adapter_config.json").is_file()
    stored = load_file(str(weights_file))
    assert stored and all("lora_" in key for key in stored)  # the adapters alone, no base weights
    assert sum(t.numel() for t in stored.values()) == sum(p.numel() for p in lora_parameters(trained))

    fresh = apply_lora(load_dinov2(str(tiny_dinov2_dir)), config).eval()
    with torch.no_grad():
        assert not torch.allclose(fresh(pixel_values=pixels).last_hidden_state, expected, atol=1e-4)
    load_lora_adapters(fresh, tmp_path / "adapters")
    with torch.no_grad():
        assert torch.allclose(fresh(pixel_values=pixels).last_hidden_state, expected, atol=1e-6)
        merged = merge_lora(fresh).eval()
        assert not _lora_wrapped(merged)
        assert torch.allclose(merged(pixel_values=pixels).last_hidden_state, expected, atol=1e-5)


def test_adapters_of_another_rank_are_refused(tiny_dinov2_dir: Path, tmp_path: Path) -> None:
    save_lora_adapters(apply_lora(load_dinov2(str(tiny_dinov2_dir)), ModelConfig(lora_rank=4)), tmp_path / "r4")
    other = apply_lora(load_dinov2(str(tiny_dinov2_dir)), ModelConfig(lora_rank=2))
    with pytest.raises(CheckpointError, match="do not fit this model"):
        load_lora_adapters(other, tmp_path / "r4")
    with pytest.raises(CheckpointError, match="no LoRA adapter file"):
        load_lora_adapters(other, tmp_path / "nothing_here")
