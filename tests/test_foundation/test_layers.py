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
        ("api.py", "import apex_x.adapters.checkpoints.torch_store", "entry adapters reach adapters and use cases"),
        ("notebook.py", "import apex_x.application.predict", "entry adapters reach adapters and use cases"),
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
    problems = _io_problems(PACKAGE / "domain", _DOMAIN_FORBIDDEN_MODULES, _DOMAIN_FORBIDDEN_CALLS, ())
    assert not problems, "the domain does no I/O:\n" + "\n".join(problems)


def test_every_source_folder_is_a_package() -> None:
    """A folder without __init__.py would be left out of a wheel (packages.find) and confuse editable installs."""
    missing = [
        str(folder.relative_to(REPO_ROOT))
        for folder in [PACKAGE, *(p for p in PACKAGE.rglob("*") if p.is_dir() and p.name != "__pycache__")]
        if any(folder.glob("*.py")) and not (folder / "__init__.py").exists()
    ]
    assert not missing, f"add __init__.py to: {missing}"


# The application does no file I/O of its own: listing, deleting, probing and writing go through ports.
_APPLICATION_FORBIDDEN_MODULES = ("shutil", "tempfile", "pathlib.Path.open", "io")
_APPLICATION_FORBIDDEN_CALLS = ("open", "torch.load", "torch.save", "os.replace", "os.remove", "os.unlink",
                                "os.rmdir", "os.listdir", "os.scandir", "os.makedirs", "os.mkdir", "os.path",
                                "os.stat", "os.link", "os.rename", "os.pathconf")
_FILE_METHODS = ("exists", "is_dir", "is_file", "iterdir", "glob", "rglob", "unlink", "mkdir", "rmdir",
                 "write_bytes", "write_text", "read_bytes", "read_text", "touch", "stat", "lstat", "rename",
                 "replace", "open")


def _io_problems(folder: Path, forbidden_modules: tuple[str, ...], forbidden_calls: tuple[str, ...],
                 methods: tuple[str, ...]) -> list[str]:
    problems = []
    for path in sorted(folder.rglob("*.py")):
        tree = ast.parse(path.read_text(), filename=str(path))
        for node in ast.walk(tree):
            names: list[str] = []
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module:
                names = [node.module, *(f"{node.module}.{alias.name}" for alias in node.names)]
            problems += [f"{path.name}:{node.lineno}: imports {name}" for name in names
                         if any(name == bad or name.startswith(bad + ".") for bad in forbidden_modules)]
            if isinstance(node, ast.Call):
                called = _dotted(node.func)
                if any(called == bad or called.startswith(bad + ".") for bad in forbidden_calls):
                    problems.append(f"{path.name}:{node.lineno}: calls {called}")
                elif isinstance(node.func, ast.Attribute) and node.func.attr in methods and not node.args:
                    problems.append(f"{path.name}:{node.lineno}: calls .{node.func.attr}() (a file method?)")
    return problems


def test_application_does_no_file_io() -> None:
    problems = _io_problems(PACKAGE / "application", _APPLICATION_FORBIDDEN_MODULES, _APPLICATION_FORBIDDEN_CALLS,
                            _FILE_METHODS)
    assert not problems, "the application asks ports for files (CheckpointStore, RunFolder):\n" + "\n".join(problems)


def test_the_io_scan_finds_file_io(tmp_path: Path) -> None:
    """The scan above is not blind: each kind of file access it looks for is found in a sample."""
    sample = tmp_path / "sample.py"
    sample.write_text("import shutil\nfrom pathlib import Path\nopen('x')\nPath('x').exists()\n"
                      "Path('x').unlink()\nimport os\nos.replace('a', 'b')\nos.path.isdir('x')\n")
    problems = _io_problems(tmp_path, _APPLICATION_FORBIDDEN_MODULES, _APPLICATION_FORBIDDEN_CALLS, _FILE_METHODS)
    assert [line.split(": ", 1)[1] for line in problems] == [
        "imports shutil", "calls open", "calls .exists() (a file method?)", "calls .unlink() (a file method?)",
        "calls os.replace", "calls os.path.isdir",
    ]


