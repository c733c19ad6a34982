"""Resuming a finished run names flags that extend it, and each of them works as written (--set accepts
train.stages.<index>.epochs, an item of the run's stage list)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from apex_x.application.engine.resume import RunAlreadyFinished

from .helpers import make_use_case

STEPS = "train.steps_per_stage=1"
OWN = "train.stages=[{name: a, epochs: 1, losses: {det: 1.0}}, {name: b, epochs: 1}]"
MIXED = "train.stages=[{name: a, epochs: 1, losses: {det: 1.0}}, {name: b}]"  # b takes train.epochs


def hints(run: Path, *overrides: str) -> list[str]:
    with pytest.raises(RunAlreadyFinished) as finished:
        make_use_case(run, STEPS, *overrides, reports=False).execute(resume_from=str(run / "checkpoints" / "last.pt"))
    return re.findall(r"--set (\S+)=N", str(finished.value))


@pytest.mark.parametrize(("stages", "expected"), [
    ((), ["train.epochs"]),
    ((OWN,), ["train.stages.0.epochs", "train.stages.1.epochs"]),
    ((MIXED,), ["train.epochs", "train.stages.0.epochs"]),
])
def test_every_hint_of_a_finished_run_extends_it(tmp_path: Path, stages: tuple[str, ...], expected: list[str]) -> None:
    run = tmp_path / "run"
    make_use_case(run, STEPS, *stages, reports=False).execute()
    found = hints(run, *stages)
    assert found == expected
    done = 2
    for key in found:  # each hint as written, on top of the previous extension
        base = [f"{k}=2" for k in found[: found.index(key)]]
        result = make_use_case(run, STEPS, *stages, *base, f"{key}=2", reports=False).execute(
            resume_from=str(run / "checkpoints" / "last.pt"))
        assert result.status == "finished"
        grows = 2 if key == "train.epochs" and not stages else 1  # default curriculum: both stages grow
        done += grows
        assert len(result.report["history"]) == result.report["epochs_done"] == done


@pytest.mark.slow
def test_the_stage_hint_works_through_the_api_resume(tmp_path: Path, shapes_dataset) -> None:
    """On resume the checkpoint's config is the base: the index names an item of the checkpoint's stages."""
    from apex_x.api import train

    data = shapes_dataset
    config = tmp_path / "run.yaml"
    config.write_text(
        "model: {input_height: 64, input_width: 64, backbone: mobilenetv3_small_050, width_multiplier: 0.25}\n"
        f"train: {{epochs: 1, batch_size: 4, warmup_steps: 0, output_dir: {tmp_path / 'run'},\n"
        "  stages: [{name: a, epochs: 1, losses: {det: 1.0}}, {name: b, epochs: 1}]}\n"
        f"data: {{coco_train_images: {data.train_images}, coco_train_annotations: {data.train_annotations}, "
        f"coco_val_images: {data.val_images}, coco_val_annotations: {data.val_annotations}}}\n"
        "runtime: {device: cpu}\n")
    train(str(config), steps_per_stage=1)
    last = str(tmp_path / "run" / "checkpoints" / "last.pt")
    with pytest.raises(RunAlreadyFinished) as finished:
        train(str(config), resume=last)
    assert "--set train.stages.1.epochs=N (stage 'b', now 1)" in str(finished.value)
    result = train(str(config), resume=last, overrides=["train.stages.1.epochs=2"])
    assert result.status == "finished"
    assert [(e["epoch"], e["stage"]) for e in result.report["history"]] == [(1, "a"), (2, "b"), (3, "b")]
