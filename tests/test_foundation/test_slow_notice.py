"""Slow set-up phases say what they are doing; fast ones stay quiet."""

from __future__ import annotations

import threading

from apex_x.adapters.slow_notice import notice_if_slow


class _Lines:
    def __init__(self) -> None:
        self.entries: list[dict] = []
        self.logged = threading.Event()

    def info(self, event: str, **fields: object) -> None:
        self.entries.append({"event": event, **fields})
        self.logged.set()


def test_a_slow_block_is_announced_once_while_it_runs() -> None:
    lines = _Lines()
    with notice_if_slow("preflight: importing transformers", after_s=0.05, logger=lines):
        assert lines.logged.wait(5.0)  # announced while the block is still running
    assert lines.entries == [{"event": "working", "task": "preflight: importing transformers"}]


def test_a_fast_block_prints_nothing() -> None:
    lines = _Lines()
    with notice_if_slow("building the model", after_s=0.5, logger=lines):
        pass
    assert not lines.logged.wait(0.8) and lines.entries == []
