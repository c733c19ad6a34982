"""`data.format: yolo`: an Ultralytics segmentation dataset (data.yaml + labels/*.txt polygons), data.yolo_data.

The splits are converted to COCO instances (yolo_labels.py) and read by the COCO source: the same checks,
loader, augmentation and evaluation; the label files' own problems are findings naming file and line.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal

from apex_x.domain.config import ApexConfig
from apex_x.domain.ports import DatasetSource
from apex_x.domain.registry import DATASET_FORMATS
from apex_x.domain.types import Finding


def _splits(settings: ApexConfig) -> dict[str, str]:
    """The data.yaml's image folders by split (empty when it cannot be read: config_problems says why)."""
    from apex_x.adapters.datasets.findings import FindingLog
    from apex_x.adapters.datasets.yolo_labels import read_data_yaml
    from apex_x.adapters.datasets.yolo_source import resolve

    if settings.data.yolo_data is None:
        return {}
    data = read_data_yaml(resolve(settings.data.yolo_data), FindingLog())
    return {split: str(folder) for split, folder in data.splits.items()} if data else {}


@DATASET_FORMATS.register
class YoloFormat:
    """Ultralytics data.yaml; the DatasetSource is YoloDatasetSource."""

    name = "yolo"
    mode: Literal["real", "synthetic"] = "real"
    backend = "ultralytics-yolo"

    def config_keys(self, settings: ApexConfig) -> dict[str, Any]:
        return {"yolo_data": settings.data.yolo_data}

    def config_problems(self, settings: ApexConfig, cwd: str | None = None) -> list[Finding]:
        value = settings.data.yolo_data
        if value is None:
            return [Finding("error", "config.missing_key", "data.yolo_data is not set: no YOLO data.yaml is configured")]
        path = (Path(cwd) if cwd else Path.cwd()) / Path(value).expanduser()
        if not path.is_file():
            what = "not a file" if path.exists() else "data.yaml not found"
            return [Finding("error", "file.not_found", f"data.yolo_data: {what}: {path}", file=str(path))]
        return []

    def how_to_fix(self, keys: Mapping[str, Any]) -> str:  # noqa: ARG002 - one key, named in the fix
        return ("point data.yolo_data at your Ultralytics data.yaml (train/val image folders, names; labels in the "
                "parallel labels/ folders) and check it with `apex-x dataset-preflight CONFIG`; or, for a smoke run "
                "only, set train.allow_synthetic_fallback=true")

    def open(self, settings: ApexConfig) -> DatasetSource:
        from apex_x.adapters.datasets.yolo_source import YoloDatasetSource

        return YoloDatasetSource(settings)  # type: ignore[return-value]

    def split_keys(self, split: Literal["train", "val"]) -> tuple[str, ...]:
        return ("data.yolo_data",) if split == "train" else (f"data.yolo_data ('{split}:' in the data.yaml)",)

    def evaluation_settings(self, settings: ApexConfig) -> ApexConfig | None:
        return settings if "val" in _splits(settings) else None

    def image_folder(self, settings: ApexConfig, split: Literal["train", "val"]) -> str | None:
        return _splits(settings).get(split)
