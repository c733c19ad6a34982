"""Size limits checked on a checkpoint file's declared sizes before anything is loaded (no bombs).

A torch.save file is a zip archive: the central directory declares each record's uncompressed size, and
the pickle (`data.pkl`) declares each tensor storage's element count. Both are read here without
inflating a record or running the pickle (opcodes are only scanned), and compared with:

- APEX_X_MAX_TENSOR_BYTES (default 1 GiB): the largest single tensor. The largest tensor of the
  largest profile (worldclass on dinov2-giant) is about 50 MB, so the default leaves a 20x margin.
- APEX_X_MAX_CHECKPOINT_BYTES (default 24 GiB): all tensors together. A worldclass checkpoint on
  dinov2-giant (1.1 B parameters, fp32) holds weights, EMA weights and two AdamW moments: ~18 GB.
- A compressed record may expand at most MAX_EXPANSION times (torch.save never compresses; real
  weights deflate by < 2x, a bomb of zeros by ~1000x).
- What the model expects, where the model is known before loading (resume, load_model_weights,
  backbone weights): no tensor larger than 4x the model's largest (at least 64 MiB), no more than
  EXPECTED_FACTOR x the model's bytes in all (weights, EMA, two optimizer moments) plus 256 MiB.
"""

from __future__ import annotations

import os
import pickletools
import zipfile
from dataclasses import dataclass
from pathlib import Path

from apex_x.domain.errors import CheckpointError

ENV_MAX_TENSOR = "APEX_X_MAX_TENSOR_BYTES"
ENV_MAX_TOTAL = "APEX_X_MAX_CHECKPOINT_BYTES"
DEFAULT_MAX_TENSOR_BYTES = 1 << 30
DEFAULT_MAX_TOTAL_BYTES = 24 << 30
MAX_EXPANSION = 20
MAX_PICKLE_BYTES = 256 << 20
MAX_RECORDS = 1_000_000
EXPECTED_FACTOR = 5
EXPECTED_SLACK_BYTES = 256 << 20
EXPECTED_TENSOR_FLOOR = 64 << 20

_ITEM_SIZES = {
    "DoubleStorage": 8, "FloatStorage": 4, "HalfStorage": 2, "BFloat16Storage": 2, "LongStorage": 8,
    "IntStorage": 4, "ShortStorage": 2, "CharStorage": 1, "ByteStorage": 1, "BoolStorage": 1,
    "ComplexDoubleStorage": 16, "ComplexFloatStorage": 8, "UntypedStorage": 1,
}
_NOT_NAMES = {"storage", "cpu", "cuda", "meta"}


@dataclass(frozen=True)
class SizeLimits:
    """Byte limits of one load: the largest tensor and all tensors together."""

    max_tensor_bytes: int
    max_total_bytes: int
    origin: str = "default"  # "default", "environment" or "model" (for messages)


def human(size: int) -> str:
    """Bytes in binary units, e.g. 2.0 GiB."""
    value = float(size)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if value < 1024 or unit == "TiB":
            return f"{value:.1f} {unit}" if unit != "B" else f"{int(value)} B"
        value /= 1024
    return f"{size} B"  # pragma: no cover


def _env_bytes(name: str, default: int) -> tuple[int, bool]:
    text = os.environ.get(name)
    if text is None or not text.strip():
        return default, False
    try:
        value = int(float(text))
    except ValueError:
        raise CheckpointError(f"environment variable {name}={text!r} must be a number of bytes") from None
    if value < 1:
        raise CheckpointError(f"environment variable {name}={text!r} must be a positive number of bytes")
    return value, True


def configured_limits() -> SizeLimits:
    """The limits of APEX_X_MAX_TENSOR_BYTES / APEX_X_MAX_CHECKPOINT_BYTES (or their defaults)."""
    tensor, tensor_set = _env_bytes(ENV_MAX_TENSOR, DEFAULT_MAX_TENSOR_BYTES)
    total, total_set = _env_bytes(ENV_MAX_TOTAL, DEFAULT_MAX_TOTAL_BYTES)
    return SizeLimits(tensor, total, "environment" if tensor_set or total_set else "default")


