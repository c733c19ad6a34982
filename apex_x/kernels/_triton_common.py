"""Shared pieces of the Triton loss kernels (imported only when the Triton backend runs)."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import torch
import triton
import triton.language as tl

from apex_x.domain.errors import KernelBackendError

NAN_ALL = tl.constexpr(tl.PropagateNan.ALL)  # constexpr: the only kind of global a compiled kernel may read
ELEMENTS_PER_PROGRAM = 2048  # elementwise tile; memory-bound kernels, 4 warps


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
