"""Clipped loss components: one public function per loss (dispatch to Triton on CUDA, torch otherwise).

`focal_loss`, `giou_loss`, `mask_loss`, `boundary_loss` and `clip_component` keep the names and
keywords of reference.py. The trainer calls `set_backend_preference(config.runtime.kernels)` once
(APEX_X_KERNELS wins over it) and records `active_backend_report()`. Triton is imported lazily.
"""

from apex_x.kernels.dispatch import (
    active_backend_report,
    inductor_unavailable_reason,
    resolve_backend,
    set_backend_preference,
)
from apex_x.kernels.losses import boundary_loss, focal_loss, giou_loss, mask_loss
from apex_x.kernels.reference import clip_component

__all__ = [
    "active_backend_report",
    "boundary_loss",
    "clip_component",
    "focal_loss",
    "giou_loss",
    "inductor_unavailable_reason",
    "mask_loss",
    "resolve_backend",
    "set_backend_preference",
]
