"""Helpers shared by the torch and Triton loss paths: input checks, target kinds, chunking."""

from __future__ import annotations

import torch

CLASS_ID_DTYPES = (torch.int64, torch.int32, torch.int16, torch.uint8)


def is_class_targets(targets: torch.Tensor) -> bool:
    """(N,) integer class ids (the reference's rule), as opposed to (N, C) soft targets."""
    return targets.dtype in CLASS_ID_DTYPES and targets.dim() == 1


def check_focal_inputs(logits: torch.Tensor, targets: torch.Tensor, weights: torch.Tensor | None) -> None:
    if logits.dim() != 2:
        raise ValueError(f"focal_loss: logits must be (N, C), got shape {tuple(logits.shape)}")
    rows, classes = logits.shape
    if is_class_targets(targets):
        if targets.shape[0] != rows:
            raise ValueError(f"focal_loss: class-id targets must be ({rows},), got {tuple(targets.shape)}")
    elif tuple(targets.shape) != (rows, classes):
        raise ValueError(
            f"focal_loss: targets must be ({rows},) class ids or ({rows}, {classes}) soft targets, "
            f"got shape {tuple(targets.shape)} ({targets.dtype})"
        )
    check_weights("focal_loss", weights, rows)


def check_weights(name: str, weights: torch.Tensor | None, rows: int) -> None:
    if weights is not None and tuple(weights.shape) != (rows,):
        raise ValueError(f"{name}: weights must be ({rows},), got shape {tuple(weights.shape)}")


def check_box_pairs(pred_boxes: torch.Tensor, target_boxes: torch.Tensor, weights: torch.Tensor | None) -> None:
    if pred_boxes.dim() != 2 or pred_boxes.shape[1] != 4 or pred_boxes.shape != target_boxes.shape:
        raise ValueError(
            "giou_loss: pred_boxes and target_boxes must both be (N, 4) xyxy, got "
            f"{tuple(pred_boxes.shape)} and {tuple(target_boxes.shape)}"
        )
    check_weights("giou_loss", weights, pred_boxes.shape[0])


def check_mask_inputs(
    name: str,
    mask_logits: torch.Tensor,
    target_masks: torch.Tensor,
    boxes: torch.Tensor | None,
    weights: torch.Tensor | None,
) -> None:
    if mask_logits.dim() != 3 or mask_logits.shape != target_masks.shape:
        raise ValueError(
            f"{name}: mask_logits and target_masks must both be (N, H, W), got "
            f"{tuple(mask_logits.shape)} and {tuple(target_masks.shape)}"
        )
    count = mask_logits.shape[0]
    if boxes is not None and tuple(boxes.shape) != (count, 4):
        raise ValueError(f"{name}: boxes must be ({count}, 4) xyxy in mask pixels, got {tuple(boxes.shape)}")
    check_weights(name, weights, count)


def check_class_ids(class_ids: torch.Tensor, num_classes: int) -> None:
    """Class ids must be < C (negative = background); CPU checks now, CUDA asserts on the device (no sync)."""
    if class_ids.numel() == 0:
        return
    if class_ids.device.type == "cpu":
        largest = int(class_ids.max())
        if largest >= num_classes:
            raise ValueError(f"focal_loss: class id {largest} out of range for {num_classes} classes")
    else:
        torch._assert_async(class_ids.max() < num_classes, "focal_loss: class id out of range")


def chunk_rows(rows: int, row_elements: int, chunk_elements: int, device: torch.device) -> list[tuple[int, int]]:
    """Row ranges of about `chunk_elements` elements on CPU (cache-sized work), one range elsewhere."""
    if device.type != "cpu" or rows == 0:
        return [(0, rows)]
    step = max(1, chunk_elements // max(row_elements, 1))
    return [(start, min(start + step, rows)) for start in range(0, rows, step)]


def needs_reference(*tensors: torch.Tensor | None) -> bool:
    """True when a tensor the fast paths treat as constant (targets, weights, boxes) requires grad."""
    return any(t is not None and t.requires_grad for t in tensors)
