"""Dependency preflight: what the probe learns (value types), the probe port, and the check plug-in contract.

No I/O here. A preflight check is `check(context: PreflightContext) -> Iterable[CheckResult]`.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    from apex_x.domain.config import ApexConfig


@dataclass(frozen=True)
class Requirement:
    """One dependency: pip name, import name, minimum version and why Apex-X needs it (plain values)."""

    distribution: str
    import_name: str
    minimum: str
    extra: str | None  # None = core dependency; else the pip extra that installs it (e.g. a model profile's)
    purpose: str
    needs_cuda: bool = False  # required only where CUDA is available on Linux (triton)


@dataclass(frozen=True)
class PackageProbe:
    """The result of importing one package."""

    import_name: str  # e.g. "yaml"
    distribution: str  # pip name, e.g. "pyyaml"
    importable: bool
    version: str | None  # installed version; None when not installed or unknown
    missing: bool = False  # True when the module itself is not found (vs. found but failing to import)
    error: str | None = None  # why the import failed, e.g. "ModuleNotFoundError: No module named 'peft'"


@dataclass(frozen=True)
class AcceleratorProbe:
    """What torch sees of CUDA."""

    torch_importable: bool
    cuda_available: bool
    device_count: int = 0
    device_name: str | None = None  # of device 0
    capability: str | None = None  # compute capability of device 0, e.g. "9.0"
    memory_gib: float | None = None  # total memory of device 0
    torch_cuda_version: str | None = None  # CUDA version torch was built with; None for CPU builds
    error: str | None = None


@dataclass(frozen=True)
class FolderProbe:
    """Whether an output folder exists or can be created, and can be written."""

    path: str  # absolute
    exists: bool
    writable: bool
    detail: str  # e.g. "exists", "will be created under /x", "cannot write in /x: Read-only file system"


class EnvironmentProbe(Protocol):
    """Looks at the running interpreter, installed packages, CUDA and the file system."""

    def python_version(self) -> str:
        """e.g. "3.11.7"."""
        ...

    def platform(self) -> str:
        """sys.platform, e.g. "linux"."""
        ...

    def package(self, import_name: str, distribution: str) -> PackageProbe:
        """Import `import_name` for real and read the installed version of `distribution`."""
        ...

    def accelerator(self) -> AcceleratorProbe: ...

    def folder(self, path: str) -> FolderProbe:
        """Check `path` is writable without leaving anything behind (no folder is created)."""
        ...


@dataclass(frozen=True)
class CheckResult:
    """One row of the preflight table. A result fails the preflight when `required and not ok`."""

    name: str  # e.g. "peft", "cuda", "output folder", "backbone weights"
    category: str  # "python" | "package" | "device" | "output" | anything a plugged-in check chooses
    ok: bool
    required: bool
    status: str  # short word for the table: "ok", "missing", "too old", "import failed", ...
    detail: str = ""
    installed: str | None = None
    minimum: str | None = None
    fix: str | None = None  # what to run to fix it, e.g. 'pip install "apex-x[worldclass]"'

    @property
    def failed(self) -> bool:
        return self.required and not self.ok

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class PreflightContext:
    """What every check can look at. `accelerator` is probed once, on first use."""

    profile: str
    output_dir: str
    settings: ApexConfig
    probe: EnvironmentProbe
    config_given: bool = False  # settings come from the user's --config, not the defaults

    @functools.cached_property
    def accelerator(self) -> AcceleratorProbe:
        return self.probe.accelerator()

    @functools.cached_property
    def output_folder(self) -> FolderProbe:
        return self.probe.folder(self.output_dir)


PreflightCheck = Callable[[PreflightContext], Iterable[CheckResult]]
