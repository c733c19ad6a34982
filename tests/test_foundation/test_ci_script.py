"""`.ci/run`: it extracts the README's commands, runs the test command, and fails when pytest collects nothing."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from .conftest import REPO_ROOT

CI_SCRIPT = REPO_ROOT / ".ci" / "run"

pytestmark = pytest.mark.skipif(shutil.which("bash") is None or shutil.which("awk") is None, reason="needs bash and awk")


def _ci(repo: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["bash", str(repo / ".ci" / "run"), *args], capture_output=True, text=True, timeout=120, cwd=repo
    )


def test_readme_commands_are_extracted_exactly() -> None:
    test_command = _ci(REPO_ROOT, "--print-test-command")
    assert test_command.returncode == 0
    assert test_command.stdout.strip().splitlines() == [
        'python3 -m venv .venv && .venv/bin/pip install -c constraints.txt -e ".[dev,worldclass,export,tracking]"'
        ' && .venv/bin/python -m pytest -q'
    ]
    main_command = _ci(REPO_ROOT, "--print-main-command").stdout.strip()
    assert main_command.startswith("python3 -m venv .venv && .venv/bin/pip install -c constraints.txt -e .")
    assert "apex-x" in main_command and "```" not in main_command


def _fake_repo(tmp_path: Path, test_command: str) -> Path:
    (tmp_path / ".ci").mkdir()
    shutil.copy(CI_SCRIPT, tmp_path / ".ci" / "run")
    (tmp_path / "README.md").write_text(
        "# x\n\n<!-- main-command -->\n```bash\necho main\n```\n\n"
        f"Tests:\n\n<!-- test-command -->\n```bash\n{test_command}\n```\n\n```bash\necho not this block\n```\n"
    )
    return tmp_path


def test_pytest_collecting_no_tests_fails_ci(tmp_path: Path) -> None:
    (tmp_path / "empty").mkdir()
    repo = _fake_repo(tmp_path, f"{sys.executable} -m pytest -q -p no:cacheprovider empty")
    result = _ci(repo, "--tests-only")
    assert result.returncode == 1
    assert "collected no tests" in result.stderr


@pytest.mark.parametrize("code", [0, 3])
def test_the_test_commands_exit_code_is_ci_s(tmp_path: Path, code: int) -> None:
    repo = _fake_repo(tmp_path, f"echo ran the test command && exit {code}")
    result = _ci(repo, "--tests-only")
    assert result.returncode == code
    assert "ran the test command" in result.stdout and "not this block" not in result.stdout


def test_missing_test_command_block_fails(tmp_path: Path) -> None:
    repo = _fake_repo(tmp_path, "true")
    (repo / "README.md").write_text("# no markers\n")
    result = _ci(repo, "--tests-only")
    assert result.returncode == 1 and "test-command" in result.stderr


def test_constraints_pin_every_dependency_inside_pyproject_s_ranges_and_say_when() -> None:
    """constraints.txt (what CI and the README's commands install) pins each requirement of pyproject.toml, base
    and every extra, to one exact version that the requirement's range allows; its header is dated."""
    import re

    import tomllib
    from packaging.requirements import Requirement
    from packaging.utils import canonicalize_name

    lines = (REPO_ROOT / "constraints.txt").read_text().splitlines()
    assert re.search(r"on \d{4}-\d{2}-\d{2}", "\n".join(line for line in lines if line.startswith("#")))
    pins = {}
    for line in lines:
        if line and not line.startswith("#"):
            name, version = line.split("==")
            pins[canonicalize_name(name)] = version
    project = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text())["project"]
    requirements = [Requirement(text) for text in project["dependencies"]]
    requirements += [Requirement(text) for extra in project["optional-dependencies"].values() for text in extra]
    for requirement in requirements:
        if requirement.marker is not None and not requirement.marker.evaluate():
            continue
        name = canonicalize_name(requirement.name)
        assert name in pins, f"{requirement.name} is not pinned in constraints.txt"
        assert requirement.specifier.contains(pins[name], prereleases=True), (requirement, pins[name])
    bounded = {canonicalize_name(r.name) for r in requirements if any(spec.operator == "<" for spec in r.specifier)}
    # the majors known (or announced) to change what Apex-X relies on
    assert {"torch", "torchvision", "transformers", "peft", "timm", "numpy", "pydantic", "pycocotools"} <= bounded
