"""Command-line driving adapter: argparse -> command handler -> api -> container -> use case.

Exit codes: 0 success, 2 user error (usage, config, data, checkpoint, missing dependency), 1 internal error,
3 a peer process of a distributed run failed, 130 SIGINT (Ctrl-C), 143 SIGTERM (whenever it arrives; a
training run first saves last.pt).
A user error prints one line on stderr, no traceback; `--debug` adds the traceback.
"""

from __future__ import annotations

import argparse
import importlib
import re
import signal
import sys
import threading
import traceback
from collections.abc import Sequence
from types import ModuleType

EXIT_OK = 0
EXIT_INTERNAL = 1
EXIT_USER = 2
LOG_LEVELS = ("debug", "info", "warning", "error")

# subcommand -> (module under apex_x.commands defining `add_arguments(parser)` and `run(args) -> int`, help).
COMMANDS: dict[str, tuple[str, str]] = {
    "train": ("train", "Train a model from a YAML config (the user guide's main entry point)."),
    "preflight": ("preflight", "Check the dependencies, devices and output folder of a profile."),
    "dataset-preflight": ("dataset_preflight", "Validate the dataset contract of a config without training."),
    "eval": ("evaluate", "COCO bbox/segm metrics of a checkpoint on the config's val split."),
    "predict": ("predict", "Predict on images with a checkpoint: COCO JSON + PNG overlays."),
    "make-shapes": ("make_shapes", "Write the built-in shapes dataset (COCO format) to a folder."),
    "convert": ("convert", "Convert a dataset between the COCO and YOLO (Ultralytics segmentation) layouts."),
    "export": ("export", "Export a checkpoint's model to ONNX or TorchScript (network + dense decoding)."),
    "benchmark": ("benchmark", "Inference latency and throughput of a checkpoint (eager, TorchScript, ONNX Runtime)."),
}


class _UsageError(Exception):
    """argparse usage problem, turned into exit code 2 with one clear line."""


class _MissingCommand(Exception):
    """A subcommand whose module is not part of this build."""


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # type: ignore[override]
        raise _UsageError(f"{self.prog}: {message} (see {self.prog} --help)")


def _add_common_flags(parser: argparse.ArgumentParser, *, suppress_defaults: bool) -> None:
    default = argparse.SUPPRESS if suppress_defaults else None
    parser.add_argument(
        "--debug", action="store_true", default=argparse.SUPPRESS if suppress_defaults else False,
        help="Show full tracebacks on errors.",
    )
    parser.add_argument(
        "--log-level", choices=LOG_LEVELS, default=default,
        help="Console and log-file level (default: runtime.log_level of the config, else info).",
    )


def _command_module(command: str) -> ModuleType:
    module_name = f"apex_x.commands.{COMMANDS[command][0]}"
    try:
        return importlib.import_module(module_name)
    except ModuleNotFoundError as error:
        if error.name == module_name:
            raise _MissingCommand(
                f"command {command!r} is not available in this build ({module_name} is missing)"
            ) from None
        raise


def _selected_command(arguments: Sequence[str]) -> str | None:
    """The subcommand named on the command line (the first argument that is one), if any."""
    return next((argument for argument in arguments if argument in COMMANDS), None)


def build_parser(command: str | None = None) -> argparse.ArgumentParser:
    """The parser; only `command`'s module is imported and gets its flags (a broken module breaks only itself)."""
    parser = _Parser(
        prog="apex-x",
        description="Apex-X: train and use detection + instance-segmentation models on COCO-format data.",
    )
    from apex_x import __version__

    parser.add_argument("--version", action="version", version=f"apex-x {__version__}")
    _add_common_flags(parser, suppress_defaults=False)
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    for name, (_, help_text) in COMMANDS.items():
        sub = subparsers.add_parser(name, help=help_text, description=help_text)
        sub.set_defaults(_command=name)
        if name == command:
            _add_common_flags(sub, suppress_defaults=True)
            _command_module(name).add_arguments(sub)
    return parser


def _missing_dependency_message(error: ModuleNotFoundError) -> str:
    from apex_x.installation import install_command

    try:
        from apex_x.api import requirement_for_module

        requirement = requirement_for_module(error.name or "")
    except ImportError:  # the missing package is one the container itself needs: name it as it is
        requirement = None
    install = install_command(requirement.extra if requirement else None)
    package = requirement.distribution if requirement else (error.name or "?")
    return (
        f"required package {package!r} is not installed ({error}); install it with: {install} "
        "- then check everything with: apex-x preflight --profile worldclass"
    )


_OUT_OF_MEMORY = ("can't allocate memory", "failed to map segment", "Cannot allocate memory", "out of memory")
_LONG_WORD = re.compile(r"\S{400,}")
_OUT_OF_RESOURCES = ("Resource temporarily unavailable", "can't start new thread", "Too many open files",
                     "Cannot allocate thread", "fork failed")


def _out_of_resources(error: BaseException, text: str) -> bool:
    """Thread, process or file-handle exhaustion (EAGAIN, EMFILE, ENFILE): the machine's state, not a bug."""
    import errno

    if isinstance(error, OSError) and error.errno in (errno.EAGAIN, errno.EMFILE, errno.ENFILE):
        return True
    return any(sign in text for sign in _OUT_OF_RESOURCES)


