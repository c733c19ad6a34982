"""Logging: console lines on stderr, JSON lines in the run's log file, levels, reconfiguration."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pytest
import structlog

from apex_x.adapters.logging_structlog import configure_logging
from apex_x.cli import EXIT_OK, main


def _json_lines(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def test_json_lines_in_the_file_and_readable_lines_on_stderr(tmp_path: Path, capsys) -> None:
    log_file = tmp_path / "run" / "logs" / "train.jsonl"
    configure_logging("info", str(log_file))
    log = structlog.get_logger("apex_x.tests.logging")
    log.info("epoch.done", epoch=3, loss=0.25)
    log.debug("hidden.at.info", step=1)
    logging.getLogger("some_library").warning("library warning %s", "text")
    logging.getLogger("some_library").info("library chatter")

    records = _json_lines(log_file)
    events = [record["event"] for record in records]
    assert events == ["epoch.done", "library warning text"]
    first = records[0]
    assert first["epoch"] == 3 and first["loss"] == 0.25
    assert first["level"] == "info" and first["logger"] == "apex_x.tests.logging"
    assert first["timestamp"].endswith("Z") or "+00:00" in first["timestamp"]

    err = capsys.readouterr().err
    assert "epoch.done" in err and "epoch=3" in err and "library warning text" in err
    assert "hidden.at.info" not in err and "{" not in err.splitlines()[0]


def test_debug_level_and_reconfiguration_replace_the_handlers(tmp_path: Path, capsys) -> None:
    first, second = tmp_path / "a.jsonl", tmp_path / "b.jsonl"
    log = structlog.get_logger("apex_x.tests.logging")
    configure_logging("debug", str(first))
    log.debug("one")
    configure_logging("warning", str(second))
    log.info("two")
    log.warning("three")
    assert [r["event"] for r in _json_lines(first)] == ["one"]
    assert [r["event"] for r in _json_lines(second)] == ["three"]
    err = capsys.readouterr().err
    assert err.count("one") == 1 and "two" not in err  # one console handler, not two


def test_exceptions_are_structured(tmp_path: Path) -> None:
    log_file = tmp_path / "x.jsonl"
    configure_logging("info", str(log_file))
    try:
        raise ValueError("bad value")
    except ValueError:
        structlog.get_logger("apex_x.tests").exception("step.failed")
    records = _json_lines(log_file)
    failed = next(r for r in records if r["event"] == "step.failed")
    assert "ValueError" in json.dumps(failed["exception"])


def test_unknown_level_is_rejected() -> None:
    with pytest.raises(ValueError, match="loud"):
        configure_logging("loud")


def test_cli_log_level_flag(tmp_path: Path, capsys) -> None:
    argv = ["preflight", "--profile", "base", "--output-dir", str(tmp_path)]
    assert main(["--log-level", "debug", *argv]) == EXIT_OK
    assert "preflight.done" in capsys.readouterr().err
    assert main([*argv, "--log-level", "warning"]) == EXIT_OK
    assert "preflight.done" not in capsys.readouterr().err
