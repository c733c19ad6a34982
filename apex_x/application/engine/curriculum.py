"""The curriculum: named stages in order, their epochs, active losses, trainable groups and lr scale."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Any

import torch

from apex_x.domain.config import ApexConfig, AugmentOverride, StageConfig, effective_stages
from apex_x.domain.errors import ConfigError
from apex_x.domain.fine_tune import resolve_recipe


@dataclass(frozen=True)
class Stage:
    """One stage of the run; its epochs are numbered [first_epoch, first_epoch + epochs) across the run."""

    index: int
    name: str
    epochs: int
    losses: dict[str, float]
    trainable: tuple[str, ...]
    lr_scale: float
    first_epoch: int
    augment: AugmentOverride | None = None  # the stage's own augmentation keys (domain.augment.augment_plan)
    frozen: tuple[str, ...] = ()  # groups held frozen whatever `trainable` says (train.freeze_backbone_epochs)

    def to_plain(self) -> dict[str, Any]:
        plain = {
            "index": self.index,
            "name": self.name,
            "epochs": self.epochs,
            "losses": dict(self.losses),
            "trainable": list(self.trainable),
            "lr_scale": self.lr_scale,
            "first_epoch": self.first_epoch,
        }
        if self.augment is not None:
            plain["augment"] = self.augment.model_dump(exclude_none=True)
        if self.frozen:
            plain["frozen"] = list(self.frozen)
        return plain


def plan_stages(config: ApexConfig, default_stages: Sequence[StageConfig]) -> list[Stage]:
    """Stages with epochs resolved and global epoch numbers; a run with no epoch at all is an error.
    default_stages: the model profile's curriculum (ModelProfile.default_stages), used when train.stages is empty."""
    stages: list[Stage] = []
    first = 0
    for index, stage in enumerate(effective_stages(config, default_stages)):
        epochs = int(stage.epochs or 0)
        if not stage.losses or not any(weight > 0 for weight in stage.losses.values()):
            raise ConfigError(
                f"stage {stage.name!r} has no active loss component (every weight is 0 or none is listed)",
                key=f"train.stages.{index}.losses",
            )
        stages.append(
            Stage(
                index=index,
                name=stage.name,
                epochs=epochs,
                losses=dict(stage.losses),
                trainable=tuple(stage.trainable),
                lr_scale=float(stage.lr_scale),
                first_epoch=first,
                augment=stage.augment,
            )
        )
        first += epochs
    if first == 0:
        raise ConfigError("every stage has 0 epochs: nothing to train", key="train.epochs")
    return freeze_backbone(stages, resolve_recipe(config).freeze_backbone_epochs)


def freeze_backbone(stages: list[Stage], epochs: int) -> list[Stage]:
    """The run's first `epochs` epochs with the backbone frozen: each stage that overlaps them is split into
    '<name>_backbone_frozen' (its epochs before the limit) and '<name>' (the rest); indices renumbered."""
    if epochs <= 0:
        return stages
    split: list[Stage] = []
    for stage in stages:
        frozen = max(0, min(stage.epochs, epochs - stage.first_epoch))
        if frozen:
            split.append(replace(stage, name=f"{stage.name}_backbone_frozen", epochs=frozen, frozen=("backbone",)))
        if stage.epochs - frozen > 0 or not frozen:
            split.append(replace(stage, epochs=stage.epochs - frozen, first_epoch=stage.first_epoch + frozen))
    return [replace(stage, index=index) for index, stage in enumerate(split)]


def total_epochs(stages: list[Stage]) -> int:
    return sum(stage.epochs for stage in stages)


def stage_of_epoch(stages: list[Stage], epoch: int) -> Stage:
    for stage in stages:
        if stage.first_epoch <= epoch < stage.first_epoch + stage.epochs:
            return stage
    raise IndexError(f"epoch {epoch} is past the last stage")


def check_groups(stages: list[Stage], groups: dict[str, list[torch.nn.Parameter]], from_defaults: bool) -> None:
    """Every group a stage trains must exist in the model and hold parameters."""
    available = sorted(name for name, params in groups.items() if params)
    for stage in stages:
        for group in (*stage.trainable, *stage.frozen):
            if group == "all":
                continue
            if not groups.get(group):
                where = "the default curriculum" if from_defaults else f"train.stages.{stage.index}.trainable"
                raise ConfigError(
                    f"stage {stage.name!r} trains parameter group {group!r}, which this model does not have "
                    f"(it has: {', '.join(available)})",
                    key=where,
                )


def apply_trainable(model: torch.nn.Module, groups: dict[str, list[torch.nn.Parameter]], stage: Stage) -> int:
    """Freeze everything but the stage's groups; returns the number of trainable parameters."""
    if "all" in stage.trainable:
        chosen = {id(param) for param in model.parameters()}
    else:
        chosen = {id(param) for group in stage.trainable for param in groups.get(group, [])}
    chosen -= {id(param) for group in stage.frozen for param in groups.get(group, [])}
    count = 0
    for param in model.parameters():
        param.requires_grad_(id(param) in chosen)
        count += param.numel() if id(param) in chosen else 0
    return count


def set_train_mode(model: torch.nn.Module, norm_eval: frozenset[int] = frozenset()) -> None:
    """model.train(), but norm layers whose parameters are all frozen keep their running statistics, and so do
    those whose parameters are in `norm_eval` (ids; train.backbone_norm_eval: the backbone's)."""
    model.train()
    for module in model.modules():
        if isinstance(module, torch.nn.modules.batchnorm._BatchNorm):
            params = list(module.parameters(recurse=False))
            if params and (not any(param.requires_grad for param in params)
                           or all(id(param) in norm_eval for param in params)):
                module.eval()
