"""A trained model ready for inference, built from an Apex-X checkpoint payload (profile, classes, input size)."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import structlog
import torch
from pydantic import ValidationError

from apex_x.domain import checkpoint_format as fmt
from apex_x.domain.checkpoint_values import describe_misfit
from apex_x.domain.config import ApexConfig
from apex_x.domain.errors import CheckpointError, ConfigError, UserError
from apex_x.domain.ports import CheckpointStore, ModelFactory, SegmentationModel
from apex_x.domain.types import CategoryMap, Detections, ImageMeta

log = structlog.get_logger(__name__)


@dataclass
class InferenceModel:
    """A network in eval mode on its device, with what the checkpoint says about it."""

    network: SegmentationModel
    config: ApexConfig  # the checkpoint's effective config (model section possibly overridden)
    categories: CategoryMap
    input_size: tuple[int, int]  # (height, width) of the network input
    device: torch.device
    checkpoint_path: str
    weights: str  # which weights were loaded: "ema", "model" or "teacher"
    best: dict[str, Any] | None = None  # {"name", "value", "epoch"} recorded by the trainer
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def profile(self) -> str:
        return self.config.model.profile

    def detect(self, images: torch.Tensor, metas: Sequence[ImageMeta]) -> list[Detections]:
        """images (B, 3, H, W) uint8 -> detections per image in original pixels (on the CPU)."""
        with torch.inference_mode():
            outputs = self.network(images.to(self.device, non_blocking=True))
            detections = self.network.postprocess(outputs, metas)
        return [_to_cpu(item) for item in detections]

    def describe(self) -> dict[str, Any]:
        """Plain summary for reports and notebooks."""
        return {
            "checkpoint": self.checkpoint_path,
            "profile": self.profile,
            "weights": self.weights,
            "input_size": list(self.input_size),
            "device": str(self.device),
            "classes": list(self.categories.names),
            "category_ids": list(self.categories.original_ids),
            "best": self.best,
        }


def checkpoint_config(payload: Mapping[str, Any], path: str) -> ApexConfig:
    """The effective config a full Apex-X checkpoint was trained with; other payloads are refused."""
    if not isinstance(payload, Mapping):
        raise CheckpointError(f"{path}: not an Apex-X checkpoint (the payload is a {type(payload).__name__})")
    tag = payload.get(fmt.KEY_FORMAT)
    if tag != fmt.FORMAT_TAG:
        raise CheckpointError(
            f"{path}: not an Apex-X training checkpoint (no '{fmt.KEY_FORMAT}: {fmt.FORMAT_TAG}' tag); "
            "prediction needs the model profile, classes and input size a checkpoint written by "
            "`apex-x train` records (its checkpoints/best.pt or last.pt)"
        )
    version = payload.get(fmt.KEY_VERSION)
    if version != fmt.FORMAT_VERSION:
        raise CheckpointError(
            f"{path}: checkpoint format version {version!r} is not supported by this Apex-X "
            f"(it reads version {fmt.FORMAT_VERSION}); use the Apex-X version that wrote it"
        )
    for key in (fmt.KEY_CONFIG, fmt.KEY_CATEGORIES):
        if not isinstance(payload.get(key), Mapping):
            raise CheckpointError(f"{path}: checkpoint has no '{key}' entry; it is incomplete or damaged")
    try:
        return ApexConfig.model_validate(dict(payload[fmt.KEY_CONFIG]))
    except ValidationError as error:
        first = error.errors()[0]
        key = ".".join(str(part) for part in first["loc"])
        raise CheckpointError(f"{path}: the config stored in the checkpoint is invalid at {key}: {first['msg']}") from None


def checkpoint_categories(payload: Mapping[str, Any], path: str) -> CategoryMap:
    """The class mapping (contiguous id -> original id and name) stored in the checkpoint."""
    try:
        return CategoryMap.from_plain(dict(payload[fmt.KEY_CATEGORIES]))
    except (KeyError, TypeError, ValueError) as error:
        raise CheckpointError(f"{path}: invalid '{fmt.KEY_CATEGORIES}' entry in the checkpoint: {error}") from None


def checkpoint_input_size(payload: Mapping[str, Any], config: ApexConfig) -> tuple[int, int]:
    """(height, width) recorded in the checkpoint, else the config's model input size."""
    recorded = payload.get(fmt.KEY_INPUT_SIZE)
    if isinstance(recorded, (list, tuple)) and len(recorded) == 2:
        return int(recorded[0]), int(recorded[1])
    return config.model.input_height, config.model.input_width


def prefers_ema(payload: Mapping[str, Any], config: ApexConfig) -> bool:
    """Evaluate what the trainer evaluated: the EMA weights when EMA was on and saved."""
    return bool(config.train.ema) and payload.get(fmt.KEY_EMA) is not None


