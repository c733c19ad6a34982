"""`apex-x eval CONFIG --checkpoint PATH`: COCO bbox/segm metrics of a checkpoint on the config's val split."""

from __future__ import annotations

import argparse

from apex_x.commands._common import (
    add_batch_size_argument,
    add_config_argument,
    add_device_argument,
    add_overrides_argument,
)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_config_argument(parser, "YAML config whose data.* keys give the val split (data.format's val keys, e.g. "
                        "data.coco_val_images and data.coco_val_annotations).")
    parser.add_argument(
        "--checkpoint",
        required=True,
        metavar="PATH",
        help="Apex-X checkpoint to evaluate (e.g. <train.output_dir>/checkpoints/best.pt). The model "
        "(profile, size, classes) comes from the checkpoint; EMA weights are used when it has them.",
    )
    parser.add_argument(
        "--output-json",
        metavar="PATH",
        default=None,
        help="Where to write the metrics as JSON (default: <train.output_dir>/eval_report.json).",
    )
    parser.add_argument(
        "--output-md",
        metavar="PATH",
        default=None,
        help="Where to write the markdown report (default: beside the JSON, eval_report.md).",
    )
    add_device_argument(parser, default=None, help_text="Device (default: runtime.device of the config).")
    add_batch_size_argument(parser, default=None, help_text="Images per forward pass (default: train.batch_size).")
    add_overrides_argument(
        parser,
        "--set data.coco_val_annotations=PATH; "
        "model.* keys override the checkpoint's (e.g. model.score_threshold=0.001).",
    )


def run(args: argparse.Namespace) -> int:
    from apex_x.api import evaluate
    from apex_x.container import create_container

    container = create_container()
    eval_table, format_metric = container.eval_table(), container.format_metric()

    report = evaluate(
        args.config,
        args.checkpoint,
        overrides=args.overrides,
        output_json=args.output_json,
        output_md=args.output_md,
        device=args.device,
        batch_size=args.batch_size,
    )
    plain = report.to_plain()
    if (plain.get("model") or {}).get("network_line"):
        print(plain["model"]["network_line"])
    print(eval_table(report))
    check = plain["best_metric_check"]
    if check:
        print(f"trainer's best {check['name']} (epoch {check['epoch']}): {format_metric(check['recorded'])}; "
              f"evaluated now: {format_metric(check['evaluated'])}")
    for path in report.extra.get("files", []):
        print(f"wrote {path}")
    return 0