def _is_module(path: Path) -> bool:
    return path.with_suffix(".py").is_file() or (path / "__init__.py").is_file()


def test_no_arrow_runs_back_up_to_the_package_root() -> None:
    """Below the entry adapters nothing imports `apex_x` itself (its __init__ is the public API on top)."""
    problems = []
    for layer in ("application", "adapters", "kernels", "domain"):
        for path in sorted((PACKAGE / layer).rglob("*.py")):
            for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
                if isinstance(node, ast.ImportFrom) and node.module == "apex_x":  # a subpackage is fine
                    problems += [f"{layer}/{path.name}:{node.lineno}: from apex_x import {alias.name}"
                                 for alias in node.names if not _is_module(PACKAGE / alias.name)]
                elif isinstance(node, ast.Import) and any(alias.name == "apex_x" for alias in node.names):
                    problems.append(f"{layer}/{path.name}:{node.lineno}: import apex_x")
    assert not problems, "\n".join(problems)


def test_one_atomic_write_helper() -> None:
    """Files are swapped in by adapters/atomic_files.py only (os.replace nowhere else in the package)."""
    users = sorted(
        str(path.relative_to(PACKAGE))
        for path in PACKAGE.rglob("*.py")
        if any(isinstance(node, ast.Call) and _dotted(node.func) == "os.replace"
               for node in ast.walk(ast.parse(path.read_text(), filename=str(path))))
    )
    assert users == ["adapters/atomic_files.py"]


def test_version_is_pyproject_version() -> None:
    import tomllib

    from apex_x.domain.version import __version__

    assert tomllib.loads((REPO_ROOT / "pyproject.toml").read_text())["project"]["version"] == __version__


def test_only_the_container_and_adapters_import_profiles_and_formats_by_name() -> None:
    """The registries name their variant modules as strings (imported on first use). Model profiles and
    dataset formats are adapters: asking those registries for a variant (get/all/find imports it) is for
    the container and the adapters only, so no lower layer reaches an adapter through a registry."""
    problems = []
    for layer in ("domain", "application", "kernels", "loss_components"):
        for path in sorted((PACKAGE / layer).rglob("*.py")):
            for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
                if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute):
                    owner = _dotted(node.func.value)
                    if owner in ("MODEL_PROFILES", "DATASET_FORMATS") and node.func.attr in ("get", "all", "find"):
                        problems.append(f"{layer}/{path.name}:{node.lineno}: {owner}.{node.func.attr}()")
    assert not problems, "\n".join(problems)


def test_no_module_outside_the_variant_files_branches_on_a_variant_name() -> None:
    """`== "worldclass"`, `in ("det", ...)`, `profile != "small"`: a comparison with a variant's name is only
    allowed in the variant's own files and the registry (the rest asks the registry)."""
    from apex_x.domain.registry import DATASET_FORMATS, LOSS_COMPONENTS, MODEL_PROFILES

    names = {*MODEL_PROFILES.names(), *LOSS_COMPONENTS.names(), *DATASET_FORMATS.names()}
    homes = ("adapters/models/profiles/", "loss_components/", "adapters/datasets/formats/", "domain/registry.py",
             "kernels/")
    problems = []
    for path in sorted(PACKAGE.rglob("*.py")):
        relative = str(path.relative_to(PACKAGE))
        if relative.startswith(homes):
            continue
        for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
            if isinstance(node, ast.Compare):
                constants = [part for part in (node.left, *node.comparators) for part in ast.walk(part)
                             if isinstance(part, ast.Constant) and part.value in names]
                problems += [f"{relative}:{node.lineno}: compares with {part.value!r}" for part in constants]
    assert not problems, "\n".join(problems)
