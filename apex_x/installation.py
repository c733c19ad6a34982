"""How this Apex-X is installed, so that every install hint is a command that works for this user.

A wheel from the package index takes `pip install "apex-x[worldclass]"`; a checkout (an editable
`pip install -e .`, as the README's set-up does, or a source tree on PYTHONPATH) is not on the index,
so it takes `pip install -e ".[worldclass]"` (the checkout's path in place of `.` when run from
elsewhere). A checkout is recognised by the package's own folder: `apex_x/` next to a pyproject.toml
that names the project (a wheel's `apex_x/` sits in site-packages). Standard library only, nothing
done at import.
"""

from __future__ import annotations

import functools
import re
from pathlib import Path

_PROJECT_NAME = re.compile(r'^name\s*=\s*"apex-x"\s*$', re.MULTILINE)


@functools.cache
def checkout_root(package_dir: str | None = None) -> Path | None:
    """The source checkout Apex-X runs from, None for an installed wheel.

    package_dir: the `apex_x` package folder to look at (default: the one running).
    """
    package = Path(package_dir) if package_dir else Path(__file__).resolve().parent
    pyproject = package.parent / "pyproject.toml"
    try:
        text = pyproject.read_text(encoding="utf-8")
    except OSError:
        return None
    return package.parent if _PROJECT_NAME.search(text) else None


def install_command(extra: str | None = None) -> str:
    """The pip command that installs Apex-X (with `extra`, e.g. "worldclass") the way it is installed here."""
    spec = f"[{extra}]" if extra else ""
    root = checkout_root()
    if root is None:
        return f'pip install "apex-x{spec}"'
    try:
        here = Path.cwd().resolve() == root.resolve()
    except OSError:
        here = False
    return f'pip install -e "{"." if here else root}{spec}"'


def worldclass_install_hint(what: str) -> str:
    """`what` (a sentence start) followed by the command that installs the worldclass extra here."""
    return f"{what}: {install_command('worldclass')}"
