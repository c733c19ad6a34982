"""What every dense profile shares: the input-size rule (multiples of its coarsest stride) and the rebuild of
its model from a training checkpoint (checked on the meta device first, then the weights, strictly)."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

import structlog

from apex_x.domain.config import ApexConfig, ModelConfig, StageConfig
from apex_x.domain.environment import PreflightCheck, Requirement
from apex_x.domain.errors import ConfigError, UserError
from apex_x.domain.input_size import INPUT_SIZE_MULTIPLE, input_size_problem

if TYPE_CHECKING:  # torch and the checkpoint are imported when a model is built: validating a config is cheap
    import torch

    from apex_x.domain.checkpoint import TrainingCheckpoint
    from apex_x.domain.ports import SegmentationModel

log = structlog.get_logger(__name__)


class DenseProfile:
    """Base of the dense profiles (strides 8/16/32 + the shared heads); a variant sets `name`, `weights_key`,
    `build_model` and `default_stages`, and its `requirements` / `preflight_checks` when it needs more than base."""

    name: str = ""
    weights_key: str = "model"
    input_size_multiple: int = INPUT_SIZE_MULTIPLE  # the P5 level of the pyramid
    requirements: tuple[Requirement, ...] = ()
    preflight_checks: tuple[PreflightCheck, ...] = ()
    base_preflight_checks: tuple[PreflightCheck, ...] = ()

    def build(
        self, config: ModelConfig, num_classes: int, *, pretrained: bool = True,
        architecture: Mapping[str, Any] | None = None,
    ) -> SegmentationModel:
        """Checks that `config` asks for this profile, then `build_model` (the variant's network)."""
        if config.profile != self.name:
            raise ConfigError(
                f"the {self.name!r} profile builds model.profile={self.name!r}, got {config.profile!r}",
                key="model.profile",
            )
        return self.build_model(config, num_classes, pretrained=pretrained, architecture=architecture)

    def build_model(
        self, config: ModelConfig, num_classes: int, *, pretrained: bool, architecture: Mapping[str, Any] | None
    ) -> SegmentationModel:
        raise NotImplementedError

    def default_stages(self, config: ApexConfig) -> list[StageConfig]:
        raise NotImplementedError

    def input_size_problem(self, height: int, width: int) -> str | None:
        return input_size_problem(height, width, self.input_size_multiple)

    def from_checkpoint(
        self, checkpoint: TrainingCheckpoint, config: ModelConfig, *, prefer_ema: bool = False, source: str
    ) -> SegmentationModel:
        from apex_x.adapters.checkpoints.torch_store import apply_model_state, strip_prefixes

        num_classes = checkpoint.category_map(source).num_classes
        _, state = checkpoint.weights(prefer_ema=prefer_ema)
        state = strip_prefixes(state)

        def build() -> SegmentationModel:  # the architecture only: every weight comes from the checkpoint
            return self.build(config, num_classes, pretrained=False, architecture=checkpoint.architecture)

        check_fits_before_building(build, state, source)
        model = build()
        apply_model_state(model, state, strict=True, source=source)  # type: ignore[arg-type]
        return model


def check_fits_before_building(build: Callable[[], Any], state: Mapping[str, torch.Tensor], source: str) -> None:
    """Build the model on the meta device (no memory) and compare it with the checkpoint's weights, so a
    stored config that asks for another (e.g. a huge) model is refused before anything is allocated."""
    import torch

    from apex_x.domain.checkpoint_values import describe_misfit
    from apex_x.domain.errors import CheckpointError

    try:
        with torch.device("meta"):
            shapes = {key: tuple(value.shape) for key, value in build().state_dict().items()}
    except UserError:
        raise
    except Exception as error:  # noqa: BLE001 - a model that cannot be built on meta is checked after building
        log.debug("meta_build_skipped", reason=f"{type(error).__name__}: {error}")
        return
    misfit = describe_misfit(shapes, {key: tuple(value.shape) for key, value in state.items()})
    if misfit:
        raise CheckpointError(f"{source} {misfit}; refusing to build it")
