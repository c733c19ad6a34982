"""Hostile inputs built in the tests (small on disk): torch zip bombs, broken safetensors, YAML bombs."""

from __future__ import annotations

import collections
import json
import pickle
import struct
import zlib
from pathlib import Path
from typing import Any

import torch

_CHUNK = 1 << 24


class _StorageRef:
    """Pickled as torch.save's persistent id of storage `key` holding `numel` float32 elements."""

    def __init__(self, key: str, numel: int) -> None:
        self.key, self.numel = key, numel


class _TensorStub:
    def __init__(self, key: str, numel: int) -> None:
        self.ref = _StorageRef(key, numel)

    def __reduce__(self) -> tuple[Any, ...]:
        return (torch._utils._rebuild_tensor_v2,
                (self.ref, 0, (self.ref.numel,), (1,), False, collections.OrderedDict()))


class _Pickler(pickle.Pickler):
    def persistent_id(self, obj: Any) -> Any:
        if isinstance(obj, _StorageRef):
            return ("storage", torch.FloatStorage, obj.key, "cpu", obj.numel)
        return None


def _deflated_zeros(size: int) -> tuple[bytes, int]:
    """A raw deflate stream of `size` zero bytes (built from one repeated full-flush block) and its CRC32."""
    compressor = zlib.compressobj(9, zlib.DEFLATED, -15)
    block = compressor.compress(bytes(_CHUNK)) + compressor.flush(zlib.Z_FULL_FLUSH)
    count, rest = divmod(size, _CHUNK)
    tail = compressor.compress(bytes(rest)) + compressor.flush() if rest else compressor.flush()
    crc = 0
    zeros = bytes(_CHUNK)
    for _ in range(count):
        crc = zlib.crc32(zeros, crc)
    crc = zlib.crc32(bytes(rest), crc)
    return block * count + tail, crc


def _zip(path: Path, records: list[tuple[str, bytes, int, int, bool]]) -> None:
    """A zip with records (name, stored bytes, uncompressed size, crc, deflated) written by hand."""
    body = bytearray()
    central = bytearray()
    for name, data, size, crc, deflated in records:
        method = 8 if deflated else 0
        offset = len(body)
        encoded = name.encode()
        body += struct.pack("<IHHHHHIIIHH", 0x04034B50, 20, 0, method, 0, 0, crc, len(data), size, len(encoded), 0)
        body += encoded + data
        central += struct.pack("<IHHHHHHIIIHHHHHII", 0x02014B50, 20, 20, 0, method, 0, 0, crc, len(data), size,
                               len(encoded), 0, 0, 0, 0, 0, offset) + encoded
    end = struct.pack("<IHHHHIIH", 0x06054B50, 0, 0, len(records), len(records), len(central), len(body), 0)
    path.write_bytes(bytes(body) + bytes(central) + end)


def write_torch_bomb(path: Path, name: str = "backbone.weight", numel: int = 1 << 29,
                     wrap: dict[str, Any] | None = None) -> Path:
    """A real torch.save-layout archive whose tensor `name` is `numel` float32 zeros, deflated (2 GiB -> ~2 MB)."""
    data, crc = _deflated_zeros(numel * 4)
    payload: Any = {name: _TensorStub("0", numel)}
    if wrap is not None:
        payload = {**wrap, "model": payload}
    buffer = __import__("io").BytesIO()
    _Pickler(buffer, protocol=2).dump(payload)
    small = [("archive/data.pkl", buffer.getvalue()), ("archive/byteorder", b"little"),
             ("archive/version", b"3\n"), ("archive/.format_version", b"1"), ("archive/.storage_alignment", b"64")]
    records = [(entry, blob, len(blob), zlib.crc32(blob), False) for entry, blob in small]
    records.append(("archive/data/0", data, numel * 4, crc, True))
    _zip(path, records)
    return path


def write_safetensors(path: Path, header: dict[str, Any] | None = None, data: bytes = b"",
                      declared_length: int | None = None) -> Path:
    """A .safetensors file: 8-byte header length (declared_length overrides it), JSON header, data."""
    text = json.dumps(header or {}).encode()
    length = len(text) if declared_length is None else declared_length
    path.write_bytes(struct.pack("<Q", length) + text + data)
    return path


def billion_laughs(levels: int = 9, width: int = 9) -> str:
    """YAML aliases of aliases: `width ** levels` leaves from a few hundred bytes."""
    lines = ["a0: &a0 [lol, lol, lol, lol, lol, lol, lol, lol, lol]"]
    for level in range(1, levels):
        refs = ", ".join(f"*a{level - 1}" for _ in range(width))
        lines.append(f"a{level}: &a{level} [{refs}]")
    lines.append(f"model: *a{levels - 1}")
    return "\n".join(lines) + "\n"


def write_legacy_bomb(path: Path, name: str = "backbone.weight", numel: int = 1 << 38) -> None:
    """A legacy (pre-zip) torch.save file whose pickle declares a float32 storage of `numel` elements
    (1 TiB by default) while the file holds 16 bytes of data: a few hundred bytes on disk."""
    with open(path, "wb") as handle:
        for value in (0x1950A86A20F9469CFC6C, 1001, {"protocol_version": 1001, "little_endian": True}):
            pickle.dump(value, handle, protocol=2)
        _Pickler(handle, protocol=2).dump({name: _TensorStub("0", numel)})
        pickle.dump(["0"], handle, protocol=2)
        handle.write(struct.pack("<q", numel) + bytes(16))


class ShadowedDict(collections.OrderedDict):
    """Saved as a plain OrderedDict whose instance attributes shadow its methods (`items`, `keys`, `get`):
    the weights-only unpickler sets such attributes on an OrderedDict (it restores `_metadata` that way)."""


class _ShadowPickler(pickle.Pickler):
    def reducer_override(self, obj: Any) -> Any:
        if type(obj) is ShadowedDict:
            return (collections.OrderedDict, (), dict(obj.__dict__), None, iter(dict.items(obj)))
        return NotImplemented


def save_shadowed(payload: Any, path: Path) -> Path:
    """torch.save of `payload`, where every ShadowedDict is written as an OrderedDict with its attributes."""
    import types

    module = types.SimpleNamespace(Pickler=_ShadowPickler, Unpickler=pickle.Unpickler, __name__="pickle",
                                   HIGHEST_PROTOCOL=2, dump=pickle.dump, load=pickle.load)
    torch.save(payload, path, pickle_module=module)
    return path


def shadowed(mapping: dict[str, Any]) -> ShadowedDict:
    """`mapping` as a ShadowedDict whose items/keys/get/values attributes are not callable."""
    value = ShadowedDict(mapping)
    value.items, value.keys, value.get, value.values = "x", 3, None, 1  # type: ignore[assignment,method-assign]
    return value
