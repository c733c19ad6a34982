"""Training wrapper (the user guide's `scripts/train.py`): `--config <config> [options]`.

    python scripts/train.py --config configs/quickstart.yaml --steps-per-stage 10 --set train.epochs=1

is exactly `python -m apex_x.cli train configs/quickstart.yaml --steps-per-stage 10 --set train.epochs=1`.
"""

from __future__ import annotations

import argparse
import sys


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description="Train Apex-X from a YAML config; every other option is passed to `apex-x train`.",
        epilog="Options: see `python -m apex_x.cli train --help`.",
    )
    parser.add_argument("--config", required=True, help="YAML config file (the positional CONFIG of `apex-x train`).")
    args, rest = parser.parse_known_args(sys.argv[1:] if argv is None else argv)

    from apex_x.cli import main as cli_main

    return cli_main(["train", args.config, *rest])


if __name__ == "__main__":
    sys.exit(main())
