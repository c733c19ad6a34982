"""structlog set-up, done at the entry point: readable lines on stderr, JSON lines in a run's log file.

`configure_logging(level, json_log_path)` may be called again (e.g. the CLI configures the console first,
then `train` adds `<output_dir>/logs/train.jsonl`): each call replaces the handlers of the previous one.
Library code only does `structlog.get_logger(__name__)`.
"""

from __future__ import annotations

import logging
import sys
from pathlib import Path
from typing import Any

import structlog

LEVELS = ("debug", "info", "warning", "error", "critical")
_OWNED = "_apex_x_handler"  # attribute that marks the handlers this module installed


class _CurrentStderrHandler(logging.StreamHandler):  # type: ignore[type-arg]
    """Writes to whatever sys.stderr is at emit time (pytest capture, notebooks swap it)."""

    def __init__(self) -> None:
        super().__init__(sys.stderr)

    @property  # type: ignore[override]
    def stream(self) -> Any:
        return sys.stderr

    @stream.setter
    def stream(self, value: Any) -> None:
        pass


def _shared_processors() -> list[Any]:
    """Applied to structlog and foreign (stdlib) records alike, before rendering."""
    return [
        structlog.contextvars.merge_contextvars,
        structlog.stdlib.add_logger_name,
        structlog.stdlib.add_log_level,
        structlog.stdlib.ExtraAdder(),
    ]


def _console_formatter(colors: bool) -> logging.Formatter:
    return structlog.stdlib.ProcessorFormatter(
        foreign_pre_chain=_shared_processors(),
        processors=[
            structlog.stdlib.ProcessorFormatter.remove_processors_meta,
            structlog.processors.TimeStamper(fmt="%H:%M:%S", utc=False),
            structlog.dev.ConsoleRenderer(
                colors=colors, exception_formatter=structlog.dev.plain_traceback, pad_event_to=24
            ),
        ],
    )


def _json_formatter() -> logging.Formatter:
    return structlog.stdlib.ProcessorFormatter(
        foreign_pre_chain=_shared_processors(),
        processors=[
            structlog.stdlib.ProcessorFormatter.remove_processors_meta,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            structlog.processors.dict_tracebacks,
            structlog.processors.JSONRenderer(default=str),
        ],
    )


def _numeric_level(level: str) -> int:
    name = str(level).lower()
    if name not in LEVELS:
        raise ValueError(f"unknown log level {level!r}; choose from {', '.join(LEVELS)}")
    return int(getattr(logging, name.upper()))


def reset_logging() -> None:
    """Remove (and close) the handlers a previous configure_logging installed; Apex-X's level goes back to unset."""
    root = logging.getLogger()
    for handler in list(root.handlers):
        if getattr(handler, _OWNED, False):
            root.removeHandler(handler)
            handler.close()
    logging.getLogger("apex_x").setLevel(logging.NOTSET)


def configure_logging(level: str = "info", json_log_path: str | None = None) -> None:
    """Console lines (colored on a terminal) on stderr; JSON lines appended to `json_log_path` when given.

    `level` applies to Apex-X's loggers; other libraries log at warning and above (or `level` if higher).
    """
    numeric = _numeric_level(level)
    structlog.configure(
        processors=[
            structlog.stdlib.filter_by_level,
            *_shared_processors(),
            structlog.processors.StackInfoRenderer(),
            structlog.stdlib.PositionalArgumentsFormatter(),
            structlog.stdlib.ProcessorFormatter.wrap_for_formatter,
        ],
        logger_factory=structlog.stdlib.LoggerFactory(),
        wrapper_class=structlog.stdlib.BoundLogger,
        cache_logger_on_first_use=False,  # re-configured per run (API, notebook, tests): no stale loggers
    )
    reset_logging()
    handlers: list[logging.Handler] = []
    console = _CurrentStderrHandler()
    console.setFormatter(_console_formatter(colors=sys.stderr.isatty()))
    handlers.append(console)
    if json_log_path is not None:
        path = Path(json_log_path)
        path.parent.mkdir(parents=True, exist_ok=True)
        file_handler = logging.FileHandler(path, mode="a", encoding="utf-8")
        file_handler.setFormatter(_json_formatter())
        handlers.append(file_handler)
    root = logging.getLogger()
    for handler in handlers:
        setattr(handler, _OWNED, True)
        root.addHandler(handler)
    root.setLevel(max(numeric, logging.WARNING))
    logging.getLogger("apex_x").setLevel(numeric)
    logging.captureWarnings(True)
