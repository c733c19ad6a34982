"""A trained model ready for inference, rebuilt by its profile from an Apex-X training checkpoint."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import structlog
import torch
from pydantic import ValidationError

from apex_x.application.model_summary import describe_summary, model_summary
from apex_x.domain.checkpoint import TrainingCheckpoint
from apex_x.domain.config import ApexConfig
from apex_x.domain.errors import ConfigError, UserError
from apex_x.domain.ports import CheckpointStore, ModelProfile, SegmentationModel
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
            "network": dict(self.extra.get("network") or {}),
            "network_line": describe_summary(self.extra["network"]) if self.extra.get("network") else None,
        }


def read_checkpoint(payload: Any, path: str) -> TrainingCheckpoint:
    """A loaded payload as a training checkpoint; other payloads are refused (CheckpointError naming `path`)."""
    return TrainingCheckpoint.from_payload(
        payload, path,
        why="prediction needs the model profile, classes and input size a checkpoint written by `apex-x train` "
        "records (its checkpoints/best.pt or last.pt)",
    )


def checkpoint_config(payload: Mapping[str, Any], path: str) -> ApexConfig:
    """The effective config a full Apex-X checkpoint was trained with; other payloads are refused."""
    return read_checkpoint(payload, path).settings(path)


def build_inference_model(
    payload: Mapping[str, Any],
    *,
    path: str,
    profile_for: Callable[[ApexConfig], ModelProfile],
    device: torch.device,
    model_overrides: Mapping[str, Any] | None = None,
) -> InferenceModel:
    """Checkpoint payload -> network with its weights (rebuilt by the checkpoint's profile), in eval mode on `device`.

    model_overrides: model.* values that replace the checkpoint's (e.g. score_threshold, input size).
    profile_for(config): the ModelProfile of a config (the container's Selector on model.profile).
    """
    checkpoint = read_checkpoint(payload, path)
    config = checkpoint.settings(path)
    categories = checkpoint.category_map(path)
    overrides = dict(model_overrides or {})
    check_class_count_override(overrides.get("num_classes"), categories, path)
    overrides.setdefault("backbone_weights", None)  # the checkpoint holds every weight: no backbone file needed
    overrides.setdefault("backbone_pretrained", False)  # ... and no pretrained weights to read or download
    if not {"input_height", "input_width"} & set(overrides):
        overrides["input_height"], overrides["input_width"] = checkpoint.input_size or (
            config.model.input_height, config.model.input_width)
    try:
        model_config = type(config.model).model_validate({**config.model.model_dump(), **overrides})
    except ValidationError as error:
        first = error.errors()[0]
        key = "model." + ".".join(str(part) for part in first["loc"])
        raise UserError(f"{key}: {first['msg']} (overriding the checkpoint's model settings)") from None
    config = config.model_copy(update={"model": model_config})
    use_ema = bool(config.train.ema) and checkpoint.has_ema()  # what the trainer evaluated
    network = profile_for(config).from_checkpoint(checkpoint, config.model, prefer_ema=use_ema, source=path)
    network.to(device)  # type: ignore[attr-defined]
    network.eval()  # type: ignore[attr-defined]
    weights, _ = checkpoint.weights(prefer_ema=use_ema)
    log.info("checkpoint_loaded", path=path, profile=config.model.profile, weights=weights, device=str(device))
    summary = model_summary(network, config.model)  # type: ignore[arg-type]
    return InferenceModel(
        network=network,
        config=config,
        categories=categories,
        input_size=(model_config.input_height, model_config.input_width),
        device=device,
        checkpoint_path=path,
        weights=weights,
        best=dict(checkpoint.best) if isinstance(checkpoint.best, Mapping) else None,
        extra={"network": summary},
    )


class LoadModel:
    """Use case: a checkpoint's model, ready for inference (profile, classes and input size from the checkpoint)."""

    def __init__(self, *, store: CheckpointStore, profile_for: Callable[[ApexConfig], ModelProfile],
                 resolve_device: Callable[[str], torch.device]) -> None:
        self.store, self.profile_for, self.resolve_device = store, profile_for, resolve_device

    def __call__(self, checkpoint: str, *, device: str = "auto",
                 model_overrides: Mapping[str, Any] | None = None) -> InferenceModel:
        """Secure load (the store), refusal of other payloads before anything is built, then the rebuild."""
        payload = self.store.load(checkpoint)
        read_checkpoint(payload, checkpoint)
        return build_inference_model(payload, path=checkpoint, profile_for=self.profile_for,
                                     device=self.resolve_device(device), model_overrides=model_overrides)


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


def _to_cpu(detections: Detections) -> Detections:
    return Detections(
        boxes=detections.boxes.detach().float().cpu(),
        scores=detections.scores.detach().float().cpu(),
        labels=detections.labels.detach().long().cpu(),
        masks=detections.masks.detach().bool().cpu(),
    )
