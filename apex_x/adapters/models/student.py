"""StudentModelFactory (built by the `small` profile, adapters/models/profiles/small.py): timm backbone + FPN/PAN neck + the shared dense heads."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import structlog

from apex_x.adapters.models.backbone import TimmBackbone
from apex_x.adapters.models.dense_model import DenseSegmentationModel, head_channels
from apex_x.adapters.models.neck import FpnPanNeck
from apex_x.adapters.models.timm_weights import local_weights_file, weights_source
from apex_x.domain.config import ModelConfig
from apex_x.domain.errors import ConfigError
from apex_x.domain.input_size import input_size_problem, is_valid_side

log = structlog.get_logger(__name__)

SUPPORTED_MASK_STRIDES = (1, 2, 4, 8)


def validate_dense_inputs(config: ModelConfig, num_classes: int) -> None:
    """Checks shared by every dense model: class count, input size and mask stride."""
    if isinstance(num_classes, bool) or not isinstance(num_classes, int) or num_classes < 1:
        raise ConfigError(f"the number of classes must be a positive integer, got {num_classes!r}", key="num_classes")
    if config.num_classes is not None and config.num_classes != num_classes:
        raise ConfigError(
            f"model.num_classes={config.num_classes} but the model is being built for {num_classes} classes "
            "(the dataset's categories when training, the checkpoint's classes when loading one); make them "
            "agree or leave model.num_classes null",
            key="model.num_classes",
        )
    problem = input_size_problem(config.input_height, config.input_width)
    if problem:
        raise ConfigError(problem, key="model.input_width" if is_valid_side(config.input_height) else "model.input_height")
    if config.mask_stride not in SUPPORTED_MASK_STRIDES:
        raise ConfigError(
            f"must be one of {list(SUPPORTED_MASK_STRIDES)} (a divisor of the stride-8 level), "
            f"got {config.mask_stride}",
            key="model.mask_stride",
        )


class StudentModelFactory:
    """Builds the CPU-friendly student of the `small` profile (its ModelProfile builds it)."""

    def build(
        self,
        config: ModelConfig,
        num_classes: int,
        *,
        pretrained: bool = True,
        architecture: Mapping[str, Any] | None = None,
    ) -> DenseSegmentationModel:
        """pretrained=False: random init, no `model.backbone_pretrained` / `model.backbone_weights` weights (a
        checkpoint's weights go in next; nothing is downloaded); architecture is unused (the timm backbone is
        rebuilt from its name)."""
        if not pretrained:
            config = config.model_copy(update={"backbone_weights": None, "backbone_pretrained": False})
        validate_dense_inputs(config, num_classes)
        source = weights_source(config)
        local = local_weights_file(source) if source.kind in ("file", "folder") else None
        backbone = TimmBackbone(config.backbone, weights_path=local, weights_key=source.key,
                                hub_source=source if source.kind == "hub" else None)
        neck = FpnPanNeck(backbone.channels, head_channels(config), depth=config.neck_depth)
        model = DenseSegmentationModel(backbone, neck, num_classes=num_classes, config=config)
        if not pretrained:  # the weights that go in next are a checkpoint's, not random ones
            backbone.weights_record = {"source": "the checkpoint (random init, then its weights)"}
        log.info(
            "student_built",
            size=config.size,
            backbone=config.backbone,
            backbone_weights=source.describe(),
            num_classes=num_classes,
            neck_channels=neck.out_channels,
            parameters=sum(p.numel() for p in model.parameters()),
        )
        return model
