"""Helpers shared by the torch and Triton loss paths: input checks, target kinds, chunking."""

from __future__ import annotations

import contextlib
import math
import struct
from collections.abc import Callable

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


def full_precision(tensor: torch.Tensor) -> contextlib.AbstractContextManager:
    """Autocast off inside the losses: they accumulate in fp32 whatever the caller's autocast says."""
    device_type = tensor.device.type
    if device_type in ("cpu", "cuda") and torch.is_autocast_enabled(device_type):
        return torch.autocast(device_type=device_type, enabled=False)
    return contextlib.nullcontext()


def _fp32(value: float) -> float:
    """A Python float rounded to fp32, as a Python float (+-Inf past the fp32 range)."""
    try:
        return struct.unpack("f", struct.pack("f", value))[0]
    except OverflowError:
        return math.copysign(math.inf, value)


def _fp32_ratio(numerator: float, denominator: float) -> float:
    """fp32 division as torch does it for an fp32 tensor and a Python number: the number is cast to fp32
    and the quotient rounded once (computing it in double first is exact: double rounding of a quotient
    of two fp32 values is innocuous); x / 0 follows IEEE (Python would raise)."""
    divisor = _fp32(denominator)
    if divisor == 0.0:
        if numerator == 0.0 or math.isnan(numerator):
            return math.nan
        return math.copysign(math.inf, numerator) * math.copysign(1.0, divisor)
    return _fp32(numerator / divisor)


def clipped(
    total: torch.Tensor, normalizer: float | torch.Tensor, clip: float
) -> tuple[torch.Tensor, torch.Tensor | float]:
    """(min(nan_to_num(total / normalizer), clip), d value / d total), as torch's own ops define them.

    torch's backward of clamp(max=clip) is 0 at and above the bound, of nan_to_num 0 where the input
    is NaN/Inf, so the slope is a 0/1 gate over the normalizer. Off the CPU: tensor ops only, no
    host sync; on the CPU the same arithmetic in Python floats (a few microseconds instead of ten ops).
    """
    on_cpu = total.device.type == "cpu" and not (
        isinstance(normalizer, torch.Tensor) and (normalizer.device.type != "cpu" or normalizer.numel() != 1)
    )
    if not on_cpu:
        ratio = total / normalizer
        finite = torch.nan_to_num(ratio)
        value = torch.clamp(finite, max=clip)
        gate = torch.isfinite(ratio).logical_and_(finite < clip)
        return value, gate.to(ratio.dtype) / normalizer
    dtype = torch.result_type(total, normalizer)
    fp32_by_number = dtype == torch.float32 and not isinstance(normalizer, torch.Tensor)  # torch rounds in fp32
    if fp32_by_number:
        ratio_value = _fp32_ratio(total.item(), float(normalizer))
    else:
        ratio_value = float(torch.tensor(total.item(), dtype=dtype) / normalizer)
    finite = ratio_value if math.isfinite(ratio_value) else (
        0.0 if math.isnan(ratio_value) else math.copysign(torch.finfo(dtype).max, ratio_value)
    )  # fmt: skip
    gate = 1.0 if math.isfinite(ratio_value) and finite < clip else 0.0
    norm = float(normalizer)
    if fp32_by_number:  # d(total / norm), rounded to fp32 as torch's gradient is
        slope = _fp32_ratio(gate, norm)
    else:
        slope = gate / norm if norm != 0.0 else (math.nan if gate == 0.0 else math.copysign(math.inf, norm))
    return torch.scalar_tensor(min(finite, clip), dtype=dtype), slope


def box_crop_factors(
    boxes: torch.Tensor | None, count: int, height: int, width: int, device: torch.device
) -> tuple[torch.Tensor | None, torch.Tensor | None, torch.Tensor]:
    """Row (N, H) and column (N, W) 0/1 factors of the reference's box crop (pixel centres inside the
    box; None without boxes) and the crop area clamped at 1 (N,)."""
    if boxes is None:
        return None, None, torch.full((count,), float(max(height * width, 1)), device=device)
    boxes = boxes.float()
    xs = torch.arange(width, device=device, dtype=torch.float32) + 0.5
    ys = torch.arange(height, device=device, dtype=torch.float32) + 0.5
    cols = ((xs[None, :] >= boxes[:, 0:1]) & (xs[None, :] < boxes[:, 2:3])).float()  # (N, W)
    rows = ((ys[None, :] >= boxes[:, 1:2]) & (ys[None, :] < boxes[:, 3:4])).float()  # (N, H)
    return rows, cols, (rows.sum(1) * cols.sum(1)).clamp_(min=1.0)


