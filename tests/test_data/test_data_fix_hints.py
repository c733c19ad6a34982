"""Missing data: the fix names the make-shapes command that writes this config's own paths."""

from __future__ import annotations

from pathlib import Path

import pytest

from apex_x.domain.shapes_layout import make_shapes_command

ROOT = Path(__file__).resolve().parents[2]


def _data(config: str) -> dict[str, str | None]:
    import yaml

    return yaml.safe_load((ROOT / "configs" / config).read_text())["data"]


@pytest.mark.parametrize(
    ("config", "command"),
    [
        ("coco_baseline.yaml", "apex-x make-shapes data/coco --layout coco"),
        ("quickstart.yaml", "apex-x make-shapes data/shapes"),
    ],
)
def test_each_ready_made_config_gets_its_own_command(config: str, command: str) -> None:
    assert make_shapes_command(_data(config)) == command


def test_other_layouts_and_partial_matches_get_no_command() -> None:
    assert make_shapes_command({"coco_train_images": "/d/imgs", "coco_train_annotations": "/d/train.json"}) is None
    mixed = {"coco_train_images": "a/train2017", "coco_train_annotations": "b/annotations/instances_train2017.json"}
    assert make_shapes_command(mixed) is None  # two roots: no single command writes both
    no_val = {"coco_train_images": "/abs/x/train", "coco_train_annotations": "/abs/x/instances_train.json"}
    assert make_shapes_command(no_val) == "apex-x make-shapes /abs/x"
    assert make_shapes_command({"coco_train_images": "train", "coco_train_annotations": "instances_train.json"}) == (
        "apex-x make-shapes ."
    )


def test_the_command_it_names_makes_the_config_runnable(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Run the named command for coco_baseline.yaml in a fresh folder: the config's data then passes its checks."""
    from apex_x.api import dataset_preflight
    from apex_x.cli import main

    monkeypatch.chdir(tmp_path)
    command = make_shapes_command(_data("coco_baseline.yaml"))
    assert command is not None
    assert main([*command.split()[1:], "--train", "4", "--val", "2", "--size", "64"]) == 0
    report = dataset_preflight(ROOT / "configs" / "coco_baseline.yaml")
    assert report.ok, [finding.describe() for finding in report.findings]
