"""Helpers of the foundation tests: run the CLI in a subprocess, block or break imports for real."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[2]


def subprocess_env(extra_path: Path | None) -> dict[str, str]:
    env = dict(os.environ)
    env.pop("TRITON_INTERPRET", None)  # the real environment of a user
    env["PYTHONPATH"] = os.pathsep.join(
        str(path) for path in (extra_path, REPO_ROOT) if path is not None
    )
    env.setdefault("HF_HUB_OFFLINE", "1")
    env["COLUMNS"] = "200"
    return env


@pytest.fixture
def run_cli(tmp_path: Path) -> Callable[..., subprocess.CompletedProcess[str]]:
    """`python -m apex_x.cli ARGS` in a subprocess (cwd = a temp folder), optionally with a PYTHONPATH
    folder in front (to block or break imports)."""

    def run(*args: str, python_path: Path | None = None, cwd: Path | None = None, timeout: float = 120):
        return subprocess.run(
            [sys.executable, "-m", "apex_x.cli", *args],
            cwd=cwd or tmp_path,
            env=subprocess_env(python_path),
            capture_output=True,
            text=True,
            timeout=timeout,
        )

    return run


def make_import_blocker(folder: Path, *, missing: tuple[str, ...] = (), broken: tuple[str, ...] = ()) -> Path:
    """A PYTHONPATH folder where `missing` packages cannot be found (ModuleNotFoundError, via a
    sitecustomize that puts None in sys.modules) and `broken` packages raise ImportError when imported."""
    folder.mkdir(parents=True, exist_ok=True)
    lines = ["import sys", *(f"sys.modules[{name!r}] = None" for name in missing)]
    (folder / "sitecustomize.py").write_text("\n".join(lines) + "\n")
    for name in broken:
        package = folder / name
        package.mkdir()
        (package / "__init__.py").write_text(f"raise ImportError('{name} is broken on purpose for a test')\n")
    return folder


@pytest.fixture(autouse=True)
def clean_logging() -> Iterator[None]:
    """Remove the handlers configure_logging (and in-process CLI runs) install, after each test."""
    yield
    from apex_x.adapters.logging_structlog import reset_logging

    reset_logging()
