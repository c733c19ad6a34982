"""The fail-fast dataset policy: the configured format's real data, or synthetic data only when explicitly allowed.

The policy asks the dataset format (data.format; the container passes it in) whether its keys are set and its
paths exist; it knows no format's keys itself.
"""

from __future__ import annotations

from typing import Literal

import structlog

from apex_x.domain.config import ApexConfig
from apex_x.domain.errors import DatasetError
from apex_x.domain.ports import DatasetFormat

logger = structlog.get_logger(__name__)

SYNTHETIC = "synthetic"  # the dataset kind of the smoke-run fallback (a registered dataset format)


def select_dataset_kind(settings: ApexConfig, dataset_format: DatasetFormat) -> str:
    """The format's name when its data keys point at existing files; otherwise a DatasetError naming the key
    and path, or "synthetic" (with the reason logged) when train.allow_synthetic_fallback is true."""
    problems = [finding for finding in dataset_format.config_problems(settings) if finding.severity == "error"]
    if not problems:
        return dataset_format.name
    reason = "; ".join(finding.message for finding in problems)
    if settings.train.allow_synthetic_fallback:
        logger.warning(
            "dataset.synthetic_fallback",
            reason=reason,
            note="train.allow_synthetic_fallback=true: training on synthetic data (reported as dataset mode synthetic)",
        )
        return SYNTHETIC
    fix = dataset_format.how_to_fix(dataset_format.config_keys(settings))
    raise DatasetError(f"{reason}. How to fix: {fix}.")


def select_evaluation_settings(settings: ApexConfig, dataset_format: DatasetFormat, source: str) -> ApexConfig:
    """The settings that evaluate the configured format's val split (the format decides how: a config with only
    a val split gets it as train split too). No val split: `settings` unchanged when the synthetic fallback is
    allowed and the format's data is missing (the policy above then picks synthetic data), otherwise a
    DatasetError naming `source` (the config file) and the keys to set."""
    chosen = dataset_format.evaluation_settings(settings)
    if chosen is not None:
        val_keys = dataset_format.split_keys("val")  # the val split's own problems, named by its own keys
        broken = [finding.message for finding in dataset_format.config_problems(settings)
                  if finding.severity == "error" and any(key in finding.message for key in val_keys)]
        if broken and not settings.train.allow_synthetic_fallback:
            raise DatasetError(f"{source}: eval needs the val split: {'; '.join(broken)}. How to fix: point "
                               f"{' and '.join(val_keys)} at the val split's files (in the config or with --set "
                               "KEY=PATH) and check them with `apex-x dataset-preflight CONFIG`")
        return chosen
    missing = [finding for finding in dataset_format.config_problems(settings) if finding.severity == "error"]
    if settings.train.allow_synthetic_fallback and missing:
        return settings
    raise DatasetError(f"{source}: eval needs the val split: {how_to_set(dataset_format, 'val')}")


def how_to_set(dataset_format: DatasetFormat, split: Literal["train", "val"]) -> str:
    """"set data.X and data.Y (in the config or with --set KEY=VALUE)" for the format's keys of `split`."""
    return f"set {' and '.join(dataset_format.split_keys(split))} (in the config or with --set KEY=VALUE)"
