"""Clipped loss components: one public function per loss (dispatch to Triton on CUDA, torch otherwise)."""

from apex_x.kernels.reference import clip_component
from apex_x.kernels.reference import boundary_loss_reference as boundary_loss
from apex_x.kernels.reference import focal_loss_reference as focal_loss
from apex_x.kernels.reference import giou_loss_reference as giou_loss
from apex_x.kernels.reference import mask_loss_reference as mask_loss

__all__ = ["boundary_loss", "clip_component", "focal_loss", "giou_loss", "mask_loss"]
