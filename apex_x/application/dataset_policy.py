"""The fail-fast dataset policy: the configured format's real data, or synthetic data only when explicitly allowed.

The policy asks the dataset format (data.format; the container passes it in) whether its keys are set and its
paths exist; it knows no format's keys itself.
"""

from __future__ import annotations

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
