"""The Progress port of the training loop (a bar on a terminal, log lines otherwise) and a silent default."""

from __future__ import annotations

from typing import Protocol


class Progress(Protocol):
    """Shows the progress of each epoch; implementations live in adapters (tqdm bar, plain log lines)."""

    def start_epoch(self, *, stage: str, epoch: int, total_epochs: int, total_steps: int, initial_step: int) -> None:
        """A new epoch (1-based `epoch` of `total_epochs`), `initial_step` batches already done (resume)."""
        ...

    def update(self, *, step: int, loss: float | None, lr: float) -> None:
        """Batch `step` (1-based within the epoch) is done; loss None when the step was skipped."""
        ...

    def end_epoch(self, summary: dict[str, float]) -> None:
        """The epoch's summary (mean loss, val metric, seconds...)."""
        ...

    def close(self) -> None:
        """The run is over (finished or not): release what the progress display holds (bars, threads)."""
        ...


class SilentProgress:
    """Progress that shows nothing (other ranks, tests)."""

    def start_epoch(self, *, stage: str, epoch: int, total_epochs: int, total_steps: int, initial_step: int) -> None:
        return None

    def update(self, *, step: int, loss: float | None, lr: float) -> None:
        return None

    def end_epoch(self, summary: dict[str, float]) -> None:
        return None

    def close(self) -> None:
        return None
