"""Issue 13, resume: extending a finished run follows the curriculum asked for with one epoch numbering, and
on resume the checkpoint's config is the base (the YAML's different values apply only when asked for)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from apex_x.adapters.datasets.shapes_writer import write_shapes_dataset
from apex_x.application.engine.resume import RunAlreadyFinished
from apex_x.application.engine.train_state import Position, plan_remaining

from .helpers import make_use_case, settings_for


def test_extending_a_finished_two_stage_run_runs_every_stage_s_extra_epoch(tmp_path: Path) -> None:
    run = tmp_path / "run"
    first = make_use_case(run, "train.steps_per_stage=2").execute()
    assert [e["stage"] for e in first.report["history"]] == ["det_stability", "seg_boundary"]
    result = make_use_case(run, "train.steps_per_stage=2", "train.epochs=2").execute(
        resume_from=str(run / "checkpoints" / "last.pt"))
    report = json.loads((run / "train_report.json").read_text())
    assert [(e["epoch"], e["stage"]) for e in report["history"]] == [
        (1, "det_stability"), (2, "seg_boundary"), (3, "det_stability"), (4, "seg_boundary")]
    assert result.status == "finished" and report["epochs_done"] == report["epochs_planned"] == 4
    assert {p.name for p in (run / "checkpoints").glob("epoch_*.pt")} >= {"epoch_0003.pt", "epoch_0004.pt"}
    assert report["stage_metrics"]["det_stability"]["epochs_done"] == [1, 3]


def test_the_schedule_uses_one_numbering() -> None:
    from apex_x.adapters.models.profiles import get_profile
    from apex_x.application.engine.curriculum import plan_stages

    settings = settings_for(Path("/tmp/x"), "train.epochs=2")
    stages = plan_stages(settings, get_profile(settings.model.profile).default_stages(settings))
    fresh = plan_remaining(stages, None)
    assert [(s.stage_index, s.epoch) for s in fresh] == [(0, 0), (0, 1), (1, 2), (1, 3)]
    history = [{"epoch": 1, "stage": "det_stability"}, {"epoch": 2, "stage": "seg_boundary"}]
    finished = Position(1, "seg_boundary", 1, 0, 4, True, 8, finished=True)
    assert [(s.stage_index, s.epoch, s.start_batch) for s in plan_remaining(stages, finished, history)] == [
        (0, 2, 0), (1, 3, 0)]
    mid = Position(1, "seg_boundary", 2, 0, 3, False, 11)
    assert [(s.stage_index, s.epoch, s.start_batch) for s in plan_remaining(stages, mid, history[:1] * 2)] == [
        (1, 2, 3), (1, 3, 0)]


TINY = """\
model: {{input_height: 64, input_width: 64, backbone: mobilenetv3_small_050, width_multiplier: 0.25}}
train: {{epochs: {epochs}, batch_size: 4, warmup_steps: 0, output_dir: {out}}}
data: {{coco_train_images: {ti}, coco_train_annotations: {ta}, coco_val_images: {vi}, coco_val_annotations: {va}}}
runtime: {{device: cpu}}
"""


@pytest.mark.slow
def test_resume_takes_the_checkpoint_config_and_applies_only_what_is_asked(tmp_path: Path, capsys) -> None:
    from apex_x.api import train

    paths = write_shapes_dataset(tmp_path / "shapes", train=8, val=2, size=64, seed=0)
    fields = {"out": tmp_path / "run", "ti": paths.train_images, "ta": paths.train_annotations,
              "vi": paths.val_images, "va": paths.val_annotations}
    smoke = tmp_path / "smoke.yaml"
    smoke.write_text(TINY.format(epochs=1, **fields))
    full = tmp_path / "full.yaml"  # the guide's YAML: a long run
    full.write_text(TINY.format(epochs=24, **fields))
    train(str(smoke), steps_per_stage=1)
    last = tmp_path / "run" / "checkpoints" / "last.pt"
    with pytest.raises(RunAlreadyFinished):  # the YAML's 24 epochs are not applied behind the user's back
        train(str(full), resume=str(last))
    capsys.readouterr()
    result = train(str(full), resume=str(last), overrides=["train.epochs=2"])
    assert result.report["epochs_done"] == 4 and result.report["config"]["train"]["epochs"] == 2
    assert result.report["config"]["train"]["steps_per_stage"] == 1  # from the checkpoint, not the YAML
    err = capsys.readouterr().err
    assert "resume_config_diff" in err and "train.epochs: 1 -> 2" in err
