"""`preflight --profile worldclass`: the backbone-weights row for a folder, the cache, absent and unreachable."""

from __future__ import annotations

from pathlib import Path

import pytest

from apex_x.adapters.models.backbone_weights_check import backbone_weights_status


def _weights_row(report: object) -> dict:
    return next(check for check in report.to_dict()["checks"] if check["name"] == "backbone weights")


def _config_file(tmp_path: Path, backbone: str) -> Path:
    path = tmp_path / "config.yaml"
    path.write_text(f"model:\n  profile: worldclass\n  teacher_backbone: {backbone}\n")
    return path


def test_local_folder_passes(tiny_dinov2_dir: Path, tmp_path: Path) -> None:
    from apex_x.api import preflight

    report = preflight("worldclass", config=_config_file(tmp_path, str(tiny_dinov2_dir)), output_dir=tmp_path / "out")
    row = _weights_row(report)
    assert row["ok"] and row["status"] == "local folder" and "model.safetensors" in row["detail"]
    assert "backbone weights" not in [failure.name for failure in report.failures]


def test_absent_weights_fail_offline_naming_id_cache_and_fixes(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    from apex_x.api import preflight

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "cache"))
    config = tmp_path / "worldclass.yaml"
    config.write_text("model:\n  profile: worldclass\n  teacher_backbone: facebook/dinov2-large\n")
    report = preflight("worldclass", output_dir=tmp_path / "out", config=config)
    row = _weights_row(report)
    assert not row["ok"] and row["required"] and row["status"] == "not cached"
    assert "facebook/dinov2-large" in row["detail"] and str(tmp_path / "cache") in row["detail"]
    assert "download them once" in row["fix"] and "model.teacher_backbone" in row["fix"]
    assert not report.ok and "backbone weights" in report.failure_message()


def test_absent_default_weights_only_warn_without_a_config(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    from apex_x.api import preflight

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "cache"))
    report = preflight("worldclass", output_dir=tmp_path / "out")  # default model.teacher_backbone
    row = _weights_row(report)
    assert not row["ok"] and not row["required"] and row["status"] == "not cached"
    assert report.ok


def test_base_profile_does_not_check_the_backbone(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    from apex_x.api import preflight

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "cache"))
    report = preflight("base", output_dir=tmp_path / "out")
    assert all(check["name"] != "backbone weights" for check in report.to_dict()["checks"])


def test_folder_without_weights_and_missing_folder_fail(tiny_dinov2_dir: Path, tmp_path: Path) -> None:
    partial = tmp_path / "partial"
    partial.mkdir()
    (partial / "config.json").write_text((tiny_dinov2_dir / "config.json").read_text())
    status = backbone_weights_status(str(partial))
    assert not status["ok"] and status["detail"].endswith("has no weights file (model.safetensors / pytorch_model.bin)")
    missing = backbone_weights_status(str(tmp_path / "nowhere"))
    assert not missing["ok"] and "no such folder" in missing["detail"]


def test_online_but_unreachable_hub_fails_quickly(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.delenv("TRANSFORMERS_OFFLINE", raising=False)
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("HF_ENDPOINT", "http://127.0.0.1:9")  # a closed local port: refused at once, no traffic out
    status = backbone_weights_status("acme/dinov2-absent")
    assert not status["ok"] and status["status"] == "unreachable"
    assert "acme/dinov2-absent" in status["detail"] and str(tmp_path / "cache") in status["detail"]
