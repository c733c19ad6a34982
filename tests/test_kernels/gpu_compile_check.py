"""Compile every Triton loss kernel for an H100 (sm_90) without a GPU: PTX and cubin via Triton's ptxas.

Run as a script with TRITON_INTERPRET unset (the interpreter would replace the kernels). Prints one
line per kernel and exits 1 if any fails. Used by test_kernels_compile.py; handy by hand too:
  env -u TRITON_INTERPRET .venv/bin/python tests/test_kernels/gpu_compile_check.py
"""

from __future__ import annotations

import os
import sys

import triton
from triton.backends.compiler import GPUTarget
from triton.compiler import ASTSource

from apex_x.kernels import _triton_common, boundary, focal, giou, mask

P = "*fp32"
FOCAL_ARGS = {"n_rows": "i32", "n_cols": "i32", "gamma": "fp32", "alpha": "fp32"}
FOCAL_FLAGS = ("CLASS_IDS", "HAS_WEIGHTS", "HAS_ALPHA", "GAMMA_MODE", "BLOCK_R", "BLOCK_C")


def _focal(kernel, pointers: dict, flags: tuple) -> tuple:
    signature = {**pointers, **FOCAL_ARGS, **{name: "constexpr" for name in FOCAL_FLAGS}}
    return kernel, signature, dict(zip(FOCAL_FLAGS, flags, strict=True))


CASES = [
    _focal(focal._focal_forward_kernel, {"x_ptr": "*bf16", "t_ptr": "*i64", "w_ptr": P, "partial_ptr": P},
           (True, True, True, 2, 16, 128)),
    _focal(focal._focal_backward_kernel, {"x_ptr": P, "t_ptr": P, "w_ptr": P, "scale_ptr": P, "grad_ptr": P},
           (False, False, False, 1, 16, 128)),
    _focal(focal._focal_backward_kernel,
           {"x_ptr": "*bf16", "t_ptr": "*u8", "w_ptr": P, "scale_ptr": P, "grad_ptr": "*bf16"},
           (False, True, True, 0, 1, 2048)),
    (giou._giou_forward_kernel,
     {"pred_ptr": P, "target_ptr": P, "loss_ptr": P, "n_pairs": "i32", "eps": "fp32", "BLOCK": "constexpr"},
     {"BLOCK": 1024}),
    (giou._giou_backward_kernel,
     {"pred_ptr": "*bf16", "target_ptr": "*bf16", "scale_ptr": P, "grad_ptr": "*bf16", "n_pairs": "i32",
      "eps": "fp32", "SCALE_PER_PAIR": "constexpr", "BLOCK": "constexpr"},
     {"SCALE_PER_PAIR": True, "BLOCK": 1024}),
    (mask._mask_forward_kernel,
     {"x_ptr": "*bf16", "t_ptr": "*u8", "box_ptr": P, "partial_ptr": P, "height": "i32", "width": "i32",
      "HAS_BOXES": "constexpr", "BLOCK": "constexpr"},
     {"HAS_BOXES": True, "BLOCK": 2048}),
    (mask._mask_backward_kernel,
     {"x_ptr": P, "t_ptr": P, "box_ptr": P, "coef_ptr": P, "grad_ptr": P, "height": "i32", "width": "i32",
      "HAS_BOXES": "constexpr", "BLOCK": "constexpr"},
     {"HAS_BOXES": False, "BLOCK": 2048}),
    (boundary._boundary_forward_kernel,
     {"x_ptr": P, "t_ptr": P, "box_ptr": P, "partial_ptr": P, "height": "i32", "width": "i32", "eps": "fp32",
      "HAS_BOXES": "constexpr", "BLOCK": "constexpr"},
     {"HAS_BOXES": True, "BLOCK": 2048}),
    (boundary._edge_grad_kernel,
     {"x_ptr": "*bf16", "t_ptr": "*u8", "box_ptr": P, "coef_ptr": P, "edge_grad_ptr": P, "code_max_ptr": "*i8",
      "code_min_ptr": "*i8", "height": "i32", "width": "i32", "eps": "fp32", "HAS_BOXES": "constexpr",
      "BLOCK": "constexpr"},
     {"HAS_BOXES": True, "BLOCK": 1024}),
    (boundary._gather_grad_kernel,
     {"x_ptr": "*bf16", "edge_grad_ptr": P, "code_max_ptr": "*i8", "code_min_ptr": "*i8", "grad_ptr": "*bf16",
      "height": "i32", "width": "i32", "BLOCK": "constexpr"},
     {"BLOCK": 1024}),
    (_triton_common._clipped_total_kernel,
     {"partial_ptr": P, "weight_ptr": "*bf16", "n_partials": "i32", "norm_ptr": P, "norm_value": "fp32",
      "clip": "fp32", "value_ptr": P, "slope_ptr": P, "WEIGHTED": "constexpr", "NORM_IS_TENSOR": "constexpr",
      "BLOCK": "constexpr"},
     {"WEIGHTED": True, "NORM_IS_TENSOR": True, "BLOCK": 1024}),
    (_triton_common._clipped_total_kernel,
     {"partial_ptr": P, "weight_ptr": P, "n_partials": "i32", "norm_ptr": P, "norm_value": "fp32",
      "clip": "fp32", "value_ptr": P, "slope_ptr": P, "WEIGHTED": "constexpr", "NORM_IS_TENSOR": "constexpr",
      "BLOCK": "constexpr"},
     {"WEIGHTED": False, "NORM_IS_TENSOR": False, "BLOCK": 1024}),
]  # fmt: skip


def main() -> int:
    if os.environ.get("TRITON_INTERPRET", "") not in ("", "0"):
        print("unset TRITON_INTERPRET: the interpreter replaces the kernels", file=sys.stderr)
        return 2
    target = GPUTarget("cuda", 90, 32)
    failures = 0
    for kernel, signature, constexprs in CASES:
        name = kernel.fn.__name__
        try:
            compiled = triton.compile(ASTSource(fn=kernel, signature=signature, constexprs=constexprs), target=target)
            print(f"{name}: ok ({len(compiled.asm['ptx'])} chars of PTX, {len(compiled.asm['cubin'])} bytes cubin)")
        except Exception as error:  # report every kernel, then fail
            failures += 1
            print(f"{name}: FAILED {type(error).__name__}: {error}")
    return 1 if failures else 0


if __name__ == "__main__":
    raise SystemExit(main())
