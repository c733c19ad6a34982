"""TeacherModelV3 (profile `worldclass`): DINOv2 + LoRA adapters + a simple feature pyramid + the dense heads.

The detection/mask heads, assigner, losses and post-processing are the student's (DenseSegmentationModel);
only the backbone (DINOv2 patch tokens, LoRA on the attention projections) and the neck (ViTDet-style
simple pyramid) differ. Parameter groups for the curriculum:
- backbone: the DINOv2 base weights (frozen by the default worldclass stages),
- lora:     the LoRA adapters inside DINOv2 (trained by `lora_finetune`),
- neck / head / mask: the pyramid and the heads.
The state dict always holds the un-merged LoRA layout (stable keys for checkpoints and resume); merge
the adapters only for inference (`merge_lora_`).
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import structlog
from torch import nn

from apex_x.adapters.models.dense_model import DenseSegmentationModel
from apex_x.adapters.models.dinov2_backbone import (
    Dinov2PatchGrid,
    dinov2_config_plain,
    dinov2_from_plain_config,
    load_dinov2,
)
from apex_x.adapters.models.lora import (
    apply_lora,
    load_lora_adapters,
    lora_parameters,
    lora_target_names,
    merge_lora,
    save_lora_adapters,
)
from apex_x.adapters.models.simple_pyramid import SimpleFeaturePyramid
from apex_x.adapters.models.student import validate_dense_inputs
from apex_x.domain.config import ModelConfig

log = structlog.get_logger(__name__)

# Keys of TeacherModelV3.architecture() (the checkpoint's `architecture` entry).
BACKBONE_CONFIG = "backbone_config"  # the DINOv2 config as plain values
LORA_TARGETS = "lora_target_modules"  # the module names the adapters wrap


def head_config(config: ModelConfig) -> ModelConfig:
    """The heads of the teacher are as wide as its pyramid (teacher_pyramid_channels), not the student's."""
    return config.model_copy(update={"neck_channels": config.teacher_pyramid_channels, "width_multiplier": 1.0})


def enable_activation_checkpointing(dinov2: nn.Module) -> None:
    """Recompute each DINOv2 layer in backward (non-reentrant, works with frozen weights + LoRA)."""
    kwargs = {"use_reentrant": False}
    if hasattr(dinov2, "activation_checkpointing_enable"):  # transformers >= 5.x
        dinov2.activation_checkpointing_enable(activation_checkpointing_kwargs=kwargs)
    else:  # older releases
        dinov2.gradient_checkpointing_enable(gradient_checkpointing_kwargs=kwargs)


class TeacherModelV3(DenseSegmentationModel):
    """DINOv2 (+ LoRA) patch tokens -> simple pyramid (strides 8/16/32) -> anchor-free + prototype heads."""

    def __init__(self, dinov2: nn.Module, *, num_classes: int, config: ModelConfig) -> None:
        dinov2_config = dinov2.config
        if config.gradient_checkpointing:
            enable_activation_checkpointing(dinov2)
        backbone = Dinov2PatchGrid(apply_lora(dinov2, config), dinov2_config.patch_size, dinov2_config.hidden_size)
        neck = SimpleFeaturePyramid(dinov2_config.hidden_size, config.teacher_pyramid_channels, dinov2_config.patch_size)
        super().__init__(backbone, neck, num_classes=num_classes, config=head_config(config))
        self.backbone_name = config.teacher_backbone
        self.lora_merged = False

    def architecture(self) -> dict[str, Any]:
        """The DINOv2 config as plain values and the LoRA target modules: inference from a checkpoint
        then needs no backbone folder, Hugging Face cache or network."""
        return {
            BACKBONE_CONFIG: dinov2_config_plain(self.backbone.dinov2.config),
            LORA_TARGETS: sorted(lora_target_names(self.backbone.dinov2)),
        }

    def parameter_groups(self) -> dict[str, list[nn.Parameter]]:
        groups = super().parameter_groups()
        lora = lora_parameters(self.backbone)
        adapter_ids = {id(parameter) for parameter in lora}
        groups["backbone"] = [parameter for parameter in self.backbone.parameters() if id(parameter) not in adapter_ids]
        groups["lora"] = lora
        return groups

    # --- adapters alone ----------------------------------------------------------------------------
    def save_lora_adapters(self, folder: str | Path) -> Path:
        """adapter_model.safetensors + adapter_config.json (the LoRA weights alone) into `folder`."""
        self._require_unmerged("save the LoRA adapters alone")
        return save_lora_adapters(self.backbone.dinov2, folder)

    def load_lora_adapters(self, path: str | Path) -> None:
        """Loads adapters saved by `save_lora_adapters` (folder or .safetensors file) into this model."""
        self._require_unmerged("load LoRA adapters")
        load_lora_adapters(self.backbone.dinov2, path)

    def merge_lora_(self) -> TeacherModelV3:
        """Merges the adapters into the DINOv2 weights, in place, for inference (no LoRA overhead).

        The merged model has the plain DINOv2 state-dict layout: keep checkpoints from the un-merged one.
        """
        if not self.lora_merged:
            self.backbone.dinov2 = merge_lora(self.backbone.dinov2)
            self.lora_merged = True
        return self

    def _require_unmerged(self, action: str) -> None:
        if self.lora_merged:
            raise RuntimeError(f"cannot {action}: the LoRA adapters were merged into the backbone (merge_lora_)")


class TeacherModelFactory:
    """Builds TeacherModelV3 for the `worldclass` profile (its ModelProfile builds it)."""

    def build(
        self,
        config: ModelConfig,
        num_classes: int,
        *,
        pretrained: bool = True,
        architecture: Mapping[str, Any] | None = None,
    ) -> TeacherModelV3:
        """pretrained=False: DINOv2 at random init, e.g. before loading a checkpoint: from `architecture`
        (a checkpoint's stored backbone config: no folder, cache or network) or else from config.json."""
        validate_dense_inputs(config, num_classes)
        stored = (architecture or {}).get(BACKBONE_CONFIG)
        if not pretrained and isinstance(stored, Mapping):
            dinov2 = dinov2_from_plain_config(stored, source=f"the checkpoint's {BACKBONE_CONFIG!r}")
            targets = (architecture or {}).get(LORA_TARGETS)
            if config.lora_target_modules is None and isinstance(targets, list):
                config = config.model_copy(update={"lora_target_modules": [str(name) for name in targets]})
        else:
            dinov2 = load_dinov2(config.teacher_backbone, pretrained=pretrained)
        model = TeacherModelV3(dinov2, num_classes=num_classes, config=config)
        groups = model.parameter_groups()
        log.info(
            "teacher_built",
            backbone=config.teacher_backbone,
            num_classes=num_classes,
            pretrained=pretrained,
            lora_parameters=sum(parameter.numel() for parameter in groups["lora"]),
            backbone_parameters=sum(parameter.numel() for parameter in groups["backbone"]),
            gradient_checkpointing=config.gradient_checkpointing,
        )
        return model
