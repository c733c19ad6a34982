"""Use case: the dataset contract check (`dataset-preflight`), and its text report."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from apex_x.domain.config import ApexConfig
from apex_x.domain.ports import DatasetFormat, DatasetSource
from apex_x.domain.types import DatasetReport


class DatasetPreflight:
    """Validates the real dataset of a config (its data.format) without training; never falls back to
    synthetic data."""

    def __init__(self, dataset_format: DatasetFormat, source_factory: Callable[[], DatasetSource]) -> None:
        self.format = dataset_format
        self.source_factory = source_factory

    def execute(
        self, settings: ApexConfig, *, full_decode: bool = False, expected_num_classes: int | None = None
    ) -> DatasetReport:
        problems = self.format.config_problems(settings)
        keys = self.format.config_keys(settings)
        if any(finding.severity == "error" for finding in problems):
            summary = {
                "mode": self.format.mode,
                "backend": self.format.backend,
                "full_decode": full_decode,
                "config": keys,
            }
            return DatasetReport(summary=summary, findings=problems, fix=self.format.how_to_fix(keys))
        source = self.source_factory()
        report = source.validate(full_decode=full_decode, expected_num_classes=expected_num_classes)
        report.findings = [*problems, *report.findings]
        report.fix = self.format.how_to_fix(keys)
        return report


def _cap(report: DatasetReport) -> int:
    """How many findings of one rule are listed (the cap notes say how many more there are)."""
    notes = [f for f in report.findings if f.unlisted]
    if not notes:
        return 0
    first = notes[0]
    return sum(1 for f in report.findings if f.rule == first.rule and f.severity == first.severity and not f.unlisted)


def _range(values: Any) -> str:
    return f"{values[0]}-{values[1]}" if isinstance(values, list) and len(values) == 2 else "-"


def format_dataset_report(report: DatasetReport, *, max_findings: int = 50, max_classes: int = 20) -> str:
    """The report as text for people: per-split counts, instances per class, findings, verdict."""
    summary = report.summary
    lines = [
        f"dataset mode: {summary.get('mode')}   backend: {summary.get('backend')}   "
        f"full image decode: {'yes' if summary.get('full_decode') else 'no'}"
    ]
    splits: dict[str, Any] = summary.get("splits") or {}
    if any("images" in values for values in splits.values()):
        lines.append(
            f"{'split':<6} {'images':>7} {'annots':>7} {'inst':>7} {'crowd':>6} {'empty':>6} "
            f"{'width':>10} {'height':>10}  annotations file"
        )
        for name, values in splits.items():
            lines.append(
                f"{name:<6} {values.get('images', '-'):>7} {values.get('annotations', '-'):>7} "
                f"{values.get('instances', '-'):>7} {values.get('crowd', '-'):>6} {values.get('empty_images', '-'):>6} "
                f"{_range(values.get('width_range')):>10} {_range(values.get('height_range')):>10}  "
                f"{values.get('annotations_file', '')}"
            )
    if summary.get("num_classes") is not None:
        lines.append(f"categories: {summary['num_classes']}")
        per_split = {name: values.get("instances_per_class") or {} for name, values in splits.items()}
        keys = list(next(iter(per_split.values()), {}))
        if keys:
            def instances(rows: dict[str, Any], key: str) -> int:
                return int((rows.get(key) or {}).get("instances", 0))

            label = {key: (next(iter(per_split.values())).get(key) or {}).get("name", "?") for key in keys}
            ordered = sorted(keys, key=lambda k: -sum(instances(rows, k) for rows in per_split.values()))
            header = "/".join(per_split)
            shown = ", ".join(
                f"{key} {label[key]} {'/'.join(str(instances(rows, key)) for rows in per_split.values())}"
                for key in ordered[:max_classes]
            )
            more = f", ... ({len(keys) - max_classes} more)" if len(keys) > max_classes else ""
            lines.append(f"instances per class (id name {header}): {shown}{more}")
    for extra in summary.get("extra_train") or []:  # data.extra_train: its train split, its class mapping
        train = ((extra.get("summary") or {}).get("splits") or {}).get("train") or {}
        mapping = ", ".join(f"{item['id']} {item['name']!r} -> {item['class_index']} {item['class_name']}"
                            for item in extra.get("classes") or []) or "not matched (see the findings)"
        lines.append(f"{extra.get('dataset')} ({extra.get('format')}): {train.get('images', '-')} train images, "
                     f"{train.get('annotations', '-')} annotations; classes by name: {mapping}")
    errors, warnings, infos = report.count("error"), report.count("warning"), report.count("info")
    listed = sum(1 for f in report.findings if not f.unlisted)
    capped = f" (each rule lists at most its first {_cap(report)}; the counts are the true numbers)" \
        if listed < errors + warnings + infos else ""
    lines.append(f"findings: {errors} error(s), {warnings} warning(s), {infos} info{capped}")
    for finding in report.findings[:max_findings]:
        lines.append(f"  {finding.describe()}")
    if len(report.findings) > max_findings:
        lines.append(f"  ... {len(report.findings) - max_findings} more in the JSON report (--output-json)")
    if report.fix and any(f.severity == "error" and f.rule.startswith(("config.", "file.not_")) for f in report.findings):
        lines.append(f"how to fix: {report.fix}")
    lines.append(
        "result: OK, the dataset is usable" if report.ok else "result: NOT USABLE, fix the errors above"
    )
    return "\n".join(lines)
