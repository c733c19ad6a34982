"""data.format: registered dataset formats (coco, synthetic); the policy, the container and dataset-preflight
ask the format, and an unknown format lists the valid names."""

from __future__ import annotations

import pytest

from apex_x.adapters.config_yaml import load_config
from apex_x.adapters.datasets.synthetic_source import SyntheticDatasetSource
from apex_x.container import create_container
from apex_x.domain.errors import ConfigError
from apex_x.domain.registry import DATASET_FORMATS


def test_coco_is_the_default_format_and_synthetic_a_variant() -> None:
    assert load_config(None).data.format == "coco"
    assert DATASET_FORMATS.names() == ("coco", "synthetic", "yolo")
    assert [(f.name, f.mode, f.backend) for f in DATASET_FORMATS.all()] == [
        ("coco", "real", "pycocotools"), ("synthetic", "synthetic", "synthetic"), ("yolo", "real", "ultralytics-yolo")]


def test_an_unknown_format_lists_the_valid_names() -> None:
    with pytest.raises(ConfigError, match=r"data.format: unknown dataset format 'voc'; valid: 'coco', 'synthetic' or "
                                          r"'yolo'"):
        load_config(None, ["data.format=voc"])


def test_the_synthetic_format_needs_no_fallback_flag() -> None:
    settings = load_config(None, ["data.format=synthetic"])
    container = create_container(settings)
    assert container.dataset_kind() == "synthetic"
    assert isinstance(container.dataset_source(), SyntheticDatasetSource)
    report = container.dataset_preflight().execute(settings)
    assert report.summary["mode"] == "synthetic" and report.ok


def test_dataset_preflight_of_missing_coco_data_names_the_keys_and_the_fix() -> None:
    from apex_x.application.dataset_preflight import format_dataset_report

    settings = load_config(None, ["train.allow_synthetic_fallback=true"])  # preflight never falls back
    report = create_container(settings).dataset_preflight().execute(settings)
    assert (report.summary["mode"], report.summary["backend"]) == ("real", "pycocotools")
    assert set(report.summary["config"]) == {"coco_train_images", "coco_train_annotations", "coco_val_images",
                                             "coco_val_annotations"}
    text = format_dataset_report(report)
    assert "data.coco_train_images and data.coco_train_annotations are not set" in text
    assert "how to fix: " in text and "make-shapes" in text and "fix" not in report.to_plain()


def test_the_format_decides_which_settings_evaluate_its_val_split(tmp_path) -> None:  # noqa: ANN001
    from apex_x.domain.errors import DatasetError

    (tmp_path / "val").mkdir()
    (tmp_path / "val.json").write_text("{}")
    images, annotations = str(tmp_path / "val"), str(tmp_path / "val.json")
    val = [f"data.coco_val_images={images}", f"data.coco_val_annotations={annotations}"]
    only_val = create_container(load_config(None, val)).evaluation_settings("only_val.yaml")
    assert (only_val.data.coco_train_images, only_val.data.coco_train_annotations) == (images, annotations)
    missing = load_config(None, [val[0], "data.coco_val_annotations=/nope/val.json"])
    with pytest.raises(DatasetError) as error:  # named by the val key the user set, not the train key it stands in for
        create_container(missing).evaluation_settings("only_val.yaml")
    assert str(error.value).startswith("only_val.yaml: eval needs the val split: data.coco_val_annotations: ")
    assert "/nope/val.json" in str(error.value) and "coco_train" not in str(error.value)
    both = load_config(None, [*val, "data.coco_train_images=/t", "data.coco_train_annotations=/t.json"])
    assert create_container(both).evaluation_settings("both.yaml") == both  # the train split is kept
    with pytest.raises(DatasetError, match=r"none.yaml: eval needs the val split: set data.coco_val_images and "
                                           r"data.coco_val_annotations"):
        create_container(load_config(None)).evaluation_settings("none.yaml")
    smoke = load_config(None, ["train.allow_synthetic_fallback=true"])  # no data at all: the policy falls back
    assert create_container(smoke).evaluation_settings("smoke.yaml") == smoke
    synthetic = load_config(None, ["data.format=synthetic"])
    assert create_container(synthetic).evaluation_settings("s.yaml") == synthetic
    with pytest.raises(DatasetError, match="set data.synthetic_val_images "):
        create_container(load_config(None, ["data.format=synthetic", "data.synthetic_val_images=0"])).evaluation_settings("s")


def test_the_format_names_each_splits_image_folder() -> None:
    settings = load_config(None, ["data.coco_val_images=/v", "data.coco_train_images=/t"])
    coco, synthetic = DATASET_FORMATS.get("coco"), DATASET_FORMATS.get("synthetic")
    assert (coco.image_folder(settings, "train"), coco.image_folder(settings, "val")) == ("/t", "/v")
    assert synthetic.image_folder(settings, "val") is None
    assert coco.split_keys("train") == ("data.coco_train_images", "data.coco_train_annotations")
