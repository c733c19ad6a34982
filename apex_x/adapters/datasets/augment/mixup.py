"""MixUp: two augmented images blended; the instances of both are kept as they are."""

from __future__ import annotations

import numpy as np

from apex_x.adapters.datasets.augment.warp import Canvas

BETA = 32.0  # ratio ~ Beta(32, 32): about 0.5 (as Ultralytics)


def mixup(canvas: Canvas, other: Canvas, rng: np.random.Generator) -> Canvas:
    """canvas * r + other * (1 - r), r ~ Beta(32, 32); both images' instances (masks unchanged)."""
    ratio = float(rng.beta(BETA, BETA))
    blended = canvas.image.astype(np.float32) * ratio + other.image.astype(np.float32) * (1.0 - ratio)
    image = np.rint(blended).clip(0, 255).astype(np.uint8)
    return Canvas(image, canvas.instances.concat(other.instances))
