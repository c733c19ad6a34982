"""JsonReportWriter: train_report.json and config.json, strict JSON (NaN/Inf -> null), written atomically."""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from apex_x.adapters.atomic_files import write_run_file

REPORT_FILE = "train_report.json"
CONFIG_FILE = "config.json"


def to_strict_json(value: Any) -> Any:
    """Plain values for strict JSON: non-finite floats become None, tuples lists, other objects text."""
    if isinstance(value, Mapping):
        return {str(key): to_strict_json(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [to_strict_json(item) for item in value]
    if isinstance(value, bool) or value is None or isinstance(value, (int, str)):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if hasattr(value, "item") and callable(value.item):  # 0-d tensors and numpy scalars
        return to_strict_json(value.item())
    return str(value)


def write_json(path: Path, content: Any) -> None:
    text = json.dumps(to_strict_json(content), indent=2, allow_nan=False) + "\n"
    write_run_file(path, lambda handle: handle.write(text.encode("utf-8")), what="report")


class JsonReportWriter:
    """ReportWriter adapter: the machine-readable report and the effective config."""

    def write(self, report: Mapping[str, Any], output_dir: str) -> list[str]:
        folder = Path(output_dir)
        report_path = folder / REPORT_FILE
        write_json(report_path, report)
        written = [str(report_path)]
        if report.get("config") is not None:
            config_path = folder / CONFIG_FILE
            write_json(config_path, report["config"])
            written.append(str(config_path))
        return written
