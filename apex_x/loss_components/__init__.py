"""Loss components, one file each (det, seg, boundary, distill), registered in domain/registry.py.

A component carries its name, its config knobs (weight, clip, warm-up ramp) and its compute function over
apex_x.kernels. Layer: below application and adapters, above kernels (imports kernels and domain only).
A new component is one file here plus its line in LOSS_COMPONENTS.
"""

from __future__ import annotations

from apex_x.domain.registry import LOSS_COMPONENTS, default_loss_components


def all_model_components(weight: float) -> dict[str, float]:
    """The default components (domain.registry.DEFAULT_LOSS_COMPONENTS) at `weight`: the `losses` of a
    default curriculum stage (ModelProfile.default_stages)."""
    return default_loss_components(weight)


def first_stage_components(weight: float) -> dict[str, float]:
    """The registered components of a detection-only first stage (those marked `in_first_stage`) at `weight`."""
    return {component.name: weight for component in LOSS_COMPONENTS.all() if component.in_first_stage}
