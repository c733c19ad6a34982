"""TorchCheckpointStore: atomic torch.save, secure weights_only loads, weight-layout unwrapping."""

from __future__ import annotations

import os
import re
import tempfile
import zipfile
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import structlog
import torch

from apex_x.adapters.checkpoints.archive_limits import (
    SizeLimits,
    check_archive,
    check_file_size,
    configured_limits,
    limits_for_model,
)
from apex_x.domain import checkpoint_format as fmt
from apex_x.domain.checkpoint import is_training_payload, validate_loaded
from apex_x.domain.errors import CheckpointError

log = structlog.get_logger(__name__)

_GLOBAL_IN_MESSAGE = re.compile(r"GLOBAL ([\w.]+)")
_WEIGHTS_ONLY_DETAIL = re.compile(r"WeightsUnpickler error:\s*(.+?)(?:\n\n|$)", re.S)
_PREFIXES = ("module.", "_orig_mod.")


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


def atomic_write(path: str | Path, write: Any, *, what: str = "file") -> None:
    """Write via `write(fileobj)` into a temp file beside `path`, fsync, os.replace, fsync the folder.

    A failure raises CheckpointError naming the path and leaves any earlier file at `path` intact.
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
    except Exception as error:  # noqa: BLE001 - torch.save wraps OS errors in RuntimeError
        os_error = _os_error_in(error)
        reason = (
            f"{os_error.strerror or os_error} (errno {os_error.errno})"
            if os_error is not None
            else f"{type(error).__name__}: {str(error).splitlines()[0] if str(error) else ''}"
        )
        raise CheckpointError(
            f"cannot write {what} {target}: {reason}; earlier files are left intact. "
            "Check that the output folder (train.output_dir) is writable and has free space"
        ) from error
    finally:
        if temp_name is not None:
            try:
                os.unlink(temp_name)
            except OSError:
                pass


def _os_error_in(error: BaseException) -> OSError | None:
    """The OSError behind an exception (itself, its cause or its context), if any."""
    seen: set[int] = set()
    current: BaseException | None = error
    while current is not None and id(current) not in seen:
        if isinstance(current, OSError):
            return current
        seen.add(id(current))
        current = current.__cause__ or current.__context__
    return None


def strip_prefixes(state: Mapping[str, Any]) -> dict[str, Any]:
    """Drop `module.` (DDP/DataParallel) and `_orig_mod.` (torch.compile) prefixes shared by every key."""
    result = dict(state)
    changed = True
    while changed and result:
        changed = False
        for prefix in _PREFIXES:
            if all(key.startswith(prefix) for key in result):
                result = {key[len(prefix) :]: value for key, value in result.items()}
                changed = True
    return result


def _is_state_dict(value: Any) -> bool:
    return (
        isinstance(value, Mapping)
        and len(value) > 0
        and all(isinstance(key, str) for key in value)
        and all(isinstance(item, torch.Tensor) for item in value.values())
    )


def _unwrap_module_like(value: Any) -> Any:
    """A layout value may itself be a dict holding `state_dict`/`model_state_dict` (nested layouts)."""
    if isinstance(value, Mapping) and not _is_state_dict(value):
        for key in ("state_dict", "model_state_dict", "model"):
            if _is_state_dict(value.get(key)):
                return value[key]
    return value


@dataclass
class StateLoadReport:
    """What happened when a state dict was applied to a model: nothing is dropped silently."""

    missing: list[str] = field(default_factory=list)
    unexpected: list[str] = field(default_factory=list)
    shape_mismatches: list[tuple[str, tuple[int, ...], tuple[int, ...]]] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not (self.missing or self.unexpected or self.shape_mismatches)

    def describe(self, limit: int = 8) -> str:
        parts: list[str] = []
        if self.missing:
            parts.append(f"{len(self.missing)} missing key(s): {', '.join(self.missing[:limit])}")
        if self.unexpected:
            parts.append(f"{len(self.unexpected)} unexpected key(s): {', '.join(self.unexpected[:limit])}")
        if self.shape_mismatches:
            shown = ", ".join(
                f"{name} checkpoint {list(ckpt)} vs model {list(model)}"
                for name, ckpt, model in self.shape_mismatches[:limit]
            )
            parts.append(f"{len(self.shape_mismatches)} shape mismatch(es): {shown}")
        return "; ".join(parts) if parts else "all keys match"

    def to_plain(self) -> dict[str, Any]:
        return {
            "missing": list(self.missing),
            "unexpected": list(self.unexpected),
            "shape_mismatches": [
                {"key": name, "checkpoint": list(ckpt), "model": list(model)}
                for name, ckpt, model in self.shape_mismatches
            ],
        }


def apply_model_state(
    model: torch.nn.Module, state: Mapping[str, torch.Tensor], *, strict: bool = True, source: str = "checkpoint"
) -> StateLoadReport:
    """Load `state` into `model`, reporting missing/unexpected keys and shape mismatches.

    strict=True raises CheckpointError on any mismatch; strict=False loads what fits and returns the report.
    """
    state = strip_prefixes(state)
    own = model.state_dict()
    report = StateLoadReport(
        missing=sorted(key for key in own if key not in state),
        unexpected=sorted(key for key in state if key not in own),
        shape_mismatches=sorted(
            (key, tuple(state[key].shape), tuple(own[key].shape))
            for key in own
            if key in state and tuple(state[key].shape) != tuple(own[key].shape)
        ),
    )
    if strict and not report.ok:
        raise CheckpointError(f"{source} does not fit the model: {report.describe()}")
    mismatched = {name for name, _, _ in report.shape_mismatches}
    fitting = {key: value for key, value in state.items() if key in own and key not in mismatched}
    model.load_state_dict(fitting, strict=False)
    if not report.ok:
        log.warning("checkpoint_partial_load", source=source, details=report.describe())
    return report


class TorchCheckpointStore:
    """CheckpointStore adapter: torch.save through an atomic write; torch.load(weights_only=True) only."""

    def save(self, payload: Mapping[str, Any], path: str) -> None:
        atomic_write(path, lambda handle: torch.save(dict(payload), handle), what="checkpoint")

    def load(self, path: str, *, expected_sizes: tuple[int, int] | None = None) -> dict[str, Any]:
        """Secure load: declared sizes checked first (archive_limits), then torch.load(weights_only=True),
        then every plain value of an Apex-X payload (domain.checkpoint_values) before anyone uses it.

        expected_sizes: (largest tensor, all tensors) in bytes of the model the file is loaded into,
        when it is known before loading; the declared sizes must fit it.
        """
        file_path = Path(path)
        if not file_path.is_file():
            raise CheckpointError(f"checkpoint not found: {file_path}")
        limits = limits_for_model(*expected_sizes) if expected_sizes else configured_limits()
        _require_torch_file(file_path, limits)
        try:
            payload = torch.load(file_path, map_location="cpu", weights_only=True)
        except Exception as error:  # noqa: BLE001 - every failure becomes one clear message
            raise self._load_error(file_path, error) from None
        validate_loaded(payload, str(file_path))  # tagged payloads: format version and every plain value
        if isinstance(payload, Mapping):
            return dict(payload)
        raise CheckpointError(
            f"{file_path}: expected a checkpoint mapping (a state_dict or a payload dict), got {type(payload).__name__}"
        )

    def extract_model_state(self, payload: Any, *, prefer_ema: bool = False) -> dict[str, torch.Tensor]:
        return extract_model_state(payload, prefer_ema=prefer_ema)

    def copy(self, source: str, target: str) -> None:
        """target becomes a hard link to source (same bytes, no extra disk), swapped in atomically; where
        links are impossible (other filesystem, no support), a copy through the same atomic write."""
        source_path, target_path = Path(source), Path(target)
        temp = target_path.parent / f".{target_path.name}.{os.getpid()}.link.tmp"
        try:
            temp.unlink(missing_ok=True)
            os.link(source_path, temp)
            os.replace(temp, target_path)
            fsync_directory(target_path.parent)
            return
        except OSError:
            temp.unlink(missing_ok=True)
        with open(source_path, "rb") as handle:
            data = handle.read()
        atomic_write(target_path, lambda out: out.write(data), what="checkpoint")

    def list_checkpoints(self, directory: str) -> list[str]:
        folder = Path(directory)
        if not folder.is_dir():
            return []
        return sorted(str(path) for path in folder.glob("*.pt") if not path.name.startswith("."))

    @staticmethod
    def _load_error(path: Path, error: Exception) -> CheckpointError:
        message = str(error)
        lowered = message.lower()
        if "global" in lowered and ("weights only load failed" in lowered or "unsupported global" in lowered):
            names = _unsafe_globals(path) or _GLOBAL_IN_MESSAGE.findall(message)
            shown = ", ".join(sorted(set(names))) or "an unknown global"
            return CheckpointError(
                f"refusing to load {path}: it holds pickled Python objects (global {shown}) that could run "
                "code when loaded. Apex-X only loads tensors and plain values (torch.load weights_only=True) "
                "and never falls back to unsafe loading. If you trust the file, re-save its tensors "
                "(e.g. its state_dict) in a trusted environment"
            )
        if "weights only load failed" in lowered or isinstance(error, (zipfile.BadZipFile, EOFError)) or any(
            word in lowered for word in ("zip", "eof", "unpickl", "pickle", "invalid load key")
        ):
            detail = _WEIGHTS_ONLY_DETAIL.search(message)
            reason = detail.group(1).strip() if detail else (message.splitlines()[0] if message else type(error).__name__)
            return CheckpointError(
                f"{path} is not a valid torch checkpoint (corrupt, truncated or another kind of file): {reason}"
            )
        first_line = message.splitlines()[0] if message else type(error).__name__
        return CheckpointError(f"cannot load checkpoint {path}: {first_line}")


def _require_torch_file(path: Path, limits: SizeLimits) -> None:
    """A torch checkpoint is a zip archive (torch.save) or a legacy pickle stream (starts with 0x80);
    declared sizes are checked against `limits` before anything is read into memory."""
    if zipfile.is_zipfile(path):
        check_archive(path, limits)
        return
    try:
        with open(path, "rb") as handle:
            head = handle.read(2)
    except OSError as error:
        raise CheckpointError(f"cannot read checkpoint {path}: {error}") from None
    if head.startswith(b"PK"):  # a zip archive's first header without its central directory at the end
        raise CheckpointError(
            f"{path} is a truncated or corrupt torch checkpoint: it starts like a torch.save zip archive but "
            f"its end (the zip directory) is missing or broken ({path.stat().st_size} bytes); an interrupted copy or "
            "download? Copy it again, or use another checkpoint (e.g. the run's last.pt or epoch_XXXX.pt)"
        )
    if not head.startswith(b"\x80"):
        raise CheckpointError(
            f"{path} is not a torch checkpoint (neither a torch.save zip archive nor a pickle stream)"
        )
    check_file_size(path, limits)


def _unsafe_globals(path: Path) -> list[str]:
    """Names of the globals a checkpoint's pickle refers to, read from its opcodes (nothing is run)."""
    try:
        return list(torch.serialization.get_unsafe_globals_in_checkpoint(str(path)))
    except Exception:  # noqa: BLE001 - legacy (non-zip) files: fall back to torch's message
        return []


