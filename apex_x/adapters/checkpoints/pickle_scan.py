"""What a pickle stream holds, read from its opcodes (pickletools.genops): nothing is run or allocated.

Used for files that are not torch.save zip archives: the legacy torch format (a few pickles in a row,
then the raw storages) and plain pickles of any protocol (0 to 5). Tells apart a file that holds
pickled Python objects (globals outside torch's weights-only allow-list, e.g. `posix.system`) from
one that is merely corrupt, and reads the storage sizes a legacy file declares.
"""

from __future__ import annotations

import pickletools
from pathlib import Path
from typing import BinaryIO

MAX_OPCODES = 2_000_000  # a bound on the work of one scan (a crafted pickle may be long)
LEGACY_PICKLES = 5  # magic number, protocol version, sys info, the object, the storage keys
_GLOBAL_OPS = {"GLOBAL", "INST"}  # argument "module name"
_STRING_OPS = {"BINUNICODE", "SHORT_BINUNICODE", "UNICODE", "BINUNICODE8", "STRING", "BINSTRING",
               "SHORT_BINSTRING"}


def _allowed_globals() -> set[str]:
    """torch.load(weights_only=True)'s allow-list as "module.name" strings (empty if torch hides it)."""
    try:
        from torch import _weights_only_unpickler as unpickler

        return {str(name) for name in unpickler._get_allowed_globals()}
    except Exception:  # noqa: BLE001 - a private helper of torch: without it, every global is reported
        return set()


def read_pickles(stream: BinaryIO, count: int = LEGACY_PICKLES) -> list[tuple[int, int]]:
    """(start, end) byte offsets of up to `count` pickles in a row from the stream's position; stops at the
    first that does not parse (garbage, truncation) or when the opcode bound is reached. The stream is
    read only as far as the pickles go (a legacy file's raw storages after them are not read)."""
    spans: list[tuple[int, int]] = []
    operations = 0
    for _ in range(count):
        start = stream.tell()
        try:
            for _op in pickletools.genops(stream):
                operations += 1
                if operations > MAX_OPCODES:
                    return spans
        except Exception:  # noqa: BLE001 - not (or no longer) a pickle
            break
        spans.append((start, stream.tell()))
    return spans


def pickle_spans(path: Path, max_bytes: int) -> list[bytes]:
    """The pickles at the start of a file (each at most `max_bytes`; a longer one ends the list)."""
    with open(path, "rb") as handle:
        spans = read_pickles(handle)
        found: list[bytes] = []
        for start, end in spans:
            if end - start > max_bytes:
                break
            handle.seek(start)
            found.append(handle.read(end - start))
    return found


def pickled_globals(pickles: list[bytes]) -> list[str]:
    """Globals ("module.name") the pickles refer to that torch's weights-only loader does not allow: what
    would run code under a plain pickle.load. [] when there are none."""
    allowed = _allowed_globals()
    names: list[str] = []
    for data in pickles:
        strings: list[str] = []
        try:
            for opcode, argument, _ in pickletools.genops(data):
                if opcode.name in _GLOBAL_OPS and isinstance(argument, str):
                    names.append(argument.replace(" ", ".", 1))
                elif opcode.name == "STACK_GLOBAL" and len(strings) >= 2:
                    names.append(f"{strings[-2]}.{strings[-1]}")
                elif opcode.name in _STRING_OPS and isinstance(argument, (str, bytes)):
                    strings.append(argument if isinstance(argument, str) else argument.decode("latin-1"))
        except Exception:  # noqa: BLE001 - read_pickles parsed it; be safe anyway
            continue
    return sorted({name for name in names if name not in allowed})


def head(path: Path, limit: int) -> bytes:
    """The first `limit` bytes of a file."""
    with open(path, "rb") as handle:
        return handle.read(limit)
