"""Loss diagnostics (the user guide's section 5): component means, grad norm, NaN/Inf and skip/OOM counters."""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any


@dataclass
class LossDiagnostics:
    """Accumulated over an epoch, a stage or the run; plain values only (it goes into checkpoints)."""

    steps: int = 0  # batches seen
    applied_steps: int = 0  # optimizer steps taken
    component_sums: dict[str, float] = field(default_factory=dict)  # weighted-free component values
    component_counts: dict[str, int] = field(default_factory=dict)
    total_sum: float = 0.0
    grad_norm_last: float | None = None
    grad_norm_max: float | None = None
    nan_loss: int = 0
    inf_loss: int = 0
    nan_grad: int = 0
    inf_grad: int = 0
    skipped_steps: int = 0  # non-finite loss or gradient: never applied
    oom_skipped_steps: int = 0
    bad_components: dict[str, int] = field(default_factory=dict)  # non-finite count per component
    first_bad_step: int | None = None
    clipped_steps: dict[str, int] = field(default_factory=dict)  # applied steps with the component at its clip
    zero_grad_steps: int = 0  # applied steps whose global grad norm was 0 (nothing can move)
    bad_images_skipped: int = 0  # images that failed to decode and were left out (data.on_bad_image=skip)
    bad_image_ids: list[int] = field(default_factory=list)  # the first few of them

    def record_applied(self, components: Mapping[str, float], total: float, grad_norm: float,
                       clipped: tuple[str, ...] = ()) -> None:
        self.steps += 1
        self.applied_steps += 1
        for name in clipped:
            self.clipped_steps[name] = self.clipped_steps.get(name, 0) + 1
        if grad_norm == 0.0:
            self.zero_grad_steps += 1
        for name, value in components.items():
            self.component_sums[name] = self.component_sums.get(name, 0.0) + value
            self.component_counts[name] = self.component_counts.get(name, 0) + 1
        self.total_sum += total
        self.grad_norm_last = grad_norm
        self.grad_norm_max = grad_norm if self.grad_norm_max is None else max(self.grad_norm_max, grad_norm)

    def record_bad_loss(self, step: int, bad: Mapping[str, float]) -> None:
        """A step whose loss components (name -> value) are not finite: counted, skipped."""
        self.steps += 1
        self.skipped_steps += 1
        if any(math.isnan(value) for value in bad.values()):
            self.nan_loss += 1
        if any(math.isinf(value) for value in bad.values()):
            self.inf_loss += 1
        for name in bad:
            self.bad_components[name] = self.bad_components.get(name, 0) + 1
        self.first_bad_step = step if self.first_bad_step is None else self.first_bad_step

    def record_bad_grad(self, step: int, grad_norm: float) -> None:
        self.steps += 1
        self.skipped_steps += 1
        if math.isnan(grad_norm):
            self.nan_grad += 1
        else:
            self.inf_grad += 1
        self.bad_components["gradient"] = self.bad_components.get("gradient", 0) + 1
        self.first_bad_step = step if self.first_bad_step is None else self.first_bad_step

    def record_bad_images(self, image_ids: list[int]) -> None:
        self.bad_images_skipped += len(image_ids)
        self.bad_image_ids.extend(image_ids[: max(0, 20 - len(self.bad_image_ids))])

    def record_oom(self) -> None:
        self.steps += 1
        self.oom_skipped_steps += 1

    def component_means(self) -> dict[str, float]:
        return {name: self.component_sums[name] / self.component_counts[name] for name in sorted(self.component_sums)}

    def mean_total(self) -> float | None:
        return self.total_sum / self.applied_steps if self.applied_steps else None

    def _counters(self) -> dict[str, Any]:
        """Grad norms and NaN/Inf/skip counters: the part the report and checkpoint views share."""
        return {
            "grad_norm_last": self.grad_norm_last,
            "grad_norm_max": self.grad_norm_max,
            "nan_loss": self.nan_loss,
            "inf_loss": self.inf_loss,
            "nan_grad": self.nan_grad,
            "inf_grad": self.inf_grad,
            "skipped_steps": self.skipped_steps,
            "oom_skipped_steps": self.oom_skipped_steps,
            "bad_components": dict(self.bad_components),
            "first_bad_step": self.first_bad_step,
            "clipped_steps": dict(self.clipped_steps),
            "zero_grad_steps": self.zero_grad_steps,
            "bad_images_skipped": self.bad_images_skipped,
            "bad_image_ids": list(self.bad_image_ids),
        }

    def to_plain(self) -> dict[str, Any]:
        """Report view: means and counters."""
        return {
            "steps": self.steps,
            "applied_steps": self.applied_steps,
            "component_means": self.component_means(),
            "total_loss_mean": self.mean_total(),
            **self._counters(),
        }

    def state(self) -> dict[str, Any]:
        """Checkpoint view: everything needed to continue accumulating exactly."""
        return {
            "steps": self.steps,
            "applied_steps": self.applied_steps,
            "component_sums": dict(self.component_sums),
            "component_counts": dict(self.component_counts),
            "total_sum": self.total_sum,
            **self._counters(),
        }

    @classmethod
    def from_state(cls, state: Mapping[str, Any] | None) -> LossDiagnostics:
        if not state:
            return cls()
        known = set(cls.__dataclass_fields__)
        return cls(**{key: (dict(value) if isinstance(value, Mapping) else list(value) if isinstance(value, list)
                            else value) for key, value in state.items() if key in known})


class RunDiagnostics:
    """The epoch, stage and run accumulators updated together."""

    def __init__(self, epoch: LossDiagnostics | None = None, stages: Mapping[str, LossDiagnostics] | None = None,
                 run: LossDiagnostics | None = None) -> None:
        self.epoch = epoch or LossDiagnostics()
        self.stages: dict[str, LossDiagnostics] = dict(stages or {})
        self.run = run or LossDiagnostics()

    def scopes(self, stage: str) -> tuple[LossDiagnostics, ...]:
        return (self.epoch, self.stages.setdefault(stage, LossDiagnostics()), self.run)

    def new_epoch(self) -> None:
        self.epoch = LossDiagnostics()

    def state(self) -> dict[str, Any]:
        return {
            "epoch": self.epoch.state(),
            "stages": {name: value.state() for name, value in self.stages.items()},
            "run": self.run.state(),
        }

    @classmethod
    def from_state(cls, state: Mapping[str, Any] | None) -> RunDiagnostics:
        if not state:
            return cls()
        return cls(
            epoch=LossDiagnostics.from_state(state.get("epoch")),
            stages={name: LossDiagnostics.from_state(value) for name, value in dict(state.get("stages") or {}).items()},
            run=LossDiagnostics.from_state(state.get("run")),
        )
