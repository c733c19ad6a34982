"""Command-line driving adapter: argparse -> command handler -> container -> use case.

Exit codes: 0 success, 2 user error (usage, config, data, checkpoint), 1 internal error.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence

EXIT_OK = 0
EXIT_INTERNAL = 1
EXIT_USER = 2

# subcommand -> module under apex_x.commands that defines `add_arguments(parser)` and `run(args) -> int`.
COMMANDS: dict[str, tuple[str, str]] = {
    "train": ("train", "Train a model from a YAML config (the seed's main entry point)."),
    "preflight": ("preflight", "Check the dependencies, devices and output folder of a profile."),
    "dataset-preflight": ("dataset_preflight", "Validate the dataset contract of a config without training."),
    "eval": ("evaluate", "COCO bbox/segm metrics of a checkpoint on the config's val split."),
    "predict": ("predict", "Predict on images with a checkpoint: COCO JSON + PNG overlays."),
    "make-shapes": ("make_shapes", "Write the built-in shapes dataset (COCO format) to a folder."),
}


class _UsageError(Exception):
    """argparse usage problem, turned into exit code 2 with one clear line."""


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # type: ignore[override]
        raise _UsageError(f"{self.prog}: {message}")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="apex-x",
        description="Apex-X: train and use detection + instance-segmentation models on COCO-format data.",
    )
    parser.add_argument("--debug", action="store_true", help="Show full tracebacks on errors.")
    parser.add_argument(
        "--log-level",
        choices=["debug", "info", "warning", "error"],
        default=None,
        help="Console and file log level (default: runtime.log_level of the config, else info).",
    )
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    for name, (module_name, help_text) in COMMANDS.items():
        sub = subparsers.add_parser(name, help=help_text, description=help_text)
        sub.add_argument("--debug", action="store_true", default=argparse.SUPPRESS, help="Show tracebacks.")
        sub.add_argument(
            "--log-level",
            choices=["debug", "info", "warning", "error"],
            default=argparse.SUPPRESS,
            help="Console and file log level.",
        )
        module = importlib.import_module(f"apex_x.commands.{module_name}")
        module.add_arguments(sub)
        sub.set_defaults(_module=module_name)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of `apex-x` and `python -m apex_x.cli`."""
    from apex_x.domain.errors import ApexError

    arguments = list(sys.argv[1:] if argv is None else argv)
    debug = "--debug" in arguments
    try:
        parser = build_parser()
        args = parser.parse_args(arguments)
        if not getattr(args, "command", None):
            parser.print_help()
            return EXIT_USER
        module = importlib.import_module(f"apex_x.commands.{args._module}")
        return int(module.run(args) or 0)
    except _UsageError as error:
        print(f"error: {error}", file=sys.stderr)
        return EXIT_USER
    except ApexError as error:
        if debug:
            raise
        print(f"error: {error}", file=sys.stderr)
        return int(error.exit_code)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except Exception as error:  # noqa: BLE001 - the last line of defence of a CLI
        if debug:
            raise
        print(
            f"internal error: {type(error).__name__}: {error}\n"
            "This is a bug in Apex-X; rerun with --debug for the traceback and report it.",
            file=sys.stderr,
        )
        return EXIT_INTERNAL


if __name__ == "__main__":
    sys.exit(main())
