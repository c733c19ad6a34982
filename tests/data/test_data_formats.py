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
    assert DATASET_FORMATS.names() == ("coco", "synthetic")
    assert [(f.name, f.mode, f.backend) for f in DATASET_FORMATS.all()] == [
        ("coco", "real", "pycocotools"), ("synthetic", "synthetic", "synthetic")]


def test_an_unknown_format_lists_the_valid_names() -> None:
    with pytest.raises(ConfigError, match=r"data.format: unknown dataset format 'yolo'; valid: 'coco' or 'synthetic'"):
        load_config(None, ["data.format=yolo"])


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
