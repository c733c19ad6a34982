"""Input builders and comparison helpers shared by the kernel tests (small shapes: the interpreter is slow)."""

from __future__ import annotations

import os

import pytest
import torch

INTERPRETED = os.environ.get("TRITON_INTERPRET", "") == "1"
HAS_CUDA = torch.cuda.is_available()
needs_cuda = pytest.mark.skipif(not HAS_CUDA, reason="needs a CUDA device")
needs_interpreter = pytest.mark.skipif(not INTERPRETED, reason="Triton on CPU tensors needs TRITON_INTERPRET=1")

# (backend, device): every backend against the reference, CPU always, CUDA when present.
BACKENDS = [
    pytest.param("torch", "cpu", id="torch-cpu"),
    pytest.param("compiled", "cpu", id="compiled-cpu"),
    pytest.param("triton", "cpu", id="triton-interpreted", marks=needs_interpreter),
    pytest.param("torch", "cuda", id="torch-cuda", marks=[needs_cuda, pytest.mark.cuda]),
    pytest.param("triton", "cuda", id="triton-cuda", marks=[needs_cuda, pytest.mark.cuda]),
]

# (dtype, value rtol, grad atol relative to the largest reference gradient, grad rtol)
DTYPES = [
    pytest.param((torch.float32, 1e-5, 1e-5, 1e-4), id="fp32"),
    pytest.param((torch.bfloat16, 1e-4, 2e-2, 2e-2), id="bf16"),
]


def use_backend(monkeypatch: pytest.MonkeyPatch, backend: str) -> None:
    monkeypatch.setenv("APEX_X_KERNELS", backend)


def box_batch(count: int, generator: torch.Generator, scale: float = 50.0) -> torch.Tensor:
    """(count, 4) xyxy boxes with positive size."""
    corner = torch.rand(count, 2, generator=generator) * scale
    size = torch.rand(count, 2, generator=generator) * scale * 0.6 + 0.5
    return torch.cat([corner, corner + size], dim=1)


def mask_boxes(count: int, height: int, width: int, generator: torch.Generator) -> torch.Tensor:
    """(count, 4) boxes in mask pixels, some reaching past the border, fractional corners."""
    corner = torch.rand(count, 2, generator=generator) * torch.tensor([width, height]) * 0.5 - 1.0
    size = torch.rand(count, 2, generator=generator) * torch.tensor([width, height]) + 2.0
    return torch.cat([corner, corner + size], dim=1)


def value_and_grad(fn, prediction: torch.Tensor, *args, **kwargs) -> tuple[torch.Tensor, torch.Tensor]:
    leaf = prediction.detach().clone().requires_grad_(True)
    value = fn(leaf, *args, **kwargs)
    value.backward()
    return value.detach(), leaf.grad


def assert_matches(
    ours: tuple[torch.Tensor, torch.Tensor],
    ref: tuple[torch.Tensor, torch.Tensor],
    value_rtol: float = 1e-5,
    grad_atol: float = 1e-5,
    grad_rtol: float = 1e-4,
) -> None:
    """Values and gradients equal within tolerance; NaN where the reference has NaN."""
    (value, grad), (ref_value, ref_grad) = ours, ref
    torch.testing.assert_close(value.double(), ref_value.double(), rtol=value_rtol, atol=1e-6, equal_nan=True)
    assert grad.dtype == ref_grad.dtype and grad.shape == ref_grad.shape
    finite = ref_grad.float()[torch.isfinite(ref_grad.float())]
    scale = float(finite.abs().max()) if finite.numel() else 1.0
    torch.testing.assert_close(
        grad.float().cpu(), ref_grad.float().cpu(), atol=grad_atol * max(scale, 1e-12), rtol=grad_rtol, equal_nan=True
    )
