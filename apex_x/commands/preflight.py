"""`apex-x preflight --profile {base,worldclass}`: dependency, CUDA, triton and output-folder checks as a table."""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING

from apex_x.commands._common import add_output_json_argument

if TYPE_CHECKING:
    from apex_x.application.preflight import PreflightReport

_COLUMNS = ("check", "required", "installed", "minimum", "status", "detail")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from apex_x.api import preflight_profiles

    parser.add_argument(
        "--profile",
        choices=preflight_profiles(),
        default="base",
        help="Dependency set to check: base (student training on CPU/CUDA) or worldclass "
        "(adds transformers, peft, safetensors for TeacherModelV3/DINOv2). Default: base.",
    )
    add_output_json_argument(parser, "Also write the results as JSON to PATH.")
    parser.add_argument(
        "--output-dir",
        metavar="DIR",
        default=None,
        help="Output folder that must be writable (default: train.output_dir of --config, else artifacts/train_output).",
    )
    parser.add_argument(
        "--config", metavar="PATH", default=None, help="Optional YAML config whose train.output_dir (and model keys) to check."
    )


def run(args: argparse.Namespace) -> int:
    from apex_x.api import preflight
    from apex_x.domain.errors import DependencyError

    report = preflight(args.profile, output_json=args.output_json, output_dir=args.output_dir, config=args.config)
    print(format_report(report))
    if args.output_json:
        print(f"wrote {args.output_json}")
    if not report.ok:
        raise DependencyError(report.failure_message())
    return 0


def format_report(report: PreflightReport) -> str:
    """The human-readable table of every check, then a one-line verdict."""
    rows = [
        (
            result.name,
            "yes" if result.required else "no",
            result.installed or "-",
            result.minimum or "-",
            result.status if result.ok or not result.required else result.status.upper(),
            result.detail,
        )
        for result in report.results
    ]
    widths = [max(len(column), *(len(row[index]) for row in rows)) for index, column in enumerate(_COLUMNS[:-1])]
    lines = [f"Apex-X preflight, profile {report.profile} (python {report.python}, {report.platform})", ""]
    header = [column.upper() for column in _COLUMNS]
    for cells in [header, *rows]:
        lines.append("  ".join(cell.ljust(width) for cell, width in zip(cells, widths, strict=False)) + "  " + cells[-1])
    lines.append("")
    if report.ok:
        lines.append(f"OK: every required dependency of profile {report.profile!r} is present.")
    else:
        lines.append(f"FAILED: {', '.join(result.name for result in report.failures)}")
    return "\n".join(lines).rstrip() + "\n"
