"""Install hints name the command that works for how Apex-X is installed (index wheel or a checkout)."""

from __future__ import annotations

from pathlib import Path

import pytest

from apex_x import installation

from .conftest import REPO_ROOT


def test_this_checkout_gets_the_dash_e_command(monkeypatch: pytest.MonkeyPatch) -> None:
    assert installation.checkout_root() == REPO_ROOT.resolve()
    monkeypatch.chdir(REPO_ROOT)
    assert installation.install_command("worldclass") == 'pip install -e ".[worldclass]"'
    assert installation.install_command() == 'pip install -e "."'
    assert installation.worldclass_install_hint("LoRA needs peft") == 'LoRA needs peft: pip install -e ".[worldclass]"'


def test_from_another_folder_the_checkout_path_is_named(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.chdir(tmp_path)
    assert installation.install_command("worldclass") == f'pip install -e "{REPO_ROOT.resolve()}[worldclass]"'


def test_a_wheel_in_site_packages_gets_the_index_command(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    site = tmp_path / "site-packages"
    (site / "apex_x").mkdir(parents=True)  # a wheel's layout: no pyproject.toml beside the package
    assert installation.checkout_root(str(site / "apex_x")) is None
    monkeypatch.setattr(installation, "checkout_root", lambda: None)
    assert installation.install_command("worldclass") == 'pip install "apex-x[worldclass]"'
    assert installation.install_command() == 'pip install "apex-x"'


def test_another_projects_pyproject_is_not_a_checkout(tmp_path: Path) -> None:
    (tmp_path / "apex_x").mkdir()
    (tmp_path / "pyproject.toml").write_text('[project]\nname = "someone-else"\n')
    assert installation.checkout_root(str(tmp_path / "apex_x")) is None
    (tmp_path / "pyproject.toml").write_text('[project]\nname = "apex-x"\n')
    installation.checkout_root.cache_clear()
    assert installation.checkout_root(str(tmp_path / "apex_x")) == tmp_path
