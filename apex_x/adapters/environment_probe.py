"""EnvironmentProbe adapter: real imports, importlib.metadata versions, torch.cuda and a write test."""

from __future__ import annotations

import importlib
import importlib.metadata
import platform
import sys
import tempfile
import warnings
from pathlib import Path

from apex_x.adapters.slow_notice import notice_if_slow
from apex_x.domain.environment import AcceleratorProbe, FolderProbe, PackageProbe


class ImportlibEnvironmentProbe:
    """Imports packages for real, so a broken install shows up as it would at training time."""

    def python_version(self) -> str:
        return platform.python_version()

    def platform(self) -> str:
        return sys.platform

    def package(self, import_name: str, distribution: str) -> PackageProbe:
        try:
            with warnings.catch_warnings(), notice_if_slow(f"preflight: importing {import_name}"):
                warnings.simplefilter("ignore")
                module = importlib.import_module(import_name)
        except ModuleNotFoundError as error:
            missing = error.name is not None and error.name.split(".")[0] == import_name
            return PackageProbe(
                import_name, distribution, importable=False, version=_installed_version(distribution),
                missing=missing, error=f"{type(error).__name__}: {error}",
            )
        except Exception as error:  # noqa: BLE001 - any failure at import time means unusable
            return PackageProbe(
                import_name, distribution, importable=False, version=_installed_version(distribution),
                error=f"{type(error).__name__}: {error}",
            )
        module_version = getattr(module, "__version__", None)
        version = module_version if isinstance(module_version, str) else _installed_version(distribution)
        return PackageProbe(import_name, distribution, importable=True, version=version)

    def accelerator(self) -> AcceleratorProbe:
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                import torch
        except Exception as error:  # noqa: BLE001
            return AcceleratorProbe(torch_importable=False, cuda_available=False, error=f"{type(error).__name__}: {error}")
        built_with = torch.version.cuda
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                available = torch.cuda.is_available()
            if not available:
                return AcceleratorProbe(torch_importable=True, cuda_available=False, torch_cuda_version=built_with)
            properties = torch.cuda.get_device_properties(0)
            return AcceleratorProbe(
                torch_importable=True,
                cuda_available=True,
                device_count=torch.cuda.device_count(),
                device_name=torch.cuda.get_device_name(0),
                capability=f"{properties.major}.{properties.minor}",
                memory_gib=round(properties.total_memory / 2**30, 1),
                torch_cuda_version=built_with,
            )
        except Exception as error:  # noqa: BLE001 - a broken driver is reported, not raised
            return AcceleratorProbe(
                torch_importable=True, cuda_available=False, torch_cuda_version=built_with,
                error=f"{type(error).__name__}: {error}",
            )

    def folder(self, path: str) -> FolderProbe:
        target = Path(path).expanduser().absolute()
        existing = target
        while not existing.exists() and existing != existing.parent:
            existing = existing.parent
        if not existing.is_dir():
            return FolderProbe(str(target), exists=False, writable=False, detail=f"{existing} is a file, not a folder")
        try:
            with tempfile.NamedTemporaryFile(dir=existing, prefix=".apex_x_write_test_"):
                pass
        except OSError as error:
            reason = error.strerror or type(error).__name__
            return FolderProbe(str(target), exists=target.exists(), writable=False, detail=f"cannot write in {existing}: {reason}")
        if existing == target:
            return FolderProbe(str(target), exists=True, writable=True, detail="exists and is writable")
        return FolderProbe(str(target), exists=False, writable=True, detail=f"will be created under {existing}")


def _installed_version(distribution: str) -> str | None:
    try:
        return importlib.metadata.version(distribution)
    except importlib.metadata.PackageNotFoundError:
        return None
