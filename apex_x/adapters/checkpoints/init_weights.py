"""The weights of `train.init_from`: an Apex-X checkpoint, any payload layout of the user guide, or a run's
model.safetensors, read by the secure loaders (size limits first, torch.load(weights_only=True), the
safetensors checks). The InitWeightsReader port (domain/ports.py)."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch

from apex_x.adapters.checkpoints.safetensors_check import load_safetensors
from apex_x.adapters.checkpoints.torch_store import (
    TorchCheckpointStore,
    extract_model_state,
    strip_prefixes,
)
from apex_x.adapters.checkpoints.torch_store import _looks_like_safetensors as looks_like_safetensors
from apex_x.domain import checkpoint_format as fmt
from apex_x.domain.checkpoint import is_training_payload
from apex_x.domain.errors import CheckpointError

KEY = "train.init_from"


def _layout(payload: Mapping[str, Any]) -> str:
    """Which layout the weights came from (for the report), in extract_model_state's order with prefer_ema."""
    if is_training_payload(payload):
        ema = "ema" if isinstance(payload.get("ema"), Mapping) and payload.get("ema") else None
        return f"Apex-X checkpoint ({'EMA' if ema else 'model'} weights)"
    if all(isinstance(value, torch.Tensor) for value in payload.values()):
        return "raw state_dict"
    for key in ("ema", "ema_model", *fmt.WEIGHT_LAYOUT_KEYS):
        if isinstance(payload.get(key), Mapping):
            return f"{{{key}: ...}}"
    return "checkpoint"


def read_init_weights(path: str) -> tuple[dict[str, torch.Tensor], str]:
    """(the file's model weights by name, its layout); CheckpointError naming train.init_from and the file
    when it is missing, a folder, not a checkpoint, unsafe, or holds no model weights."""
    file_path = Path(path).expanduser()
    if file_path.is_dir():
        found = [file_path / name for name in ("checkpoints/best.pt", "model.safetensors", "best.pt", "last.pt")
                 if (file_path / name).is_file()]
        hint = f"; give a file, e.g. {found[0]}" if found else "; give a checkpoint (.pt) or model.safetensors file"
        raise CheckpointError(f"{KEY}: {file_path} is a folder, not a weights file{hint}")
    if not file_path.is_file():
        raise CheckpointError(f"{KEY}: {file_path} does not exist (a checkpoint .pt or model.safetensors file)")
    try:
        if file_path.suffix == ".safetensors" or looks_like_safetensors(file_path):
            return strip_prefixes(load_safetensors(file_path)), "safetensors"
        payload = TorchCheckpointStore().load(str(file_path))
        return extract_model_state(payload, prefer_ema=True), _layout(payload)
    except CheckpointError as error:
        text = str(error)
        raise CheckpointError(f"{KEY}: {text if str(file_path) in text else f'{file_path}: {text}'}") from None


__all__ = ["read_init_weights"]
