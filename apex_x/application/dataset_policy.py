"""The fail-fast dataset policy: real COCO data, or synthetic data only when explicitly allowed."""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal

import structlog

from apex_x.domain.config import ApexConfig
from apex_x.domain.errors import DatasetError
from apex_x.domain.shapes_layout import make_shapes_command
from apex_x.domain.types import Finding

logger = structlog.get_logger(__name__)

DATA_PATH_KEYS = ("coco_train_images", "coco_train_annotations", "coco_val_images", "coco_val_annotations")


def how_to_fix_data_paths(paths: Mapping[str, Any]) -> str:
    """The fix for missing data, specific to the config's own data.* paths (`paths`: keys without `data.`).

    When the paths are a layout of the built-in shapes dataset, the exact `apex-x make-shapes` command that
    writes them comes first (e.g. `apex-x make-shapes data/coco --layout coco` for coco_baseline.yaml).
    """
    command = make_shapes_command({key: paths.get(key) for key in DATA_PATH_KEYS})
    own_data = (
        "point the data.* keys at your COCO files (in the config or with --set KEY=PATH; relative paths are "
        "resolved against the working directory) and check them with `apex-x dataset-preflight CONFIG`"
    )
    if command:
        first = (f"to try this config without your own data, `{command}` writes the built-in shapes dataset "
                 f"exactly where its data.* keys point; otherwise {own_data}")
    else:
        first = (f"{own_data}; to try Apex-X without your own data, `apex-x make-shapes DIR` writes the built-in "
                 "shapes dataset (its output lists the data.* keys to set)")
    return f"{first}; or, for a smoke run only, set train.allow_synthetic_fallback=true"


def dataset_config_problems(settings: ApexConfig, cwd: str | Path | None = None) -> list[Finding]:
    """Keys that are not set or paths that do not exist, each naming the key and the resolved path."""
    base = Path(cwd) if cwd is not None else Path.cwd()
    data = settings.data
    splits = (
        ("train", "coco_train_images", "coco_train_annotations", True),
        ("val", "coco_val_images", "coco_val_annotations", False),
    )
    problems: list[Finding] = []
    for split, images_key, annotations_key, required in splits:
        values = {
            f"data.{images_key}": getattr(data, images_key),
            f"data.{annotations_key}": getattr(data, annotations_key),
        }
        unset = [key for key, value in values.items() if value is None]
        if len(unset) == 2 and not required:
            continue
        if len(unset) == 2:
            problems.append(
                Finding(
                    "error",
                    "config.missing_key",
                    f"{' and '.join(unset)} are not set: no {split} dataset is configured",
                )
            )
            continue
        if unset:
            other = next(key for key in values if key not in unset)
            problems.append(
                Finding(
                    "error",
                    "config.missing_key",
                    f"{unset[0]} is not set but {other} is: the {split} split needs both",
                )
            )
            continue
        for key, value in values.items():
            path = Path(os.path.normpath(os.path.join(base, os.path.expanduser(str(value)))))
            wants_folder = key.endswith("_images")
            if not path.exists():
                kind = "images folder" if wants_folder else "annotations file"
                problems.append(
                    Finding("error", "file.not_found", f"{key}: {kind} not found: {path}", file=str(path))
                )
            elif wants_folder and not path.is_dir():
                problems.append(
                    Finding("error", "file.not_a_directory", f"{key}: not a folder: {path}", file=str(path))
                )
            elif not wants_folder and not path.is_file():
                problems.append(
                    Finding("error", "file.not_a_file", f"{key}: not a file: {path}", file=str(path))
                )
    return problems


def select_dataset_kind(settings: ApexConfig) -> Literal["coco", "synthetic"]:
    """ "coco" when the dataset keys point at existing files; otherwise a DatasetError naming the key and
    path, or "synthetic" (with the reason logged) when train.allow_synthetic_fallback is true."""
    problems = [finding for finding in dataset_config_problems(settings) if finding.severity == "error"]
    if not problems:
        return "coco"
    reason = "; ".join(finding.message for finding in problems)
    if settings.train.allow_synthetic_fallback:
        logger.warning(
            "dataset.synthetic_fallback",
            reason=reason,
            note="train.allow_synthetic_fallback=true: training on synthetic data (reported as dataset mode synthetic)",
        )
        return "synthetic"
    fix = how_to_fix_data_paths({key: getattr(settings.data, key) for key in DATA_PATH_KEYS})
    raise DatasetError(f"{reason}. How to fix: {fix}.")