def build_inference_model(
    payload: Mapping[str, Any],
    *,
    path: str,
    store: CheckpointStore,
    factory_for: Callable[[ApexConfig], ModelFactory],
    device: torch.device,
    apply_state: Callable[..., Any],
    model_overrides: Mapping[str, Any] | None = None,
) -> InferenceModel:
    """Checkpoint payload -> network with its weights, in eval mode on `device`.

    model_overrides: model.* values that replace the checkpoint's (e.g. score_threshold, input size).
    apply_state(network, state, strict=True, source=path): the checkpoint adapter's loader, which names
    missing/unexpected keys and shape mismatches instead of dropping them.
    """
    config = checkpoint_config(payload, path)
    categories = checkpoint_categories(payload, path)
    overrides = dict(model_overrides or {})
    check_class_count_override(overrides.get("num_classes"), categories, path)
    overrides.setdefault("backbone_weights", None)  # the checkpoint holds every weight: no backbone file needed
    if not {"input_height", "input_width"} & set(overrides):
        overrides["input_height"], overrides["input_width"] = checkpoint_input_size(payload, config)
    try:
        model_config = type(config.model).model_validate({**config.model.model_dump(), **overrides})
    except ValidationError as error:
        first = error.errors()[0]
        key = "model." + ".".join(str(part) for part in first["loc"])
        raise UserError(f"{key}: {first['msg']} (overriding the checkpoint's model settings)") from None
    config = config.model_copy(update={"model": model_config})
    use_ema = prefers_ema(payload, config)
    architecture = payload.get(fmt.KEY_ARCHITECTURE)
    factory = factory_for(config)

    def build() -> SegmentationModel:  # the architecture only: the checkpoint's weights go in next
        return factory.build(config.model, categories.num_classes, pretrained=False,
                             architecture=architecture if isinstance(architecture, Mapping) else None)

    state = store.extract_model_state(payload, prefer_ema=use_ema)
    check_fits_before_building(build, state, path)
    network = build()
    apply_state(network, state, strict=True, source=path)
    network.to(device)  # type: ignore[attr-defined]
    network.eval()  # type: ignore[attr-defined]
    weights = "ema" if use_ema else fmt.weights_key_for_profile(config.model.profile)
    best = payload.get(fmt.KEY_BEST)
    log.info("checkpoint_loaded", path=path, profile=config.model.profile, weights=weights, device=str(device))
    return InferenceModel(
        network=network,
        config=config,
        categories=categories,
        input_size=(model_config.input_height, model_config.input_width),
        device=device,
        checkpoint_path=path,
        weights=weights,
        best=dict(best) if isinstance(best, Mapping) else None,
    )


def check_class_count_override(wanted: Any, categories: CategoryMap, path: str) -> None:
    """A model.num_classes given on top of a checkpoint must be the checkpoint's own class count: a trained
    model's classes cannot change. Refused naming the checkpoint's count and classes (id and name)."""
    if wanted is None or wanted == categories.num_classes:
        return
    listed = ", ".join(f"{cid} {name!r}" for cid, name in
                       zip(categories.original_ids[:20], categories.names[:20], strict=True))
    more = ", ..." if categories.num_classes > 20 else ""
    raise ConfigError(
        f"model.num_classes is {wanted} but the checkpoint {path} was trained for {categories.num_classes} "
        f"classes ({listed}{more}); a trained model's classes cannot change: leave model.num_classes unset "
        f"(or {categories.num_classes}), or train a model for {wanted} classes",
        key="model.num_classes",
    )


def check_fits_before_building(build: Callable[[], Any], state: Mapping[str, torch.Tensor], path: str) -> None:
    """Build the model on the meta device (no memory) and compare it with the checkpoint's weights, so a
    stored config that asks for another (e.g. a huge) model is refused before anything is allocated."""
    try:
        with torch.device("meta"):
            shapes = {key: tuple(value.shape) for key, value in build().state_dict().items()}  # type: ignore[attr-defined]
    except UserError:
        raise
    except Exception as error:  # noqa: BLE001 - a model that cannot be built on meta is checked after building
        log.debug("meta_build_skipped", reason=f"{type(error).__name__}: {error}")
        return
    misfit = describe_misfit(shapes, {key: tuple(value.shape) for key, value in state.items()})
    if misfit:
        raise CheckpointError(f"{path} {misfit}; refusing to build it")


def _to_cpu(detections: Detections) -> Detections:
    return Detections(
        boxes=detections.boxes.detach().float().cpu(),
        scores=detections.scores.detach().float().cpu(),
        labels=detections.labels.detach().long().cpu(),
        masks=detections.masks.detach().bool().cpu(),
    )