def extract_model_state(payload: Any, *, prefer_ema: bool = False) -> dict[str, torch.Tensor]:
    """Model weights from any accepted layout (the user guide's section 4), `module.` prefixes removed.

    Layouts: a raw state_dict, or a dict under model_state_dict / state_dict / model / teacher /
    ema_model / ema; an Apex-X payload uses the key its profile wrote. prefer_ema picks EMA weights when present.
    """
    if _is_state_dict(payload):
        return strip_prefixes(payload)
    if not isinstance(payload, Mapping):
        raise CheckpointError(f"expected a state_dict or a checkpoint dict, got {type(payload).__name__}")
    order: list[str] = []
    if prefer_ema:
        order += ["ema", "ema_model"]
    if is_training_payload(payload):
        order += list(fmt.MODEL_WEIGHT_KEYS)  # where its profile keeps them (ModelProfile.weights_key)
    order += [key for key in fmt.WEIGHT_LAYOUT_KEYS if key not in order]
    for key in order:
        value = _unwrap_module_like(payload.get(key))
        if _is_state_dict(value):
            return strip_prefixes(value)
    keys = ", ".join(sorted(str(key) for key in payload)[:12]) or "none"
    raise CheckpointError(
        "no model weights found in the checkpoint: expected a raw state_dict or one of the keys "
        f"{', '.join(fmt.WEIGHT_LAYOUT_KEYS)} holding tensors; the checkpoint has keys: {keys}"
    )
