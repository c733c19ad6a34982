"""The user guide's worldclass checklist as written, on the tiny backbone: preflight, CLI train, wrapper, stages, resume."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from apex_x.adapters.models.lora import is_lora_parameter
from apex_x.adapters.models.teacher_v3 import TeacherModelFactory
from apex_x.domain.config import ModelConfig

from .conftest import REPO_ROOT, SMALL_RUN, WORLDCLASS_CONFIG, run_cli

BASE_PREFIX = "backbone.dinov2.base_model.model."


def _teacher(path: Path) -> dict[str, torch.Tensor]:
    payload = torch.load(path, map_location="cpu", weights_only=True)
    assert payload["profile"] == "worldclass" and payload.get("model") is None
    return payload["teacher"]


def _base_weights(teacher: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """DINOv2's own weights inside the teacher, under Dinov2Model's key names (LoRA's base_layer removed)."""
    return {
        key[len(BASE_PREFIX):].replace(".base_layer.", "."): value
        for key, value in teacher.items()
        if key.startswith(BASE_PREFIX) and not is_lora_parameter(key)
    }


def _group(teacher: dict[str, torch.Tensor], prefix: str) -> dict[str, torch.Tensor]:
    return {key: value for key, value in teacher.items() if key.startswith(prefix)}


def _changed(before: dict[str, torch.Tensor], after: dict[str, torch.Tensor]) -> bool:
    return any(not torch.equal(before[key], after[key]) for key in before)


def test_preflight_worldclass_as_written_passes_with_the_weights_in_the_cache(
    worldclass_workdir: Path, tiny_hub_cache: Path
) -> None:
    result = run_cli(["preflight", "--profile", "worldclass", "--output-json", "preflight.json"],
                     cwd=worldclass_workdir, env={"HF_HUB_CACHE": str(tiny_hub_cache)})
    assert result.returncode == 0, result.stdout + result.stderr
    report = json.loads((worldclass_workdir / "preflight.json").read_text())
    row = next(check for check in report["checks"] if check["name"] == "backbone weights")
    assert row["ok"] and row["status"] == "cached" and "facebook/dinov2-large" in row["detail"]


def test_heads_stage_leaves_the_backbone_and_lora_untouched(worldclass_run: Path, tiny_dinov2_state: dict) -> None:
    report = json.loads((worldclass_run / "train_report.json").read_text())
    assert [stage["name"] for stage in report["stages"]] == ["heads_frozen_backbone", "lora_finetune"]
    assert report["dataset_mode"] == "real"
    after_heads = _teacher(worldclass_run / "checkpoints" / "epoch_0001.pt")
    base = _base_weights(after_heads)
    assert set(base) == set(tiny_dinov2_state)
    assert all(torch.equal(base[key], value) for key, value in tiny_dinov2_state.items())  # bit-identical
    lora_b = [value for key, value in after_heads.items() if "lora_B" in key]
    assert lora_b and all(not value.any() for value in lora_b)  # zero-initialised B was never updated


def test_lora_stage_changes_only_lora_and_heads(worldclass_run: Path, tiny_dinov2_state: dict) -> None:
    after_heads = _teacher(worldclass_run / "checkpoints" / "epoch_0001.pt")
    after_lora = _teacher(worldclass_run / "checkpoints" / "epoch_0002.pt")
    base = _base_weights(after_lora)
    assert all(torch.equal(base[key], value) for key, value in tiny_dinov2_state.items())  # frozen base
    lora = [key for key in after_lora if is_lora_parameter(key)]
    assert any(not torch.equal(after_heads[key], after_lora[key]) for key in lora)
    for prefix in ("neck.", "head.", "mask_head."):
        assert _changed(_group(after_heads, prefix), _group(after_lora, prefix)), prefix


def test_checkpoint_loads_into_a_fresh_teacher_with_the_same_keys(worldclass_run: Path, tiny_dinov2_dir: Path) -> None:
    from apex_x.train import checkpoint as public_checkpoint

    payload = torch.load(worldclass_run / "checkpoints" / "last.pt", map_location="cpu", weights_only=True)
    config = ModelConfig.model_validate(payload["config"]["model"])
    assert config.teacher_backbone == str(tiny_dinov2_dir)
    model = TeacherModelFactory().build(config, num_classes=3, pretrained=False)
    state = public_checkpoint.extract_model_state(payload)
    assert list(state) == list(model.state_dict())
    model.load_state_dict(state, strict=True)


def test_trained_checkpoint_carries_its_architecture(worldclass_run: Path, tiny_dinov2_dir: Path) -> None:
    """The run's checkpoint holds the DINOv2 config and the LoRA targets as plain values: it rebuilds alone."""
    payload = torch.load(worldclass_run / "checkpoints" / "best.pt", map_location="cpu", weights_only=True)
    architecture = payload["architecture"]
    stored = json.loads((tiny_dinov2_dir / "config.json").read_text())
    backbone = architecture["backbone_config"]
    assert backbone["model_type"] == "dinov2"
    for key in ("hidden_size", "num_hidden_layers", "num_attention_heads", "intermediate_size", "patch_size"):
        assert backbone[key] == stored[key], key
    assert architecture["lora_target_modules"] and all(isinstance(name, str) for name in architecture["lora_target_modules"])
    config = ModelConfig.model_validate({**payload["config"]["model"], "teacher_backbone": "/nowhere/dinov2"})
    model = TeacherModelFactory().build(config, num_classes=3, pretrained=False, architecture=architecture)
    model.load_state_dict(payload["teacher"], strict=True)


def test_wrapper_resumes_the_cli_run_exactly(worldclass_run: Path, worldclass_workdir: Path, tiny_dinov2_dir: Path) -> None:
    wrapper = REPO_ROOT / "scripts" / "train_worldclass_coco.py"
    result = run_cli(
        ["--config", str(WORLDCLASS_CONFIG), "--steps-per-stage", "2", "--seed", "0",
         "--resume", str(worldclass_run / "checkpoints" / "epoch_0001.pt"),
         "--set", f"model.teacher_backbone={tiny_dinov2_dir}", "--set", "train.output_dir=run_wrapper", *SMALL_RUN],
        cwd=worldclass_workdir, script=str(wrapper),
    )
    assert result.returncode == 0, result.stderr[-3000:]
    straight = _teacher(worldclass_run / "checkpoints" / "epoch_0002.pt")
    resumed = _teacher(worldclass_workdir / "run_wrapper" / "checkpoints" / "epoch_0002.pt")
    assert list(straight) == list(resumed)
    differing = [key for key in straight if not torch.equal(straight[key], resumed[key])]
    assert not differing, f"{len(differing)} tensors differ after resume, e.g. {differing[:3]}"


def test_resume_needs_no_backbone_folder(worldclass_run: Path, worldclass_workdir: Path, tmp_path: Path) -> None:
    """The run's DINOv2 folder moved away and an empty cache: --resume rebuilds from the checkpoint alone, exactly."""
    from apex_x.adapters.checkpoints.torch_store import TorchCheckpointStore

    store = TorchCheckpointStore()
    payload = store.load(str(worldclass_run / "checkpoints" / "epoch_0001.pt"))
    payload["config"]["model"]["teacher_backbone"] = str(tmp_path / "moved_away" / "dinov2")
    paused = tmp_path / "paused.pt"
    store.save(payload, str(paused))
    result = run_cli(
        ["train", str(WORLDCLASS_CONFIG), "--resume", str(paused), "--set", f"train.output_dir={tmp_path / 'out'}"],
        cwd=worldclass_workdir, env={"HF_HOME": str(tmp_path / "empty_hf"), "HF_HUB_CACHE": str(tmp_path / "empty_hf")},
    )
    assert result.returncode == 0, result.stderr[-3000:]
    straight = _teacher(worldclass_run / "checkpoints" / "epoch_0002.pt")
    resumed = _teacher(tmp_path / "out" / "checkpoints" / "epoch_0002.pt")
    assert all(torch.equal(straight[key], resumed[key]) for key in straight)


def test_wrapper_needs_a_config_value(worldclass_workdir: Path) -> None:
    result = run_cli(["--config"], cwd=worldclass_workdir, script=str(REPO_ROOT / "scripts" / "train_worldclass_coco.py"))
    assert result.returncode == 2 and "--config needs a path" in result.stderr


def test_cli_train_with_absent_weights_exits_2_with_the_three_fixes(
    worldclass_workdir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from apex_x.cli import main

    monkeypatch.chdir(worldclass_workdir)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "cache"))
    code = main(["train", str(WORLDCLASS_CONFIG), "--set", "model.teacher_backbone=acme/dinov2-absent", *SMALL_RUN,
                 "--set", f"train.output_dir={tmp_path / 'out'}"])
    stderr = capsys.readouterr().err
    assert code == 2
    assert "Traceback" not in stderr
    assert "acme/dinov2-absent" in stderr and str(tmp_path / "cache") in stderr
    assert "1. download" in stderr and "2. point model.teacher_backbone" in stderr
    assert "3. run `python -m apex_x.cli preflight --profile worldclass`" in stderr
