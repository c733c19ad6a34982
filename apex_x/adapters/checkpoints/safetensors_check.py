"""A .safetensors file's header checked before its tensors are read: sizes, offsets, dtypes, shapes.

Layout: 8-byte little-endian header length N, N bytes of JSON {name: {dtype, shape, data_offsets}}, then
the data. Every fault names the file and the tensor, and ends as a CheckpointError (exit 2).
"""

from __future__ import annotations

import json
import math
import struct
from pathlib import Path
from typing import Any

import torch

from apex_x.adapters.checkpoints.archive_limits import ENV_MAX_TENSOR, SizeLimits, configured_limits, human
from apex_x.domain.errors import CheckpointError

MAX_HEADER_BYTES = 100 << 20  # the safetensors library's own limit
_DTYPE_BYTES = {
    "F64": 8, "F32": 4, "F16": 2, "BF16": 2, "I64": 8, "I32": 4, "I16": 2, "I8": 1, "U8": 1, "BOOL": 1,
    "U16": 2, "U32": 4, "U64": 8, "F8_E4M3": 1, "F8_E5M2": 1, "C64": 8,
}


def check_safetensors(path: Path, limits: SizeLimits | None = None) -> None:
    """Refuse a safetensors file whose header is oversized, unreadable or inconsistent with the file."""
    limits = limits or configured_limits()
    size = path.stat().st_size
    with open(path, "rb") as handle:
        head = handle.read(8)
        if len(head) < 8:
            raise CheckpointError(f"{path}: not a valid safetensors file (shorter than its 8-byte header length)")
        (length,) = struct.unpack("<Q", head)
        if length > MAX_HEADER_BYTES or length > size - 8:
            raise CheckpointError(
                f"{path}: not a valid safetensors file: its header claims {human(length)} "
                f"but the file has {human(size)} (header limit {human(MAX_HEADER_BYTES)})"
            )
        text = handle.read(length)
    try:
        header = json.loads(text)
    except (ValueError, RecursionError) as error:  # JSONDecodeError, UnicodeDecodeError, over-long integers
        raise CheckpointError(f"{path}: not a valid safetensors file: its header is not JSON ({error})") from None
    if not isinstance(header, dict):
        raise CheckpointError(f"{path}: not a valid safetensors file: its header is not a JSON object")
    data_size = size - 8 - length
    spans: list[tuple[int, int, str]] = []
    for name, entry in header.items():
        if name == "__metadata__":
            continue
        spans.append(_check_entry(path, name, entry, data_size, limits))
    spans.sort()
    for (_, end, first), (begin, _, second) in zip(spans, spans[1:], strict=False):
        if begin < end:
            raise CheckpointError(f"{path}: tensors {first!r} and {second!r} overlap in the file")


def _check_entry(path: Path, name: str, entry: Any, data_size: int, limits: SizeLimits) -> tuple[int, int, str]:
    where = f"{path}: tensor {name!r}"
    if not isinstance(entry, dict):
        raise CheckpointError(f"{where}: its header entry is not an object")
    dtype, shape, offsets = entry.get("dtype"), entry.get("shape"), entry.get("data_offsets")
    if dtype not in _DTYPE_BYTES:
        raise CheckpointError(f"{where}: unknown dtype {dtype!r}")
    if not isinstance(shape, list) or not all(isinstance(dim, int) and dim >= 0 for dim in shape) or len(shape) > 16:
        raise CheckpointError(f"{where}: invalid shape {shape!r}")
    if (not isinstance(offsets, list) or len(offsets) != 2 or not all(isinstance(item, int) for item in offsets)
            or not 0 <= offsets[0] <= offsets[1]):
        raise CheckpointError(f"{where}: invalid data_offsets {offsets!r}")
    claimed = math.prod(shape) * _DTYPE_BYTES[dtype]
    if claimed > limits.max_tensor_bytes:
        raise CheckpointError(
            f"{where} claims {human(claimed)} ({claimed} bytes), over the limit {human(limits.max_tensor_bytes)} "
            f"({ENV_MAX_TENSOR})"
        )
    if offsets[1] - offsets[0] != claimed:
        raise CheckpointError(
            f"{where}: shape {shape} of {dtype} needs {claimed} bytes but its data_offsets span "
            f"{offsets[1] - offsets[0]}"
        )
    if offsets[1] > data_size:
        raise CheckpointError(
            f"{where}: its data ends at byte {offsets[1]}, past the end of the file's data ({data_size} bytes): "
            "the file is truncated or damaged"
        )
    return offsets[0], offsets[1], name


def load_safetensors(path: str | Path, limits: SizeLimits | None = None) -> dict[str, torch.Tensor]:
    """check_safetensors, then the tensors (on the CPU); any library error becomes a CheckpointError."""
    file_path = Path(path)
    check_safetensors(file_path, limits)
    try:
        from safetensors.torch import load_file
    except ImportError:  # pragma: no cover - safetensors is a core dependency
        raise CheckpointError(f"{file_path}: reading .safetensors needs the safetensors package") from None
    try:
        return load_file(str(file_path), device="cpu")
    except Exception as error:  # noqa: BLE001 - SafetensorError and friends: a bad user file
        text = str(error).splitlines()[0] if str(error) else type(error).__name__
        raise CheckpointError(f"{file_path}: not a valid safetensors file: {text}") from None
