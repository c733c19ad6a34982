"""Collects dataset findings, capped per rule so a broken 100k-annotation file gives a readable report."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

from apex_x.domain.types import Finding, Severity

MAX_FINDINGS_PER_RULE = 25


@dataclass
class FindingLog:
    """Findings in order of discovery; after `cap` of one (severity, rule), the rest are only counted."""

    cap: int = MAX_FINDINGS_PER_RULE
    findings: list[Finding] = field(default_factory=list)
    _counts: Counter[tuple[str, str]] = field(default_factory=Counter)

    def add(
        self,
        severity: Severity,
        rule: str,
        message: str,
        *,
        file: str | None = None,
        image_id: int | str | None = None,
        annotation_id: int | str | None = None,
    ) -> None:
        self._counts[(severity, rule)] += 1
        if self._counts[(severity, rule)] <= self.cap:
            self.findings.append(Finding(severity, rule, message, file, image_id, annotation_id))

    def error(self, rule: str, message: str, **where: object) -> None:
        self.add("error", rule, message, **where)  # type: ignore[arg-type]

    def warning(self, rule: str, message: str, **where: object) -> None:
        self.add("warning", rule, message, **where)  # type: ignore[arg-type]

    def info(self, rule: str, message: str, **where: object) -> None:
        self.add("info", rule, message, **where)  # type: ignore[arg-type]

    def has_errors(self) -> bool:
        return any(severity == "error" for severity, _ in self._counts)

    def finish(self) -> list[Finding]:
        """The findings plus one note per rule whose extra occurrences were only counted."""
        notes = [
            Finding(
                severity,
                rule,
                f"{count - self.cap} more finding(s) of this rule not listed ({count} in total)",
                unlisted=count - self.cap,
            )
            for (severity, rule), count in self._counts.items()
            if count > self.cap
        ]
        return self.findings + notes
