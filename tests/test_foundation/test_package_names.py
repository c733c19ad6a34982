"""The test tree takes no top-level module name of an installed distribution or of the standard library."""

from __future__ import annotations

from pathlib import Path

from .package_names import TESTS_ROOT, collisions, installed_names, occupied_names


def _tree(root: Path, files: list[str]) -> Path:
    for name in files:
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_text("")
    return root


def test_the_repository_s_test_tree_shadows_nothing_installed():
    names = occupied_names(TESTS_ROOT)
    assert {"conftest", "test_kernels", "test_training", "test_data"} <= set(names)
    assert "kernels" not in names and "training" not in names
    assert collisions(TESTS_ROOT) == []


def test_an_injected_collision_is_found_for_a_package_a_plain_module_and_the_standard_library(tmp_path):
    tests = _tree(tmp_path / "tests", ["conftest.py", "yaml/__init__.py", "yaml/test_a.py", "usage/numpy.py",
                                       "usage/test_b.py", "ok/__init__.py", "ok/json/__init__.py", "json.py"])
    # (this suite's own tests folder is on sys.path too: its conftest is no installed module)
    installed = installed_names([tests, tmp_path, TESTS_ROOT, TESTS_ROOT.parent])
    assert installed["yaml"] == "distribution PyYAML" and installed["json"] == "the standard library"
    found = collisions(tests, installed)
    assert [line.split(" is imported as ")[1].split(",")[0] for line in found] == ["'json'", "'numpy'", "'yaml'"]
    assert any(line.startswith(str(tests / "yaml") + " ") and "distribution PyYAML" in line for line in found)
    # a package nested in a test package is named under it (ok.json): it shadows nothing
    assert occupied_names(tests)["ok"] == tests / "ok"


def test_the_transformers_kernels_collision_of_2026_12_07_would_be_found(tmp_path):
    tests = _tree(tmp_path / "tests", ["kernels/__init__.py", "kernels/test_x.py"])
    assert collisions(tests, {"kernels": "distribution kernels"}) == [
        f"{tests / 'kernels'} is imported as 'kernels', the name of distribution kernels: rename it (e.g. test_kernels)"]
