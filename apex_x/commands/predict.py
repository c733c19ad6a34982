"""`apex-x predict --checkpoint PATH --image PATH_OR_DIR...`: COCO results JSON + one PNG overlay per image."""

from __future__ import annotations

import argparse
import sys

from apex_x.commands._common import add_batch_size_argument, add_device_argument

DEFAULT_OUTPUT = "artifacts/predictions"
DEFAULT_SCORE_THRESHOLD = 0.25


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--checkpoint",
        required=True,
        metavar="PATH",
        help="Apex-X checkpoint; the model profile, classes and input size come from it (no config needed).",
    )
    parser.add_argument(
        "--image",
        dest="images",
        action="extend",
        nargs="+",
        required=True,
        metavar="PATH_OR_DIR",
        help="Image files and/or folders of images (repeatable). A bad input is reported; the others are still processed.",
    )
    parser.add_argument(
        "--output",
        metavar="DIR",
        default=DEFAULT_OUTPUT,
        help=f"Folder for predictions.json, summary.json and the PNG overlays (default: {DEFAULT_OUTPUT}).",
    )
    parser.add_argument(
        "--score-threshold",
        type=_probability,
        default=DEFAULT_SCORE_THRESHOLD,
        metavar="T",
        help=f"Keep detections scoring at least T, in [0, 1] (default: {DEFAULT_SCORE_THRESHOLD}).",
    )
    add_device_argument(parser, default="auto", help_text="Device (default: auto).")
    add_batch_size_argument(parser, default=4, help_text="Images per forward pass (default: 4).")
    parser.add_argument("--no-overlays", action="store_true", help="Write the JSON files only, no PNG overlays.")
    parser.add_argument(
        "--coco-json", default=None, metavar="PATH",
        help="COCO file the images belong to: its class list (ids and names) must equal the checkpoint's (refused "
        "before inference otherwise), and predictions.json uses its image ids (matched by file name).",
    )


def run(args: argparse.Namespace) -> int:
    from apex_x.api import predict

    result = predict(
        args.checkpoint,
        args.images,
        output_dir=args.output,
        score_threshold=args.score_threshold,
        device=args.device,
        batch_size=args.batch_size,
        overlays=not args.no_overlays,
        coco_annotations=args.coco_json,
    )
    if result.model.get("network_line"):
        print(result.model["network_line"])
    for item in result.predictions:
        print(f"{item.path}: {len(item.detections)} detection(s)")
    for failure in result.failures:
        print(f"error: {failure.message}", file=sys.stderr)
    print(f"{len(result.predictions)} image(s), {result.num_detections} detection(s) -> {args.output}")
    if result.failures:
        print(f"{len(result.failures)} input(s) failed (see the errors above)", file=sys.stderr)
        return 2
    return 0


def _probability(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number in [0, 1], got {text!r}") from None
    if not 0.0 <= value <= 1.0:
        raise argparse.ArgumentTypeError(f"expected a number in [0, 1], got {value}")
    return value

