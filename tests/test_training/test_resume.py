"""Resume: bit-identical continuation on CPU, finished runs, safe and unsafe config changes."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from apex_x.adapters.checkpoints.torch_store import TorchCheckpointStore
from apex_x.application.engine.resume import RunAlreadyFinished
from apex_x.domain import checkpoint_format as fmt
from apex_x.domain.errors import CheckpointError, ConfigError, DatasetError

from .fakes import FakeDatasetSource, FakeModel
from .helpers import flat_state, make_use_case

STEPS = "train.steps_per_stage=3"  # 2 stages x 1 epoch x 3 steps = 6 steps


def load(path: Path) -> dict:
    return TorchCheckpointStore().load(str(path))


def assert_identical(left: dict, right: dict) -> None:
    for key in (fmt.KEY_MODEL, fmt.KEY_EMA, fmt.KEY_OPTIMIZER):
        a, b = flat_state(left[key]), flat_state(right[key])
        assert [name for name, _ in a] == [name for name, _ in b], key
        different = [name for (name, x), (_, y) in zip(a, b, strict=True) if not torch.equal(x, y)]
        assert not different, f"{key} differs at {different[:5]}"
    assert left[fmt.KEY_PROGRESS] == right[fmt.KEY_PROGRESS]
    assert left["train_state"]["report"]["history"][-1]["train"] == right["train_state"]["report"]["history"][-1]["train"]


@pytest.fixture(scope="module")
def straight_run(tmp_path_factory: pytest.TempPathFactory) -> dict:
    """2N steps in one go (deterministic CPU), shared by the pause points below."""
    straight = tmp_path_factory.mktemp("straight")
    make_use_case(straight, STEPS, reports=False).execute()
    return load(straight / "checkpoints" / "last.pt")


@pytest.mark.parametrize("pause_after", [2, 3, 4])  # mid epoch 1, at the epoch/stage boundary, mid epoch 2
def test_paused_and_resumed_equals_straight_bit_for_bit(tmp_path: Path, straight_run: dict, pause_after: int) -> None:
    paused = tmp_path / "paused"
    first = make_use_case(paused, STEPS, reports=False).execute(stop_after_steps=pause_after)
    assert first.status == "paused" and "--resume" in first.report["message"]
    assert load(paused / "checkpoints" / "last.pt")[fmt.KEY_PROGRESS]["global_step"] == pause_after
    second = make_use_case(paused, STEPS, reports=False).execute(
        resume_from=str(paused / "checkpoints" / "last.pt"))
    assert second.status == "finished"
    assert_identical(straight_run, load(paused / "checkpoints" / "last.pt"))
    assert [e["epoch"] for e in second.report["history"]] == [1, 2]
    assert second.report["timing"]["sessions"] == 2


def test_resuming_a_finished_run_says_so_and_more_epochs_extend_it(tmp_path: Path) -> None:
    run = tmp_path / "run"
    make_use_case(run, STEPS, reports=False).execute()
    last = str(run / "checkpoints" / "last.pt")
    with pytest.raises(RunAlreadyFinished) as finished:
        make_use_case(run, STEPS, reports=False).execute(resume_from=last)
    assert "already finished after 2 epoch(s)" in str(finished.value)
    assert "--set train.epochs=" in str(finished.value)
    extended = make_use_case(run, STEPS, "train.epochs=2", reports=False).execute(resume_from=last)
    assert [(e["epoch"], e["stage"]) for e in extended.report["history"]] == [  # the curriculum asked for
        (1, "det_stability"), (2, "seg_boundary"), (3, "det_stability"), (4, "seg_boundary")]
    assert (run / "checkpoints" / "epoch_0004.pt").exists() and extended.report["epochs_planned"] == 4


def test_only_safe_keys_may_change_on_resume(tmp_path: Path) -> None:
    run = tmp_path / "run"
    make_use_case(run, STEPS).execute(stop_after_steps=1)
    last = str(run / "checkpoints" / "last.pt")
    with pytest.raises(ConfigError) as unsafe:
        make_use_case(run, STEPS, "train.lr=0.5").execute(resume_from=last)
    assert unsafe.value.key == "train.lr" and "0.01" in str(unsafe.value) and "0.5" in str(unsafe.value)
    with pytest.raises(ConfigError) as stage_change:
        make_use_case(run, STEPS, "train.stages=[{name: only}]").execute(resume_from=last)
    assert stage_change.value.key.startswith("train.stages")
    resumed = make_use_case(run, STEPS, "train.log_every_steps=1", "train.keep_last_epochs=3").execute(
        resume_from=last)
    assert resumed.status == "finished"


def test_resume_refuses_changed_data_and_weight_only_files(tmp_path: Path) -> None:
    run = tmp_path / "run"
    make_use_case(run, STEPS).execute(stop_after_steps=1)
    last = str(run / "checkpoints" / "last.pt")
    with pytest.raises(DatasetError, match="dataset changed"):
        make_use_case(run, STEPS, source=FakeDatasetSource(train_images=20)).execute(resume_from=last)
    weights_only = tmp_path / "weights.pt"
    torch.save(FakeModel(2).state_dict(), weights_only)
    with pytest.raises(CheckpointError, match="cannot be resumed"):
        make_use_case(run, STEPS).execute(resume_from=str(weights_only))
