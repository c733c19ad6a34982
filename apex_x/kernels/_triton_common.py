"""Shared pieces of the Triton loss kernels (imported only when the Triton backend runs)."""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator

import torch
import triton
import triton.language as tl

from apex_x.domain.errors import KernelBackendError
from apex_x.kernels._common import (
    box_crop_factors,
    clip_and_save,
    dice_bce_terms,
    full_precision,
    instance_normalizer,
    weighted_total,
)

NAN_ALL = tl.constexpr(tl.PropagateNan.ALL)  # constexpr: the only kind of global a compiled kernel may read
ELEMENTS_PER_PROGRAM = 2048  # elementwise tile; memory-bound kernels, 4 warps
FP32_MAX = tl.constexpr(3.4028234663852886e38)  # nan_to_num's replacement for +Inf (and -FP32_MAX for -Inf)
FINISH_BLOCK = 1024  # partial sums per step of the one-program clip kernel


def is_interpreted(kernel: object) -> bool:
    """True when `kernel` was decorated under TRITON_INTERPRET=1 (it then runs on CPU tensors)."""
    return type(kernel).__name__ == "InterpretedFunction"


@contextlib.contextmanager
def launch_guard(tensor: torch.Tensor, kernel: object) -> Iterator[None]:
    """Launch on the tensor's CUDA device; CPU tensors need the interpreter."""
    if tensor.is_cuda:
        with torch.cuda.device(tensor.device):
            yield
        return
    if not is_interpreted(kernel):
        raise KernelBackendError(
            f"Triton kernels got {tensor.device.type} tensors but were compiled for CUDA; "
            "set TRITON_INTERPRET=1 before the first Triton loss runs, or use APEX_X_KERNELS=torch"
        )
    yield


def pow2_at_least(value: int, floor: int = 1) -> int:
    return max(floor, triton.next_power_of_2(max(int(value), 1)))


def pixel_block(pixels: int) -> int:
    """Pixels per program for per-instance kernels: the elementwise tile, smaller for small masks."""
    return min(ELEMENTS_PER_PROGRAM, pow2_at_least(pixels, 128))


def scalar_pointer(value: torch.Tensor) -> torch.Tensor:
    """A 0-d tensor (e.g. grad * clip gate) as a 1-element fp32 buffer a kernel reads: no host sync."""
    return value.detach().reshape(1).to(torch.float32).contiguous()


def kernel_view(tensor: torch.Tensor) -> torch.Tensor:
    """Contiguous, and bool as uint8 (same bytes) so every kernel loads plain integers or floats."""
    tensor = tensor.contiguous()
    return tensor.view(torch.uint8) if tensor.dtype == torch.bool else tensor


def autocast_off(host_forward: Callable) -> staticmethod:
    """An autograd.Function `forward(ctx, *inputs)` running `host_forward` with autocast off (fp32 sums)."""

    def forward(ctx, *inputs):
        with full_precision(inputs[0]):
            return host_forward(ctx, *inputs)

    return staticmethod(forward)


@triton.jit
def _clipped_total_kernel(partial_ptr, weight_ptr, n_partials, norm_ptr, norm_value, clip, value_ptr, slope_ptr,
                          WEIGHTED: tl.constexpr, NORM_IS_TENSOR: tl.constexpr, BLOCK: tl.constexpr):  # fmt: skip
    """One program: total = sum(partials [* weights]); value = min(nan_to_num(total / norm), clip);
    slope = d value / d total = [ratio finite and below the clip] / norm (clipped()'s rules, on the device)."""
    acc = tl.zeros((BLOCK,), tl.float32)
    for start in range(0, n_partials, BLOCK):
        index = start + tl.arange(0, BLOCK)
        ok = index < n_partials
        part = tl.load(partial_ptr + index, mask=ok, other=0.0)
        if WEIGHTED:
            part = part * tl.load(weight_ptr + index, mask=ok, other=0.0).to(tl.float32)
        acc += part
    total = tl.sum(acc, axis=0)
    if NORM_IS_TENSOR:
        norm = tl.load(norm_ptr).to(tl.float32)
    else:
        norm = norm_value
    ratio = total / norm
    finite = tl.where(ratio != ratio, 0.0, ratio)  # NaN -> 0
    finite = tl.minimum(tl.maximum(finite, -FP32_MAX), FP32_MAX)  # -Inf/+Inf -> the largest finite values
    tl.store(value_ptr, tl.minimum(finite, clip))
    gate = (tl.abs(ratio) <= FP32_MAX) & (finite < clip)
    tl.store(slope_ptr, tl.where(gate, 1.0, 0.0) / norm)


def _fused_normalizer(normalizer: float | torch.Tensor, device: torch.device) -> tuple[torch.Tensor | None, float] | None:
    """(pointer tensor or None, value) when the clip kernel can take the normalizer: a Python number, or a
    one-element fp32 tensor on the device of the partials (the result stays fp32, as torch would give)."""
    if isinstance(normalizer, torch.Tensor):
        if normalizer.numel() == 1 and normalizer.dtype == torch.float32 and normalizer.device == device:
            return normalizer.reshape(1), 1.0
        return None
    if isinstance(normalizer, bool) or not isinstance(normalizer, (int, float)):
        return None
    return None, float(normalizer)


