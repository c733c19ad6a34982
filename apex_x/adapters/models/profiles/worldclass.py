"""Profile `worldclass`: TeacherModelV3 (DINOv2 from transformers + LoRA from peft + a simple pyramid + the
dense heads). Its weights go under `teacher` (the user guide's layout); preflight `--profile worldclass`
checks its extra packages and that the DINOv2 weights are reachable."""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from apex_x.adapters.models.profiles import register_profile
from apex_x.adapters.models.profiles._dense import DenseProfile
from apex_x.domain.config import ApexConfig, ModelConfig, StageConfig
from apex_x.domain.environment import CheckResult, PreflightContext, Requirement
from apex_x.loss_components import all_model_components

if TYPE_CHECKING:
    from apex_x.domain.ports import SegmentationModel

EXTRA = "worldclass"  # the pip extra (pyproject.toml) that installs these packages
REQUIREMENTS: tuple[Requirement, ...] = (
    Requirement("transformers", "transformers", "4.40", EXTRA, "DINOv2 backbone of TeacherModelV3"),
    Requirement("peft", "peft", "0.10", EXTRA, "LoRA adapters of TeacherModelV3"),
    Requirement("safetensors", "safetensors", "0.4", EXTRA, "safetensors weights export/import"),
)


def check_backbone_weights(context: PreflightContext) -> list[CheckResult]:
    """Preflight: the DINOv2 weights of model.teacher_backbone are reachable (folder, cache or hub)."""
    from apex_x.adapters.models.backbone_weights_check import check_backbone_weights as check

    return check(context, make_result=CheckResult)


@register_profile
class WorldclassProfile(DenseProfile):
    """Frozen-backbone heads first, then (train.enable_lora_finetune) the LoRA adapters at half the lr."""

    name = "worldclass"
    weights_key = "teacher"
    requirements = REQUIREMENTS
    preflight_checks = (check_backbone_weights,)

    def build_model(
        self, config: ModelConfig, num_classes: int, *, pretrained: bool, architecture: Mapping[str, Any] | None
    ) -> SegmentationModel:
        from apex_x.adapters.models.teacher_v3 import TeacherModelFactory

        return TeacherModelFactory().build(config, num_classes, pretrained=pretrained, architecture=architecture)

    def default_stages(self, config: ApexConfig) -> list[StageConfig]:
        all_losses = all_model_components(1.0)
        stages = [StageConfig(name="heads_frozen_backbone", losses=dict(all_losses), trainable=["neck", "head", "mask"])]
        if config.train.enable_lora_finetune:
            stages.append(StageConfig(name="lora_finetune", losses=dict(all_losses),
                                      trainable=["lora", "neck", "head", "mask"], lr_scale=0.5))
        return stages
