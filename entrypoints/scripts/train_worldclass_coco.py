"""Worldclass training wrapper: `--config configs/worldclass.yaml [train options]` == `apex_x.cli train <config> ...`.

    python scripts/train_worldclass_coco.py --config configs/worldclass.yaml --steps-per-stage 10 \
        --set model.teacher_backbone=/path/to/dinov2-large

Every option after the config is the `train` command's own (see `python -m apex_x.cli train --help`).
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from pathlib import Path

from apex_x.cli import main

DEFAULT_CONFIG = Path(__file__).resolve().parents[2] / "configs" / "worldclass.yaml"


def to_cli_arguments(argv: Sequence[str]) -> list[str]:
    """Wrapper arguments -> `train <config> <rest>`; --config defaults to configs/worldclass.yaml."""
    arguments = list(argv)
    config: str | None = None
    rest: list[str] = []
    index = 0
    while index < len(arguments):
        argument = arguments[index]
        if argument == "--config":
            if index + 1 >= len(arguments):
                print("error: --config needs a path, e.g. --config configs/worldclass.yaml", file=sys.stderr)
                raise SystemExit(2)
            config = arguments[index + 1]
            index += 2
            continue
        if argument.startswith("--config="):
            config = argument.split("=", 1)[1]
        else:
            rest.append(argument)
        index += 1
    if config is None and any(flag in rest for flag in ("-h", "--help")):
        return ["train", *rest]
    return ["train", config if config is not None else str(DEFAULT_CONFIG), *rest]


if __name__ == "__main__":
    sys.exit(main(to_cli_arguments(sys.argv[1:])))