def limits_for_model(largest_tensor_bytes: int, model_bytes: int) -> SizeLimits:
    """Limits from a model known before loading, never above the configured ones."""
    configured = configured_limits()
    return SizeLimits(
        min(configured.max_tensor_bytes, max(4 * largest_tensor_bytes, EXPECTED_TENSOR_FLOOR)),
        min(configured.max_total_bytes, EXPECTED_FACTOR * model_bytes + EXPECTED_SLACK_BYTES),
        "model",
    )


def _storage_names(pickle_bytes: bytes) -> dict[str, tuple[str, int]]:
    """storage key -> (name of the entry holding it, declared bytes), read from pickle opcodes (nothing runs)."""
    found: dict[str, tuple[str, int]] = {}
    memo: dict[int, str] = {}
    last_string: str | None = None
    last_name = "?"
    pending: list[str | int] | None = None  # the fields of a ('storage', type, key, location, numel) tuple
    next_memo = 0
    try:
        for opcode, argument, _ in pickletools.genops(pickle_bytes):
            name = opcode.name
            value: object = argument
            if name in ("BINGET", "LONG_BINGET", "GET"):
                value = memo.get(int(argument))  # type: ignore[arg-type]
                name = "BINUNICODE" if isinstance(value, str) else name
            if name in ("BINPUT", "LONG_BINPUT", "PUT", "MEMOIZE"):
                index = next_memo if name == "MEMOIZE" else int(argument)  # type: ignore[arg-type]
                next_memo = max(next_memo, index + 1)
                if last_string is not None:
                    memo[index] = last_string
                continue
            last_string = None
            if name in ("BINUNICODE", "SHORT_BINUNICODE", "UNICODE", "BINUNICODE8") and isinstance(value, str):
                last_string = value
                if value == "storage" and pending is None:
                    pending = []
                elif pending is not None:
                    pending.append(value)
                elif value not in _NOT_NAMES:
                    last_name = value
            elif name in ("GLOBAL",) and pending is not None and isinstance(value, str):
                pending.append(value.rsplit(" ", 1)[-1])
            elif name in ("BININT", "BININT1", "BININT2", "LONG1", "INT", "LONG") and pending is not None:
                if len(pending) >= 3 and isinstance(value, int):
                    storage_type, key = str(pending[0]), str(pending[1])
                    found[key] = (last_name, int(value) * _ITEM_SIZES.get(storage_type, 1))
                    pending = None
            elif name in ("TUPLE", "STOP"):
                pending = None
    except Exception:  # noqa: BLE001 - a malformed pickle is reported by the loader itself
        return found
    return found


