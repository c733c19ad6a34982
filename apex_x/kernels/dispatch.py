"""Backend choice for the loss kernels: Triton for CUDA tensors when triton imports; on CPU the compiled torch
path (torch.compile) when a C++ compiler is on PATH and it has not failed here; the eager torch path otherwise."""

from __future__ import annotations

import importlib
import importlib.util
import os
import shutil
from typing import Any

import structlog
import torch

from apex_x.domain.errors import KernelBackendError

ENV_VAR = "APEX_X_KERNELS"
CONFIG_KEY = "runtime.kernels"
BACKEND_CHOICES = ("auto", "torch", "compiled", "triton")
COMPILERS = ("c++", "g++", "clang++", "cl")

_state: dict[str, Any] = {
    "preference": "auto",  # set by the trainer from runtime.kernels
    "triton": None,  # (importable: bool, version or error text), filled on first need
    "resolved": {},  # device type -> backend, as logged once
    "compile_failed": None,  # why the compiled path was given up in this process
    "compiler": None,  # (PATH searched, C++ compiler found or None): looked up once per PATH
}


def _check_name(name: object, source: str) -> str:
    value = str(name).strip().lower()
    if value not in BACKEND_CHOICES:
        raise KernelBackendError(f"{source}: unknown kernels backend {name!r}; choose one of {list(BACKEND_CHOICES)}")
    return value


def set_backend_preference(name: str) -> None:
    """Record the config value of runtime.kernels ("auto", "torch" or "triton"); APEX_X_KERNELS wins over it."""
    preference = _check_name(name, CONFIG_KEY)
    if preference != _state["preference"]:
        _state["preference"] = preference
        _state["resolved"] = {}


def requested_backend() -> tuple[str, str]:
    """(backend asked for, where it came from: "env", "config" or "default")."""
    env_value = os.environ.get(ENV_VAR, "").strip()
    if env_value:
        return _check_name(env_value, f"environment variable {ENV_VAR}"), "env"
    preference = _state["preference"]
    return preference, ("config" if preference != "auto" else "default")


def _interpreter_requested() -> bool:
    return os.environ.get("TRITON_INTERPRET", "").strip().lower() in ("1", "true", "yes", "on")


def triton_status() -> tuple[bool, str]:
    """(triton importable, its version or why not); imports triton on the first call only."""
    if _state["triton"] is None:
        if importlib.util.find_spec("triton") is None:
            _state["triton"] = (False, "the triton package is not installed (pip install triton, Linux only)")
        else:
            try:
                module = importlib.import_module("triton")
                _state["triton"] = (True, str(getattr(module, "__version__", "unknown")))
            except Exception as error:  # a broken install must not crash the torch path
                _state["triton"] = (False, f"import triton failed: {type(error).__name__}: {error}")
    return _state["triton"]


def inductor_unavailable_reason(device: torch.device) -> str | None:
    """Why torch.compile's Inductor cannot generate code for `device` (None when it can): on CPU it needs a C++
    compiler on PATH, on CUDA the triton package."""
    if device.type == "cuda":
        importable, detail = triton_status()
        return None if importable else f"torch.compile needs triton for CUDA code: {detail}"
    path = os.environ.get("PATH", "")
    if _state["compiler"] is None or _state["compiler"][0] != path:
        _state["compiler"] = (path, next((found for name in COMPILERS if (found := shutil.which(name))), None))
    if _state["compiler"][1] is None:
        return "no C++ compiler on PATH (c++, g++, clang++ or cl); torch.compile needs one for CPU code"
    return None


def compiled_unavailable_reason() -> str | None:
    """Why the compiled torch path cannot run (None when it can): no C++ compiler, or it failed in this process."""
    if _state["compile_failed"] is not None:
        return f"it failed earlier in this process ({_state['compile_failed']})"
    return inductor_unavailable_reason(torch.device("cpu"))


def record_compile_failure(error: BaseException) -> None:
    """The compiled path failed (compiler or Inductor error): warn once; the eager path runs from now on."""
    text = str(error).strip()
    _state["compile_failed"] = f"{type(error).__name__}: {text.splitlines()[0][:300] if text else ''}"
    _state["resolved"] = {device: ("torch" if name == "compiled" else name) for device, name in _state["resolved"].items()}
    structlog.get_logger(__name__).warning(
        "compiled loss kernels failed; using the eager torch path", reason=_state["compile_failed"]
    )


def triton_unavailable_reason(device: torch.device) -> str | None:
    """Why the Triton kernels cannot run for tensors on `device` (None when they can)."""
    importable, detail = triton_status()
    if not importable:
        return detail
    if device.type == "cuda":
        return None
    if device.type == "cpu" and _interpreter_requested():
        return None
    return f"Triton kernels need a CUDA tensor (got device {device.type!r}; CPU runs only with TRITON_INTERPRET=1)"


def _forced_error(source: str, device: torch.device, reason: str) -> KernelBackendError:
    where = f"environment variable {ENV_VAR}" if source == "env" else CONFIG_KEY
    return KernelBackendError(
        f"{where}=triton cannot run for {device.type} tensors: {reason}; set it to 'auto' or 'torch'"
    )


def resolve_backend(tensor: torch.Tensor) -> str:
    """The backend ("torch", "compiled" or "triton") the losses use for `tensor`; raises KernelBackendError if
    triton is forced and impossible. "compiled" asked for where it cannot run gives the eager torch path (the
    reason is in active_backend_report); only the mask and boundary losses have a compiled graph."""
    requested, source = requested_backend()
    device = tensor.device
    if requested == "torch":
        backend = "torch"
    elif requested == "compiled":
        backend = "compiled" if compiled_unavailable_reason() is None else "torch"
    elif requested == "triton":
        reason = triton_unavailable_reason(device)
        if reason is not None:
            raise _forced_error(source, device, reason)
        backend = "triton"
    elif device.type == "cuda" and triton_status()[0]:
        backend = "triton"
    else:
        backend = "compiled" if device.type == "cpu" and compiled_unavailable_reason() is None else "torch"
    if _state["resolved"].get(device.type) != backend:
        _state["resolved"][device.type] = backend
        structlog.get_logger(__name__).info(
            "loss kernels backend", backend=backend, requested=requested, source=source, device=device.type
        )
    return backend


def active_backend_report() -> dict[str, Any]:
    """What was asked for and what ran, for the train report (plain JSON values)."""
    requested, source = requested_backend()
    triton_checked = _state["triton"] is not None
    return {
        "requested": requested,
        "source": source,
        "resolved": dict(_state["resolved"]),
        "triton_installed": importlib.util.find_spec("triton") is not None,
        "triton_version": _state["triton"][1] if triton_checked and _state["triton"][0] else None,
        "triton_error": _state["triton"][1] if triton_checked and not _state["triton"][0] else None,
        "triton_interpret": _interpreter_requested(),
        "compiled_unavailable": compiled_unavailable_reason(),
    }
