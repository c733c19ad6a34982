"""The epoch's augmentation: data.* keys, a stage's override, data.close_mosaic_epochs; the engine hands each
epoch's plan to the train loader."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from apex_x.adapters.config_yaml import load_config
from apex_x.domain.augment import OFF, AugmentPlan, augment_plan
from apex_x.domain.errors import ConfigError
from apex_x.domain.types import Batch

from .fakes import FakeBatchLoader, FakeDatasetSource
from .helpers import make_use_case

ON = ("data.mosaic=1.0", "data.copy_paste=0.2", "data.mixup=0.1", "data.affine_degrees=5",
      "data.affine_translate=0.1", "data.affine_scale=0.5", "data.multi_scale=[0.5,1.5]")


def test_plan_follows_data_keys_stage_override_and_close_mosaic() -> None:
    settings = load_config(None, [*ON, "data.close_mosaic_epochs=2"])
    data = settings.data
    plan = augment_plan(data, epoch=0, total_epochs=10)
    assert plan == AugmentPlan(1.0, 0.2, 0.1, 5.0, 0.1, 0.5, (0.5, 1.5)) and plan.per_sample
    assert augment_plan(data, epoch=7, total_epochs=10) == plan
    assert augment_plan(data, epoch=8, total_epochs=10) == OFF == augment_plan(data, epoch=9, total_epochs=10)
    assert augment_plan(data, epoch=9) == plan  # no run length known: nothing closes
    staged = load_config(None, [*ON, "train.stages=[{name: a, augment: {mosaic: 0.0, multi_scale: [1, 1]}}]"])
    override = staged.train.stages[0].augment
    changed = augment_plan(staged.data, override, epoch=0, total_epochs=10)
    assert changed.mosaic == 0.0 and changed.multi_scale is None and changed.affine_scale == 0.5
    assert augment_plan(load_config(None, []).data) == OFF  # defaults: the basic transform only


@pytest.mark.parametrize("bad", ["data.mosaic=1.5", "data.multi_scale=[1.5,0.5]", "data.affine_scale=1.0",
                                 "train.stages=[{name: a, augment: {mixup: -1}}]",
                                 "train.stages=[{name: a, augment: {mosaics: 1}}]"])
def test_bad_augment_values_are_refused_with_the_key(bad: str) -> None:
    with pytest.raises(ConfigError) as caught:
        load_config(None, [bad])
    assert bad.split("=")[0].split(".")[1] in str(caught.value)


class _RecordingLoader(FakeBatchLoader):
    def __init__(self, *args: object, plans: list[tuple[int, AugmentPlan | None]]) -> None:
        super().__init__(*args)  # type: ignore[arg-type]
        self.plans = plans

    def iter_epoch(self, epoch: int, start_batch: int = 0, augment: object = None) -> Iterator[Batch]:
        self.plans.append((epoch, augment))  # type: ignore[arg-type]
        return super().iter_epoch(epoch, start_batch)


class _RecordingSource(FakeDatasetSource):
    def __init__(self) -> None:
        super().__init__()
        self.plans: list[tuple[int, AugmentPlan | None]] = []

    def train_loader(self, batch_size: int, *, seed: int, rank: int = 0, world_size: int = 1) -> FakeBatchLoader:
        return _RecordingLoader(range(self.train_images), batch_size, seed, True, rank, world_size, plans=self.plans)


def test_the_engine_hands_each_epoch_its_stage_plan_and_closes_at_the_end(tmp_path: Path) -> None:
    source = _RecordingSource()
    stages = ("train.stages=[{name: warm, epochs: 2, augment: {mosaic: 0.0}}, {name: main, epochs: 3}]")
    result = make_use_case(tmp_path / "run", "train.steps_per_stage=1", *ON, "data.close_mosaic_epochs=1", stages,
                           source=source).execute()
    assert result.status == "finished"
    plans = dict(source.plans)
    assert sorted(plans) == [0, 1, 2, 3, 4]
    assert plans[0] == plans[1] and plans[0].mosaic == 0.0 and plans[0].affine_scale == 0.5  # type: ignore[union-attr]
    assert plans[2] == plans[3] and plans[2].mosaic == 1.0  # type: ignore[union-attr]
    assert plans[4] == OFF  # the last close_mosaic_epochs epoch: the basic transform only


@pytest.mark.slow
def test_a_real_run_with_every_augmentation_trains_and_closes(tmp_path: Path, shapes_dataset) -> None:  # noqa: ANN001
    """The small student on the shapes dataset (COCO files) with mosaic, copy-paste, mixup, affine and
    multi-scale on, closing for the last epoch; a few steps, the report says finished."""
    import apex_x

    overrides = [*shapes_dataset.config_overrides(), *ON, "data.close_mosaic_epochs=1", "model.input_height=64",
                 "model.input_width=64", "train.batch_size=4", "runtime.device=cpu", "train.steps_per_stage=2",
                 f"train.output_dir={tmp_path / 'run'}",
                 "train.stages=[{name: a, epochs: 1}, {name: b, epochs: 1, augment: {multi_scale: [1, 1]}}]"]
    result = apex_x.train(None, overrides=overrides)
    assert result.status in ("finished", "finished_with_warnings")


def test_a_close_mosaic_that_covers_the_whole_run_is_noticed() -> None:
    from apex_x.domain.augment import closed_for_whole_run
    from apex_x.domain.config import AugmentOverride

    data = load_config(None, ["data.mosaic=1.0", "data.close_mosaic_epochs=3"]).data
    assert closed_for_whole_run(data, [None], 3) and closed_for_whole_run(data, [None, None], 2)
    assert not closed_for_whole_run(data, [None], 4)  # one epoch keeps the mosaic
    quiet = load_config(None, ["data.close_mosaic_epochs=3"]).data  # nothing switched on: nothing lost
    assert not closed_for_whole_run(quiet, [None], 2)
    assert closed_for_whole_run(quiet, [AugmentOverride(mixup=0.5)], 2)  # a stage's own augmentation counts
