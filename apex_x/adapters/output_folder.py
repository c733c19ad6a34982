"""Output folders checked before anything is created: a refused run leaves no folder or file behind.

check_output_folder(path) refuses (ConfigError naming the key, the path and the reason) a folder that
is an existing file, lies under a file, has a name over the filesystem's limit, or sits where nothing
can be created (read-only mount, no permission, a pseudo-filesystem such as /proc or /sys). The check
creates one temporary folder in the nearest existing ancestor and removes it at once.

`PosixRunFolder` is the `RunFolder` port over these checks: the train use case asks it to check,
prepare and probe the run folder (the application does no file I/O of its own).
"""

from __future__ import annotations

import errno
import os
import shutil
import tempfile
from pathlib import Path

from apex_x.domain.errors import ConfigError

_PSEUDO = ("proc", "sys", "dev")


def _on_pseudo_fs(folder: Path) -> bool:
    """/proc, /sys and /dev (but /dev/shm, a real tmpfs) hold no user files."""
    parts = folder.parts
    return len(parts) > 1 and parts[1] in _PSEUDO and parts[1:3] != ("dev", "shm")


def _name_max(folder: Path) -> int:
    try:
        return int(os.pathconf(folder, "PC_NAME_MAX"))
    except (OSError, ValueError, AttributeError):
        return 255


def _reason(error: OSError, folder: Path) -> str:
    code = error.errno
    if code == errno.EROFS:
        return f"{folder} is on a read-only filesystem"
    if code in (errno.EACCES, errno.EPERM) and not _on_pseudo_fs(folder):
        return f"no permission to create files in {folder}"
    if code in (errno.ENOENT, errno.EPERM, errno.EACCES, errno.EINVAL) or _on_pseudo_fs(folder):
        return f"{folder} is on a filesystem where files cannot be created (a pseudo-filesystem such as /proc?)"
    if code == errno.ENOSPC:
        return f"no space left on the device of {folder}"
    return f"{error.strerror or error} (errno {code}) in {folder}"


def check_output_folder(path: str | os.PathLike[str], *, key: str, what: str = "output folder") -> None:
    """Refuse a folder that cannot be created or written; nothing is left behind."""
    target = Path(os.path.abspath(os.fspath(path)))

    def refuse(reason: str) -> ConfigError:
        return ConfigError(f"the {what} {target} is not writable: {reason}; choose another folder or fix it",
                           key=key)

    ancestor = target
    missing: list[str] = []
    while not os.path.lexists(ancestor) and ancestor != ancestor.parent:
        missing.append(ancestor.name)
        ancestor = ancestor.parent
    if os.path.exists(ancestor) and not os.path.isdir(ancestor):
        if ancestor == target:
            raise refuse("it is an existing file, not a folder")
        raise refuse(f"{ancestor} is a file, so nothing can be created under it")
    if os.path.islink(ancestor) and not os.path.exists(ancestor):
        raise refuse(f"{ancestor} is a broken symbolic link")
    limit = _name_max(ancestor)
    for name in missing:
        if len(os.fsencode(name)) > limit:
            raise refuse(f"the name {name[:40]}... has {len(os.fsencode(name))} bytes, over the filesystem's limit "
                         f"of {limit}")
    if len(os.fsencode(str(target))) > 4000:
        raise refuse("the path is longer than the system's limit (4096 bytes)")
    if _on_pseudo_fs(ancestor):
        raise refuse(f"{ancestor} is a pseudo-filesystem (/proc, /sys, /dev), not a place for files")
    try:
        probe = tempfile.mkdtemp(prefix=".apex-x-probe-", dir=ancestor)
    except OSError as error:
        raise refuse(_reason(error, ancestor)) from None
    os.rmdir(probe)


def check_output_file(path: str | os.PathLike[str], *, key: str) -> None:
    """A file to write: not an existing folder, and its folder can be created and written."""
    target = Path(os.path.abspath(os.fspath(path)))
    if os.path.isdir(target):
        raise ConfigError(f"the output file {target} is an existing folder; give a file name", key=key)
    check_output_folder(target.parent, key=key, what="folder of the output file")
    limit = _name_max(target.parent if os.path.isdir(target.parent) else Path("/"))
    if len(os.fsencode(target.name)) > limit:
        raise ConfigError(f"the output file name {target.name[:40]}... is over the filesystem's limit of {limit} "
                          "bytes", key=key)


def check_run_folder(output_dir: str | os.PathLike[str]) -> None:
    """train.output_dir and the logs/ and checkpoints/ folders a run creates in it."""
    root = Path(output_dir)
    for folder in (root, root / "logs", root / "checkpoints"):
        check_output_folder(folder, key="train.output_dir", what="output folder" if folder == root else "folder")


class PosixRunFolder:
    """RunFolder port on a POSIX filesystem (os + pathlib)."""

    def contains(self, output_dir: str, path: str) -> bool:
        folder = os.path.normpath(os.path.abspath(os.path.expanduser(output_dir)))
        target = os.path.normpath(os.path.abspath(os.path.expanduser(path)))
        return os.path.commonpath([folder, target]) == folder

    def check_run_folder(self, output_dir: str) -> None:
        check_run_folder(output_dir)

    def check_output_folder(self, path: str | os.PathLike[str], *, key: str, what: str = "output folder") -> None:
        check_output_folder(path, key=key, what=what)

    def check_output_file(self, path: str | os.PathLike[str], *, key: str) -> None:
        check_output_file(path, key=key)

    def prepare(self, output_dir: str) -> None:
        """Create the output folders and prove them writable, before any work is done."""
        check_run_folder(output_dir)  # refused before anything is created
        probe = Path(output_dir) / "checkpoints" / ".write_probe"
        try:
            probe.parent.mkdir(parents=True, exist_ok=True)
            probe.write_bytes(b"ok")
            probe.unlink()
            for stale in probe.parent.glob(".*.tmp"):  # half-written files of a killed run
                stale.unlink()
        except OSError as error:
            raise ConfigError(
                f"the output folder {output_dir} is not writable ({error.strerror or error}); choose another with "
                "--set train.output_dir=PATH or fix its permissions",
                key="train.output_dir",
            ) from None

    def exists(self, path: str) -> bool:
        return os.path.exists(path)

    def holds_checkpoints(self, output_dir: str) -> bool:
        """Whether any checkpoint (*.pt) was written anywhere under the run folder."""
        return any(Path(output_dir).rglob("*.pt"))

    def remove(self, output_dir: str) -> None:
        """Delete a run folder this process created for a run refused before it saved anything."""
        shutil.rmtree(output_dir, ignore_errors=True)
