"""`apex-x make-shapes DIR`: write the built-in shapes dataset (COCO format) so the real pipeline runs offline."""

from __future__ import annotations

import argparse

from apex_x.commands._common import int_at_least


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("directory", metavar="DIR", help="Folder to write (e.g. data/shapes).")
    parser.add_argument(
        "--train", type=int_at_least(1), default=512, metavar="N", help="Train images (default 512)."
    )
    parser.add_argument(
        "--val",
        type=int_at_least(0),
        default=64,
        metavar="M",
        help="Val images (default 64; 0 = no val split).",
    )
    parser.add_argument(
        "--size",
        type=int_at_least(32),
        default=256,
        metavar="PX",
        help="Image side in pixels (default 256).",
    )
    parser.add_argument(
        "--seed",
        type=int_at_least(0),
        default=0,
        metavar="S",
        help="Seed; same seed, same files (default 0).",
    )
    parser.add_argument(
        "--layout",
        choices=["shapes", "coco"],
        default="shapes",
        help="shapes: DIR/{train,val}/ + DIR/instances_{train,val}.json (configs/quickstart.yaml); coco: "
        "DIR/{train,val}2017/ + DIR/annotations/instances_{train,val}2017.json (configs/coco_baseline.yaml "
        "with DIR=data/coco).",
    )
    parser.add_argument(
        "--overwrite",
        action="store_true",
        help="Replace a shapes dataset already in DIR (otherwise an existing one made with other arguments is an error).",
    )


def run(args: argparse.Namespace) -> int:
    from apex_x.api import make_shapes

    paths = make_shapes(
        args.directory,
        train=args.train,
        val=args.val,
        size=args.size,
        seed=args.seed,
        layout=args.layout,
        overwrite=args.overwrite,
    )
    print(
        f"shapes dataset ({args.train} train / {args.val} val images, {args.size} px, seed {args.seed}) in {paths.root}"
    )
    for key, value in paths.data_config().items():
        if value is not None:
            print(f"  data.{key}: {value}")
    return 0
