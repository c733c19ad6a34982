"""`apex-x benchmark --checkpoint PATH [--device] [--batch-size] [--input-size HxW] [--formats eager,onnx,...]`."""

from __future__ import annotations

import argparse

from apex_x.commands._common import add_batch_size_argument, add_device_argument, int_at_least, positive_int
from apex_x.commands.export import _size

FORMATS = ("eager", "torchscript", "onnx")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--checkpoint", required=True, metavar="PATH", help="Apex-X training checkpoint.")
    add_device_argument(parser, default="auto", help_text="Device (default: auto).")
    add_batch_size_argument(parser, default=1, help_text="Images per forward pass (default: 1).")
    parser.add_argument("--input-size", type=_size, default=None, metavar="HxW",
                        help="Network input height x width (default: the checkpoint's).")
    parser.add_argument("--formats", type=_formats, default=("eager",), metavar="LIST",
                        help="Comma-separated, side by side: eager, torchscript, onnx (default: eager).")
    parser.add_argument("--image", dest="images", action="extend", nargs="+", default=[], metavar="PATH_OR_DIR",
                        help="Images to decode and run (cycled); default: a 1280x720 JPEG stand-in.")
    parser.add_argument("--warmup", type=int_at_least(0), default=3, metavar="N",
                        help="Untimed batches first (default 3; 0 times the first, cold, batch too).")
    parser.add_argument("--iterations", type=positive_int, default=20, metavar="N", help="Timed batches (default 20).")
    parser.add_argument("--threads", type=positive_int, default=None, metavar="N",
                        help="torch CPU threads (default: torch's). On a busy machine 1 avoids thread contention.")
    parser.add_argument("--output-json", default=None, metavar="PATH", help="Also write the figures as JSON.")


def run(args: argparse.Namespace) -> int:
    import torch

    from apex_x.api import benchmark
    from apex_x.container import create_container

    threads = torch.get_num_threads()
    if args.threads:
        torch.set_num_threads(args.threads)
    try:
        report = benchmark(args.checkpoint, images=args.images, formats=args.formats, device=args.device,
                           batch_size=args.batch_size, input_size=args.input_size, warmup=args.warmup,
                           iterations=args.iterations, output_json=args.output_json)
    finally:
        torch.set_num_threads(threads)  # in-process callers (tests, notebooks) keep their setting
    print(create_container().benchmark_table()(report))
    return 0 if all(item.status == "ok" for item in report.formats) else 2


def _formats(text: str) -> tuple[str, ...]:
    names = tuple(dict.fromkeys(name.strip() for name in text.split(",") if name.strip()))
    unknown = [name for name in names if name not in FORMATS]
    if not names or unknown:
        raise argparse.ArgumentTypeError(f"expected a comma-separated list of {', '.join(FORMATS)}, got {text!r}")
    return names
