"""Say what is happening when a set-up phase is slow, so a user never watches minutes of silence."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import structlog

log = structlog.get_logger(__name__)


@contextmanager
def notice_if_slow(what: str, *, after_s: float = 1.0, logger: Any = None, **fields: Any) -> Iterator[None]:
    """Logs one info line `working: <what>` if the block is still running after `after_s` seconds.

    Fast blocks print nothing; the line comes from a daemon timer thread, so a block that hangs in C
    code (an import, a network call) is still announced.
    """
    target = logger if logger is not None else log
    timer = threading.Timer(after_s, lambda: target.info("working", task=what, **fields))
    timer.daemon = True
    timer.start()
    try:
        yield
    finally:
        timer.cancel()
