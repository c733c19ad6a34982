"""`preflight --profile worldclass`: the backbone-weights row for a folder, the cache, absent and unreachable."""

from __future__ import annotations

import os
import subprocess
import sys
import time
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


def test_absent_default_weights_fail_without_a_config(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """The checklist's `preflight --profile worldclass` (no --config): the default DINOv2 is a required item."""
    from apex_x.api import preflight

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "cache"))
    started = time.monotonic()
    report = preflight("worldclass", output_dir=tmp_path / "out")  # default model.teacher_backbone
    assert time.monotonic() - started < 30  # imports only: offline mode answers without any hub retry
    row = _weights_row(report)
    assert not row["ok"] and row["required"] and row["status"] == "not cached"
    assert "facebook/dinov2-large" in row["detail"] and str(tmp_path / "cache") in row["detail"]
    assert "--config" in row["fix"] and "download them once" in row["fix"]
    assert not report.ok and "backbone weights" in report.failure_message()


def test_preflight_as_written_exits_2_without_the_default_weights(tmp_path: Path) -> None:
    env = {key: value for key, value in os.environ.items() if not key.startswith(("HF_", "HUGGINGFACE_"))}
    env.update(HF_HUB_OFFLINE="1", HF_HOME=str(tmp_path / "empty"))
    result = subprocess.run([sys.executable, "-m", "apex_x.cli", "preflight", "--profile", "worldclass"],
                            cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 2, result.stdout + result.stderr
    assert "BACKBONE WEIGHTS" not in result.stdout or "NOT CACHED" in result.stdout
    error = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert len(error) == 1 and "backbone weights" in error[0] and "facebook/dinov2-large" in error[0]
    assert str(tmp_path / "empty" / "hub") in error[0] and "Traceback" not in result.stderr


def test_a_silent_hub_is_given_up_on_within_the_bound(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """A hub address that accepts the connection and never answers: the check ends at its deadline."""
    import socket

    from apex_x.adapters.models import backbone_weights_check

    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(4)  # accepts, never answers
    try:
        monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
        monkeypatch.delenv("TRANSFORMERS_OFFLINE", raising=False)
        monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "cache"))
        monkeypatch.setenv("HF_ENDPOINT", f"http://127.0.0.1:{server.getsockname()[1]}")
        from huggingface_hub import constants

        monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)  # read once at import; the suite imported it offline
        started = time.monotonic()
        reachable, detail = backbone_weights_check._hub_reachable("acme/dinov2-silent", timeout_s=1.0)
        assert time.monotonic() - started < 3.0
        assert not reachable and ("within 1 s" in detail or "Timeout" in detail or "timed out" in detail.lower())
    finally:
        server.close()


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


def test_a_local_folder_is_not_told_to_download(tmp_path: Path) -> None:
    empty = tmp_path / "emptydir"
    empty.mkdir()
    for folder in (empty, tmp_path / "nowhere"):
        status = backbone_weights_status(str(folder))
        assert not status["ok"] and "download" not in status["fix"] and "from_pretrained" not in status["fix"]
        assert "save_pretrained" in status["fix"] and "model.teacher_backbone" in status["fix"]
