"""No test package may shadow an installed module.

pytest's default import mode puts the first folder above a test package (one without `__init__.py`) on
`sys.path` and imports the package under its own name. A test folder named like an installed distribution's
top-level module (`tests/kernels` while transformers imports the Hugging Face `kernels` package) then replaces
that module for every import in the test process and its subprocesses. `collisions` finds such names;
tests/conftest.py refuses to start a run that has one.
"""

from __future__ import annotations

import importlib.metadata
import pkgutil
import sys
from collections.abc import Iterable
from pathlib import Path

TESTS_ROOT = Path(__file__).resolve().parents[1]


def occupied_names(tests_root: Path) -> dict[str, Path]:
    """Top-level module names the test tree takes under pytest's `prepend` import mode -> the file or folder.

    A module's top-level name is its outermost folder that still has an `__init__.py` (a package), or the
    module's own name when its folder has none (then the folder itself goes on `sys.path`).
    """
    names: dict[str, Path] = {}
    for path in sorted(tests_root.rglob("*.py")):
        if any(part.startswith(".") or part == "__pycache__" for part in path.relative_to(tests_root).parts):
            continue
        outermost, folder = path, path.parent
        while (folder / "__init__.py").is_file():
            outermost, folder = folder, folder.parent
        name = outermost.stem if outermost.is_file() else outermost.name
        names.setdefault(name, outermost)
    return names


def installed_names(excluded: Iterable[Path] = ()) -> dict[str, str]:
    """Importable top-level names outside `excluded` folders -> where they come from (a distribution, the
    standard library, or the `sys.path` folder that holds them)."""
    found = {name: "distribution " + ", ".join(sorted(set(dists)))
             for name, dists in importlib.metadata.packages_distributions().items()}
    for name in (*sys.stdlib_module_names, *sys.builtin_module_names):
        found.setdefault(name, "the standard library")
    skip = [path.resolve() for path in excluded]
    # a folder inside an excluded one is skipped too: pytest puts a test folder without __init__.py on sys.path
    folders = [entry for entry in sys.path if entry and Path(entry).is_dir()
               and not any(Path(entry).resolve().is_relative_to(root) for root in skip)]
    for module in pkgutil.iter_modules(folders):
        found.setdefault(module.name, f"{getattr(module.module_finder, 'path', '?')}/{module.name}")
    return found


def collisions(tests_root: Path, installed: dict[str, str] | None = None) -> list[str]:
    """One line per test module or package whose top-level name is also an installed module; [] when none."""
    installed = installed_names([tests_root, tests_root.parent]) if installed is None else installed
    return [f"{path} is imported as '{name}', the name of {installed[name]}: rename it (e.g. test_{name})"
            for name, path in sorted(occupied_names(tests_root).items()) if name in installed]
