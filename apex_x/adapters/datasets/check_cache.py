"""The cache of passed dataset checks: a second run of the same data skips the rules and the image headers.

A check that found no error is stored as JSON (its summary, findings and the images it left out) under a key
hashed from everything the verdict depends on: Apex-X's version and CHECK_RULES_VERSION, the `data.*` settings,
the check's options, each annotation file's size, mtime and sha256, and each images folder's listing (every
file's relative name, size and mtime, walked recursively). Any change to one of them is another key, so a
stale verdict is never reused. Where: `$APEX_X_CACHE_DIR`, else `$XDG_CACHE_HOME/apex_x`, else
`~/.cache/apex_x`, in `dataset_checks/`. `data.check_cache: false` turns it off. A cache that cannot be read
or written is ignored (the check then runs as usual).

The same setting keeps each split's AnnotationTable (annotation_table.py: the checked entries as flat arrays)
in `annotation_tables/<key>/` (train splits only), keyed by the sha256 of the annotation bytes it was built
from and the grouping setting: a second start of the same data maps it instead of parsing the JSON. The most
recently used tables are kept up to TABLES_BYTES_KEPT in all.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from pathlib import Path
from typing import Any

import structlog

from apex_x.adapters.atomic_files import write_json_file
from apex_x.adapters.datasets.annotation_table import AnnotationTable
from apex_x.adapters.datasets.json_values import parse_json
from apex_x.domain.version import __version__

CHECK_RULES_VERSION = 2  # bump when a dataset rule changes what it reports
CACHE_ENV = "APEX_X_CACHE_DIR"
_HASH_CHUNK = 1 << 22

log = structlog.get_logger(__name__)


def cache_root() -> Path:
    """Apex-X's cache folder: `$APEX_X_CACHE_DIR`, else `$XDG_CACHE_HOME/apex_x`, else `~/.cache/apex_x`."""
    return Path(os.environ.get(CACHE_ENV) or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache"), "apex_x"
    ))


def cache_folder() -> Path:
    """Where checked verdicts live (see the module docstring)."""
    return cache_root() / "dataset_checks"


_STAMPS: dict[tuple[str, int, int, int, int], dict[str, Any]] = {}  # (path, inode, size, mtime, ctime) -> stamp


def file_stamp(path: Path) -> dict[str, Any]:
    """Size, mtime (ns) and sha256 of a file ({"missing": true} when it is not there); hashed once per process
    for the same path, inode, size, mtime and ctime (any write changes the ctime, which utime cannot set back)."""
    try:
        stat = path.stat()
        memo = (str(path), stat.st_ino, stat.st_size, stat.st_mtime_ns, stat.st_ctime_ns)
        if memo in _STAMPS:
            return dict(_STAMPS[memo])
        digest = hashlib.sha256()
        with open(path, "rb") as handle:
            for block in iter(lambda: handle.read(_HASH_CHUNK), b""):
                digest.update(block)
    except OSError:
        return {"path": str(path), "missing": True}
    _STAMPS[memo] = stamp = {"path": str(path), "size": stat.st_size, "mtime_ns": stat.st_mtime_ns,
                             "sha256": digest.hexdigest()}
    return dict(stamp)


def folder_stamp(path: Path) -> dict[str, Any]:
    """sha256 of a folder's recursive listing: every file's relative name, size and mtime (ns)."""
    digest = hashlib.sha256()
    count = 0
    stack = [path]
    seen: set[tuple[int, int]] = set()  # (device, inode) of folders walked: a symlink loop is walked once
    while stack:
        folder = stack.pop()
        try:
            info = folder.stat()
            if (info.st_dev, info.st_ino) in seen:
                digest.update(f"loop:{os.path.relpath(folder, path)};".encode("utf-8", "surrogateescape"))
                continue
            seen.add((info.st_dev, info.st_ino))
            entries = sorted(os.scandir(folder), key=lambda entry: entry.name)
        except OSError:
            digest.update(f"unreadable:{folder};".encode("utf-8", "surrogateescape"))
            continue
        prefix = os.path.relpath(folder, path)
        prefix = "" if prefix == "." else prefix + os.sep
        lines = []
        for entry in entries:
            try:
                if entry.is_dir():
                    stack.append(Path(entry.path))
                    continue
                stat = entry.stat()
            except OSError:
                continue
            lines.append(f"{prefix}{entry.name}:{stat.st_size}:{stat.st_mtime_ns};")
        count += len(lines)
        digest.update("".join(lines).encode("utf-8", "surrogateescape"))  # names need not be utf-8 on disk
    return {"path": str(path), "files": count, "listing_sha256": digest.hexdigest()}


