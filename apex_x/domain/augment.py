"""Which augmentation an epoch uses: one decision from data.*, the stage's override and close_mosaic.

`augment_plan` is the only place that decides it; the engine asks it once per epoch and hands the plan
to the train loader (BatchLoader.iter_epoch), whose batch keys carry it to every worker, so the plan of
an epoch is the same for any worker count and on resume.
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Any

from apex_x.domain.config import AugmentOverride, DataConfig


@dataclass(frozen=True)
class AugmentPlan:
    """The epoch's probabilities and ranges of the real-data augmentations (all 0 / None = off).

    mosaic, copy_paste, mixup: probabilities per training image; affine_degrees: max rotation (degrees);
    affine_translate: max shift (fraction of the input side); affine_scale: zoom in [1 - s, 1 + s];
    multi_scale: (low, high) factor of the input size per batch, or None.
    """

    mosaic: float = 0.0
    copy_paste: float = 0.0
    mixup: float = 0.0
    affine_degrees: float = 0.0
    affine_translate: float = 0.0
    affine_scale: float = 0.0
    multi_scale: tuple[float, float] | None = None

    @property
    def affine(self) -> bool:
        """True when the random affine moves anything."""
        return bool(self.affine_degrees or self.affine_translate or self.affine_scale)

    @property
    def per_sample(self) -> bool:
        """True when a sample needs the augmentation pipeline (anything but multi_scale is on)."""
        return bool(self.mosaic or self.copy_paste or self.mixup or self.affine)

    @property
    def max_zoom(self) -> float:
        """The largest factor the affine may enlarge an image by (>= 1): decoders keep that much detail."""
        return 1.0 + self.affine_scale

    def to_plain(self) -> dict[str, Any]:
        plain = {item.name: getattr(self, item.name) for item in fields(self)}
        plain["multi_scale"] = list(self.multi_scale) if self.multi_scale else None
        return plain


OFF = AugmentPlan()
_KEYS = ("mosaic", "copy_paste", "mixup", "affine_degrees", "affine_translate", "affine_scale", "multi_scale")


def augment_plan(
    data: DataConfig, override: AugmentOverride | None = None, *, epoch: int = 0, total_epochs: int | None = None
) -> AugmentPlan:
    """The plan of run-wide epoch `epoch` (0-based) of a run of `total_epochs` epochs.

    The stage's override (train.stages[*].augment) replaces each data.* key it sets; the last
    data.close_mosaic_epochs epochs of the run switch every one of them off (total_epochs None: never).
    A multi_scale of [1, 1] is off.
    """
    closing = data.close_mosaic_epochs
    if total_epochs is not None and closing and epoch >= total_epochs - closing:
        return OFF
    values: dict[str, Any] = {key: getattr(data, key) for key in _KEYS}
    if override is not None:
        values.update({key: getattr(override, key) for key in _KEYS if getattr(override, key) is not None})
    multi = values.pop("multi_scale")
    scales = (float(multi[0]), float(multi[1])) if multi and tuple(multi) != (1.0, 1.0) else None
    return AugmentPlan(**{key: float(value) for key, value in values.items()}, multi_scale=scales)


def closed_for_whole_run(data: DataConfig, overrides: list[AugmentOverride | None], total_epochs: int) -> bool:
    """True when data.close_mosaic_epochs covers every epoch of the run although data.* or a stage
    (`overrides`, one per stage) switches some augmentation on: it would never be used."""
    if not data.close_mosaic_epochs or data.close_mosaic_epochs < total_epochs:
        return False
    return any(augment_plan(data, override) != OFF for override in [None, *overrides])
