"""The run's experiment trackers (train.loggers), isolated: a tracker that raises is warned about once and left
out for the rest of the run, so tracking never stops training. Rank 0 only (the use case passes none elsewhere)."""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import structlog

from apex_x.application.engine.resume import flatten
from apex_x.domain.ports import ExperimentTracker

log = structlog.get_logger(__name__)


def flatten_params(config: Mapping[str, Any]) -> dict[str, Any]:
    """Nested config -> {dotted.key: scalar, or its text for a list} (resume.flatten: stages by index)."""
    return {key: value if isinstance(value, (int, float, str, bool)) or value is None else str(value)
            for key, value in flatten(config).items()}


class Trackers:
    """Fans calls out to the trackers; a failing one is dropped with one warning naming it and the error."""

    def __init__(self, trackers: Sequence[ExperimentTracker] = ()) -> None:
        self.active: list[ExperimentTracker] = list(trackers)
        self.failed: dict[str, str] = {}  # tracker name -> the error that took it out

    def _each(self, action: str, call: Callable[[ExperimentTracker], None]) -> None:
        for tracker in list(self.active):
            try:
                call(tracker)
            except Exception as error:  # noqa: BLE001 - tracking never stops training
                self.active.remove(tracker)
                self.failed[tracker.name] = f"{type(error).__name__}: {error}"
                log.warning("tracker_failed", tracker=tracker.name, action=action, error=self.failed[tracker.name],
                            note="this tracker is left out for the rest of the run; training goes on")

    def start(self, run_dir: str, config: Mapping[str, Any], run_name: str) -> None:
        params = flatten_params(config)
        self._each("start", lambda tracker: tracker.start(run_dir, params, run_name))

    def log(self, metrics: Mapping[str, float | None], step: int) -> None:
        finite = {key: float(value) for key, value in metrics.items()
                  if isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)}
        if finite and self.active:
            self._each("log_metrics", lambda tracker: tracker.log_metrics(finite, step))

    def log_images(self, images: Mapping[str, Any], step: int) -> None:
        """(H, W, 3) uint8 RGB tensors by tag, e.g. val/predictions/image_12."""
        if images and self.active:
            self._each("log_images", lambda tracker: tracker.log_images(images, step))

    def close(self, status: str) -> None:
        self._each("close", lambda tracker: tracker.close(status))

    def to_plain(self) -> dict[str, Any]:
        """The trackers that logged the run to its end, and those taken out (with why)."""
        return {"active": [tracker.name for tracker in self.active], "failed": dict(self.failed)}