def check_key(parts: dict[str, Any]) -> str:
    """The cache key of a check: sha256 of its inputs (JSON, sorted keys) with the version and rules version."""
    plain = {"apex_x": __version__, "rules": CHECK_RULES_VERSION, **parts}
    return hashlib.sha256(json.dumps(plain, sort_keys=True, default=str).encode()).hexdigest()


def load_check(key: str) -> dict[str, Any] | None:
    """The stored verdict of `key`, or None (not there, unreadable, or not a verdict)."""
    path = cache_folder() / f"{key}.json"
    try:
        stored = parse_json(path.read_bytes())
    except (OSError, ValueError):
        return None
    if not isinstance(stored, dict) or stored.get("key") != key or not isinstance(stored.get("findings"), list):
        return None
    return stored


def store_check(key: str, verdict: dict[str, Any]) -> None:
    """Keep a passed check's verdict (atomically); a failure to write is logged and otherwise ignored."""
    try:
        cache_folder().mkdir(parents=True, exist_ok=True)
        write_json_file(cache_folder() / f"{key}.json", {"key": key, **verdict})
    except Exception as error:  # noqa: BLE001 - the cache is an optimisation: never fail the check for it
        log.warning("dataset_check_cache_unwritable", folder=str(cache_folder()), reason=str(error)[:200])


TABLES_BYTES_KEPT = 4 << 30  # annotation tables kept on disk: the most recently used, up to this many bytes
_TABLES_USED: set[str] = set()  # keys this process loaded or stored: never evicted by it


def table_folder() -> Path:
    """Where annotation tables live: `<cache root>/annotation_tables/<key>/`."""
    return cache_root() / "annotation_tables"


def load_table(key: str) -> AnnotationTable | None:
    """The stored annotation table of `key` (memory-mapped), or None; a hit marks it recently used."""
    folder = table_folder() / key
    table = AnnotationTable.load(folder)
    if table is not None:
        _TABLES_USED.add(key)
        _touch(folder)
    return table


def store_table(key: str, table: AnnotationTable) -> None:
    """Keep a train split's table (atomically), then drop the least recently used tables beyond
    TABLES_BYTES_KEPT (never one this process uses); a failure to write is logged and otherwise ignored."""
    try:
        table.save(table_folder() / key)
        _TABLES_USED.add(key)
        _touch(table_folder() / key)
        _evict()
    except Exception as error:  # noqa: BLE001 - the cache is an optimisation: never fail the run for it
        log.warning("annotation_table_cache_unwritable", folder=str(table_folder()), reason=str(error)[:200])


def _touch(folder: Path) -> None:
    try:
        os.utime(folder)
    except OSError:
        pass


def _evict() -> None:
    entries = []
    for entry in table_folder().iterdir():
        if entry.is_dir() and not entry.name.startswith("."):
            size = sum(child.stat().st_size for child in entry.iterdir())
            entries.append((entry.stat().st_mtime_ns, entry, size))
    total = 0
    for _, entry, size in sorted(entries, key=lambda item: item[0], reverse=True):  # most recent first
        total += size
        if total > TABLES_BYTES_KEPT and entry.name not in _TABLES_USED:
            shutil.rmtree(entry, ignore_errors=True)
