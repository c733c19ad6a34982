"""A training process on the fake ports, for tests that kill it or run it under torchrun.

    python -m test_training.fake_run OUTPUT_DIR [--set k=v]... [--resume PATH] [--slow-writes S] [--nan-at K@RANK]

(run with PYTHONPATH=<repo>/tests). Prints "RESULT <status>" at the end; a user error exits 2.
--slow-writes S sleeps S seconds in the middle of every checkpoint write (after "WRITING <file>" is
printed), so a test can kill the process while a checkpoint is half written.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path
from typing import Any

from apex_x.adapters.atomic_files import write_run_file
from apex_x.adapters.checkpoints.torch_store import TorchCheckpointStore
from apex_x.domain.errors import ApexError

from .fakes import FakeModelFactory
from .helpers import make_use_case


class SlowTorchCheckpointStore(TorchCheckpointStore):
    """Writes half the file, pauses, then the rest: a wide window for a kill -9 mid-write."""

    def __init__(self, pause_s: float) -> None:
        self.pause_s = pause_s

    def save(self, payload: Any, path: str) -> None:
        import io

        import torch

        buffer = io.BytesIO()
        torch.save(dict(payload), buffer)
        data = buffer.getvalue()

        def write(handle: Any) -> None:
            handle.write(data[: len(data) // 2])
            handle.flush()
            print(f"WRITING {Path(path).name}", flush=True)
            time.sleep(self.pause_s)
            handle.write(data[len(data) // 2 :])

        write_run_file(path, write, what="checkpoint")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("output_dir")
    parser.add_argument("--set", dest="overrides", action="append", default=[])
    parser.add_argument("--resume", default=None)
    parser.add_argument("--slow-writes", type=float, default=0.0)
    parser.add_argument("--nan-at", default=None, help="K@RANK: NaN det loss at the K-th step of that rank")
    parser.add_argument("--drop-privileges", action="store_true", help="as root: continue as user nobody")
    parser.add_argument("--fsize-limit", type=int, default=None, help="max bytes of any file written")
    args = parser.parse_args(argv)
    if args.drop_privileges and os.geteuid() == 0:  # root ignores file modes: become a plain user
        import torch

        torch.use_deterministic_algorithms(True, warn_only=True)  # its lazy imports need root's stdlib path
        os.setgid(65534)
        os.setuid(65534)
    if args.fsize_limit is not None:  # writes beyond the limit fail with EFBIG (a real failing write)
        import resource
        import signal

        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (args.fsize_limit, args.fsize_limit))
    rank = int(os.environ.get("RANK", "0"))
    nan_at = []
    if args.nan_at:
        step, _, on_rank = args.nan_at.partition("@")
        nan_at = [int(step)] if int(on_rank or 0) == rank else []
    use_case = make_use_case(Path(args.output_dir), *args.overrides, factory=FakeModelFactory(nan_at=nan_at),
                             reports=False)
    if args.slow_writes:
        slow = SlowTorchCheckpointStore(args.slow_writes)
        use_case.store = slow
    try:
        result = use_case.execute(resume_from=args.resume)
    except ApexError as error:
        print(f"error: {error}", file=sys.stderr, flush=True)
        return error.exit_code
    steps = result.report["loss_diagnostics"]["run"]
    # one write of the whole line: under torchrun both ranks share the pipe, and print's separate newline write
    # could interleave with the other rank's line
    sys.stdout.write(f"RESULT {result.status} rank={rank} applied={steps['applied_steps']} "
                     f"skipped={steps['skipped_steps']}\n")
    sys.stdout.flush()
    return 0


if __name__ == "__main__":
    sys.exit(main())
