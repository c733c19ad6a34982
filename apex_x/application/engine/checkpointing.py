"""Checkpoint payloads of a run and where they go: epoch_XXXX.pt, best.pt, last.pt (rank 0 writes)."""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import structlog

from apex_x.application.engine.distributed import DistContext, any_true
from apex_x.domain.checkpoint import TrainingCheckpoint
from apex_x.domain.errors import ApexError, TrainingStopped
from apex_x.domain.ports import CheckpointStore
from apex_x.domain.version import __version__

log = structlog.get_logger(__name__)

_EPOCH_FILE = re.compile(r"^epoch_(\d{4,})\.pt$")


def epoch_file_name(epoch_number: int) -> str:
    """1-based epoch number -> epoch_XXXX.pt."""
    return f"epoch_{epoch_number:04d}.pt"


def make_payload(
    *,
    profile: str,
    weights_key: str,
    model_state: Mapping[str, Any],
    ema_state: Mapping[str, Any] | None,
    optimizer_state: Mapping[str, Any],
    scheduler_state: Mapping[str, Any],
    rng: Mapping[str, Any],
    progress: Mapping[str, Any],
    best: Mapping[str, Any] | None,
    config: Mapping[str, Any],
    categories: Mapping[str, Any],
    dataset_fingerprint: str,
    input_size: tuple[int, int],
    train_state: Mapping[str, Any],
    architecture: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """The full training checkpoint (domain.checkpoint.TrainingCheckpoint) as the payload the store writes."""
    return TrainingCheckpoint(
        profile=profile, weights_key=weights_key, model_state=model_state, ema_state=ema_state,
        optimizer=optimizer_state, scheduler=scheduler_state, scaler=None,  # bf16 autocast needs no loss scaling
        rng=rng, progress=progress, best=best, config=config, categories=categories,
        dataset_fingerprint=dataset_fingerprint, input_size=input_size, architecture=architecture or {},
        train_state=train_state, apex_x_version=__version__,
    ).to_payload()


class CheckpointKeeper:
    """Writes a run's checkpoints on rank 0; every rank learns whether the write worked (no hang)."""

    def __init__(self, store: CheckpointStore, directory: Path, context: DistContext, keep_last: int | None) -> None:
        self.store = store
        self.directory = directory
        self.context = context
        self.keep_last = keep_last

    @property
    def last(self) -> Path:
        return self.directory / "last.pt"

    @property
    def best(self) -> Path:
        return self.directory / "best.pt"

    def save(self, build: Callable[[], dict[str, Any]], *, epoch_number: int | None, is_best: bool) -> list[str]:
        """Rank 0 writes epoch file (when epoch_number), best.pt (when is_best) and last.pt, in that order,
        so last.pt is only replaced once the others exist. A failed write raises on every rank."""
        written: list[str] = []
        failure: ApexError | OSError | None = None
        if self.context.is_main:
            try:
                payload = build()
                targets: list[Path] = []
                if epoch_number is not None:
                    targets.append(self.directory / epoch_file_name(epoch_number))
                if is_best:
                    targets.append(self.best)
                targets.append(self.last)
                first, *others = targets
                self.store.save(payload, str(first))  # serialised once; the others share its bytes
                written.append(str(first))
                for target in others:
                    self.store.copy(str(first), str(target))
                    written.append(str(target))
                if epoch_number is not None:
                    self._prune()
            except (ApexError, OSError) as error:
                failure = error
        if any_true(self.context, [failure is not None])[0]:
            if failure is not None:
                raise failure
            raise TrainingStopped("rank 0 could not write a checkpoint; see its error")
        if written:
            log.info("checkpoint_saved", files=[Path(path).name for path in written])
        return written

    def epoch_files(self) -> list[Path]:
        """The epoch_XXXX.pt files of the run, oldest first (listed by the store)."""
        return [Path(path) for path in self.store.list_checkpoints(str(self.directory))
                if _EPOCH_FILE.match(Path(path).name)]

    def _prune(self) -> None:
        if self.keep_last is None:
            return
        for old in self.epoch_files()[: -self.keep_last]:
            try:
                self.store.delete(str(old))
            except OSError as error:
                log.warning("checkpoint_prune_failed", path=str(old), error=str(error))