def shorten_long_words(message: str) -> str:
    """An error line stays readable: any run of 400+ characters without a space (a pasted value, key or
    path echoed by a message) keeps its first 120 and last 40 characters around a count of what was cut."""
    return _LONG_WORD.sub(
        lambda match: f"{match[0][:120]}...[{len(match[0]) - 160} characters]...{match[0][-40:]}", message
    )


def _check_argument_text(arguments: Sequence[str]) -> None:
    """Every argument is printable Unicode: a path whose bytes are not UTF-8 (read by Python as lone
    surrogates) or a control character would fail later, when it is written to a report or printed."""
    from apex_x.domain.text_rules import printable, text_problem

    for position, argument in enumerate(arguments, start=1):
        problem = text_problem(argument)
        if problem is not None:
            raise _UsageError(
                f"apex-x: argument {position} '{printable(argument)}' holds {problem}: paths and values on the "
                "command line must be printable UTF-8 text (rename the file or folder)"
            )


def _report(message: str, debug: bool) -> None:
    if debug:
        traceback.print_exc()
    print(shorten_long_words(message), file=sys.stderr)


_terminated_by: list[int] = []  # the stop signal that arrived, if any (read by main's last line of defence)


def _terminate(signum: int, frame: object) -> None:
    """SIGTERM outside a training loop (start-up, eval, predict): end at once with 128 + signal."""
    from apex_x.domain.errors import TerminationRequested

    _terminated_by.append(signum)
    raise TerminationRequested(signum, signal.Signals(signum).name)


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of `apex-x` and `python -m apex_x.cli`; returns the exit code."""
    from apex_x.domain.errors import ApexError, TerminationRequested

    _terminated_by.clear()
    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, _terminate)  # a training run replaces it while it can save last.pt
    arguments = list(sys.argv[1:] if argv is None else argv)
    debug = "--debug" in arguments
    for stream in (sys.stdout, sys.stderr):  # a name echoed from a user's file never fails to print
        if hasattr(stream, "reconfigure"):
            stream.reconfigure(errors="backslashreplace")
    try:
        _check_argument_text(arguments)
        parser = build_parser(_selected_command(arguments))
        try:
            args = parser.parse_args(arguments)
        except SystemExit as exit_request:  # --help and --version
            return int(exit_request.code or 0)
        if not getattr(args, "command", None):
            raise _UsageError(f"apex-x: choose a command: {', '.join(COMMANDS)} (see apex-x --help)")
        from apex_x.container import create_container

        create_container().configure_logging()(args.log_level or "info", None)
        return int(_command_module(args.command).run(args) or 0)
    except _UsageError as error:
        _report(f"error: {error}", debug)
        return EXIT_USER
    except ApexError as error:
        _report(f"error: {error}", debug)
        return int(error.exit_code)
    except ModuleNotFoundError as error:
        if error.name and not error.name.startswith("apex_x"):
            _report(f"error: {_missing_dependency_message(error)}", debug)
            return EXIT_USER
        _report(f"internal error: {type(error).__name__}: {error} (rerun with --debug for the traceback)", debug)
        return EXIT_INTERNAL
    except _MissingCommand as error:
        _report(f"error: {error}", debug)
        return EXIT_INTERNAL
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except TerminationRequested as stop:
        print(f"error: {stop} before training started or outside a training loop; nothing to save "
              f"(exit {stop.exit_code})", file=sys.stderr)
        return stop.exit_code
    except Exception as error:  # noqa: BLE001 - the last line of defence of a CLI
        if _terminated_by:  # raised at an arbitrary point, the stop can surface as a library's own error
            name = signal.Signals(_terminated_by[0]).name
            _report(f"error: stopped by {name} before training started or outside a training loop; nothing to "
                    f"save (exit {128 + _terminated_by[0]}; on the way out: {type(error).__name__})", debug)
            return 128 + _terminated_by[0]
        text = str(error).splitlines()[0] if str(error) else ""
        if _out_of_resources(error, text):
            _report(f"error: the machine refused a thread, process or file ({type(error).__name__}: {text}); it is "
                    "out of resources (heavy load, or a limit such as ulimit -u / -n): retry when it is quieter, or "
                    "use fewer data.num_workers and runtime.num_threads (a training run keeps its last saved "
                    "checkpoint)", debug)
            return EXIT_USER
        if "DataLoader worker" in text and ("exited unexpectedly" in text or "killed by signal" in text):
            _report(f"error: a data-loader worker process died ({text}): it was killed from outside, most often by "
                    "the system's out-of-memory killer; use fewer data.num_workers (0 loads in the training "
                    "process) or free memory (a training run keeps its last saved checkpoint)", debug)
            return EXIT_USER
        if isinstance(error, MemoryError) or any(sign in text for sign in _OUT_OF_MEMORY):
            _report(f"error: out of memory ({type(error).__name__}: {text}); lower train.batch_size or "
                    "model.input_height/input_width, use fewer data.num_workers, or free memory (a training run "
                    "keeps its last saved checkpoint)", debug)
            return EXIT_USER
        _report(
            f"internal error: {type(error).__name__}: {text} - this is a bug in Apex-X; "
            "rerun with --debug for the traceback and report it",
            debug,
        )
        return EXIT_INTERNAL


if __name__ == "__main__":
    sys.exit(main())
