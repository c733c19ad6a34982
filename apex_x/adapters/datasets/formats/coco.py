"""`data.format: coco`: a COCO instances JSON and an images folder per split (val optional), read with pycocotools.

Keys: data.coco_train_images + data.coco_train_annotations (required), data.coco_val_images +
data.coco_val_annotations (optional, both or neither).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal

from apex_x.domain.config import ApexConfig
from apex_x.domain.ports import DatasetSource
from apex_x.domain.registry import DATASET_FORMATS
from apex_x.domain.shapes_layout import make_shapes_command
from apex_x.domain.types import Finding

DATA_PATH_KEYS = ("coco_train_images", "coco_train_annotations", "coco_val_images", "coco_val_annotations")
# split -> (images key, annotations key, required)
SPLITS = (
    ("train", "coco_train_images", "coco_train_annotations", True),
    ("val", "coco_val_images", "coco_val_annotations", False),
)


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


def _path_problem(key: str, path: Path) -> Finding | None:
    wants_folder = key.endswith("_images")
    if not path.exists():
        kind = "images folder" if wants_folder else "annotations file"
        return Finding("error", "file.not_found", f"{key}: {kind} not found: {path}", file=str(path))
    if wants_folder and not path.is_dir():
        return Finding("error", "file.not_a_directory", f"{key}: not a folder: {path}", file=str(path))
    if not wants_folder and not path.is_file():
        return Finding("error", "file.not_a_file", f"{key}: not a file: {path}", file=str(path))
    return None


def dataset_config_problems(settings: ApexConfig, cwd: str | Path | None = None) -> list[Finding]:
    """Keys that are not set or paths that do not exist, each naming the key and the resolved path."""
    base = Path(cwd) if cwd is not None else Path.cwd()
    data = settings.data
    problems: list[Finding] = []
    for split, images_key, annotations_key, required in SPLITS:
        values = {
            f"data.{images_key}": getattr(data, images_key),
            f"data.{annotations_key}": getattr(data, annotations_key),
        }
        unset = [key for key, value in values.items() if value is None]
        if len(unset) == 2 and not required:
            continue
        if len(unset) == 2:
            problems.append(Finding(
                "error", "config.missing_key", f"{' and '.join(unset)} are not set: no {split} dataset is configured"
            ))
            continue
        if unset:
            other = next(key for key in values if key not in unset)
            problems.append(Finding(
                "error", "config.missing_key", f"{unset[0]} is not set but {other} is: the {split} split needs both"
            ))
            continue
        for key, value in values.items():
            problem = _path_problem(key, Path(os.path.normpath(os.path.join(base, os.path.expanduser(str(value))))))
            if problem is not None:
                problems.append(problem)
    return problems


@DATASET_FORMATS.register
class CocoFormat:
    """COCO instances JSON + images folder per split; the DatasetSource is CocoDatasetSource."""

    name = "coco"
    mode: Literal["real", "synthetic"] = "real"
    backend = "pycocotools"

    def config_keys(self, settings: ApexConfig) -> dict[str, Any]:
        return {key: getattr(settings.data, key) for key in DATA_PATH_KEYS}

    def config_problems(self, settings: ApexConfig, cwd: str | None = None) -> list[Finding]:
        return dataset_config_problems(settings, cwd)

    def how_to_fix(self, keys: Mapping[str, Any]) -> str:
        return how_to_fix_data_paths(keys)

    def open(self, settings: ApexConfig) -> DatasetSource:
        from apex_x.adapters.datasets.coco_source import CocoDatasetSource  # pycocotools: only when loading

        return CocoDatasetSource(settings)

    def split_keys(self, split: Literal["train", "val"]) -> tuple[str, ...]:
        return next((f"data.{images}", f"data.{annotations}") for name, images, annotations, _ in SPLITS
                    if name == split)

    def evaluation_settings(self, settings: ApexConfig) -> ApexConfig | None:
        data = settings.data
        if data.coco_val_images is None or data.coco_val_annotations is None:
            return None
        if data.coco_train_images is None and data.coco_train_annotations is None:
            data = data.model_copy(
                update={"coco_train_images": data.coco_val_images, "coco_train_annotations": data.coco_val_annotations}
            )
            return settings.model_copy(update={"data": data})
        return settings

    def image_folder(self, settings: ApexConfig, split: Literal["train", "val"]) -> str | None:
        return settings.data.coco_train_images if split == "train" else settings.data.coco_val_images
