"""The public clipped loss components: same names, keywords and results as reference.py, fast paths behind.

Each function returns min(nan_to_num(value), clip) reduced, differentiable in its prediction input
(logits, predicted boxes, mask logits). The backend comes from dispatch.resolve_backend: Triton for
CUDA tensors (triton imported lazily), on CPU the compiled graphs of the mask and boundary losses
(compiled_instance.py) when a C++ compiler is found, the fast eager torch path otherwise. Empty inputs, and the rare
case where a tensor the fast paths treat as constant (targets, weights, boxes, a tensor
normalizer) requires grad, run the reference itself so the semantics stay exact.
"""

from __future__ import annotations

import torch

from apex_x.kernels import reference
from apex_x.kernels._common import check_box_pairs, check_focal_inputs, check_mask_inputs, needs_reference
from apex_x.kernels.cpu_boundary import boundary_loss_torch
from apex_x.kernels.cpu_focal import focal_loss_torch
from apex_x.kernels.cpu_giou import giou_loss_torch
from apex_x.kernels.cpu_mask import mask_loss_torch
from apex_x.kernels.dispatch import resolve_backend

INF = reference.INF


def _fast_backend(
    prediction: torch.Tensor, normalizer: float | torch.Tensor | None, *constants: torch.Tensor | None
) -> str | None:
    """The backend for `prediction` ("torch" or "triton"), or None when the reference must run: empty
    input, or a tensor the fast paths treat as constant (targets, weights, boxes, normalizer) requires grad."""
    backend = resolve_backend(prediction)
    normalizer_tensor = normalizer if isinstance(normalizer, torch.Tensor) else None
    if prediction.numel() == 0 or needs_reference(*constants, normalizer_tensor):
        return None
    return backend


def focal_loss(
    logits: torch.Tensor,  # (N, C)
    targets: torch.Tensor,  # (N,) int64 (-1 = background) or (N, C) soft targets in [0, 1]
    *,
    weights: torch.Tensor | None = None,  # (N,) per-anchor weight, 0 = ignored
    gamma: float = 2.0,
    alpha: float | None = 0.25,
    normalizer: float | torch.Tensor = 1.0,
    clip: float = INF,
) -> torch.Tensor:
    """Sigmoid focal / quality focal loss: sum(alpha_t * |t - p|^gamma * BCE(x, t)) / normalizer, clipped."""
    check_focal_inputs(logits, targets, weights)
    backend = _fast_backend(logits, normalizer, targets, weights)
    if backend is None:
        return reference.focal_loss_reference(
            logits, targets, weights=weights, gamma=gamma, alpha=alpha, normalizer=normalizer, clip=clip
        )
    gamma, alpha = float(gamma), None if alpha is None else float(alpha)
    if backend == "triton":
        from apex_x.kernels.focal import focal_loss_triton

        return focal_loss_triton(logits, targets, weights, gamma, alpha, normalizer, float(clip))
    return focal_loss_torch(logits, targets, weights, gamma, alpha, normalizer, float(clip))


def giou_loss(
    pred_boxes: torch.Tensor,  # (N, 4) xyxy
    target_boxes: torch.Tensor,  # (N, 4) xyxy
    *,
    weights: torch.Tensor | None = None,  # (N,)
    normalizer: float | torch.Tensor = 1.0,
    clip: float = INF,
) -> torch.Tensor:
    """sum(w * (1 - GIoU)) / normalizer, clipped."""
    check_box_pairs(pred_boxes, target_boxes, weights)
    backend = _fast_backend(pred_boxes, normalizer, target_boxes, weights)
    if backend is None:
        return reference.giou_loss_reference(
            pred_boxes, target_boxes, weights=weights, normalizer=normalizer, clip=clip
        )
    if backend == "triton":
        from apex_x.kernels.giou import giou_loss_triton

        return giou_loss_triton(pred_boxes, target_boxes, weights, normalizer, float(clip))
    return giou_loss_torch(pred_boxes, target_boxes, weights, normalizer, float(clip))


def mask_loss(
    mask_logits: torch.Tensor,  # (N, H, W)
    target_masks: torch.Tensor,  # (N, H, W) {0, 1} (any dtype)
    boxes: torch.Tensor | None = None,  # (N, 4) xyxy in mask pixels: loss only inside the box
    *,
    weights: torch.Tensor | None = None,  # (N,)
    bce_weight: float = 1.0,
    dice_weight: float = 1.0,
    normalizer: float | torch.Tensor | None = None,  # None = number of instances
    clip: float = INF,
    smooth: float = 1.0,
) -> torch.Tensor:
    """Per instance: bce_weight * mean BCE inside the box + dice_weight * (1 - Dice inside the box)."""
    check_mask_inputs("mask_loss", mask_logits, target_masks, boxes, weights)
    backend = _fast_backend(mask_logits, normalizer, target_masks, boxes, weights)
    if backend is None:
        return reference.mask_loss_reference(
            mask_logits, target_masks, boxes, weights=weights, bce_weight=bce_weight,
            dice_weight=dice_weight, normalizer=normalizer, clip=clip, smooth=smooth,
        )  # fmt: skip
    settings = (float(bce_weight), float(dice_weight), normalizer, float(clip), float(smooth))
    if backend == "triton":
        from apex_x.kernels.mask import mask_loss_triton

        return mask_loss_triton(mask_logits, target_masks, boxes, weights, *settings)
    if backend == "compiled":
        from apex_x.kernels.compiled_instance import mask_loss_compiled

        return mask_loss_compiled(mask_logits, target_masks, boxes, weights, *settings)
    return mask_loss_torch(mask_logits, target_masks, boxes, weights, *settings)


def boundary_loss(
    mask_logits: torch.Tensor,  # (N, H, W)
    target_masks: torch.Tensor,  # (N, H, W) {0, 1}
    boxes: torch.Tensor | None = None,  # (N, 4) xyxy in mask pixels
    *,
    weights: torch.Tensor | None = None,  # (N,)
    bce_weight: float = 1.0,
    dice_weight: float = 1.0,
    normalizer: float | torch.Tensor | None = None,
    clip: float = INF,
    smooth: float = 1.0,
    eps: float = 1e-6,
) -> torch.Tensor:
    """BCE + Dice between the boundary maps (3x3 morphological gradient) of sigmoid(pred) and target."""
    check_mask_inputs("boundary_loss", mask_logits, target_masks, boxes, weights)
    backend = _fast_backend(mask_logits, normalizer, target_masks, boxes, weights)
    if backend is None:
        return reference.boundary_loss_reference(
            mask_logits, target_masks, boxes, weights=weights, bce_weight=bce_weight,
            dice_weight=dice_weight, normalizer=normalizer, clip=clip, smooth=smooth, eps=eps,
        )  # fmt: skip
    settings = (float(bce_weight), float(dice_weight), normalizer, float(clip), float(smooth), float(eps))
    if backend == "triton":
        from apex_x.kernels.boundary import boundary_loss_triton

        return boundary_loss_triton(mask_logits, target_masks, boxes, weights, *settings)
    if backend == "compiled":
        from apex_x.kernels.compiled_instance import boundary_loss_compiled

        return boundary_loss_compiled(mask_logits, target_masks, boxes, weights, *settings)
    return boundary_loss_torch(mask_logits, target_masks, boxes, weights, *settings)
