"""runtime.compile_model: the training forward through `torch.compile` (Inductor), eager when it cannot run.

The network's forward (backbone, neck, heads; not the loss, whose kernels have their own compiled path) is
compiled for the module the trainer calls (the DDP wrapper under torchrun); a stage that freezes parts is
recompiled by torch's own guards. The parameters and state-dict keys are the module's own, so checkpoints,
EMA and validation (which runs the eager module) are unchanged.

Compiled for one input size: the model's anchor cache makes every new size a full recompile, so when a
second size appears (multi-scale training) the network runs eager from then on and the report says why,
instead of recompiling (~1 minute each on 2 cores) or silently hitting torch's recompile limit.

Cost and gain, measured with `benchmarks/bench_step.py` (README): the first run of a network compiles for ~1
minute on a 2-core CPU (Inductor caches the code on disk, later runs start in seconds); a training step is
then 1.07-1.18x faster at 2 threads. Worth it for long runs, not for a few minutes.

A compiler that is missing (no C++ compiler on CPU, no triton on CUDA) or a compile of the forward that fails
is logged once, the eager forward runs from then on and the report's `run.compile_model` says why. Errors of
the model itself are not compile errors: they are raised again by the eager forward.
"""

from __future__ import annotations

from typing import Any

import structlog
import torch

from apex_x import kernels

log = structlog.get_logger(__name__)

COMPILE_ERRORS: tuple[type[BaseException], ...] = (
    torch._dynamo.exc.TorchDynamoException,
    torch._inductor.exc.InductorError,
    torch._inductor.exc.CppCompileError,
)


class CompiledForward:
    """Calls a module's forward compiled (runtime.compile_model=true) or eager; `to_plain()` for the report."""

    def __init__(self, requested: bool, device: torch.device) -> None:
        self.requested = bool(requested)
        self.reason: str | None = kernels.inductor_unavailable_reason(device) if requested else None
        if self.reason is not None:
            log.warning("runtime.compile_model: the network runs eager", reason=self.reason)
        self._module: torch.nn.Module | None = None
        self._compiled: Any = None
        self._size: tuple[int, ...] | None = None  # the input size it was compiled for

    @property
    def active(self) -> bool:
        return self.requested and self.reason is None

    def __call__(self, module: torch.nn.Module, images: torch.Tensor) -> Any:
        """module(images), compiled when active. (B, 3, H, W) images -> the module's outputs."""
        if not self.active:
            return module(images)
        size = tuple(images.shape[-2:])
        if self._size is not None and size != self._size:
            self.reason = (f"the input size changed ({self._size[0]}x{self._size[1]} -> {size[0]}x{size[1]}, "
                           "e.g. multi-scale training): compiled for one size only, the network runs eager")
            log.warning("runtime.compile_model: the network runs eager from now on", reason=self.reason)
            self._module = self._compiled = None
            return module(images)
        if self._module is not module:  # a new DDP wrapper (a new stage under torchrun): compile again
            if self._module is None:
                log.info("compiling the network", note="torch.compile, once per process; cached on disk after")
            self._module, self._compiled, self._size = module, torch.compile(module), size
        try:
            return self._compiled(images)
        except COMPILE_ERRORS as error:
            text = str(error).strip()
            self.reason = f"compiling failed: {type(error).__name__}: {text.splitlines()[0][:300] if text else ''}"
            log.warning("runtime.compile_model: compiling the network failed; it runs eager", reason=self.reason)
            self._module = self._compiled = None
            return module(images)

    def to_plain(self) -> dict[str, Any]:
        return {"requested": self.requested, "active": self.active, "reason": self.reason}
