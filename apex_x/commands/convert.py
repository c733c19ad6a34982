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

    splits = {name: tuple(pair) for name, pair in (("train", args.coco_train), ("val", args.coco_val)) if pair}
    result = convert_dataset(args.to, args.output, coco_splits=splits or None, yolo_data=args.yolo_data)
    for split, counts in result["splits"].items():
        print(f"{split}: " + ", ".join(f"{key} {value}" for key, value in counts.items()))
    print("use it with: " + " ".join(f"--set {key}={value}" for key, value in result["keys"].items()))
    print(json.dumps(result["keys"]))
    return 0
