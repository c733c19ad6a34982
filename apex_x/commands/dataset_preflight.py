"""`apex-x dataset-preflight CONFIG`: validate the dataset contract of a config without training."""

from __future__ import annotations

import argparse


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {value}")
    return value


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("config", metavar="CONFIG", help="YAML config whose data.* keys name the dataset.")
    parser.add_argument(
        "--output-json",
        metavar="PATH",
        default=None,
        help="Also write the report (summary + every finding with severity, rule, file, image and annotation id) as JSON.",
    )
    parser.add_argument(
        "--num-classes",
        type=_positive_int,
        default=None,
        metavar="K",
        help="Check that the dataset has K categories (sets model.num_classes, as in train).",
    )
    parser.add_argument(
        "--full-decode",
        action="store_true",
        help="Decode every image completely (catches truncated files); default: headers only, or "
        "data.full_image_check of the config.",
    )
    parser.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="Override a config key (repeatable), e.g. --set data.coco_train_images=PATH.",
    )


def run(args: argparse.Namespace) -> int:
    from apex_x.api import dataset_preflight
    from apex_x.application.dataset_preflight import format_dataset_report

    report = dataset_preflight(
        args.config,
        overrides=args.overrides,
        num_classes=args.num_classes,
        full_decode=args.full_decode,
        output_json=args.output_json,
    )
    print(f"dataset-preflight: {args.config}")
    print(format_dataset_report(report))
    if args.output_json:
        print(f"wrote {args.output_json}")
    return 0 if report.ok else 2
