"""Dependency preflight use case: runs a list of pluggable checks against an EnvironmentProbe.

A check is any callable `check(context) -> Iterable[CheckResult]`. The built-in checks cover Python,
the profile's packages, CUDA and the output folder; more are registered per profile in the container
(`Container.preflight_checks`, from the model profiles: e.g. "backbone weights reachable").
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import structlog

from apex_x.application.preflight_requirements import (
    BASE_PROFILE,
    MINIMUM_PYTHON,
    Requirement,
    at_least,
    requirements_of,
)
from apex_x.domain.config import ApexConfig
from apex_x.domain.environment import (
    AcceleratorProbe,
    CheckResult,
    EnvironmentProbe,
    FolderProbe,
    PreflightCheck,
    PreflightContext,
)
from apex_x.installation import install_command

__all__ = ["CheckResult", "PreflightCheck", "PreflightContext", "PreflightReport", "PreflightUseCase"]

log = structlog.get_logger(__name__)

REPORT_SCHEMA_VERSION = 1


def check_python(context: PreflightContext) -> list[CheckResult]:
    version = context.probe.python_version()
    ok = at_least(version, MINIMUM_PYTHON)
    return [
        CheckResult(
            name="python", category="python", ok=ok, required=True, status="ok" if ok else "too old",
            installed=version, minimum=MINIMUM_PYTHON, detail=context.probe.platform(),
            fix=None if ok else f"use Python >= {MINIMUM_PYTHON}",
        )
    ]


def _package_result(requirement: Requirement, context: PreflightContext, required: bool) -> CheckResult:
    probe = context.probe.package(requirement.import_name, requirement.distribution)
    common: dict[str, Any] = {
        "name": requirement.distribution, "category": "package", "required": required,
        "installed": probe.version, "minimum": requirement.minimum, "fix": install_command(requirement.extra),
    }
    if not probe.importable:
        status = "missing" if probe.missing else "import failed"
        return CheckResult(ok=False, status=status, detail=probe.error or "", **common)
    try:
        recent_enough = probe.version is None or at_least(probe.version, requirement.minimum)
    except ValueError:
        recent_enough = True  # an unparseable version string: the import worked, so do not block on it
    if probe.version is None:
        return CheckResult(ok=True, status="ok", detail="imports; version unknown", **common)
    if not recent_enough:
        return CheckResult(
            ok=False, status="too old", detail=f"{requirement.purpose}; need >= {requirement.minimum}", **common
        )
    return CheckResult(ok=True, status="ok", detail=requirement.purpose, **{**common, "fix": None})


def package_check(extra: Mapping[str, Sequence[Requirement]]) -> PreflightCheck:
    """The check that imports every package of the profile (base's plus `extra[profile]`); triton is required
    only where CUDA is available on Linux."""

    def check_packages(context: PreflightContext) -> list[CheckResult]:
        return [_requirement_row(requirement, context) for requirement in requirements_of(context.profile, extra)]

    return check_packages


def _requirement_row(requirement: Requirement, context: PreflightContext) -> CheckResult:
    required = True
    if requirement.needs_cuda:
        required = context.probe.platform() == "linux" and context.accelerator.cuda_available
    result = _package_result(requirement, context, required)
    if requirement.needs_cuda and not required:
        note = "optional here: no CUDA device, the torch reference kernels run"
        result = CheckResult(**{**result.to_dict(), "detail": f"{note}; {result.detail}" if not result.ok else note})
    return result


def check_cuda(context: PreflightContext) -> list[CheckResult]:
    """CUDA is never required (CPU works); the row reports what torch sees."""
    accelerator = context.accelerator
    if not accelerator.torch_importable:
        return [CheckResult("cuda", "device", ok=False, required=False, status="unknown", detail="torch not importable")]
    if accelerator.cuda_available:
        memory = f", {accelerator.memory_gib:.1f} GiB" if accelerator.memory_gib is not None else ""
        detail = (
            f"{accelerator.device_count} device(s); device 0: {accelerator.device_name} "
            f"(capability {accelerator.capability}{memory}); CUDA {accelerator.torch_cuda_version}"
        )
        return [CheckResult("cuda", "device", ok=True, required=False, status="available", detail=detail)]
    built = f"torch built with CUDA {accelerator.torch_cuda_version}" if accelerator.torch_cuda_version else (
        "CPU build of torch"
    )
    reason = f"; {accelerator.error}" if accelerator.error else ""
    return [
        CheckResult(
            "cuda", "device", ok=True, required=False, status="not available",
            detail=f"{built}; no CUDA device visible, training runs on CPU{reason}",
        )
    ]


def check_output_folder(context: PreflightContext) -> list[CheckResult]:
    folder = context.output_folder
    return [
        CheckResult(
            name="output folder", category="output", ok=folder.writable, required=True,
            status="writable" if folder.writable else "not writable", detail=f"{folder.path}: {folder.detail}",
            fix=None if folder.writable else "choose another folder with --output-dir or fix its permissions",
        )
    ]




@dataclass
class PreflightReport:
    """Every check result of one preflight run, plus summaries for the JSON file."""

    profile: str
    results: list[CheckResult]
    accelerator: AcceleratorProbe
    output_folder: FolderProbe
    python: str
    platform: str
    extra_fields: dict[str, Any] = field(default_factory=dict)

    @property
    def failures(self) -> list[CheckResult]:
        return [result for result in self.results if result.failed]

    @property
    def ok(self) -> bool:
        return not self.failures

    @property
    def missing_packages(self) -> list[str]:
        return [result.name for result in self.failures if result.category == "package"]

    @property
    def install_command(self) -> str | None:
        fixes = [result.fix for result in self.failures if result.category == "package" and result.fix]
        if not fixes:
            return None
        with_extra = [fix for fix in fixes if "[" in fix]  # installing an extra installs the base packages too
        return with_extra[0] if with_extra else fixes[0]

    def failure_message(self) -> str:
        """One line naming what is missing and how to fix it (empty when everything passed)."""
        parts = []
        packages = [r for r in self.failures if r.category == "package"]
        if packages:
            named = ", ".join(f"{r.name} ({r.status}{', need >= ' + r.minimum if r.minimum else ''})" for r in packages)
            parts.append(f"missing or unusable required packages: {named}; install them with: {self.install_command}")
        for result in self.failures:
            if result.category != "package":
                fix = f" ({result.fix})" if result.fix else ""
                parts.append(f"{result.name}: {result.status}: {result.detail}{fix}")
        if not parts:
            return ""
        return f"preflight of profile {self.profile!r} failed: " + "; ".join(parts)

    def to_dict(self) -> dict[str, Any]:
        triton = next((r for r in self.results if r.category == "package" and r.name == "triton"), None)
        return {
            "schema_version": REPORT_SCHEMA_VERSION,
            "profile": self.profile,
            "ok": self.ok,
            "python": self.python,
            "platform": self.platform,
            "packages": [r.to_dict() for r in self.results if r.category == "package"],
            "cuda": {
                "available": self.accelerator.cuda_available,
                "device_count": self.accelerator.device_count,
                "device_name": self.accelerator.device_name,
                "capability": self.accelerator.capability,
                "memory_gib": self.accelerator.memory_gib,
                "torch_cuda_version": self.accelerator.torch_cuda_version,
                "error": self.accelerator.error,
            },
            "triton": {
                "available": bool(triton and triton.status == "ok"),
                "version": triton.installed if triton else None,
                "used_for_kernels": bool(triton and triton.ok and self.accelerator.cuda_available),
            },
            "output_dir": {
                "path": self.output_folder.path,
                "exists": self.output_folder.exists,
                "writable": self.output_folder.writable,
                "detail": self.output_folder.detail,
            },
            "checks": [r.to_dict() for r in self.results],
            "failures": [r.name for r in self.failures],
            "missing_packages": self.missing_packages,
            "install_command": self.install_command,
            **self.extra_fields,
        }


class PreflightUseCase:
    """Runs the built-in checks, then the extra checks registered for the profile (a model profile adds base's).

    requirements: preflight profile -> the packages it adds to base's (a model profile's ModelProfile.requirements);
    extra_checks: preflight profile -> its extra checks. The valid profiles are "base" and the keys of both.
    """

    def __init__(
        self, probe: EnvironmentProbe, extra_checks: Mapping[str, Sequence[PreflightCheck]] | None = None,
        requirements: Mapping[str, Sequence[Requirement]] | None = None,
    ) -> None:
        self._probe = probe
        self._extra_checks = dict(extra_checks or {})
        self._requirements = dict(requirements or {})

    @property
    def profiles(self) -> list[str]:
        """The preflight profiles this use case knows: base first."""
        return list(dict.fromkeys([BASE_PROFILE, *self._requirements, *self._extra_checks]))

    def checks_for(self, profile: str) -> list[PreflightCheck]:
        builtin = (check_python, package_check(self._requirements), check_cuda, check_output_folder)
        chain = [BASE_PROFILE] if profile == BASE_PROFILE else [BASE_PROFILE, profile]
        return [*builtin, *(check for name in chain for check in self._extra_checks.get(name, ()))]

    def execute(self, profile: str, output_dir: str, settings: ApexConfig | None = None) -> PreflightReport:
        if profile not in self.profiles:
            raise ValueError(f"unknown preflight profile {profile!r}; choose from {', '.join(self.profiles)}")
        context = PreflightContext(
            profile, output_dir, settings or ApexConfig(), self._probe, config_given=settings is not None
        )
        results: list[CheckResult] = []
        for check in self.checks_for(profile):
            results.extend(_run_check(check, context))
        report = PreflightReport(
            profile=profile, results=results, accelerator=context.accelerator, output_folder=context.output_folder,
            python=self._probe.python_version(), platform=self._probe.platform(),
        )
        log.debug("preflight.done", profile=profile, ok=report.ok, failures=[r.name for r in report.failures])
        return report


def _run_check(check: PreflightCheck, context: PreflightContext) -> list[CheckResult]:
    """A check that crashes becomes a failed row naming it, so one broken plug-in cannot hide the others."""
    name = getattr(check, "__name__", repr(check))
    try:
        return list(check(context))
    except Exception as error:  # noqa: BLE001 - reported as a failed row
        log.warning("preflight.check_crashed", check=name, error=repr(error))
        return [
            CheckResult(name=name, category="check", ok=False, required=True, status="crashed",
                        detail=f"{type(error).__name__}: {error}")
        ]
