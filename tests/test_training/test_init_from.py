"""train.init_from: a new run from earlier weights (every payload layout, a checkpoint, model.safetensors);
matching tensors loaded, the others freshly initialised and listed; a poor fit refused unless forced."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file

from apex_x.adapters.checkpoints.init_weights import read_init_weights
from apex_x.adapters.checkpoints.torch_store import TorchCheckpointStore
from apex_x.application.engine.init_from import initialise_from
from apex_x.domain.errors import CheckpointError, ConfigError

from .fakes import FakeDatasetSource, FakeModel, FakeModelFactory
from .helpers import make_use_case

STEPS = "train.steps_per_stage=2"
LAYOUTS = ("model_state_dict", "state_dict", "model", "teacher", "ema_model", "ema")


def _trained(seed: int = 1, classes: int = 2) -> FakeModel:
    torch.manual_seed(seed)
    model = FakeModel(classes)
    with torch.no_grad():
        for value in model.state_dict().values():
            if value.is_floating_point():
                value.add_(torch.randn_like(value))
    return model


def _assert_loaded_except_classifier(target: FakeModel, source: FakeModel, summary: dict) -> None:
    for name, value in target.state_dict().items():
        if name.startswith("classifier"):
            assert not torch.equal(value, source.state_dict()[name]) if value.shape == source.state_dict()[name].shape \
                else True
        else:
            assert torch.equal(value, source.state_dict()[name]), name
    assert summary["reinitialised"] == 2 and all(name.startswith("classifier") for name in
                                                  (item.split(" ")[0] for item in summary["reinitialised_names"]))
    assert "file [2, 8] vs model [3, 8]" in " ".join(summary["reinitialised_names"])
    assert summary["loaded"] == len(target.state_dict()) - 2 - 1  # less the classifier and the BN step counter
    assert summary["unused"] == 0 and summary["loaded_share"] > 0.9


@pytest.mark.parametrize("layout", [None, *LAYOUTS, "safetensors"])
def test_every_layout_loads_what_fits_into_another_class_count(tmp_path: Path, layout: str | None) -> None:
    source = _trained()
    state = {f"module.{key}": value for key, value in source.state_dict().items()}  # DDP prefix: stripped
    path = tmp_path / ("weights.safetensors" if layout == "safetensors" else "weights.pt")
    if layout == "safetensors":
        save_file({key: value.contiguous() for key, value in state.items()}, str(path))
    else:
        torch.save(state if layout is None else {layout: state, "epoch": 3}, path)
    target = FakeModel(3)
    summary = initialise_from(target, str(path), read_init_weights, force=False)
    _assert_loaded_except_classifier(target, source, summary)


def test_a_run_fine_tuned_from_a_checkpoint_starts_fresh_and_reports_what_it_loaded(tmp_path: Path) -> None:
    first = make_use_case(tmp_path / "a", STEPS, source=FakeDatasetSource(classes=2)).execute()
    factory = FakeModelFactory()
    result = make_use_case(tmp_path / "b", STEPS, f"train.init_from={first.checkpoints['best']}",
                           source=FakeDatasetSource(classes=3), factory=factory).execute()
    report = json.loads(Path(result.report_path).read_text())
    init = report["init_from"]
    assert init["path"] == first.checkpoints["best"] and init["layout"] == "Apex-X checkpoint (EMA weights)"
    assert init["reinitialised"] == 2 and init["unused"] == 0 and init["loaded"] > 5
    assert report["run"]["global_step"] == 4 and len(report["history"]) == 2  # its own steps and epochs only
    markdown = (tmp_path / "b" / "train_report.md").read_text()
    assert "## Initialised from (train.init_from)" in markdown and "`classifier.weight`" in markdown
    # A run's model.safetensors works as well.
    again = make_use_case(tmp_path / "c", STEPS, f"train.init_from={first.weights_path}",
                          source=FakeDatasetSource(classes=2)).execute()
    assert json.loads(Path(again.report_path).read_text())["init_from"]["reinitialised"] == 0


def test_resume_continues_from_its_checkpoint_and_keeps_the_init_report(tmp_path: Path) -> None:
    first = make_use_case(tmp_path / "a", STEPS).execute()
    init = f"train.init_from={first.checkpoints['last']}"
    make_use_case(tmp_path / "b", STEPS, init).execute(stop_after_steps=1)
    last = str(tmp_path / "b" / "checkpoints" / "last.pt")
    resumed = make_use_case(tmp_path / "b", STEPS, init).execute(resume_from=last)
    assert resumed.report["init_from"]["path"] == first.checkpoints["last"]
    make_use_case(tmp_path / "d", STEPS).execute(stop_after_steps=1)
    with pytest.raises(ConfigError) as caught:  # a new init_from on resume is a changed key, not applied
        make_use_case(tmp_path / "d", STEPS, init).execute(resume_from=str(tmp_path / "d" / "checkpoints" / "last.pt"))
    assert caught.value.key == "train.init_from"


def test_a_file_of_another_model_is_refused_unless_forced(tmp_path: Path) -> None:
    path = tmp_path / "other.pt"
    other = {"stem.0.weight": torch.zeros(8, 3, 3, 3), "backbone.layer.weight": torch.zeros(100, 100)}
    torch.save(other, path)
    with pytest.raises(CheckpointError) as caught:
        initialise_from(FakeModel(2), str(path), read_init_weights, force=False)
    message = str(caught.value)
    assert "train.init_from" in message and str(path) in message and "train.init_from_force: true" in message
    assert "1 tensors loaded" in message and "1 of the file unused" in message
    target = FakeModel(2)
    summary = initialise_from(target, str(path), read_init_weights, force=True)
    assert summary["forced"] and summary["loaded"] == 1 and summary["unused_names"] == ["backbone.layer.weight"]
    assert torch.equal(target.stem[0].weight, torch.zeros(8, 3, 3, 3))


@pytest.mark.parametrize("kind", ["missing", "folder", "text", "no_weights", "pickled"])
def test_bad_files_are_clear_errors_naming_the_key_and_file(tmp_path: Path, kind: str) -> None:
    path = tmp_path / "weights.pt"
    if kind == "folder":
        path.mkdir()
    elif kind == "text":
        path.write_text("not a checkpoint")
    elif kind == "no_weights":
        torch.save({"epoch": 3, "note": "nothing here"}, path)
    elif kind == "pickled":
        torch.save({"model": FakeModel(2)}, path)
    with pytest.raises(CheckpointError) as caught:
        initialise_from(FakeModel(2), str(path), read_init_weights, force=False)
    assert "train.init_from" in str(caught.value) and str(path) in str(caught.value)
    assert caught.value.exit_code == 2


def test_the_cli_refuses_a_missing_init_file_with_exit_2(tmp_path: Path) -> None:
    from apex_x.cli import main

    code = main(["train", "examples/smoke_cpu.yaml", "--set", "train.allow_synthetic_fallback=true",
                 "--set", f"train.output_dir={tmp_path / 'out'}", "--set", f"train.init_from={tmp_path / 'x.pt'}",
                 "--steps-per-stage", "1", "--device", "cpu"])
    assert code == 2
    assert TorchCheckpointStore().list_checkpoints(str(tmp_path / "out" / "checkpoints")) == []


def test_a_partial_load_never_reads_as_100_or_0_percent() -> None:
    """6 re-initialised class-head tensors out of 296 are 99.96% of the elements: shown as >99.9%, not 100.0%."""
    from apex_x.domain.weights_transfer import share_text

    assert share_text(0.999589) == ">99.9%"
    assert share_text(0.0004) == "<0.1%"
    assert share_text(1.0) == "100.0%" and share_text(0.0) == "0.0%" and share_text(0.5) == "50.0%"


def test_init_from_inside_the_new_runs_own_folder_is_refused_before_anything_is_written(tmp_path: Path) -> None:
    """The run would overwrite the weights it starts from (its best.pt / last.pt / model.safetensors)."""
    source = tmp_path / "run" / "checkpoints" / "best.pt"
    source.parent.mkdir(parents=True)
    TorchCheckpointStore().save({"model": _trained().state_dict()}, str(source))
    before = source.read_bytes()
    with pytest.raises(ConfigError, match=r"is inside train.output_dir .*would overwrite the weights it starts from"):
        make_use_case(tmp_path / "run", f"train.init_from={source}").execute()
    assert source.read_bytes() == before
