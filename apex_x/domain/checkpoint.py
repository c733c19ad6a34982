"""The typed training checkpoint: the one definition of what an Apex-X checkpoint holds, written and read here.

`TrainingCheckpoint.to_payload()` is the plain dict the store saves (tensors and plain values only, the
keys of domain.checkpoint_format, loadable with torch.load(weights_only=True)); `from_payload` reads one
back, checking once its format tag, version and required keys (the store has already refused hostile
values on load: domain.checkpoint_values). Models are rebuilt from it by their profile
(ModelProfile.from_checkpoint). No I/O here.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
from pydantic import ValidationError

from apex_x.domain import checkpoint_format as fmt
from apex_x.domain.checkpoint_values import validate_payload
from apex_x.domain.config import ApexConfig
from apex_x.domain.errors import CheckpointError
from apex_x.domain.types import CategoryMap

# What a checkpoint must hold to be used: every reader needs the config and classes; resuming needs more.
REQUIRED_KEYS: tuple[str, ...] = (fmt.KEY_CONFIG, fmt.KEY_CATEGORIES)
RESUME_KEYS: tuple[str, ...] = (fmt.KEY_PROGRESS, fmt.KEY_CONFIG, fmt.KEY_OPTIMIZER, fmt.KEY_CATEGORIES, fmt.KEY_RNG)


@dataclass
class TrainingCheckpoint:
    """A full Apex-X training checkpoint (format tag + version, weights, optimizer, progress, config, ...)."""

    profile: str  # model.profile of the run (domain.model_profiles)
    weights_key: str  # where the payload keeps the weights: the profile's ModelProfile.weights_key
    model_state: Mapping[str, torch.Tensor]
    config: Mapping[str, Any]  # the effective config, ApexConfig.to_plain()
    categories: Mapping[str, Any]  # CategoryMap.to_plain()
    ema_state: Mapping[str, torch.Tensor] | None = None
    optimizer: Mapping[str, Any] | None = None
    scheduler: Mapping[str, Any] | None = None
    scaler: Any = None  # bf16 autocast needs no loss scaling: None
    rng: Mapping[str, Any] | None = None  # {"python", "numpy", "torch", "cuda"} as plain values / uint8 tensors
    progress: Mapping[str, Any] | None = None  # {"stage_index", "epoch", "step_in_epoch", "global_step", ...}
    best: Mapping[str, Any] | None = None  # {"name", "value", "epoch"}
    dataset_fingerprint: str | None = None
    input_size: tuple[int, int] | None = None  # (height, width) pixels of the network input
    architecture: Mapping[str, Any] = field(default_factory=dict)  # SegmentationModel.architecture()
    train_state: Mapping[str, Any] = field(default_factory=dict)  # diagnostics and report state of the run
    apex_x_version: str | None = None
    format_version: int = fmt.FORMAT_VERSION

    def to_payload(self) -> dict[str, Any]:
        """The plain dict the store writes (the layout of domain.checkpoint_format)."""
        return {
            fmt.KEY_FORMAT: fmt.FORMAT_TAG,
            fmt.KEY_VERSION: self.format_version,
            fmt.KEY_APEX_VERSION: self.apex_x_version,
            fmt.KEY_PROFILE: self.profile,
            self.weights_key: dict(self.model_state),
            fmt.KEY_EMA: dict(self.ema_state) if self.ema_state is not None else None,
            fmt.KEY_OPTIMIZER: _plain_dict(self.optimizer),
            fmt.KEY_SCHEDULER: _plain_dict(self.scheduler),
            fmt.KEY_SCALER: self.scaler,
            fmt.KEY_RNG: _plain_dict(self.rng),
            fmt.KEY_PROGRESS: _plain_dict(self.progress),
            fmt.KEY_BEST: dict(self.best) if self.best else None,
            fmt.KEY_CONFIG: dict(self.config),
            fmt.KEY_CATEGORIES: dict(self.categories),
            fmt.KEY_DATASET_FINGERPRINT: self.dataset_fingerprint,
            fmt.KEY_INPUT_SIZE: None if self.input_size is None else [int(self.input_size[0]), int(self.input_size[1])],
            fmt.KEY_ARCHITECTURE: dict(self.architecture or {}),
            "train_state": dict(self.train_state),
        }

    @classmethod
    def from_payload(
        cls, payload: Any, path: str, *, required: Sequence[str] = REQUIRED_KEYS, why: str = ""
    ) -> TrainingCheckpoint:
        """A loaded payload as a TrainingCheckpoint. Not a mapping, no format tag, another format version or a
        required key missing: CheckpointError naming `path` (and what it is needed for: `why`, a sentence)."""
        reason = f"; {why}" if why else ""
        if not isinstance(payload, Mapping):
            raise CheckpointError(f"{path}: not an Apex-X checkpoint (the payload is a {type(payload).__name__}){reason}")
        if not is_training_payload(payload):
            raise CheckpointError(
                f"{path}: not an Apex-X training checkpoint (no '{fmt.KEY_FORMAT}: {fmt.FORMAT_TAG}' tag){reason}"
            )
        version = payload.get(fmt.KEY_VERSION)
        if version != fmt.FORMAT_VERSION or isinstance(version, bool):
            raise CheckpointError(
                f"{path}: checkpoint format version {version!r} is not supported by this Apex-X "
                f"(it reads version {fmt.FORMAT_VERSION}); use the Apex-X version that wrote it"
            )
        for key in required:
            if payload.get(key) is None or (key in REQUIRED_KEYS and not isinstance(payload.get(key), Mapping)):
                raise CheckpointError(f"{path}: checkpoint has no '{key}' entry; it is incomplete or damaged{reason}")
        weights_key = next((key for key in fmt.MODEL_WEIGHT_KEYS if isinstance(payload.get(key), Mapping)), None)
        if weights_key is None:
            raise CheckpointError(
                f"{path}: checkpoint has no model weights (none of {', '.join(fmt.MODEL_WEIGHT_KEYS)}); "
                f"it is incomplete or damaged{reason}"
            )
        size = payload.get(fmt.KEY_INPUT_SIZE)
        return cls(
            profile=str(payload.get(fmt.KEY_PROFILE)),
            weights_key=weights_key,
            model_state=payload[weights_key],
            config=payload.get(fmt.KEY_CONFIG) or {},
            categories=payload.get(fmt.KEY_CATEGORIES) or {},
            ema_state=payload.get(fmt.KEY_EMA),
            optimizer=payload.get(fmt.KEY_OPTIMIZER),
            scheduler=payload.get(fmt.KEY_SCHEDULER),
            scaler=payload.get(fmt.KEY_SCALER),
            rng=payload.get(fmt.KEY_RNG),
            progress=payload.get(fmt.KEY_PROGRESS),
            best=payload.get(fmt.KEY_BEST),
            dataset_fingerprint=payload.get(fmt.KEY_DATASET_FINGERPRINT),
            input_size=(int(size[0]), int(size[1])) if isinstance(size, (list, tuple)) and len(size) == 2 else None,
            architecture=payload.get(fmt.KEY_ARCHITECTURE) or {},
            train_state=payload.get("train_state") or {},
            apex_x_version=payload.get(fmt.KEY_APEX_VERSION),
            format_version=int(version),
        )

    # --- what readers ask of it ------------------------------------------------------------------
    def settings(self, path: str) -> ApexConfig:
        """The effective config the checkpoint was trained with; invalid: CheckpointError naming the key."""
        try:
            return ApexConfig.model_validate(dict(self.config))
        except ValidationError as error:
            first = error.errors()[0]
            key = ".".join(str(part) for part in first["loc"])
            raise CheckpointError(
                f"{path}: the config stored in the checkpoint is invalid at {key}: {first['msg']}"
            ) from None

    def category_map(self, path: str) -> CategoryMap:
        """The class mapping (contiguous id -> original id and name) stored in the checkpoint."""
        try:
            return CategoryMap.from_plain(dict(self.categories))
        except (KeyError, TypeError, ValueError) as error:
            raise CheckpointError(f"{path}: invalid '{fmt.KEY_CATEGORIES}' entry in the checkpoint: {error}") from None

    def has_ema(self) -> bool:
        return self.ema_state is not None

    def weights(self, *, prefer_ema: bool = False) -> tuple[str, Mapping[str, torch.Tensor]]:
        """(which, state): the EMA weights ("ema") when prefer_ema and present, else the model's (weights_key)."""
        if prefer_ema and self.ema_state is not None:
            return fmt.KEY_EMA, self.ema_state
        return self.weights_key, self.model_state


