"""timm backbone (features_only) returning the stride 8/16/32 feature maps: random init, timm's pretrained weights
(hub, timm_weights.py) or a local weights file."""

from __future__ import annotations

import difflib
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import structlog
import torch
from torch import nn

from apex_x.domain.errors import CheckpointError, ConfigError

log = structlog.get_logger(__name__)

PYRAMID_STRIDES = (8, 16, 32)
_WRAPPER_KEYS = ("state_dict", "model_state_dict", "model", "backbone", "ema", "ema_model")


class TimmBackbone(nn.Module):
    """A timm model built with `features_only=True`: random init, a local weights file (`weights_path`), or timm's
    pretrained weights when `hub_source` (a timm_weights.TimmWeightsSource of kind "hub") is given.

    forward: (B, 3, H, W) normalised float -> [(B, C_i, H / s_i, W / s_i) for s_i in strides].
    """

    def __init__(
        self,
        name: str,
        *,
        strides: Sequence[int] = PYRAMID_STRIDES,
        weights_path: str | None = None,
        weights_key: str = "model.backbone_weights",
        hub_source: Any = None,
        **timm_kwargs: Any,
    ) -> None:
        super().__init__()
        import timm  # lazy: only the model adapters pay for timm

        if not timm.is_model(name):
            close = difflib.get_close_matches(name, timm.list_models(), n=3, cutoff=0.6)
            hint = f"; did you mean {' or '.join(close)}?" if close else "; see timm.list_models()"
            raise ConfigError(f"unknown timm model {name!r}{hint}", key="model.backbone")
        try:
            if hub_source is not None:
                from apex_x.adapters.models.timm_weights import create_pretrained

                body = create_pretrained(name, hub_source, **timm_kwargs)
            else:
                body = timm.create_model(name, pretrained=False, features_only=True, **timm_kwargs)
        except (RuntimeError, TypeError, ValueError, AssertionError) as error:
            raise ConfigError(
                f"timm model {name!r} cannot be built as a feature extractor (features_only): {error}",
                key="model.backbone",
            ) from None
        reductions = list(body.feature_info.reduction())
        missing = [stride for stride in strides if stride not in reductions]
        if missing:
            raise ConfigError(
                f"timm model {name!r} has feature strides {reductions}, but the detector needs {list(strides)}",
                key="model.backbone",
            )
        self.name = name
        self.body = body
        self.strides = tuple(strides)
        self.feature_indices = [reductions.index(stride) for stride in strides]
        all_channels = list(body.feature_info.channels())
        self.channels = [int(all_channels[index]) for index in self.feature_indices]
        # what the weights came from and how they were fitted (reports): random, the hub, or a file's mapping
        self.weights_record: dict[str, Any] = {"source": "random init"}
        if hub_source is not None:
            self.weights_record = {"source": f"hub {hub_source.location}", "mapping": "names (timm's own loading)"}
        if weights_path:
            self.weights_record = {"source": f"file {weights_path}",
                                   **load_backbone_weights(self.body, weights_path, key=weights_key)}

    def forward(self, images: torch.Tensor) -> list[torch.Tensor]:
        features = self.body(images)
        return [features[index] for index in self.feature_indices]


def _read_weights_file(path: Path, body: nn.Module, key: str) -> Mapping[str, Any]:
    """The file's tensors through the secure loaders: sizes checked against `body` before reading."""
    from apex_x.adapters.checkpoints.archive_limits import limits_for_model
    from apex_x.adapters.checkpoints.safetensors_check import load_safetensors
    from apex_x.adapters.checkpoints.torch_store import TorchCheckpointStore

    sizes = [tensor.numel() * tensor.element_size() for tensor in body.state_dict().values()]
    expected = (max(sizes, default=0), sum(sizes))
    try:
        if path.suffix == ".safetensors":
            return load_safetensors(path, limits_for_model(*expected))
        return TorchCheckpointStore().load(str(path), expected_sizes=expected)
    except CheckpointError as error:
        raise CheckpointError(f"{key}: {error}") from None


def _unwrap_state_dict(payload: Any, path: Path, key: str) -> dict[str, torch.Tensor]:
    state = payload
    for _ in range(3):
        if not isinstance(state, Mapping):
            break
        if state and all(isinstance(value, torch.Tensor) for value in state.values()):
            break
        inner = next((state[key] for key in _WRAPPER_KEYS if isinstance(state.get(key), Mapping)), None)
        if inner is None:
            break
        state = inner
    if not isinstance(state, Mapping) or not state:
        raise CheckpointError(f"{path}: no state_dict of tensors found ({key})")
    return {str(key): value for key, value in state.items() if isinstance(value, torch.Tensor)}


def load_backbone_weights(body: nn.Module, weights_path: str, *,
                          key: str = "model.backbone_weights") -> dict[str, Any]:
    """Load a local weights file into a features_only timm model, through the first mapping of weight_layouts.py
    that fits (its names, its names without a prefix, or in order). Returns the plain record of what was done
    (file, mapping, loaded / missing / unused counts); WeightsLayoutError (a CheckpointError naming `key`)
    when none fits."""
    from apex_x.adapters.models.weight_layouts import match_weights

    path = Path(weights_path)
    if not path.is_file():
        raise ConfigError(f"backbone weights file {str(path)!r} does not exist", key=key)
    source = _unwrap_state_dict(_read_weights_file(path, body, key), path, key)
    target = body.state_dict()
    match = match_weights({name: value.shape for name, value in target.items()}, source,
                          where=f"{path} ({key})")
    state = {name: source[original] for name, original in match.pairs.items()}
    state.update({name: value for name, value in target.items() if name not in state})  # counters kept
    body.load_state_dict(state, strict=True)
    record = {"key": key, **match.to_plain()}  # the file itself: TimmBackbone.weights_record's "source"
    log.info("backbone_weights_loaded", path=str(path), key=key, mapping=match.mapping, loaded=match.loaded,
             missing=match.missing, unused=match.unused)
    return record
