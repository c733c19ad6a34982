"""Layer gates: import-linter passes on the tree and fails on a copy with a forbidden import; the domain
does no I/O; every package folder is a real package."""

from __future__ import annotations

import ast
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from .conftest import REPO_ROOT

PACKAGE = REPO_ROOT / "apex_x"
LINT_IMPORTS = Path(sys.executable).parent / "lint-imports"


def _lint_imports(root: Path) -> subprocess.CompletedProcess[str]:
    if not LINT_IMPORTS.exists():
        pytest.fail(f"{LINT_IMPORTS} is missing: install the dev extra (pip install -e '.[dev]')")
    return subprocess.run(
        [str(LINT_IMPORTS), "--no-cache"],
        cwd=root,
        env={"PYTHONPATH": str(root), "PATH": str(LINT_IMPORTS.parent)},
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_lint_imports_passes_on_the_tree() -> None:
    result = _lint_imports(REPO_ROOT)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "0 broken" in result.stdout


@pytest.mark.parametrize(
    ("module", "injected", "broken_contract"),
    [
        ("domain/errors.py", "import apex_x.adapters", "Layers of DESIGN.md"),
        ("domain/config.py", "import yaml", "domain does no I/O"),
        ("application/preflight.py", "import apex_x.adapters.environment_probe", "application never imports adapters"),
        ("kernels/reference.py", "import apex_x.application.preflight", "kernels import only the domain"),
        ("loss_components/det.py", "import apex_x.adapters.models.heads", "Layers of DESIGN.md"),
    ],
)
def test_a_forbidden_import_fails_lint_imports(tmp_path: Path, module: str, injected: str, broken_contract: str) -> None:
    shutil.copytree(PACKAGE, tmp_path / "apex_x", ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(REPO_ROOT / "pyproject.toml", tmp_path / "pyproject.toml")
    target = tmp_path / "apex_x" / module
    target.write_text(target.read_text() + f"\n{injected}  # injected by the test\n")
    result = _lint_imports(tmp_path)
    assert result.returncode != 0, result.stdout
    broken_lines = [line for line in result.stdout.splitlines() if line.endswith("BROKEN")]
    assert any(line.startswith(broken_contract) for line in broken_lines), result.stdout
    importer = "apex_x." + module.removesuffix(".py").replace("/", ".")
    assert importer in result.stdout  # the copy was analysed, and the offending import is named


# import-linter cannot forbid subpackages of external packages, so these are checked here.
_DOMAIN_FORBIDDEN_MODULES = ("torch.utils.data", "torch.distributed", "torch.cuda", "os", "shutil", "pathlib", "io")
_DOMAIN_FORBIDDEN_CALLS = ("open", "torch.load", "torch.save", "torch.cuda", "torch.device")


def _dotted(node: ast.AST) -> str:
    if isinstance(node, ast.Name):
        return node.id
    if isinstance(node, ast.Attribute):
        return f"{_dotted(node.value)}.{node.attr}"
    return ""


def test_domain_does_no_io() -> None:
    problems = []
    for path in sorted((PACKAGE / "domain").rglob("*.py")):
        tree = ast.parse(path.read_text(), filename=str(path))
        for node in ast.walk(tree):
            names: list[str] = []
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module:
                names = [node.module, *(f"{node.module}.{alias.name}" for alias in node.names)]
            for name in names:
                if any(name == bad or name.startswith(bad + ".") for bad in _DOMAIN_FORBIDDEN_MODULES):
                    problems.append(f"{path.name}:{node.lineno}: imports {name}")
            if isinstance(node, ast.Call):
                called = _dotted(node.func)
                if any(called == bad or called.startswith(bad + ".") for bad in _DOMAIN_FORBIDDEN_CALLS):
                    problems.append(f"{path.name}:{node.lineno}: calls {called}")
    assert not problems, "the domain does no I/O:\n" + "\n".join(problems)


def test_every_source_folder_is_a_package() -> None:
    """A folder without __init__.py would be left out of a wheel (packages.find) and confuse editable installs."""
    missing = [
        str(folder.relative_to(REPO_ROOT))
        for folder in [PACKAGE, *(p for p in PACKAGE.rglob("*") if p.is_dir() and p.name != "__pycache__")]
        if any(folder.glob("*.py")) and not (folder / "__init__.py").exists()
    ]
    assert not missing, f"add __init__.py to: {missing}"
