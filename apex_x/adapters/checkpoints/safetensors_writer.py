"""SafetensorsWeightsWriter: final model weights as `model.safetensors` (atomic, with string metadata)."""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

import torch

from apex_x.adapters.atomic_files import write_run_file
from apex_x.domain.errors import DependencyError


def _import_save() -> Any:
    try:
        from safetensors.torch import save
    except ImportError as error:  # pragma: no cover - safetensors is a core dependency
        raise DependencyError("writing model.safetensors needs the package safetensors: pip install safetensors") from error
    return save


class SafetensorsWeightsWriter:
    """Writes a state dict to a .safetensors file; metadata values that are not strings are JSON-encoded."""

    def write(self, state: Mapping[str, torch.Tensor], path: str, metadata: Mapping[str, Any] | None = None) -> None:
        save = _import_save()
        # Own, contiguous CPU copies: safetensors refuses shared or non-contiguous storage.
        tensors = {key: value.detach().to("cpu").contiguous().clone() for key, value in state.items()}
        text_metadata = {
            str(key): value if isinstance(value, str) else json.dumps(value, sort_keys=True)
            for key, value in (metadata or {}).items()
        }
        data = save(tensors, metadata=text_metadata)
        write_run_file(path, lambda handle: handle.write(data), what="weights file")


def read_safetensors(path: str) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    """Tensors and metadata of a .safetensors file (for tests and users' code)."""
    from pathlib import Path

    from safetensors import safe_open

    from apex_x.adapters.checkpoints.safetensors_check import check_safetensors

    check_safetensors(Path(path))
    tensors: dict[str, torch.Tensor] = {}
    with safe_open(path, framework="pt", device="cpu") as handle:
        metadata = dict(handle.metadata() or {})
        for key in handle.keys():  # noqa: SIM118 - safe_open has no __iter__
            tensors[key] = handle.get_tensor(key)
    return tensors, metadata
