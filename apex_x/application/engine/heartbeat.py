"""Heartbeats of a distributed run: a rank that stops answering is named, and the others stop at once.

Every rank's background thread bumps its own counter in the run's key-value store (torchrun's
MASTER_ADDR:MASTER_PORT) every `peer_timeout / 4` seconds and watches the others' counters. A counter
that has not moved for `runtime.peer_timeout_s` means that rank is frozen (stopped, swapped out, hung in
a kernel): the watcher prints which rank, and ends this process with exit code 3 (no collective can
finish anyway; checkpoints are written atomically, so last.pt stays loadable). A collective that fails
(a peer died, or runtime.collective_timeout_s passed) is turned into a PeerFailed error naming the
ranks whose heartbeat stopped.
"""

from __future__ import annotations

import datetime
import os
import sys
import threading
import time
from collections.abc import Callable

import structlog
import torch.distributed as dist

from apex_x.domain.errors import ApexError

log = structlog.get_logger(__name__)

EXIT_PEER_FAILED = 3
_PEER_ERROR_WORDS = ("timed out", "timeout", "connection closed", "connection reset", "broken pipe",
                     "peer", "socket", "gloo", "nccl", "closed by", "aborted")


class PeerFailed(ApexError):
    """Another process of the distributed run died or stopped answering (exit code 3)."""

    exit_code = EXIT_PEER_FAILED


class Heartbeat:
    """Publishes this rank's heartbeat and watches the other ranks' (a daemon thread)."""

    def __init__(self, rank: int, world_size: int, peer_timeout_s: float,
                 on_failure: Callable[[str], None] | None = None) -> None:
        self.rank, self.world_size, self.peer_timeout_s = rank, world_size, float(peer_timeout_s)
        self.interval = max(0.2, self.peer_timeout_s / 4)
        self.on_failure = on_failure or _exit_peer_failed
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._store: dist.Store | None = None
        self._last_seen: dict[int, tuple[int, float]] = {}

    def start(self) -> bool:
        """Connect a store client of its own; False (no heartbeat, logged) when there is no store to reach."""
        host, port = os.environ.get("MASTER_ADDR"), os.environ.get("MASTER_PORT")
        if not host or not port:
            return False
        try:
            client = dist.TCPStore(host, int(port), is_master=False, wait_for_workers=False,
                                   timeout=datetime.timedelta(seconds=max(5.0, self.peer_timeout_s)))
            self._store = dist.PrefixStore("apex_x_heartbeat", client)
            self._store.set(str(self.rank), "0")
        except Exception as error:  # noqa: BLE001 - heartbeats are a help, not a requirement
            log.warning("heartbeat_unavailable", reason=f"{type(error).__name__}: {error}")
            return False
        now = time.monotonic()
        self._last_seen = {peer: (-1, now) for peer in range(self.world_size) if peer != self.rank}
        self._thread = threading.Thread(target=self._run, name="apex-x-heartbeat", daemon=True)
        self._thread.start()
        return True

    def stop(self) -> None:
        """This rank is done (finished or failed on its own): the others stop watching it."""
        self._stop.set()
        if self._store is not None:
            try:
                self._store.set(str(self.rank), "done")
            except Exception:  # noqa: BLE001 - the store may be gone already
                pass

    def stale_ranks(self) -> list[int]:
        """Ranks whose heartbeat has not moved for peer_timeout_s (as last observed)."""
        now = time.monotonic()
        return sorted(peer for peer, (_, seen) in self._last_seen.items() if now - seen > self.peer_timeout_s)

    def _run(self) -> None:
        beats = 0
        assert self._store is not None
        while not self._stop.wait(self.interval):
            beats += 1
            try:
                self._store.set(str(self.rank), str(beats))
                for peer in list(self._last_seen):
                    if not self._store.check([str(peer)]):
                        continue
                    text = self._store.get(str(peer)).decode()
                    if text == "done":
                        del self._last_seen[peer]
                        continue
                    value = int(text)
                    if value != self._last_seen[peer][0]:
                        self._last_seen[peer] = (value, time.monotonic())
            except Exception as error:  # noqa: BLE001 - the store host itself stopped answering
                if self._stop.is_set():
                    return
                self.on_failure(f"the run's key-value store (hosted by torchrun or rank 0) stopped answering "
                                f"({type(error).__name__}: {str(error).splitlines()[0] if str(error) else ''})")
                return
            stale = self.stale_ranks()
            if stale and not self._stop.is_set():
                self.on_failure(f"rank(s) {stale} stopped answering: no heartbeat for over "
                                f"{self.peer_timeout_s:g} s (runtime.peer_timeout_s)")
                return


def _exit_peer_failed(reason: str) -> None:
    """A frozen peer blocks every collective: say which, and end this process (exit 3)."""
    rank = os.environ.get("RANK", "?")
    message = (f"error: peer failed: {reason}; rank {rank} stops too (exit {EXIT_PEER_FAILED}). Checkpoints are "
               "intact: resume with --resume <train.output_dir>/checkpoints/last.pt")
    try:
        log.error("peer_failed", reason=reason, rank=rank)
    finally:
        sys.stderr.write(message + "\n")
        sys.stderr.flush()
        os._exit(EXIT_PEER_FAILED)


def is_peer_error(error: BaseException) -> bool:
    """A collective's failure caused by another process (died, timed out), not by this one."""
    if isinstance(error, (ApexError, KeyboardInterrupt, MemoryError)):
        return False
    name = type(error).__name__.lower()
    text = str(error).lower()
    return "distbackend" in name or "diststore" in name or "distnetwork" in name or (
        isinstance(error, RuntimeError) and any(word in text for word in _PEER_ERROR_WORDS)
    )


def peer_failed(error: BaseException, heartbeat: Heartbeat | None, timeout_s: float) -> PeerFailed:
    """The PeerFailed error for a failed collective, naming the ranks whose heartbeat stopped."""
    stale = heartbeat.stale_ranks() if heartbeat is not None else []
    who = f"rank(s) {stale} stopped answering" if stale else "another rank died or stopped answering"
    first = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
    return PeerFailed(
        f"peer failed: {who} (a collective operation failed; runtime.collective_timeout_s={timeout_s:g}): "
        f"{first[:300]}. Checkpoints are intact: resume with --resume <train.output_dir>/checkpoints/last.pt"
    )
