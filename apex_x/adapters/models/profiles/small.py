"""Profile `small`: the CPU-friendly student (timm backbone + FPN/PAN neck + the shared dense heads)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from apex_x.adapters.models.profiles import register_profile
from apex_x.adapters.models.profiles._dense import DenseProfile
from apex_x.domain.config import (
    ApexConfig,
    ModelConfig,
    StageConfig,
)
from apex_x.domain.environment import CheckResult, PreflightContext
from apex_x.loss_components import all_model_components, first_stage_components

if TYPE_CHECKING:
    from apex_x.domain.ports import SegmentationModel


def check_student_weights(context: PreflightContext) -> list[CheckResult]:
    """Preflight (base): where the student backbone's weights are (model.backbone_pretrained), for a config of
    this profile; nothing for another profile's config."""
    if context.settings.model.profile != SmallProfile.name:
        return []
    from apex_x.adapters.models.timm_weights_check import check_student_weights as check

    return check(context, make_result=CheckResult)


@register_profile
class SmallProfile(DenseProfile):
    """Student weights under `model`; a first stage of the detection components, then every model component."""

    name = "small"
    weights_key = "model"
    base_preflight_checks = (check_student_weights,)

    def build_model(
        self, config: ModelConfig, num_classes: int, *, pretrained: bool, architecture: Mapping[str, Any] | None
    ) -> SegmentationModel:
        from apex_x.adapters.models.student import StudentModelFactory

        return StudentModelFactory().build(config, num_classes, pretrained=pretrained, architecture=architecture)

    def default_stages(self, config: ApexConfig) -> list[StageConfig]:
        return [
            StageConfig(name="det_stability", losses=first_stage_components(1.0), trainable=["all"]),
            StageConfig(name="seg_boundary", losses=all_model_components(1.0), trainable=["all"]),
        ]
