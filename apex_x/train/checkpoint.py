"""Public checkpoint helpers (the user guide's section 7): one secure loader for Apex-X and users' own code.

    from apex_x.train.checkpoint import load_checkpoint, extract_model_state_dict, load_model_weights

    payload = load_checkpoint("artifacts/train_output/checkpoints/best.pt")   # weights_only=True, always
    state = extract_model_state_dict(payload, prefer_ema=True)                # any supported layout
    report = load_model_weights(model, payload, strict=False)                 # mismatches reported

Declared sizes are checked before loading (APEX_X_MAX_TENSOR_BYTES, APEX_X_MAX_CHECKPOINT_BYTES; in
load_model_weights also what the model can hold), and every plain value of an Apex-X payload is validated.
Loading never falls back to unsafe unpickling: a file holding pickled Python objects is refused with
a CheckpointError naming the offending global. Supported layouts: a raw state_dict, or the weights under
`model_state_dict`, `state_dict`, `model`, `teacher`, `ema_model` or `ema`; `module.` prefixes are removed.
"""

from __future__ import annotations

import functools
import os
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import torch

from apex_x.domain import checkpoint_format
from apex_x.domain.errors import CheckpointError

if TYPE_CHECKING:
    from apex_x.adapters.checkpoints.torch_store import StateLoadReport
    from apex_x.container import Container

__all__ = [
    "CheckpointError",
    "StateLoadReport",
    "apply_model_state",
    "checkpoint_format",
    "extract_model_state_dict",
    "list_checkpoints",
    "load_checkpoint",
    "load_model_weights",
    "load_state_dict",
    "save_checkpoint",
]



@functools.cache
def _root() -> Container:
    """The composition root: the secure store and its helpers come from it (nothing is built at import)."""
    from apex_x.container import create_container

    return create_container()


def __getattr__(name: str) -> Any:
    """`StateLoadReport` (the report type of load_model_weights), resolved through the container on first use."""
    if name == "StateLoadReport":
        return _root().state_load_report()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def apply_model_state(
    model: torch.nn.Module, state: Mapping[str, torch.Tensor], *, strict: bool = True, source: str = "checkpoint"
) -> StateLoadReport:
    """Load `state` into `model`, reporting missing/unexpected keys and shape mismatches (strict=True raises)."""
    return _root().apply_model_state()(model, state, strict=strict, source=source)


def extract_model_state(payload: Any, *, prefer_ema: bool = False) -> dict[str, torch.Tensor]:
    return _root().extract_model_state()(payload, prefer_ema=prefer_ema)


def load_checkpoint(path: str | os.PathLike[str]) -> dict[str, Any]:
    """Secure load (torch.load weights_only=True on CPU); a raw state_dict comes back as a dict of tensors."""
    return _root().checkpoint_store().load(os.fspath(path))


def extract_model_state_dict(payload: Any, *, prefer_ema: bool = False) -> dict[str, torch.Tensor]:
    """Model weights of a payload in any supported layout (EMA weights first when prefer_ema)."""
    return extract_model_state(payload, prefer_ema=prefer_ema)


def load_state_dict(path: str | os.PathLike[str], *, prefer_ema: bool = False) -> dict[str, torch.Tensor]:
    """load_checkpoint + extract_model_state_dict in one call."""
    return extract_model_state(load_checkpoint(path), prefer_ema=prefer_ema)


def load_model_weights(
    model: torch.nn.Module,
    checkpoint: str | os.PathLike[str] | Mapping[str, Any],
    *,
    prefer_ema: bool = False,
    strict: bool = True,
) -> StateLoadReport:
    """Put a checkpoint's weights into `model`. strict=True raises on missing/unexpected keys or shape
    mismatches (naming them); strict=False loads what fits and returns the report of what did not."""
    if isinstance(checkpoint, Mapping):
        payload: Mapping[str, Any] = checkpoint
    else:  # the file's declared sizes must fit this model before anything is read
        sizes = [tensor.numel() * tensor.element_size() for tensor in model.state_dict().values()]
        payload = _root().checkpoint_store().load(os.fspath(checkpoint), expected_sizes=(max(sizes, default=0), sum(sizes)))
    source = os.fspath(checkpoint) if not isinstance(checkpoint, Mapping) else "checkpoint"
    state = extract_model_state(payload, prefer_ema=prefer_ema)
    return apply_model_state(model, state, strict=strict, source=source)


def save_checkpoint(payload: Mapping[str, Any], path: str | os.PathLike[str]) -> None:
    """Atomic save (temp file in the same folder, fsync, os.replace, fsync of the folder).

    Keep payloads to tensors and plain Python values so they load with weights_only=True.
    """
    _root().checkpoint_store().save(payload, os.fspath(path))


def list_checkpoints(directory: str | os.PathLike[str]) -> list[str]:
    """The .pt files of a checkpoints folder, sorted."""
    return _root().checkpoint_store().list_checkpoints(os.fspath(directory))
