"""Random affine (Ultralytics' RandomPerspective without shear or perspective): rotate, zoom, translate."""

from __future__ import annotations

import numpy as np

from apex_x.adapters.datasets.augment.geometry import rotation, scaling, translation
from apex_x.domain.augment import AugmentPlan


def random_affine(
    plan: AugmentPlan, canvas_width: float, canvas_height: float, width: int, height: int,
    rng: np.random.Generator,
) -> np.ndarray:
    """(3, 3) map from a (canvas_width, canvas_height) canvas to the (width, height) input: the canvas centre
    goes to the input centre shifted by up to plan.affine_translate of each side, rotated by up to
    plan.affine_degrees and zoomed by [1 - s, 1 + s] about it. Draws the same 4 numbers whatever the plan."""
    angle = rng.uniform(-plan.affine_degrees, plan.affine_degrees)
    zoom = rng.uniform(1.0 - plan.affine_scale, 1.0 + plan.affine_scale)
    shift_x, shift_y = rng.uniform(-plan.affine_translate, plan.affine_translate, 2)
    centre = translation(-canvas_width / 2.0, -canvas_height / 2.0)
    target = translation((0.5 + shift_x) * width, (0.5 + shift_y) * height)
    return target @ rotation(angle) @ scaling(zoom, zoom) @ centre
