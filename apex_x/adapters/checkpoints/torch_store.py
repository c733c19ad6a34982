"""TorchCheckpointStore: atomic torch.save, secure weights_only loads, weight-layout unwrapping."""

from __future__ import annotations

import re
import warnings
import zipfile
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import structlog
import torch

from apex_x.adapters.atomic_files import atomic_link, write_run_file
from apex_x.adapters.checkpoints.archive_limits import (
    MAX_PICKLE_BYTES,
    SizeLimits,
    check_archive,
    check_file_size,
    check_legacy_storages,
    configured_limits,
    limits_for_model,
)
from apex_x.adapters.checkpoints.pickle_scan import head, pickle_spans, pickled_globals
from apex_x.domain import checkpoint_format as fmt
from apex_x.domain.checkpoint import is_training_payload, validate_loaded
from apex_x.domain.checkpoint_values import plain_copy
from apex_x.domain.errors import CheckpointError

log = structlog.get_logger(__name__)

_GLOBAL_IN_MESSAGE = re.compile(r"GLOBAL ([\w.]+)")
_WEIGHTS_ONLY_DETAIL = re.compile(r"WeightsUnpickler error:\s*(.+?)(?:\n\n|$)", re.S)
_PREFIXES = ("module.", "_orig_mod.")


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
        write_run_file(path, lambda handle: torch.save(dict(payload), handle), what="checkpoint")

    def load(self, path: str, *, expected_sizes: tuple[int, int] | None = None) -> dict[str, Any]:
        """Secure load: declared sizes checked first (archive_limits), then torch.load(weights_only=True),
        then every plain value of an Apex-X payload (domain.checkpoint_values) before anyone uses it.

        expected_sizes: (largest tensor, all tensors) in bytes of the model the file is loaded into,
        when it is known before loading; the declared sizes must fit it.
        """
        file_path = Path(path)
        if file_path.is_dir():
            raise CheckpointError(f"{file_path} is a folder, not a checkpoint file" + _checkpoints_in(file_path))
        if not file_path.is_file():
            raise CheckpointError(f"checkpoint not found: {file_path}")
        limits = limits_for_model(*expected_sizes) if expected_sizes else configured_limits()
        _require_torch_file(file_path, limits)
        try:
            with warnings.catch_warnings():  # e.g. torch's note on pickle protocols: the error says what matters
                warnings.simplefilter("ignore")
                payload = torch.load(file_path, map_location="cpu", weights_only=True)
        except Exception as error:  # noqa: BLE001 - every failure becomes one clear message
            raise self._load_error(file_path, error) from None
        payload = plain_copy(payload, str(file_path))  # plain containers only, dense tensors only
        validate_loaded(payload, str(file_path))  # tagged payloads: format version and every plain value
        if isinstance(payload, Mapping):
            return dict(payload)
        raise CheckpointError(
            f"{file_path}: expected a checkpoint mapping (a state_dict or a payload dict), got {type(payload).__name__}"
        )

    def extract_model_state(self, payload: Any, *, prefer_ema: bool = False) -> dict[str, torch.Tensor]:
        return extract_model_state(payload, prefer_ema=prefer_ema)

    def delete(self, path: str) -> None:
        Path(path).unlink()

    def copy(self, source: str, target: str) -> None:
        """target becomes a hard link to source (same bytes, no extra disk), swapped in atomically; where
        links are impossible (other filesystem, no support), a copy through the same atomic write."""
        if atomic_link(source, target):
            return
        with open(source, "rb") as handle:
            data = handle.read()
        write_run_file(target, lambda out: out.write(data), what="checkpoint")

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
            return pickled_objects_error(path, _unsafe_globals(path) or _GLOBAL_IN_MESSAGE.findall(message))
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
    pickles = pickle_spans(path, MAX_PICKLE_BYTES)
    unsafe = pickled_globals(pickles)
    if unsafe:
        raise pickled_objects_error(path, unsafe)
    if not head.startswith(b"\x80"):
        raise CheckpointError(
            f"{path} is not a torch checkpoint (neither a torch.save zip archive nor a pickle stream)"
            + _other_kind_hint(path)
        )
    check_file_size(path, limits)
    if len(pickles) >= 4:  # legacy torch.save: magic number, protocol, sys info, the object, storage keys
        check_legacy_storages(path, pickles[3], limits)


def _checkpoints_in(folder: Path) -> str:
    """A hint naming the checkpoints of a run folder (or of a checkpoints folder) given in place of a file."""
    for candidates in (folder / "checkpoints", folder):
        found = [candidates / name for name in ("best.pt", "last.pt") if (candidates / name).is_file()]
        if found:
            return f"; give one of its checkpoints, e.g. {found[0]}"
    return "; give a .pt file written by torch.save (e.g. <train.output_dir>/checkpoints/best.pt)"


def pickled_objects_error(path: Path, names: list[str]) -> CheckpointError:
    shown = ", ".join(sorted(set(names))) or "an unknown global"
    return CheckpointError(
        f"refusing to load {path}: it holds pickled Python objects (global {shown}) that could run "
        "code when loaded. Apex-X only loads tensors and plain values (torch.load weights_only=True) "
        "and never falls back to unsafe loading. If you trust the file, re-save its tensors "
        "(e.g. its state_dict) in a trusted environment"
    )


def _other_kind_hint(path: Path) -> str:
    """What the file is instead, when it is a file Apex-X knows (the run's safetensors weights)."""
    if path.suffix == ".safetensors" or _looks_like_safetensors(path):
        run_folder = path.parent
        return (
            f": it is a safetensors weights file (a run's model.safetensors holds the weights only, without the "
            f"config and classes); give a checkpoint with them instead, e.g. {run_folder / 'checkpoints' / 'best.pt'}"
            " or last.pt of the same run"
        )
    return ""


def _looks_like_safetensors(path: Path) -> bool:
    """safetensors: an 8-byte little-endian header length, then a JSON header starting with '{'."""
    start = head(path, 9)
    return len(start) == 9 and start[8:9] == b"{" and int.from_bytes(start[:8], "little") < (100 << 20)


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