def clip_partials_and_save(
    ctx,
    partials: torch.Tensor,  # (P,) fp32 partial sums (or per-item losses)
    weights: torch.Tensor | None,  # (P,) per-item weights, or None
    normalizer: float | torch.Tensor,
    clip: float,
    *saved: torch.Tensor | None,
) -> torch.Tensor:
    """Host forward tail: sum, normalise, nan_to_num, clip and the backward's slope in one launch
    (instead of ~10 small torch ops); other normalizers take the torch ops of clip_and_save."""
    fused = _fused_normalizer(normalizer, partials.device)
    if fused is None:
        total, _ = weighted_total(partials, weights)
        return clip_and_save(ctx, total, normalizer, clip, *saved)
    norm_tensor, norm_value = fused
    value = torch.empty((), dtype=torch.float32, device=partials.device)
    slope = torch.empty((), dtype=torch.float32, device=partials.device)
    weight_arg = partials if weights is None else weights.contiguous()
    with launch_guard(partials, _clipped_total_kernel):
        _clipped_total_kernel[(1,)](
            partials, weight_arg, partials.numel(), partials if norm_tensor is None else norm_tensor, norm_value,
            float(clip), value, slope, WEIGHTED=weights is not None, NORM_IS_TENSOR=norm_tensor is not None,
            BLOCK=FINISH_BLOCK,
        )  # fmt: skip
    ctx.save_for_backward(*saved)
    ctx.slope = slope
    return value


def instance_launch(
    mask_logits: torch.Tensor, target_masks: torch.Tensor, boxes: torch.Tensor | None
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, tuple[int, int], int, torch.Tensor]:
    """Kernel inputs of the per-instance losses: (x, t, box, grid (instance, pixel block), block, partials).

    `box` is x itself without boxes (never read: HAS_BOXES=False); partials hold four fp32 sums per block."""
    x = mask_logits.contiguous()
    t = kernel_view(target_masks)
    count, height, width = x.shape
    box = x if boxes is None else boxes.contiguous()
    block = pixel_block(height * width)
    grid = (count, triton.cdiv(height * width, block))
    partials = torch.empty(count * grid[1] * 4, dtype=torch.float32, device=x.device)
    return x, t, box, grid, block, partials


def instance_sums(partials: torch.Tensor, count: int) -> tuple[torch.Tensor, ...]:
    """(N * blocks * 4,) partial sums -> four (N,) sums."""
    return tuple(partials.view(count, -1, 4).sum(1).unbind(1))


def finish_instance_forward(ctx, partials, x, t, box, boxes, weights, bce_weight, dice_weight, smooth, normalizer,
                            clip) -> torch.Tensor:  # fmt: skip
    """Per-instance BCE + Dice algebra on the (N,) block sums, weighted sum, clip; saves what the backward needs."""
    count, height, width = x.shape
    area = box_crop_factors(boxes, count, height, width, x.device)[2]
    losses, *coefs = dice_bce_terms(*instance_sums(partials, count), area, bce_weight, dice_weight, smooth)
    total, w = weighted_total(losses, weights)
    return clip_and_save(ctx, total, instance_normalizer(count, normalizer), clip, x, t, box, w, *coefs)


def scaled_coefficients(grad_value, slope, weights, coef_a, coef_b, coef_c) -> torch.Tensor:
    """(N, 3) per-instance gradient coefficients times grad_output, the clip gate and the weights."""
    scale = (grad_value * slope).float()
    if weights is not None:
        scale = scale * weights
    return (torch.stack((coef_a, coef_b, coef_c), dim=1) * scale.reshape(-1, 1)).contiguous()


def instance_backward_inputs(ctx, grad_value) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """(x, t, box, scaled (N, 3) coefficients) for the backward kernels of the per-instance losses."""
    x, t, box, w, coef_a, coef_b, coef_c = ctx.saved_tensors
    return x, t, box, scaled_coefficients(grad_value, ctx.slope, w, coef_a, coef_b, coef_c)


@triton.jit
def log_sigmoid_abs(p):
    """logsigmoid(|x|) = log(max(p, 1 - p)) from p = sigmoid(x), as the torch path computes it."""
    return tl.log(tl.maximum(p, 1.0 - p, propagate_nan=NAN_ALL))


@triton.jit
def bce_with_logits(x, t, p):
    """(1 - t) x - logsigmoid(x): the reference's formula, NaN/Inf behaviour included."""
    return (1.0 - t) * x - tl.minimum(x, 0.0, propagate_nan=NAN_ALL) - log_sigmoid_abs(p)


@triton.jit
def box_crop(box_ptr, instance, rows, cols, HAS_BOXES: tl.constexpr):
    """1.0 where the pixel centre (col + 0.5, row + 0.5) lies in the instance's xyxy box, as the reference."""
    if HAS_BOXES:
        base = box_ptr + instance.to(tl.int64) * 4
        xs = cols.to(tl.float32) + 0.5
        ys = rows.to(tl.float32) + 0.5
        inside_x = (xs >= tl.load(base).to(tl.float32)) & (xs < tl.load(base + 2).to(tl.float32))
        inside_y = (ys >= tl.load(base + 1).to(tl.float32)) & (ys < tl.load(base + 3).to(tl.float32))
        return tl.where(inside_x & inside_y, 1.0, 0.0)
    else:
        return tl.full(rows.shape, 1.0, tl.float32)