def dice_bce_terms(
    bce_sum: torch.Tensor,  # (N,) sum of BCE inside the crop
    inter: torch.Tensor,  # (N,) sum of p * t inside the crop
    pred_sum: torch.Tensor,  # (N,)
    target_sum: torch.Tensor,  # (N,)
    area: torch.Tensor,  # (N,) crop area, >= 1
    bce_weight: float,
    dice_weight: float,
    smooth: float,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """Per-instance loss bce_weight * BCE/area + dice_weight * (1 - Dice) and its pixel-gradient
    coefficients: d loss / d p_ij = crop * (a * dBCE/dp + b + c * t_ij) (a, b, c: (N,))."""
    denom = pred_sum + target_sum + smooth
    numer = 2.0 * inter + smooth
    loss = bce_weight * (bce_sum / area) + dice_weight * (1.0 - numer / denom)
    coef_a = bce_weight / area
    coef_b = dice_weight * numer / (denom * denom)
    coef_c = -2.0 * dice_weight / denom
    return loss, coef_a, coef_b, coef_c


def instance_normalizer(count: int, normalizer: float | torch.Tensor | None) -> float | torch.Tensor:
    """The reference's default: the number of instances (at least 1)."""
    return max(count, 1) if normalizer is None else normalizer


def weighted_total(losses: torch.Tensor, weights: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor | None]:
    """(sum of w * losses, fp32 weights or None): losses (N,), weights (N,)."""
    w = None if weights is None else weights.float()
    return (losses.sum() if w is None else torch.dot(losses, w)), w


def clip_and_save(
    ctx, total: torch.Tensor, normalizer: float | torch.Tensor, clip: float, *saved: torch.Tensor | None
) -> torch.Tensor:
    """Host forward tail of the Triton Functions: clip on the device, keep the slope and `saved` for the backward."""
    value, slope = clipped(total, normalizer, clip)
    ctx.save_for_backward(*saved)
    ctx.slope = slope  # 0-d tensor (device) or float (CPU)
    return value


def chunk_crop(rows: torch.Tensor | None, cols: torch.Tensor | None, start: int, stop: int) -> torch.Tensor | None:
    """Box crop of instances start:stop as (K, H*W) 0/1 factors (None without boxes)."""
    if rows is None:
        return None
    return torch.mul(rows[start:stop, :, None], cols[start:stop, None, :]).view(stop - start, -1)  # (K, H*W)


def instance_losses_forward(
    mask_logits: torch.Tensor,  # (N, H, W)
    target_masks: torch.Tensor,  # (N, H, W)
    boxes: torch.Tensor | None,  # (N, 4)
    weights: torch.Tensor | None,  # (N,)
    settings: tuple[float, ...],
    want_grad: bool,
    chunk_loss: Callable,  # (x, t, crop, area, settings, grad_out) -> (K,) losses; writes the unscaled gradient
    chunk_elements: int,
    flat: bool,  # chunks as (K, H*W) when True, (K, 1, H, W) otherwise
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """(sum of w * per-instance loss, unscaled d sum / d logits in the logits' dtype or None).

    Shared by the torch mask and boundary losses: chunks of whole instances, chunk sums added in fp64."""
    logits = mask_logits.contiguous()
    count, height, width = logits.shape
    rows, cols, area = box_crop_factors(boxes, count, height, width, logits.device)
    w = None if weights is None else weights.float()
    grad_all = torch.empty_like(logits) if want_grad else None
    direct = grad_all is not None and grad_all.dtype == torch.float32
    total = torch.zeros((), dtype=torch.float64, device=logits.device)
    for start, stop in chunk_rows(count, height * width, chunk_elements, logits.device):
        shape = (stop - start, height * width) if flat else (stop - start, 1, height, width)
        x = logits[start:stop].float().view(shape)
        t = target_masks[start:stop].reshape(shape).float()
        grad = None
        if grad_all is not None:
            grad = grad_all[start:stop].view(shape) if direct else torch.empty_like(x)
        loss = chunk_loss(x, t, chunk_crop(rows, cols, start, stop), area[start:stop], settings, grad)
        if w is not None:
            loss = loss * w[start:stop]
            if grad is not None:
                grad.mul_(w[start:stop].view((-1,) + (1,) * (grad.dim() - 1)))
        total += loss.sum()
        if grad is not None and not direct:
            grad_all[start:stop].view(shape).copy_(grad)
    return total.float(), grad_all


class StoredGradLoss(torch.autograd.Function):
    """Clipped component whose gradient w.r.t. the first input is computed by `forward_fn` up front."""

    @staticmethod
    def forward(ctx, logits, forward_fn, normalizer, clip):  # type: ignore[override]
        with full_precision(logits):
            total, grad = forward_fn(ctx.needs_input_grad[0])
        value, ctx.slope = clipped(total, normalizer, clip)
        ctx.grad = grad
        ctx.forward_fn = forward_fn
        return value

    @staticmethod
    def backward(ctx, grad_value):  # type: ignore[override]
        grad, ctx.grad = ctx.grad, None
        if grad is None:  # a second backward (retain_graph=True): recompute from the inputs
            with full_precision(grad_value):
                _, grad = ctx.forward_fn(True)
        if isinstance(ctx.slope, float) and grad_value.device.type == "cpu":
            scale = float(grad_value) * ctx.slope
            return (grad if scale == 1.0 else grad.mul_(scale)), None, None, None
        return grad.mul_((grad_value * ctx.slope).to(torch.float32)), None, None, None


def stored_instance_loss(
    mask_logits: torch.Tensor,  # (N, H, W)
    sum_and_grad: Callable,  # (detached logits, want_grad) -> (total, unscaled gradient or None)
    normalizer: float | torch.Tensor | None,
    clip: float,
) -> torch.Tensor:
    """StoredGradLoss over per-instance losses, normalised by the number of instances by default."""

    def forward_fn(want_grad: bool):
        return sum_and_grad(mask_logits.detach(), want_grad)

    norm = instance_normalizer(mask_logits.shape[0], normalizer)
    return StoredGradLoss.apply(mask_logits, forward_fn, norm, clip)
