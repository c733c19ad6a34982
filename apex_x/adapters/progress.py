"""Progress adapters: a tqdm bar per epoch on a terminal, plain periodic log lines otherwise."""

from __future__ import annotations

import math
import os
import sys
import threading
import time
from typing import Any, TextIO

import structlog

log = structlog.get_logger(__name__)


def _eta(seconds: float) -> str:
    seconds = max(0, int(seconds))
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    return f"{hours:d}:{minutes:02d}:{secs:02d}" if hours else f"{minutes:02d}:{secs:02d}"


class TqdmProgress:
    """One tqdm bar per epoch: stage, loss, lr in the postfix; tqdm shows it/s and the ETA."""

    def __init__(self, stream: TextIO | None = None) -> None:
        self.stream = stream or sys.stderr
        self.bar: Any = None
        self.lr = 0.0

    def start_epoch(self, *, stage: str, epoch: int, total_epochs: int, total_steps: int, initial_step: int) -> None:
        from tqdm.auto import tqdm

        self.close()
        self.bar = tqdm(
            total=total_steps, initial=initial_step, file=self.stream, dynamic_ncols=True, leave=True,
            desc=f"epoch {epoch}/{total_epochs} [{stage}]", unit="it",
        )

    def update(self, *, step: int, loss: float | None, lr: float) -> None:
        if self.bar is None:
            return
        self.lr = lr
        self.bar.set_postfix(loss="skipped" if loss is None else f"{loss:.4f}", lr=f"{lr:.2e}", refresh=False)
        self.bar.update(step - self.bar.n)

    def end_epoch(self, summary: dict[str, float]) -> None:
        if self.bar is not None:
            shown = {key: (f"{value:.4f}" if isinstance(value, float) and math.isfinite(value) else value)
                     for key, value in summary.items() if key != "seconds"}
            self.bar.set_postfix({**shown, "lr": f"{self.lr:.2e}"}, refresh=True)
        self.close()

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
            self.bar = None


class SilenceWatchdog:
    """A daemon thread that calls `on_silence(seconds)` whenever nothing was said for `max_silence_s` seconds
    (wall clock): a single step or a validation that takes minutes still gets a line every so often."""

    def __init__(self, max_silence_s: float, on_silence: Any) -> None:
        self.max_silence_s = max_silence_s
        self.on_silence = on_silence
        self.last = time.monotonic()
        self.stopped = threading.Event()
        self.thread = threading.Thread(target=self._watch, name="apex-x-progress-watchdog", daemon=True)
        self.thread.start()

    def poke(self) -> None:
        self.last = time.monotonic()

    def stop(self) -> None:
        self.stopped.set()

    def _watch(self) -> None:
        while not self.stopped.wait(min(self.max_silence_s / 4.0, 5.0)):
            silent = time.monotonic() - self.last
            if silent >= self.max_silence_s:
                self.last = time.monotonic()
                self.on_silence(silent)


class LogProgress:
    """Without a terminal (CI, nohup, files): a log line every `every` steps with loss, lr, it/s and ETA,
    the first step of every epoch with its time (it includes start-up work such as loader workers), and
    a line at least every `max_silence_s` seconds however slow the steps are."""

    def __init__(self, every: int = 10, logger: Any = None, *, max_silence_s: float = 30.0,
                 clock: Any = time.perf_counter) -> None:
        self.every = max(1, every)
        self.max_silence_s = max_silence_s
        self.clock = clock
        self.last_line = clock()
        self.log = logger if logger is not None else log
        self.stage = ""
        self.epoch = 0
        self.total_epochs = 0
        self.total = 0
        self.initial = 0
        self.started = time.perf_counter()
        self.loss_sum = 0.0
        self.loss_count = 0
        self.step = 0
        self.watchdog: SilenceWatchdog | None = None

    def _still_working(self, silent_s: float) -> None:
        """The watchdog's line: the epoch is still busy (a slow step, or validation after the last step)."""
        busy = f"step {self.step + 1}/{self.total}" if self.step < self.total else "validation and checkpoint"
        self.log.info("still_working", epoch=self.epoch, stage=self.stage, on=busy, silent_s=round(silent_s, 1))

    def start_epoch(self, *, stage: str, epoch: int, total_epochs: int, total_steps: int, initial_step: int) -> None:
        self.stage, self.epoch, self.total_epochs = stage, epoch, total_epochs
        self.total, self.initial = total_steps, initial_step
        self.started = self.last_line = self.clock()
        self.loss_sum, self.loss_count = 0.0, 0
        self.step = initial_step
        self.log.info("epoch_start", epoch=epoch, of=total_epochs, stage=stage, steps=total_steps, from_step=initial_step)
        if self.watchdog is None and self.max_silence_s > 0:
            self.watchdog = SilenceWatchdog(self.max_silence_s, self._still_working)
        if self.watchdog is not None:
            self.watchdog.poke()

    def update(self, *, step: int, loss: float | None, lr: float) -> None:
        if loss is not None:
            self.loss_sum += loss
            self.loss_count += 1
        self.step = step
        now = self.clock()
        first = step == self.initial + 1
        if not first and step % self.every and step != self.total and now - self.last_line < self.max_silence_s:
            return
        elapsed = now - self.started
        done = max(1, step - self.initial)
        rate = done / elapsed if elapsed > 0 else 0.0
        extra = {"first_step_s": round(elapsed, 3)} if first else {}
        self.log.info(
            "train_progress", epoch=self.epoch, stage=self.stage, step=f"{step}/{self.total}",
            loss=round(self.loss_sum / self.loss_count, 5) if self.loss_count else None,
            lr=float(f"{lr:.3e}"), it_s=round(rate, 3),
            eta=_eta((self.total - step) / rate) if rate > 0 else "?", **extra,
        )
        self.loss_sum, self.loss_count = 0.0, 0
        self.last_line = now
        if self.watchdog is not None:
            self.watchdog.poke()

    def end_epoch(self, summary: dict[str, float]) -> None:
        self.log.info("epoch_end", epoch=self.epoch, stage=self.stage,
                 **{key: (round(value, 5) if isinstance(value, float) and math.isfinite(value) else value)
                    for key, value in summary.items()})
        if self.watchdog is not None:
            self.watchdog.poke()

    def close(self) -> None:
        if self.watchdog is not None:
            self.watchdog.stop()
            self.watchdog = None


def make_progress(log_every_steps: int = 10, *, stream: TextIO | None = None) -> TqdmProgress | LogProgress:
    """A bar on an interactive terminal (and rank 0), log lines otherwise. APEX_X_PROGRESS=bar|log forces one."""
    forced = os.environ.get("APEX_X_PROGRESS", "").lower()
    target = stream or sys.stderr
    interactive = bool(getattr(target, "isatty", lambda: False)())
    if forced == "bar" or (forced != "log" and interactive):
        return TqdmProgress(target)
    return LogProgress(log_every_steps)
