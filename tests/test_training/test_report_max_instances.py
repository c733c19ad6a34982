"""data.max_instances drops the smallest instances of a crowded image from the train targets: train_report.json
(warnings, dataset counts) and train_report.md say how many."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import pytest

from apex_x.adapters.datasets.shapes_writer import write_shapes_dataset

TINY = ["model.profile=small", "model.input_height=64", "model.input_width=64",
        "model.backbone=mobilenetv3_small_050", "model.width_multiplier=0.25", "train.epochs=1",
        "train.batch_size=4", "train.warmup_steps=0", "runtime.device=cpu", "train.steps_per_stage=1"]


@pytest.mark.slow
def test_the_report_counts_instances_dropped_by_max_instances(tmp_path: Path) -> None:
    from apex_x.api import train

    paths = write_shapes_dataset(tmp_path / "shapes", train=4, val=2, size=64, seed=0)
    per_image = Counter(a["image_id"] for a in json.loads(paths.train_annotations.read_text())["annotations"])
    dropped = sum(count - 1 for count in per_image.values() if count > 1)
    images = sum(1 for count in per_image.values() if count > 1)
    assert dropped > 0
    run = tmp_path / "run"
    result = train(None, overrides=[*TINY, *paths.config_overrides(), "data.max_instances=1",
                                    f"train.output_dir={run}"])
    report = json.loads((run / "train_report.json").read_text())
    assert result.status == report["status"] == "finished_with_warnings"
    [warning] = [w for w in report["warnings"] if w["kind"] == "data.max_instances"]
    assert (warning["images"], warning["instances_dropped"]) == (images, dropped)
    assert f"{images} train image(s) have more than data.max_instances=1 instances: {dropped} of" in warning["message"]
    split = report["dataset"]["splits"]["train"]
    assert (split["images_over_max_instances"], split["instances_dropped"]) == (images, dropped)
    markdown = (run / "train_report.md").read_text()
    assert f"- **instances dropped** (data.max_instances=1): train {dropped} in {images} image(s)" in markdown
    assert "- **data.max_instances**: " in markdown


def test_no_drop_no_warning(tmp_path: Path) -> None:
    from apex_x.api import train

    paths = write_shapes_dataset(tmp_path / "shapes", train=4, val=0, size=64, seed=0)
    run = tmp_path / "run"
    train(None, overrides=[*TINY, *paths.config_overrides(), f"train.output_dir={run}"])
    report = json.loads((run / "train_report.json").read_text())
    assert not [w for w in report["warnings"] if w["kind"] == "data.max_instances"]
    assert report["dataset"]["splits"]["train"]["instances_dropped"] == 0
    assert "instances dropped" not in (run / "train_report.md").read_text()