def check_archive(path: Path, limits: SizeLimits | None = None) -> None:
    """Refuse a torch.save zip whose declared sizes pass the limits; nothing is inflated or unpickled."""
    limits = limits or configured_limits()
    try:
        archive = zipfile.ZipFile(path)
    except (zipfile.BadZipFile, OSError, ValueError):
        return  # not a readable zip: the loader says why
    with archive:
        records = archive.infolist()
        if len(records) > MAX_RECORDS:
            raise CheckpointError(f"{path}: the archive declares {len(records)} records (limit {MAX_RECORDS})")
        pickle_record = next((info for info in records if info.filename.endswith("data.pkl")), None)
        names: dict[str, tuple[str, int]] = {}
        if pickle_record is None:
            shown = ", ".join(info.filename for info in records[:3]) or "no files"
            raise CheckpointError(
                f"{path} is a zip archive but not a torch checkpoint: it has no data.pkl record (it holds "
                f"{shown}{', ...' if len(records) > 3 else ''}); give a file written by torch.save"
            )
        if pickle_record is not None:
            if pickle_record.file_size > MAX_PICKLE_BYTES:
                raise CheckpointError(
                    f"{path}: its pickled plain values claim {human(pickle_record.file_size)} "
                    f"(limit {human(MAX_PICKLE_BYTES)}); refusing to load it"
                )
            _check_expansion(path, pickle_record, "data.pkl")
            names = _storage_names(archive.read(pickle_record))
        total = 0
        inflated = compressed = 0  # deflated records together: many small ones must not add up to a bomb
        for info in records:
            parts = info.filename.split("/")
            if len(parts) < 2 or parts[-2] != "data":
                continue
            key = parts[-1]
            tensor, declared = names.get(key, (f"storage {key}", 0))
            claimed = max(info.file_size, declared)
            total += claimed
            if claimed > limits.max_tensor_bytes:
                raise CheckpointError(_too_big(path, f"tensor {tensor!r}", claimed, limits.max_tensor_bytes, limits,
                                               ENV_MAX_TENSOR))
            if total > limits.max_total_bytes:
                raise CheckpointError(_too_big(path, f"its tensors (up to {tensor!r})", total, limits.max_total_bytes,
                                               limits, ENV_MAX_TOTAL))
            _check_expansion(path, info, f"tensor {tensor!r}")
            if info.compress_type != zipfile.ZIP_STORED:
                inflated += info.file_size
                compressed += info.compress_size
                if inflated > (1 << 26) and inflated > MAX_EXPANSION * max(compressed, 1):
                    raise CheckpointError(
                        f"{path}: its compressed tensors (up to {tensor!r}) claim {human(inflated)} in "
                        f"{human(compressed)} (over {MAX_EXPANSION}x): a compression bomb, not a checkpoint "
                        "torch.save wrote; refusing to load it"
                    )


def check_legacy_storages(path: Path, object_pickle: bytes, limits: SizeLimits | None = None) -> None:
    """A legacy (non-zip) torch file: the storage sizes its object pickle declares, against the limits and
    against the file itself (a legacy file holds every storage's bytes after its pickles)."""
    limits = limits or configured_limits()
    size = path.stat().st_size
    total = 0
    for key, (tensor, declared) in _storage_names(object_pickle).items():
        total += declared
        what = f"tensor {tensor!r} (storage {key})"
        if declared > limits.max_tensor_bytes:
            raise CheckpointError(_too_big(path, what, declared, limits.max_tensor_bytes, limits, ENV_MAX_TENSOR))
        if total > size:
            raise CheckpointError(
                f"{path}: {what} claims {human(declared)} ({declared} bytes) but the whole file has {human(size)}: "
                "a legacy torch file holds its tensors' bytes, so it is corrupt or crafted; refusing to load it"
            )


def check_file_size(path: Path, limits: SizeLimits | None = None) -> None:
    """A file that is not a zip (legacy pickle, safetensors) holds its tensors uncompressed: its size bounds them."""
    limits = limits or configured_limits()
    size = path.stat().st_size
    if size > limits.max_total_bytes:
        raise CheckpointError(_too_big(path, "the file", size, limits.max_total_bytes, limits, ENV_MAX_TOTAL))


def _check_expansion(path: Path, info: zipfile.ZipInfo, what: str) -> None:
    if info.compress_type == zipfile.ZIP_STORED or info.file_size <= (1 << 20):
        return
    if info.file_size > MAX_EXPANSION * max(info.compress_size, 1):
        raise CheckpointError(
            f"{path}: {what} claims {human(info.file_size)} compressed into {human(info.compress_size)} "
            f"(over {MAX_EXPANSION}x): a compression bomb, not a checkpoint torch.save wrote; refusing to load it"
        )


def _too_big(path: Path, what: str, claimed: int, limit: int, limits: SizeLimits, env: str) -> str:
    if limits.origin == "model":
        why = "what the model this checkpoint is loaded into can hold"
        fix = ""
    else:
        why = f"the limit {env}"
        fix = f"; if the file is trusted and this much memory is available, raise {env}"
    return f"{path}: {what} claims {human(claimed)} ({claimed} bytes), over {human(limit)}, {why}{fix}"
