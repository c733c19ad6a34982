"""`data.format: synthetic`: generated smoke data (data.synthetic_train_images / synthetic_val_images), no files.

Also what the dataset policy falls back to when train.allow_synthetic_fallback is true and the configured
format's data is missing (always reported as dataset mode synthetic).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Literal

from apex_x.domain.config import ApexConfig
from apex_x.domain.ports import DatasetSource
from apex_x.domain.registry import DATASET_FORMATS
from apex_x.domain.types import Finding


@DATASET_FORMATS.register
class SyntheticFormat:
    """No keys to check; the DatasetSource is SyntheticDatasetSource."""

    name = "synthetic"
    mode: Literal["real", "synthetic"] = "synthetic"
    backend = "synthetic"

    def config_keys(self, settings: ApexConfig) -> dict[str, Any]:
        return {"synthetic_train_images": settings.data.synthetic_train_images,
                "synthetic_val_images": settings.data.synthetic_val_images}

    def config_problems(self, settings: ApexConfig, cwd: str | None = None) -> list[Finding]:  # noqa: ARG002
        return []

    def how_to_fix(self, keys: Mapping[str, Any]) -> str:  # noqa: ARG002 - nothing can be missing
        return "synthetic data needs no files"

    def open(self, settings: ApexConfig) -> DatasetSource:
        from apex_x.adapters.datasets.synthetic_source import SyntheticDatasetSource

        return SyntheticDatasetSource(settings)

    def split_keys(self, split: Literal["train", "val"]) -> tuple[str, ...]:
        return (f"data.synthetic_{split}_images",)

    def evaluation_settings(self, settings: ApexConfig) -> ApexConfig | None:
        return settings if settings.data.synthetic_val_images > 0 else None

    def image_folder(self, settings: ApexConfig, split: Literal["train", "val"]) -> str | None:  # noqa: ARG002
        return None
