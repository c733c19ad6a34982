"""The fail-fast dataset policy and the container's choice of dataset source."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from structlog.testing import capture_logs

from apex_x.adapters.config_yaml import load_config
from apex_x.adapters.datasets.coco_source import CocoDatasetSource
from apex_x.adapters.datasets.formats.coco import dataset_config_problems
from apex_x.adapters.datasets.synthetic_source import SyntheticDatasetSource
from apex_x.application.dataset_policy import select_dataset_kind as select_with_format
from apex_x.container import create_container
from apex_x.domain.config import ApexConfig
from apex_x.domain.errors import DatasetError
from apex_x.domain.registry import DATASET_FORMATS

REPO = Path(__file__).resolve().parents[2]


def select_dataset_kind(settings: ApexConfig) -> str:
    """The policy asked about the config's own format (data.format, coco by default), as the container does."""
    return select_with_format(settings, DATASET_FORMATS.get(settings.data.format))


def test_no_dataset_configured_is_a_hard_error_by_default() -> None:
    settings = load_config(None)
    assert settings.train.allow_synthetic_fallback is False
    with pytest.raises(DatasetError) as info:
        select_dataset_kind(settings)
    message = str(info.value)
    assert "data.coco_train_images and data.coco_train_annotations are not set" in message
    assert "train.allow_synthetic_fallback=true" in message and "make-shapes" in message


def test_broken_path_names_the_key_and_the_resolved_path(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "imgs").mkdir()
    settings = load_config(
        None, ["data.coco_train_images=imgs", "data.coco_train_annotations=ann/missing.json"]
    )
    with pytest.raises(DatasetError) as info:
        create_container(settings).dataset_source()
    assert (
        f"data.coco_train_annotations: annotations file not found: {tmp_path / 'ann' / 'missing.json'}"
        in str(info.value)
    )
    assert "data.coco_train_images" not in str(info.value)  # the folder exists


def test_half_configured_val_split_names_the_missing_key(shapes_dataset) -> None:  # noqa: ANN001
    overrides = [o for o in shapes_dataset.config_overrides() if "coco_val_annotations" not in o]
    problems = dataset_config_problems(load_config(None, overrides))
    assert [p.rule for p in problems] == ["config.missing_key"]
    assert problems[0].message.startswith("data.coco_val_annotations is not set")


def test_fallback_on_gives_synthetic_and_logs_the_reason() -> None:
    settings = load_config(None, ["train.allow_synthetic_fallback=true", "data.coco_train_images=/nowhere/x"])
    with capture_logs() as logs:
        source = create_container(settings).dataset_source()
    assert isinstance(source, SyntheticDatasetSource)
    assert (source.mode, source.backend) == ("synthetic", "synthetic")
    event = next(entry for entry in logs if entry["event"] == "dataset.synthetic_fallback")
    assert "data.coco_train_annotations" in event["reason"] and event["log_level"] == "warning"


def test_valid_dataset_is_real_even_with_the_fallback_allowed(shapes_dataset) -> None:  # noqa: ANN001
    for fallback in ("false", "true"):
        settings = load_config(
            None, [*shapes_dataset.config_overrides(), f"train.allow_synthetic_fallback={fallback}"]
        )
        assert select_dataset_kind(settings) == "coco"
        source = create_container(settings).dataset_source()
        assert isinstance(source, CocoDatasetSource) and (source.mode, source.backend) == (
            "real",
            "pycocotools",
        )


def test_relative_paths_resolve_against_the_working_directory(
    shapes_dataset, monkeypatch: pytest.MonkeyPatch
) -> None:  # noqa: ANN001
    monkeypatch.chdir(shapes_dataset.root)
    settings = load_config(
        None, ["data.coco_train_images=train", "data.coco_train_annotations=instances_train.json"]
    )
    assert select_dataset_kind(settings) == "coco"
    assert CocoDatasetSource(settings).paths["train"].images_dir == shapes_dataset.train_images


def test_train_cli_without_data_exits_2_naming_the_key(tmp_path: Path) -> None:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "apex_x.cli",
            "train",
            str(REPO / "configs" / "coco_baseline.yaml"),
            "--steps-per-stage",
            "1",
            "--set",
            f"train.output_dir={tmp_path / 'out'}",
        ],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 2, result.stderr
    assert (
        "data.coco_train_images" in result.stderr
        and str(tmp_path / "data" / "coco" / "train2017") in result.stderr
    )
    assert "Traceback" not in result.stderr
