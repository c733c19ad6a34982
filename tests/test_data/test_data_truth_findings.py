"""Issue 13, "also wrong today": one root cause is one finding, images one folder away are found, the input
size is checked with the config, and data.max_instances drops are reported."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from apex_x.adapters.config_yaml import load_config
from apex_x.domain.errors import ConfigError

from .builders import small_dataset


def test_a_rejected_file_name_is_one_finding_not_a_cascade(tmp_path: Path) -> None:
    from apex_x.api import dataset_preflight

    dataset = small_dataset(tmp_path / "user")
    dataset.data["images"][0]["file_name"] = "../a.png"  # image 1 has annotations
    dataset.write_json()
    report = dataset_preflight(dataset.config())
    assert [(f.rule, f.image_id) for f in report.errors] == [("image.path_unsafe", 1)]


def test_images_one_folder_away_are_found_and_the_key_is_named(tmp_path: Path) -> None:
    from apex_x.api import dataset_preflight

    dataset = small_dataset(tmp_path / "user")
    nested = dataset.images / "images"  # an export that put the files in images/images/
    nested.mkdir()
    for path in list(dataset.images.glob("*.png")):
        shutil.move(str(path), nested / path.name)
    report = dataset_preflight(dataset.config())
    first = report.errors[0]
    assert first.rule == "image.files_elsewhere"
    assert f"3 image file(s) are not in {dataset.images}, but 3 of the 3 looked for are in {nested}" in first.message
    assert f"set data.coco_train_images={nested}" in first.message
    assert report.count("error") == 1 + 3  # the hint, and each missing file


def test_an_input_size_off_the_stride_is_refused_with_the_config_and_nearest_sizes() -> None:
    with pytest.raises(ConfigError, match="model.input_height: must be a multiple of 32 .*got 250; nearest valid: 224 or 256") as info:
        load_config(None, ["model.input_height=250"])
    assert info.value.key == "model.input_height"
    assert str(info.value).startswith("invalid configuration: --set model.input_height=250: model.input_height: ")
    assert str(info.value).count("model.input_height:") == 1  # named once, as the schema's errors
    with pytest.raises(ConfigError, match="got 33; nearest valid: 32 or 64$"):
        load_config(None, ["model.input_width=33"])


def test_images_over_max_instances_are_reported_with_counts(tmp_path: Path) -> None:
    from apex_x.api import dataset_preflight

    dataset = small_dataset(tmp_path / "user")
    template = dataset.data["annotations"][0]
    dataset.data["annotations"] += [{**template, "id": 100 + i} for i in range(5)]  # image 1: 6 instances
    dataset.write_json()
    report = dataset_preflight(dataset.config(), overrides=["data.max_instances=2"])
    [warning] = [f for f in report.findings if f.rule == "data.max_instances"]
    assert warning.image_id == 1 and "1 image(s) of train have more than data.max_instances=2" in warning.message
    assert "up to 6 in image 1" in warning.message and "4 of their smallest instances are dropped" in warning.message
    assert report.summary["splits"]["train"]["instances_dropped"] == 4
    assert not [f for f in dataset_preflight(dataset.config()).findings if f.rule == "data.max_instances"]


def test_val_images_over_the_detection_limit_are_warned_with_counts(tmp_path: Path) -> None:
    """Issue 28, kind 4: the evaluation counts model.max_detections detections per image; a val image holding
    more ground truth has its AP capped, and preflight says so with the numbers."""
    from apex_x.api import dataset_preflight

    dataset = small_dataset(tmp_path / "user")
    template = dataset.data["annotations"][0]
    dataset.data["annotations"] += [{**template, "id": 100 + i} for i in range(5)]  # image 1: 6 instances
    dataset.write_json()
    report = dataset_preflight(dataset.config(with_val=True), overrides=["model.max_detections=4"])
    [warning] = [f for f in report.findings if f.rule == "eval.max_detections"]
    assert warning.image_id == 1 and "1 val image(s) hold more instances than model.max_detections=4" in warning.message
    assert "up to 6 in image 1" in warning.message and "--set model.max_detections=6" in warning.message
    assert report.summary["splits"]["val"]["images_over_max_detections"] == 1
    assert not [f for f in dataset_preflight(dataset.config(with_val=True)).findings if f.rule == "eval.max_detections"]


def test_the_default_max_instances_fits_dense_photos() -> None:
    assert load_config(None, []).data.max_instances >= 200  # real photos had 109 and 122 instances in one image


def test_the_input_size_rule_is_the_profiles_and_checking_it_imports_no_torch() -> None:
    """The config loader asks the configured profile (ModelProfile.input_size_multiple) for the rule; a profile
    module is light, so validating a config never imports torch (apex-x preflight stays fast)."""
    import subprocess
    import sys

    code = (
        "import sys\n"
        "from apex_x.adapters.config_yaml import load_config\n"
        "from apex_x.domain.registry import MODEL_PROFILES\n"
        "for name in MODEL_PROFILES.names():\n"
        "    assert load_config(None, [f'model.profile={name}', 'model.input_height=320']).model.input_height == 320\n"
        "    assert MODEL_PROFILES.get(name).input_size_multiple == 32\n"
        "print('torch' in sys.modules)\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "False", done.stderr
