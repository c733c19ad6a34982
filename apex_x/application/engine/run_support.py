"""Support of a training session: its result, the checkpoint-metric choice, signals, kernels, AMP."""

from __future__ import annotations

import contextlib
import shlex
import signal
import threading
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import structlog
import torch

from apex_x.domain.ports import (
    AuxiliaryLoss,
    CheckpointStore,
    DatasetSource,
    Evaluator,
    ExperimentTracker,
    PreviewRenderer,
    ReportWriter,
    RunFolder,
    WeightsWriter,
)

if TYPE_CHECKING:
    from apex_x.application.engine.curriculum import Stage
    from apex_x.application.engine.progress import Progress
    from apex_x.domain.config import ApexConfig
    from apex_x.domain.types import CategoryMap

log = structlog.get_logger(__name__)


@dataclass
class TrainResult:
    """What a run produced; `status`: finished, finished_with_warnings (it ran, but a loss component sat at its
    clip, the gradient was 0 or the loss diverged: see report["warnings"]), paused (stop_after_steps),
    interrupted (SIGINT/SIGTERM)."""

    status: str
    output_dir: str
    report_path: str
    best: dict[str, Any] | None
    selected_metric: str
    last_val_metrics: dict[str, float] | None
    checkpoints: dict[str, str | None] = field(default_factory=dict)
    weights_path: str | None = None
    report: dict[str, Any] = field(default_factory=dict)
    stop_signal: int | None = None  # the signal number that interrupted the run (SIGTERM 15, SIGINT 2)

    @property
    def val_ap(self) -> float | None:
        """segm AP of the last validation (bbox AP if there is no segm), the figure the CLI prints."""
        metrics = self.last_val_metrics or {}
        for name in ("segm_AP", "bbox_AP"):
            if name in metrics:
                return metrics[name]
        return None


ResumeCommand = Callable[[str, Sequence[str]], str]
"""(last.pt path, extra overrides such as "data.on_bad_image=skip") -> the command that resumes the run, as
the caller spells it (the CLI: `apex-x train cfg.yaml --resume ...`; Python: `apex_x.train(...)`)."""


def flag_resume_command(last: str, overrides: Sequence[str] = ()) -> str:
    """The resume command when the caller did not say how it spells one: the flags to add."""
    return " ".join(["--resume", shlex.quote(last), *(f"--set {shlex.quote(item)}" for item in overrides)])


@dataclass(frozen=True)
class MetricChoice:
    requested: str
    selected: str
    reason: str


_AREA_RANGES = {"s": (0.0, 32.0**2), "m": (32.0**2, 96.0**2), "l": (96.0**2, 1e10)}


def metric_has_ground_truth(ground_truth: dict[str, Any] | None, metric: str) -> bool:
    """Whether COCO can score `metric` (e.g. segm_AP, bbox_APl) on this ground truth: at least one non-crowd
    object (of the metric's size range) in the listed images. Without one pycocotools returns its -1."""
    if not ground_truth:
        return False
    image_ids = {image.get("id") for image in ground_truth.get("images") or []}
    suffix = metric.rsplit("_", 1)[-1]
    low, high = _AREA_RANGES.get(suffix[-1], (0.0, 1e10)) if suffix.startswith("AP") and len(suffix) == 3 else (0.0, 1e10)
    for annotation in ground_truth.get("annotations") or []:
        if annotation.get("iscrowd") or annotation.get("image_id") not in image_ids:
            continue
        area = annotation.get("area")
        if not isinstance(area, (int, float)) or low <= float(area) <= high:
            return True
    return False


def choose_metric(requested: str, source: DatasetSource) -> MetricChoice:
    """The metric that selects best.pt: the requested one when the data can give it, else val/train loss.
    pycocotools' -1 (no ground truth) is never a score: such a metric falls back to val_loss, with the reason."""
    has_val = source.has_val()
    if requested.endswith("loss"):
        if requested == "val_loss" and not has_val:
            return MetricChoice(requested, "train_loss", "no val split: falling back to the mean training loss")
        return MetricChoice(requested, requested, "as configured")
    if not has_val:
        return MetricChoice(requested, "train_loss", "no val split: falling back to the mean training loss")
    ground_truth = source.val_ground_truth()
    if ground_truth is None:
        return MetricChoice(requested, "val_loss", "the val split has no ground truth for COCO metrics: val loss")
    if not metric_has_ground_truth(ground_truth, requested):
        what = "objects of that size" if requested[-1] in "sml" and requested[-3:-1] == "AP" else "objects"
        return MetricChoice(
            requested, "val_loss",
            f"{requested} is n/a: the val split has no non-crowd {what} (COCO's -1 is not a score), so val_loss "
            "selects best.pt",
        )
    return MetricChoice(requested, requested, "as configured")


