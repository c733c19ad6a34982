"""`apex-x convert`: COCO <-> YOLO (Ultralytics segmentation) layouts.

    apex-x convert --to yolo --coco-train IMAGES_DIR INSTANCES_JSON [--coco-val IMAGES_DIR INSTANCES_JSON] --output DIR
    apex-x convert --to coco --yolo-data data.yaml --output DIR
"""

from __future__ import annotations

import argparse
import json


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--to", choices=("coco", "yolo"), required=True, help="The layout to write.")
    parser.add_argument("--coco-train", nargs=2, metavar=("IMAGES_DIR", "INSTANCES_JSON"), default=None,
                        help="--to yolo: the COCO train split.")
    parser.add_argument("--coco-val", nargs=2, metavar=("IMAGES_DIR", "INSTANCES_JSON"), default=None,
                        help="--to yolo: the COCO val split (optional).")
    parser.add_argument("--yolo-data", metavar="DATA_YAML", default=None, help="--to coco: the Ultralytics data.yaml.")
    parser.add_argument("--output", required=True, metavar="DIR", help="Folder to write (created; must be empty).")


def run(args: argparse.Namespace) -> int:
    from apex_x.api import convert_dataset
    from apex_x.domain.errors import ConfigError

    if args.to == "yolo":
        if args.coco_train is None or args.yolo_data is not None:
            raise ConfigError("--to yolo needs --coco-train IMAGES_DIR INSTANCES_JSON (not --yolo-data)", key="--to")
        splits = {"train": tuple(args.coco_train), **({"val": tuple(args.coco_val)} if args.coco_val else {})}
        result = convert_dataset("yolo", args.output, coco_splits=splits)
    else:
        if args.yolo_data is None or args.coco_train is not None or args.coco_val is not None:
            raise ConfigError("--to coco needs --yolo-data DATA_YAML (not --coco-train/--coco-val)", key="--to")
        result = convert_dataset("coco", args.output, yolo_data=args.yolo_data)
    for split, counts in result["splits"].items():
        print(f"{split}: " + ", ".join(f"{key} {value}" for key, value in counts.items()))
    print("use it with: " + " ".join(f"--set {key}={value}" for key, value in result["keys"].items()))
    print(json.dumps(result["keys"]))
    return 0