def is_training_payload(payload: Any) -> bool:
    """Whether a loaded payload carries the Apex-X format tag (a training checkpoint, not a bare layout)."""
    return isinstance(payload, Mapping) and payload.get(fmt.KEY_FORMAT) == fmt.FORMAT_TAG


def validate_loaded(payload: Any, path: str) -> None:
    """What the secure store checks on every load: a tagged payload must have a format version this Apex-X
    reads and only sane plain values (domain.checkpoint_values; a hostile value: CheckpointError naming the
    key). Other payloads (the user guide's bare layouts) are left as they are."""
    if not is_training_payload(payload):
        return
    version = payload.get(fmt.KEY_VERSION)
    if not isinstance(version, int) or isinstance(version, bool) or version > fmt.FORMAT_VERSION:
        raise CheckpointError(
            f"{path}: checkpoint format version {version!r} is newer than this Apex-X reads "
            f"({fmt.FORMAT_VERSION}); upgrade apex-x"
        )
    validate_payload(payload, path)


def _plain_dict(value: Mapping[str, Any] | None) -> dict[str, Any] | None:
    return None if value is None else dict(value)


__all__ = ["REQUIRED_KEYS", "RESUME_KEYS", "TrainingCheckpoint", "is_training_payload", "validate_loaded"]
