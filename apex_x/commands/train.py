"""`apex-x train CONFIG`: train (or resume) a run; ends with the report path and the val AP."""

from __future__ import annotations

import argparse
import contextlib
import math
import signal
import threading
from collections.abc import Iterator
from typing import Any

from apex_x.commands._common import (
    add_config_argument,
    add_device_argument,
    add_num_classes_argument,
    add_overrides_argument,
    int_at_least,
    positive_int,
)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_config_argument(parser, "YAML config (e.g. configs/quickstart.yaml).")
    parser.add_argument(
        "--steps-per-stage", type=positive_int, default=None, metavar="N",
        help="Cap every epoch of every stage at N optimizer steps (smoke runs); sets train.steps_per_stage.",
    )
    parser.add_argument(
        "--seed", type=int_at_least(0), default=None, metavar="S",
        help="Seed of python, numpy, torch and data workers; sets train.seed.",
    )
    add_num_classes_argument(parser, "Expected class count; must match the dataset's categories (sets model.num_classes).")
    add_overrides_argument(parser, "--set train.epochs=1 --set train.output_dir=PATH.")
    parser.add_argument(
        "--resume", default=None, metavar="PATH",
        help="Continue a run from its checkpoint (e.g. <train.output_dir>/checkpoints/last.pt), exactly where "
        "it stopped. Output goes to that run's folder unless --set train.output_dir=... is given; only safe "
        "keys (epochs, output, logging, cadence) may differ from the checkpoint's config.",
    )
    add_device_argument(parser, default=None, help_text="Where to train (sets runtime.device; auto = CUDA when available).")
    parser.add_argument(
        "--stop-after-steps", type=positive_int, default=None, metavar="N",
        help="Pause after N batches in this session, saving last.pt (resume later with --resume).",
    )


def _format(value: float | None) -> str:
    return "n/a" if value is None or not math.isfinite(value) else f"{value:.4f}"


@contextlib.contextmanager
def _stop_signals_ignored() -> Iterator[None]:
    """While the summary of an ended run is printed, SIGTERM/SIGINT change nothing (handlers restored after)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = {stop: signal.signal(stop, signal.SIG_IGN) for stop in (signal.SIGTERM, signal.SIGINT)}
    try:
        yield
    finally:
        for stop, handler in previous.items():
            signal.signal(stop, handler)


def run(args: argparse.Namespace) -> int:
    from apex_x.api import cli_resume_command, train

    result = train(
        args.config,
        steps_per_stage=args.steps_per_stage,
        seed=args.seed,
        num_classes=args.num_classes,
        overrides=args.overrides,
        resume=args.resume,
        device=args.device,
        stop_after_steps=args.stop_after_steps,
        log_level=getattr(args, "log_level", None),
        resume_command=cli_resume_command(args.config),
    )
    with _stop_signals_ignored():  # the run has ended (its files are written): a late signal changes nothing
        return _summarise(result)


def _summarise(result: Any) -> int:
    """Print the run's outcome (an `apex_x.api.train` result); the exit code (128 + signal for a run stopped
    by one)."""
    if result.status in ("paused", "interrupted"):
        print(f"{result.status}: {result.report.get('message')}")
    for warning in result.report.get("warnings") or []:
        print(f"warning: {warning.get('message')}")
    if result.status == "finished_with_warnings":
        print(f"status: finished_with_warnings ({len(result.report.get('warnings') or [])} warning(s), see the report)")
    best = result.best or {}
    metrics = result.last_val_metrics or {}
    report = result.report
    if report.get("requested_checkpoint_metric") not in (None, report.get("selected_checkpoint_metric")):
        print(f"checkpoint metric: {report.get('selected_checkpoint_metric')} instead of "
              f"{report.get('requested_checkpoint_metric')}: {report.get('checkpoint_metric_reason')}")
    if best:
        tie = " (tie broken by the lower val_loss)" if best.get("chosen_by") == "val_loss tie-break" else ""
        print(f"best {best.get('name')}: {_format(best.get('value'))} (epoch {best.get('epoch')}){tie}")
    print(f"report: {result.report_path}")
    if result.weights_path:
        print(f"weights: {result.weights_path}")
    if result.checkpoints.get("best"):
        print(f"best checkpoint: {result.checkpoints['best']}")
    dataset_mode = result.report.get("dataset_mode")
    suffix = f" (dataset mode: {dataset_mode})" if dataset_mode else ""
    print(f"val AP (segm): {_format(metrics.get('segm_AP'))}  val AP (bbox): {_format(metrics.get('bbox_AP'))}{suffix}")
    if result.status == "interrupted":  # 128 + the signal: 143 for SIGTERM, 130 for SIGINT (Ctrl-C)
        return 128 + (result.stop_signal or 2)
    return 0
