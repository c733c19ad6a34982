"""model.backbone_pretrained: timm's hub loading from a Hugging Face cache laid out as a first download leaves it,
offline (HF_HUB_OFFLINE=1, set for every test by tests/conftest.py); nothing is downloaded, nothing is mocked."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from apex_x.adapters.models.student import StudentModelFactory
from apex_x.adapters.models.timm_weights import TimmWeightsError
from apex_x.domain.config import ModelConfig
from apex_x.domain.errors import ConfigError

TINY = {"backbone": "lcnet_050", "input_height": 64, "input_width": 64, "neck_channels": 32,
        "width_multiplier": 1.0, "num_prototypes": 8}


def _config(**changes) -> ModelConfig:
    return ModelConfig(**{**TINY, **changes})


def _canonical(key: str) -> str:
    return key.replace(".", "_")


def _assert_backbone_holds(model, saved: dict) -> None:
    by_canonical = {_canonical(key): value for key, value in saved.items()}
    body = model.backbone.body.state_dict()
    compared = 0
    for key, value in body.items():
        if key.endswith("num_batches_tracked"):
            continue
        assert torch.equal(value, by_canonical[_canonical(key)]), key
        compared += 1
    assert compared > 20


@pytest.fixture
def hf_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    home = tmp_path / "hf_home"
    monkeypatch.setenv("HF_HOME", str(home))
    monkeypatch.delenv("HF_HUB_CACHE", raising=False)
    monkeypatch.delenv("HUGGINGFACE_HUB_CACHE", raising=False)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    return home


def test_pretrained_true_loads_the_cached_hub_weights_offline(hf_home: Path, timm_download) -> None:
    saved = timm_download(hf_home / "hub", "lcnet_050", seed=3)
    model = StudentModelFactory().build(_config(backbone_pretrained=True), num_classes=3)
    _assert_backbone_holds(model, saved)
    fresh = StudentModelFactory().build(_config(), num_classes=3)  # false: random init, not the cached weights
    first = next(key for key in fresh.backbone.body.state_dict() if key.endswith("weight"))
    assert not torch.equal(fresh.backbone.body.state_dict()[first], model.backbone.body.state_dict()[first])


def test_not_cached_offline_is_an_error_saying_where_it_looked_and_three_fixes(hf_home: Path) -> None:
    with pytest.raises(TimmWeightsError) as caught:
        StudentModelFactory().build(_config(backbone_pretrained=True), num_classes=3)
    message = str(caught.value)
    assert caught.value.exit_code == 2
    assert "timm/lcnet_050.ra2_in1k" in message and str(hf_home / "hub") in message
    assert "models--timm--lcnet_050.ra2_in1k" in message and "HF_HUB_OFFLINE" in message
    assert "1. download" in message and "2. point model.backbone_pretrained" in message and "3. " in message


def test_a_backbone_without_pretrained_weights_is_a_config_error(hf_home: Path) -> None:
    with pytest.raises(ConfigError) as caught:
        StudentModelFactory().build(_config(backbone="lcnet_150", backbone_pretrained=True), num_classes=3)
    assert caught.value.key == "model.backbone_pretrained" and "no pretrained weights" in str(caught.value)


def test_a_local_folder_or_file_is_read_by_the_secure_loader(hf_home: Path, timm_download) -> None:
    saved = timm_download(hf_home / "hub", "lcnet_050", seed=5)
    snapshot = next((hf_home / "hub").glob("models--timm--lcnet_050*/snapshots/*"))
    from_folder = StudentModelFactory().build(_config(backbone_pretrained=str(snapshot)), num_classes=3)
    _assert_backbone_holds(from_folder, saved)
    from_file = StudentModelFactory().build(_config(backbone_pretrained=str(snapshot / "model.safetensors")),
                                            num_classes=3)
    _assert_backbone_holds(from_file, saved)
    with pytest.raises(ConfigError) as caught:
        StudentModelFactory().build(_config(backbone_pretrained=str(hf_home)), num_classes=3)
    assert caught.value.key == "model.backbone_pretrained" and "holds no weights file" in str(caught.value)


def test_a_rebuild_from_a_checkpoint_never_reads_the_weights(hf_home: Path) -> None:
    model = StudentModelFactory().build(_config(backbone_pretrained=True), num_classes=3, pretrained=False)
    assert model is not None  # no cache, offline: it did not look


def test_backbone_weights_and_a_different_backbone_pretrained_conflict() -> None:
    with pytest.raises(ValueError, match="set one of them"):
        _config(backbone_weights="/a.pt", backbone_pretrained="/b.pt")
    assert _config(backbone_weights="/a.pt", backbone_pretrained="/a.pt").backbone_weights == "/a.pt"


def _rows(config_path: Path | None, tmp_path: Path, profile: str = "base") -> dict:
    import apex_x

    report = apex_x.preflight(profile, output_dir=tmp_path / "out", config=config_path)
    return {row.name: row for row in report.results}, report


def test_preflight_row_says_where_the_weights_are(hf_home: Path, tmp_path: Path, timm_download) -> None:
    config = tmp_path / "pretrained.yaml"
    config.write_text("model:\n  backbone: lcnet_050\n  backbone_pretrained: true\n")
    rows, report = _rows(config, tmp_path)
    row = rows["student backbone weights"]
    assert (row.status, row.ok, row.required) == ("not cached", False, True) and not report.ok
    assert "timm/lcnet_050.ra2_in1k" in row.detail and str(hf_home / "hub") in row.detail and "HF_HUB_OFFLINE" in row.detail
    assert "timm.create_model('lcnet_050', pretrained=True)" in row.fix
    timm_download(hf_home / "hub", "lcnet_050")
    rows, report = _rows(config, tmp_path)
    row = rows["student backbone weights"]
    assert (row.status, row.ok) == ("cached", True) and report.ok and "snapshots" in row.detail
    snapshot = next((hf_home / "hub").glob("models--timm--lcnet_050*/snapshots/*"))
    config.write_text(f"model:\n  backbone: lcnet_050\n  backbone_pretrained: {snapshot}\n")
    assert _rows(config, tmp_path)[0]["student backbone weights"].status == "local folder"
    config.write_text(f"model:\n  backbone_pretrained: {tmp_path / 'none.safetensors'}\n")
    assert _rows(config, tmp_path)[0]["student backbone weights"].status == "missing"


def test_preflight_row_without_config_and_for_another_profile(tmp_path: Path) -> None:
    rows, report = _rows(None, tmp_path)
    row = rows["student backbone weights"]
    assert (row.status, row.ok, row.required) == ("random init", True, False) and report.ok
    config = tmp_path / "worldclass.yaml"
    config.write_text("model:\n  profile: worldclass\n  teacher_backbone: /nowhere\n")
    rows, _ = _rows(config, tmp_path)
    assert "student backbone weights" not in rows
