"""Argument types and argument blocks shared by the `apex-x` subcommands."""

from __future__ import annotations

import argparse
from collections.abc import Callable


def positive_int(text: str) -> int:
    """An argparse type: an integer >= 1."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {value}")
    return value


def int_at_least(minimum: int) -> Callable[[str], int]:
    """An argparse type: an integer >= minimum."""

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected an integer >= {minimum}, got {text!r}") from None
        if value < minimum:
            raise argparse.ArgumentTypeError(f"expected an integer >= {minimum}, got {value}")
        return value

    return parse


def add_config_argument(parser: argparse.ArgumentParser, help_text: str) -> None:
    """The positional CONFIG (a YAML file)."""
    parser.add_argument("config", metavar="CONFIG", help=help_text)


def add_overrides_argument(parser: argparse.ArgumentParser, example: str) -> None:
    """Repeatable `--set KEY=VALUE` into `args.overrides`; `example` finishes the help after 'e.g.'."""
    parser.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help=f"Override a config key (repeatable), e.g. {example}",
    )


def add_device_argument(parser: argparse.ArgumentParser, *, default: str | None, help_text: str) -> None:
    """`--device {auto,cpu,cuda}`."""
    parser.add_argument("--device", choices=["auto", "cpu", "cuda"], default=default, help=help_text)


def add_batch_size_argument(parser: argparse.ArgumentParser, *, default: int | None, help_text: str) -> None:
    """`--batch-size N` (a positive integer)."""
    parser.add_argument("--batch-size", type=positive_int, default=default, metavar="N", help=help_text)


def add_num_classes_argument(parser: argparse.ArgumentParser, help_text: str) -> None:
    """`--num-classes K` (a positive integer)."""
    parser.add_argument("--num-classes", type=positive_int, default=None, metavar="K", help=help_text)


def add_output_json_argument(parser: argparse.ArgumentParser, help_text: str) -> None:
    """`--output-json PATH`."""
    parser.add_argument("--output-json", metavar="PATH", default=None, help=help_text)