class StopFlag:
    """A stop request and the signal that made it (is_set() is what the loop polls)."""

    def __init__(self) -> None:
        self._event = threading.Event()
        self.signal_number: int | None = None
        self.run_ended = False  # set when the run has ended: a later signal changes nothing (exit 0 stays)

    def is_set(self) -> bool:
        return self._event.is_set()

    def set(self, signal_number: int | None = None) -> None:
        if not self._event.is_set():
            self.signal_number = signal_number
        self._event.set()


@contextlib.contextmanager
def interrupt_guard() -> Iterator[StopFlag]:
    """SIGINT/SIGTERM ask the run to stop at the next check (between steps, between validation batches,
    before an epoch's validation), saving last.pt; a second SIGINT aborts at once."""
    requested = StopFlag()
    if threading.current_thread() is not threading.main_thread():
        yield requested
        return

    def handler(signum: int, frame: Any) -> None:
        if requested.run_ended:
            log.info("stop_requested_after_end", signal=signal.Signals(signum).name,
                     action="the run has already ended (weights and report written): finishing normally")
            return
        if requested.is_set() and signum == signal.SIGINT:
            raise KeyboardInterrupt
        requested.set(signum)
        log.warning("stop_requested", signal=signal.Signals(signum).name,
                    action="saving last.pt at the next step or validation batch; press Ctrl-C again to abort")

    previous = {sig: signal.signal(sig, handler) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield requested
    finally:
        for sig, old in previous.items():
            signal.signal(sig, old)


def kernels_report(preference: str, device: torch.device) -> dict[str, Any]:
    """Apply runtime.kernels, fail fast if a forced backend cannot run on `device`, and describe the
    loss-kernel backend for the report (`backend` is the one used for this device)."""
    from apex_x import kernels

    kernels.set_backend_preference(preference)
    backend = kernels.resolve_backend(torch.empty(0, device=device))
    return {"preference": preference, **kernels.active_backend_report(), "backend": backend}


def refresh_kernels_report(started: dict[str, Any] | None) -> dict[str, Any] | None:
    """The start-of-run kernels report brought up to date: a compiled path that failed during the run (eager
    fallback) must not still be reported as `compiled`."""
    if not started:
        return started
    from apex_x import kernels

    current = kernels.active_backend_report()
    failed = started.get("backend") == "compiled" and current.get("compiled_unavailable") is not None
    return {**started, **current, "preference": started.get("preference"),
            "backend": "torch" if failed else started.get("backend")}


def amp_dtype(mode: str, device: torch.device) -> torch.dtype | None:
    """The autocast of training and validation (train.amp): bf16 on CUDA for auto/bf16, none on CPU."""
    if mode == "bf16" or (mode == "auto" and device.type == "cuda"):
        return torch.bfloat16
    return None


@dataclass(frozen=True)
class RunPlan:
    """What a run does: the effective config, its curriculum, the classes, the checkpoint metric, the loss
    kernels in use (for the report) and how messages spell the resume command."""

    settings: ApexConfig
    stages: list[Stage]  # in order
    categories: CategoryMap
    metric: MetricChoice
    kernels: dict[str, Any]
    resume_command: ResumeCommand = flag_resume_command


@dataclass(frozen=True)
class RunNetwork:
    """What trains: the model (on its device), its parameter groups, and extra loss terms (distillation)."""

    model: Any  # SegmentationModel + torch.nn.Module
    groups: dict[str, list[Any]]
    weights_key: str  # where checkpoints keep its weights: its profile's ModelProfile.weights_key
    auxiliary_losses: Sequence[AuxiliaryLoss] = ()


@dataclass(frozen=True)
class RunPorts:
    """Where a run reads and writes: data, checkpoints, evaluation, reports, final weights, its folder, display."""

    source: DatasetSource
    store: CheckpointStore
    evaluator: Evaluator
    writers: Sequence[ReportWriter]
    weights_writer: WeightsWriter | None
    folder: RunFolder
    progress: Progress
    trackers: Sequence[ExperimentTracker] = ()  # train.loggers (rank 0 only)
    previewer: PreviewRenderer | None = None  # draws plots/val_predictions.png (rank 0 only)
