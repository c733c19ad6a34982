"""CLI: exit codes 0/1/2, one-line errors without traceback, --debug, --help of every subcommand."""

from __future__ import annotations

import importlib.util
import shutil
import subprocess
import sys
import types
from pathlib import Path

import pytest

from apex_x import cli
from apex_x.cli import COMMANDS, EXIT_INTERNAL, EXIT_OK, EXIT_USER, main

from .conftest import REPO_ROOT, make_import_blocker, subprocess_env

# The flags the user guide uses, per subcommand.
SEED_FLAGS = {
    "train": ["--steps-per-stage", "--seed", "--num-classes", "--set", "--resume", "--device"],
    "dataset-preflight": ["--output-json"],
    "preflight": ["--profile", "--output-json"],
}


def _one_error_line(stderr: str) -> str:
    lines = [line for line in stderr.splitlines() if line.strip()]
    assert len(lines) == 1, stderr
    assert "Traceback" not in stderr
    assert lines[0].startswith("error: ")
    return lines[0]


def _require_command(command: str) -> None:
    if importlib.util.find_spec(f"apex_x.commands.{COMMANDS[command][0]}") is None:
        pytest.skip(f"apex_x.commands.{COMMANDS[command][0]} is not written yet")


@pytest.mark.parametrize(
    ("argv", "expected"),
    [
        ([], "choose a command"),
        (["bogus"], "invalid choice: 'bogus'"),
        (["--bogus"], "unrecognized arguments: --bogus"),
        (["preflight", "--bogus"], "unrecognized arguments: --bogus"),
        (["preflight", "--profile", "huge"], "--profile: invalid choice: 'huge'"),
        (["--log-level", "loud", "preflight"], "--log-level: invalid choice"),
    ],
)
def test_usage_errors_exit_2_with_one_line(argv: list[str], expected: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(argv) == EXIT_USER
    captured = capsys.readouterr()
    assert expected in _one_error_line(captured.err)
    assert captured.out == ""


def test_usage_errors_in_a_real_process(run_cli) -> None:
    for argv in ([], ["bogus"], ["preflight", "--bogus"]):
        result = run_cli(*argv)
        assert result.returncode == EXIT_USER, result.stderr
        _one_error_line(result.stderr)


def test_help_and_version_exit_0(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--help"]) == EXIT_OK
    out = capsys.readouterr().out
    for command in COMMANDS:
        assert command in out
    assert main(["--version"]) == EXIT_OK
    assert "apex-x 0." in capsys.readouterr().out


def test_top_level_help_imports_no_command_module() -> None:
    before = set(sys.modules)
    cli.build_parser(None)
    assert not {name for name in set(sys.modules) - before if name.startswith("apex_x.commands.")}


@pytest.mark.parametrize("command", sorted(SEED_FLAGS))
def test_help_of_each_subcommand_names_the_seeds_flags(command: str, capsys: pytest.CaptureFixture[str]) -> None:
    _require_command(command)
    assert main([command, "--help"]) == EXIT_OK
    out = capsys.readouterr().out
    for flag in [*SEED_FLAGS[command], "--log-level", "--debug"]:
        assert flag in out, f"{command} --help does not mention {flag}"


@pytest.mark.parametrize("command", sorted(COMMANDS))
def test_every_command_module_has_the_handler_interface(command: str) -> None:
    _require_command(command)
    module = importlib.import_module(f"apex_x.commands.{COMMANDS[command][0]}")
    assert callable(module.add_arguments) and callable(module.run)
    assert (module.__doc__ or "").strip(), "one-line module docstring"


def _bad_config(tmp_path: Path) -> Path:
    path = tmp_path / "bad.yaml"
    path.write_text("train:\n  epochs: abc\n")
    return path


def test_config_error_exits_2_with_one_line_naming_key_and_type(run_cli, tmp_path: Path) -> None:
    path = _bad_config(tmp_path)
    result = run_cli("preflight", "--config", str(path), "--output-dir", str(tmp_path))
    assert result.returncode == EXIT_USER
    line = _one_error_line(result.stderr)
    assert str(path) in line and "train.epochs" in line and "expected int" in line


def test_debug_shows_the_traceback_and_keeps_the_exit_code(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = _bad_config(tmp_path)
    assert main(["preflight", "--config", str(path), "--debug"]) == EXIT_USER
    err = capsys.readouterr().err
    assert "Traceback (most recent call last)" in err and "ConfigError" in err
    assert err.strip().splitlines()[-1].startswith("error: ")


def test_set_errors_through_train_exit_2(run_cli) -> None:
    _require_command("train")
    result = run_cli("train", str(REPO_ROOT / "configs/smoke_cpu.yaml"), "--set", "train.epochs=abc")
    assert result.returncode == EXIT_USER
    line = _one_error_line(result.stderr)
    assert "train.epochs" in line and "int" in line
    result = run_cli("train", str(REPO_ROOT / "configs/smoke_cpu.yaml"), "--set", "train.epochz=1")
    assert result.returncode == EXIT_USER
    line = _one_error_line(result.stderr)
    assert "train.epochz" in line and "train.epochs" in line


def _fake_command(monkeypatch: pytest.MonkeyPatch, run) -> None:
    """Registers `apex-x crash`, a small command whose run() is `run`."""
    module = types.ModuleType("apex_x.commands._test_fake")
    module.add_arguments = lambda parser: None  # type: ignore[attr-defined]
    module.run = run  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "apex_x.commands._test_fake", module)
    monkeypatch.setitem(COMMANDS, "crash", ("_test_fake", "A command that fails, for tests."))


def test_internal_error_exits_1_with_one_line(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    def run(args):
        raise RuntimeError("boom\nsecond line")

    _fake_command(monkeypatch, run)
    assert main(["crash"]) == EXIT_INTERNAL
    err = capsys.readouterr().err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in err
    assert lines[0].startswith("internal error: RuntimeError: boom") and "--debug" in lines[0]
    assert main(["crash", "--debug"]) == EXIT_INTERNAL
    assert "Traceback (most recent call last)" in capsys.readouterr().err


def test_command_exit_code_is_returned(monkeypatch: pytest.MonkeyPatch) -> None:
    _fake_command(monkeypatch, lambda args: 0)
    assert main(["crash"]) == EXIT_OK


def test_missing_command_module_is_reported_not_crashed(monkeypatch: pytest.MonkeyPatch, capsys) -> None:
    monkeypatch.setitem(COMMANDS, "ghost", ("_no_such_command_module", "Not built."))
    assert main(["ghost"]) == EXIT_INTERNAL
    assert "not available in this build" in capsys.readouterr().err


def test_missing_dependency_exits_2_naming_package_and_install(run_cli, tmp_path: Path) -> None:
    blocker = make_import_blocker(tmp_path / "site", missing=("structlog",))
    result = run_cli("preflight", python_path=blocker)
    assert result.returncode == EXIT_USER
    line = _one_error_line(result.stderr)
    assert "'structlog'" in line and "pip install" in line


def test_console_script_matches_python_dash_m(run_cli) -> None:
    script = Path(sys.executable).parent / "apex-x"
    if not script.exists():
        script_path = shutil.which("apex-x")
        if script_path is None:
            pytest.skip("the apex-x console script is not installed")
        script = Path(script_path)
    by_script = subprocess.run(
        [str(script), "--help"], capture_output=True, text=True, timeout=60, env=subprocess_env(None)
    )
    by_module = run_cli("--help")
    assert by_script.returncode == by_module.returncode == EXIT_OK
    assert by_script.stdout == by_module.stdout
