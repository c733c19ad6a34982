"""The one atomic file write of Apex-X: checkpoints, weights, reports, plots, JSON, overlays, annotations.

A reader never sees half a file and a crash never leaves a broken one: the bytes go to a temporary
file in the target's folder (so the rename stays on one filesystem), are flushed and fsynced, then
`os.replace` swaps it in and the folder entry is fsynced (the recipe of nanoGPT's and timm's
checkpoint savers, and of SQLite's journal). A failure removes the temporary file and leaves any
earlier file at the path intact.
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import IO, Any

from apex_x.domain.errors import CheckpointError, UserError

Writer = Callable[[IO[bytes]], object]

RUN_FOLDER_HINT = "Check that the output folder (train.output_dir) is writable and has free space"


def fsync_directory(directory: Path) -> None:
    """Make a rename durable: fsync the folder entry (no-op where folders cannot be opened)."""
    try:
        descriptor = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(descriptor)
    except OSError:
        pass
    finally:
        os.close(descriptor)


def _file_mode() -> int:
    """0666 minus the process umask: the mode open() would give a new file."""
    current = os.umask(0)
    os.umask(current)
    return 0o666 & ~current


def os_error_in(error: BaseException) -> OSError | None:
    """The OSError behind an exception (itself, its cause or its context), if any."""
    seen: set[int] = set()
    current: BaseException | None = error
    while current is not None and id(current) not in seen:
        if isinstance(current, OSError):
            return current
        seen.add(id(current))
        current = current.__cause__ or current.__context__
    return None


def atomic_write(
    path: str | os.PathLike[str],
    write: Writer,
    *,
    what: str = "file",
    error_type: type[UserError] = UserError,
    hint: str = "",
) -> str:
    """Write via `write(binary_file)` into a temp file beside `path`, fsync, os.replace, fsync the folder.

    Parent folders are created. Returns the path written (as a string).

    Raises:
        error_type (a UserError): "cannot write {what} {path}: {reason}; earlier files are left intact"
            plus `hint`, for any failure (an OSError anywhere in the chain gives its strerror and errno).
    """
    target = Path(path)
    temp_name: str | None = None
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        descriptor, temp_name = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
        if hasattr(os, "fchmod"):  # mkstemp makes 0600; a written file gets the usual umask mode (POSIX)
            os.fchmod(descriptor, _file_mode())
        with os.fdopen(descriptor, "wb") as handle:
            write(handle)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temp_name, target)
        temp_name = None
        fsync_directory(target.parent)
    except Exception as error:  # noqa: BLE001 - torch.save and PIL wrap OS errors in their own types
        os_error = os_error_in(error)
        reason = (
            f"{os_error.strerror or os_error} (errno {os_error.errno})"
            if os_error is not None
            else f"{type(error).__name__}: {str(error).splitlines()[0] if str(error) else ''}"
        )
        raise error_type(
            f"cannot write {what} {target}: {reason}; earlier files are left intact" + (f". {hint}" if hint else "")
        ) from error
    finally:
        if temp_name is not None:
            try:
                os.unlink(temp_name)
            except OSError:
                pass
    return str(target)


def atomic_write_bytes(path: str | os.PathLike[str], data: bytes, **options: object) -> str:
    """`atomic_write` of a bytes value (same options)."""
    return atomic_write(path, lambda handle: handle.write(data), **options)  # type: ignore[arg-type]


def atomic_write_text(path: str | os.PathLike[str], text: str, **options: object) -> str:
    """`atomic_write` of a text value, UTF-8 encoded (same options)."""
    return atomic_write_bytes(path, text.encode("utf-8"), **options)


def write_run_file(path: str | os.PathLike[str], write: Writer, *, what: str = "file") -> str:
    """`atomic_write` of a file of a training run (checkpoint, weights, report, plot).

    Raises:
        CheckpointError: naming the file and reason, with the hint to check `train.output_dir`.
    """
    return atomic_write(path, write, what=what, error_type=CheckpointError, hint=RUN_FOLDER_HINT)


def atomic_link(source: str | os.PathLike[str], target: str | os.PathLike[str]) -> bool:
    """Make `target` a hard link to `source` (same bytes, no extra disk), swapped in atomically.

    Returns False (and leaves `target` as it was) where links are impossible (another filesystem, no
    support): the caller then copies through `atomic_write`.
    """
    target_path = Path(target)
    temp = target_path.parent / f".{target_path.name}.{os.getpid()}.link.tmp"
    try:
        temp.unlink(missing_ok=True)
        os.link(source, temp)
        os.replace(temp, target_path)
    except OSError:
        temp.unlink(missing_ok=True)
        return False
    fsync_directory(target_path.parent)
    return True


def write_json_file(path: str | os.PathLike[str], data: Any) -> str:
    """Pretty JSON (indent 2, values JSON cannot hold as their str), written atomically; returns the path.

    Raises:
        UserError: naming the path and the reason when it cannot be written.
    """
    return atomic_write_text(path, json.dumps(data, indent=2, default=str) + "\n", what="JSON file")
