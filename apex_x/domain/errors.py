"""Error types: user errors (exit 2) carry a message that names the file, key or id and the rule broken."""

from __future__ import annotations


class ApexError(Exception):
    """Base of every error Apex-X raises on purpose."""

    exit_code = 1


class UserError(ApexError):
    """A problem with what the user gave us (config, flag, dataset, checkpoint): exit code 2."""

    exit_code = 2


class ConfigError(UserError):
    """Invalid configuration: names the source (file or flag) and the dotted key."""

    def __init__(self, message: str, *, source: str | None = None, key: str | None = None) -> None:
        self.source = source
        self.key = key
        prefix = ""
        if source and key:
            prefix = f"{source}: {key}: "
        elif source:
            prefix = f"{source}: "
        elif key:
            prefix = f"{key}: "
        super().__init__(prefix + message)


class DatasetError(UserError):
    """Invalid or missing dataset: names the key or path and how to fix it."""


class CheckpointError(UserError):
    """A checkpoint that cannot be loaded safely or does not fit the model."""


class DependencyError(UserError):
    """A missing optional dependency: names the package and the install command."""


class KernelBackendError(UserError):
    """A loss-kernel backend was forced (APEX_X_KERNELS or runtime.kernels) that cannot run here."""


class TrainingStopped(ApexError):
    """The run was stopped on purpose (e.g. too many consecutive non-finite steps); checkpoints are intact."""

    exit_code = 1


class TerminationRequested(BaseException):
    """A stop signal (SIGTERM) that arrived outside a training loop: the process ends with 128 + signal.

    A BaseException, like KeyboardInterrupt, so no `except Exception` on the way swallows it.
    """

    def __init__(self, signal_number: int, signal_name: str) -> None:
        super().__init__(f"stopped by {signal_name}")
        self.signal_number = signal_number
        self.signal_name = signal_name

    @property
    def exit_code(self) -> int:
        return 128 + self.signal_number
