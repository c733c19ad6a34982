"""DINOv2 loading through the real from_pretrained path: local folder, offline hub cache, clear errors."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from apex_x.adapters.models.dinov2_backbone import (
    BackboneWeightsError,
    hub_cache_dir,
    load_dinov2,
    resolve_backbone_source,
)
from apex_x.domain.errors import UserError


def _same_weights(model: torch.nn.Module, expected: dict[str, torch.Tensor]) -> bool:
    state = model.state_dict()
    return set(state) == set(expected) and all(torch.equal(state[key], value) for key, value in expected.items())


def test_local_folder_loads_the_saved_weights(tiny_dinov2_dir: Path, tiny_dinov2_state: dict) -> None:
    model = load_dinov2(str(tiny_dinov2_dir))
    assert _same_weights(model, tiny_dinov2_state)
    assert model.config.hidden_size == 32 and model.config.patch_size == 14


def test_hub_id_loads_from_the_local_cache_when_offline(offline_hub_cache: Path, tiny_dinov2_state: dict) -> None:
    source = resolve_backbone_source("facebook/dinov2-large")
    assert source.kind == "hub" and source.offline and source.cache_dir == offline_hub_cache
    assert _same_weights(load_dinov2("facebook/dinov2-large"), tiny_dinov2_state)


def test_missing_weights_offline_names_id_cache_folder_and_three_fixes(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "empty_cache"))
    with pytest.raises(BackboneWeightsError) as caught:
        load_dinov2("acme/dinov2-absent")
    message = str(caught.value)
    assert isinstance(caught.value, UserError)
    assert "'acme/dinov2-absent'" in message
    assert str(tmp_path / "empty_cache") in message and "models--acme--dinov2-absent" in message
    assert "HF_HUB_OFFLINE" in message
    assert "1. download" in message and "Dinov2Model.from_pretrained('acme/dinov2-absent')" in message
    assert "2. point model.teacher_backbone to a local folder" in message
    assert "3. run `python -m apex_x.cli preflight --profile worldclass`" in message


def test_cache_folder_follows_hf_home(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.delenv("HF_HUB_CACHE", raising=False)
    monkeypatch.delenv("HUGGINGFACE_HUB_CACHE", raising=False)
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    assert hub_cache_dir() == tmp_path / "hf" / "hub"


def test_missing_folder_and_folder_without_weights_are_clear(tmp_path: Path, tiny_dinov2_dir: Path) -> None:
    with pytest.raises(BackboneWeightsError, match=r"model.teacher_backbone='/no/such/dinov2': no such folder"):
        load_dinov2("/no/such/dinov2")
    config_only = tmp_path / "config_only"
    config_only.mkdir()
    (config_only / "config.json").write_text((tiny_dinov2_dir / "config.json").read_text())
    with pytest.raises(BackboneWeightsError, match="has no model.safetensors or pytorch_model.bin"):
        load_dinov2(str(config_only))
    # The architecture alone (pretrained=False) needs only config.json: used before loading a checkpoint.
    model = load_dinov2(str(config_only), pretrained=False)
    assert model.config.num_hidden_layers == 2 and len(model.encoder.layer) == 2


def test_a_folder_of_another_model_type_is_refused(tmp_path: Path, tiny_dinov2_dir: Path) -> None:
    folder = tmp_path / "vit"
    folder.mkdir()
    config = json.loads((tiny_dinov2_dir / "config.json").read_text())
    config["model_type"] = "vit"
    (folder / "config.json").write_text(json.dumps(config))
    with pytest.raises(BackboneWeightsError, match="is a 'vit' model, not DINOv2"):
        load_dinov2(str(folder))


@pytest.mark.parametrize("where", ["folder", "cache"])
def test_a_broken_safetensors_file_is_refused_before_transformers_reads_it(
    where: str, tmp_path: Path, tiny_dinov2_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A header that claims 1 TiB (and a tensor past the end of the file): exit-2 error naming the file."""
    import shutil
    import struct

    from .conftest import populate_hub_cache

    broken = tmp_path / "broken"
    shutil.copytree(tiny_dinov2_dir, broken)
    weights = broken / "model.safetensors"
    data = weights.read_bytes()
    (length,) = struct.unpack("<Q", data[:8])
    header = json.loads(data[8 : 8 + length])
    name = next(key for key in header if key != "__metadata__")
    header[name]["data_offsets"] = [0, 1 << 40]
    text = json.dumps(header).encode()
    weights.write_bytes(struct.pack("<Q", len(text)) + text + data[8 + length :])
    if where == "folder":
        target = str(broken)
    else:
        snapshot = populate_hub_cache(tmp_path / "cache", "acme/dinov2-broken", broken)
        monkeypatch.setenv("HF_HUB_OFFLINE", "1")
        monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "cache"))
        target, weights = "acme/dinov2-broken", snapshot / "model.safetensors"
    with pytest.raises(UserError) as caught:
        load_dinov2(target)
    assert "model.safetensors" in str(caught.value) and name in str(caught.value)
