"""`apex-x dataset-preflight CONFIG`: validate the dataset contract of a config without training."""

from __future__ import annotations

import argparse

from apex_x.commands._common import (
    add_config_argument,
    add_num_classes_argument,
    add_output_json_argument,
    add_overrides_argument,
)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_config_argument(parser, "YAML config whose data.* keys name the dataset.")
    add_output_json_argument(
        parser,
        "Also write the report (summary + every finding with severity, rule, file, image and annotation id) as JSON.",
    )
    add_num_classes_argument(parser, "Check that the dataset has K categories (sets model.num_classes, as in train).")
    parser.add_argument(
        "--full-decode",
        action="store_true",
        help="Decode every image completely (catches truncated files); default: headers only, or "
        "data.full_image_check of the config.",
    )
    add_overrides_argument(parser, "--set data.coco_train_images=PATH.")


def run(args: argparse.Namespace) -> int:
    from apex_x.api import dataset_preflight
    from apex_x.container import create_container

    format_dataset_report = create_container().format_dataset_report()

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
