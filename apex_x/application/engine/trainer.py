"""The training loop: one guarded optimizer step (skip non-finite, survive OOM) and the epoch loop."""

from __future__ import annotations

import contextlib
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import structlog
import torch
from torch.nn.parallel import DistributedDataParallel

from apex_x.application.engine.accumulation import BatchPlan, accumulation_groups
from apex_x.application.engine.compiled_forward import CompiledForward
from apex_x.application.engine.curriculum import Stage, apply_trainable, set_train_mode
from apex_x.application.engine.diagnostics import RunDiagnostics
from apex_x.application.engine.distributed import DistContext, any_true
from apex_x.application.engine.ema import ModelEma
from apex_x.application.engine.progress import Progress
from apex_x.application.engine.schedules import lr_factor
from apex_x.application.engine.train_state import reseed
from apex_x.domain.augment import AugmentPlan
from apex_x.domain.config import TrainConfig
from apex_x.domain.errors import TrainingStopped
from apex_x.domain.ports import AuxiliaryLoss, BatchLoader, SegmentationModel
from apex_x.domain.registry import LOSS_COMPONENTS
from apex_x.domain.types import Batch, LossSettings

log = structlog.get_logger(__name__)


def build_optimizer(model: torch.nn.Module, train: TrainConfig, scale: float = 1.0,
                    backbone: Sequence[torch.nn.Parameter] = (), backbone_lr_mult: float = 1.0) -> torch.optim.Optimizer:
    """AdamW over every parameter: weight decay on weights (ndim >= 2), none on norms and biases; `scale`
    (accumulation.BatchPlan.scale) multiplies train.weight_decay. With `backbone_lr_mult` != 1 the `backbone`
    parameters get groups of their own whose `lr_mult` the step multiplies the scheduled lr by (the fine-tuning
    recipe, domain/fine_tune.py); the first group is always one at the full lr.

    One optimizer for the whole run: frozen parameters get no gradient, so AdamW leaves them alone. The fused
    implementation (one kernel over all parameters) when every parameter is a float32 tensor on the CPU or a
    CUDA device: on the CPU 2 ms a step against 7 ms for the per-tensor loop (the student's parameters alone,
    2 threads; 4.1 against 12.2 ms inside benchmarks/bench_step.py's steps).
    """
    slow = {id(param) for param in backbone} if backbone_lr_mult != 1.0 else set()
    groups = []
    for part, mult in (("", 1.0), ("backbone_", backbone_lr_mult)):
        params = [param for param in model.parameters() if (id(param) in slow) == bool(part)]
        groups += [
            {"params": [p for p in params if p.ndim >= 2], "weight_decay": train.weight_decay * scale,
             "name": part + "decay", "lr_mult": mult},
            {"params": [p for p in params if p.ndim < 2], "weight_decay": 0.0, "name": part + "no_decay",
             "lr_mult": mult},
        ]
    fused = all(param.dtype == torch.float32 and param.device.type in ("cpu", "cuda") for param in model.parameters())
    return torch.optim.AdamW([group for group in groups if group["params"]], lr=train.lr, betas=(0.9, 0.999),
                             fused=fused or None)


def clipped_components(values: dict[str, float], settings: LossSettings) -> tuple[str, ...]:
    """Components whose value is at their clip: min(value, clip) has a zero gradient there."""
    clips = settings.clips
    return tuple(sorted(name for name, value in values.items()
                        if name in clips and math.isfinite(clips[name]) and value >= clips[name] * (1 - 1e-6)))


@dataclass
class StepOutcome:
    """What happened to one batch."""

    kind: str  # "applied" | "bad_loss" | "bad_grad" | "oom"
    total: float | None = None
    components: dict[str, float] = field(default_factory=dict)
    grad_norm: float | None = None
    bad: dict[str, float] = field(default_factory=dict)
    stop_requested: bool = False
    clipped: tuple[str, ...] = ()  # components that sat at their clip value (zero gradient) on this step


class BadImageStop(Exception):  # noqa: N818 - a control-flow signal to the run session, not a failure type
    """An image of the batch failed to decode and data.on_bad_image is error: the session saves last.pt at
    the last completed step (`steps_done` of the epoch) and stops with a message naming the image."""

    def __init__(self, steps_done: int, bad_images: list[dict[str, Any]]) -> None:
        super().__init__(f"{len(bad_images)} image(s) failed to decode")
        self.steps_done = steps_done
        self.bad_images = bad_images


@dataclass
class EpochOutcome:
    steps_done: int  # batches done in the epoch (including those done before a resume)
    stop: bool = False  # a pause or stop was requested (agreed by every rank)


class Trainer:
    """Owns the model (and its DDP wrapper), optimizer, EMA and diagnostics of a run."""

    def __init__(
        self,
        *,
        model: SegmentationModel,
        optimizer: torch.optim.Optimizer,
        train: TrainConfig,
        context: DistContext,
        ema: ModelEma | None,
        diagnostics: RunDiagnostics,
        auxiliary_losses: Sequence[AuxiliaryLoss] = (),
        amp_dtype: torch.dtype | None = None,
        total_steps: int = 1,
        global_step: int = 0,
        on_bad_image: str = "error",
        batch_plan: BatchPlan | None = None,
        compiled_forward: CompiledForward | None = None,
    ) -> None:
        self.model = model
        self.module: torch.nn.Module = model  # type: ignore[assignment]
        self.wrapped: torch.nn.Module = self.module
        self.optimizer = optimizer
        self.train = train
        self.context = context
        self.ema = ema
        self.diagnostics = diagnostics
        self.auxiliary_losses = list(auxiliary_losses)
        self.amp_dtype = amp_dtype
        self.total_steps = max(1, total_steps)
        self.global_step = global_step
        self.consecutive_bad = 0
        self.first_bad: tuple[int, list[str]] | None = None
        self.stop_requested: Callable[[], bool] = lambda: False
        self.on_bad_image = on_bad_image  # data.on_bad_image: error (stop, resumable) or skip (leave out, count)
        self.batch_plan = batch_plan or BatchPlan(train.batch_size, context.world_size, 1, None)
        self._trainable: list[torch.nn.Parameter] = []
        self.last_outcome: StepOutcome | None = None  # the latest step's, for the experiment trackers
        self._stage: Stage | None = None
        self.compiled_forward = compiled_forward or CompiledForward(False, context.device)
        # parameters whose BatchNorm layers keep their running statistics (train.backbone_norm_eval)
        self.norm_eval: frozenset[int] = frozenset()

    # --- state of a checkpoint ------------------------------------------------------------------
    def watch_stop(self, requested: Callable[[], bool]) -> None:
        """`requested()` is polled (and agreed by every rank) at each step: True pauses the epoch."""
        self.stop_requested = requested

    @property
    def applied_lr(self) -> float:
        """The lr the optimizer applied on the last step (its first parameter group)."""
        return float(self.optimizer.param_groups[0]["lr"])

    def checkpoint_state(self) -> dict[str, Any]:
        """The trainer's part of a checkpoint: optimizer, scheduler position and the non-finite streak."""
        return {
            "optimizer": self.optimizer.state_dict(),
            "scheduler": {"kind": "warmup_cosine", "global_step": self.global_step, "total_steps": self.total_steps},
            "consecutive_bad": self.consecutive_bad,
            "first_bad": list(self.first_bad) if self.first_bad else None,
        }

    def restore(self, optimizer_state: Any, *, global_step: int, diagnostics: RunDiagnostics,
                consecutive_bad: int, first_bad: Any) -> None:
        """Continue from a checkpoint. Raises what `optimizer.load_state_dict` raises for a state that does
        not fit (the caller names the file)."""
        self.optimizer.load_state_dict(optimizer_state)
        self.global_step = global_step
        self.diagnostics = diagnostics
        self.consecutive_bad = int(consecutive_bad)
        self.first_bad = (int(first_bad[0]), list(first_bad[1])) if first_bad else None

    # --- stages -------------------------------------------------------------------------------
    def begin_stage(self, stage: Stage, groups: dict[str, list[torch.nn.Parameter]]) -> int:
        """Freeze/unfreeze for the stage and (re)wrap in DDP over the trainable parameters."""
        count = apply_trainable(self.module, groups, stage)
        self._trainable = [param for param in self.module.parameters() if param.requires_grad]
        self._stage = stage
        if self.context.enabled and self._trainable:
            device_ids = [self.context.device.index] if self.context.device.type == "cuda" else None
            self.wrapped = DistributedDataParallel(
                self.module, device_ids=device_ids, find_unused_parameters=True
            )
        else:
            self.wrapped = self.module
        log.info("stage_start", stage=stage.name, trainable_params=count, groups=list(stage.trainable),
                 **({"frozen": list(stage.frozen)} if stage.frozen else {}))
        return count

    def current_lr(self, stage: Stage) -> float:
        return self.lr_at(self.global_step, stage)

    def lr_at(self, step: int, stage: Stage) -> float:
        """The scheduled lr of optimizer step `step` (0-based) in `stage`: warmup, cosine, the stage's scale."""
        factor = lr_factor(
            step,
            total_steps=self.total_steps,
            warmup_steps=self.train.warmup_steps,
            min_lr_ratio=self.train.min_lr_ratio,
        )
        return self.train.lr * self.batch_plan.scale * stage.lr_scale * factor

    def _weight_of(self, name: str, stage: Stage, settings: LossSettings) -> float:
        """The step's weight of a component: the ramped model weight, else the stage's (auxiliary components),
        else the component's default weight (distill: train.distill_weight)."""
        if name in settings.weights:
            return float(settings.weights[name])
        if name in stage.losses:
            return float(stage.losses[name])
        component = LOSS_COMPONENTS.find(name)
        return component.default_weight(self.train) if component is not None else float(self.train.distill_weight)

    def _autocast(self) -> Any:
        if self.amp_dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(device_type=self.context.device.type, dtype=self.amp_dtype)

    # --- one step -----------------------------------------------------------------------------
    def step(self, batches: Sequence[Batch], stage: Stage, settings: LossSettings) -> StepOutcome:
        """One optimizer step over `batches` (the micro-batches of an accumulation group; one without
        accumulation): forward, loss and agreement on finiteness per micro-batch, backward of loss / count,
        then clip, optimizer and EMA step. A non-finite micro-batch skips the whole step."""
        lr = self.current_lr(stage)
        for group in self.optimizer.param_groups:
            group["lr"] = lr * float(group.get("lr_mult", 1.0))
        agreed = False
        sums: dict[str, float] = {}
        total_sum, stop, clipped = 0.0, False, set()
        count = max(1, len(batches))
        try:
            for index, micro in enumerate(batches):
                agreed = False
                batch = micro.to(self.context.device, non_blocking=self.context.device.type == "cuda")
                with self._no_sync(last=index == len(batches) - 1):
                    values, total, bad = self._forward(batch, stage, settings)
                    agreed_bad, asked = any_true(self.context, [bool(bad), self.stop_requested()])
                    agreed, stop = True, stop or asked
                    if agreed_bad:
                        self.optimizer.zero_grad(set_to_none=True)
                        return StepOutcome("bad_loss", bad=bad or {"other_rank": math.nan}, stop_requested=stop)
                    (total / count).backward()
                for name, value in values.items():
                    sums[name] = sums.get(name, 0.0) + value / count
                total_sum += float(total.detach()) / count
                clipped.update(clipped_components(values, settings))
            grad_norm = self._grad_norm_and_clip()
            if not math.isfinite(grad_norm):
                self.optimizer.zero_grad(set_to_none=True)
                return StepOutcome("bad_grad", grad_norm=grad_norm, stop_requested=stop)
            self.optimizer.step()
            self.optimizer.zero_grad(set_to_none=True)
            if self.ema is not None:
                self.ema.update()
            return StepOutcome("applied", total=total_sum, components=sums, grad_norm=grad_norm,
                               stop_requested=stop, clipped=tuple(sorted(clipped)))
        except torch.cuda.OutOfMemoryError:
            pass  # handled below, where the traceback (and the activations its frames hold) is gone
        return self._skip_oom_step(agreed)

    def _skip_oom_step(self, agreed: bool) -> StepOutcome:
        """Out of memory: free what can be freed and skip the step (every rank together), or stop under DDP
        when the other ranks passed the agreement already and wait in backward."""
        self.optimizer.zero_grad(set_to_none=True)
        if torch.cuda.is_available():
            torch.cuda.empty_cache()
        if self.context.enabled and agreed:
            raise TrainingStopped(
                "CUDA out of memory during backward under DDP (the other ranks cannot skip this step); "
                "lower train.batch_size or model.input_height/input_width, or enable model.gradient_checkpointing"
            ) from None
        stop = any_true(self.context, [True, self.stop_requested()])[1] if not agreed else False
        log.warning("oom_step_skipped", step=self.global_step)
        return StepOutcome("oom", stop_requested=stop)

    def _forward(self, batch: Batch, stage: Stage, settings: LossSettings
                 ) -> tuple[dict[str, float], torch.Tensor, dict[str, float]]:
        """One micro-batch: its component values, the weighted total (with its graph) and the non-finite ones."""
        with self._autocast():
            outputs = self.compiled_forward(self.wrapped, batch.images)
            components = dict(self.model.compute_losses(outputs, batch, settings))
            for auxiliary in self.auxiliary_losses:
                components[auxiliary.name] = auxiliary(batch, outputs)
        auxiliary_names = {auxiliary.name for auxiliary in self.auxiliary_losses}
        weights = {
            name: self._weight_of(name, stage, settings)
            for name in components
            if name in settings.weights or name in auxiliary_names
        }
        if not weights:
            raise RuntimeError(f"the model returned none of the active loss components {sorted(settings.weights)}")
        total = torch.stack([weights[name] * components[name].float() for name in weights]).sum()
        values = torch.stack([components[name].detach().float() for name in components] + [total.detach()]).tolist()
        by_name = dict(zip(components, values[:-1], strict=True))
        bad = {name: value for name, value in by_name.items() if not math.isfinite(value)}
        if not math.isfinite(values[-1]) and not bad:
            bad["total"] = values[-1]
        return by_name, total, bad

    def _no_sync(self, *, last: bool) -> Any:
        """DDP: gradients are all-reduced only on the last micro-batch of an accumulation group."""
        if last or not isinstance(self.wrapped, DistributedDataParallel):
            return contextlib.nullcontext()
        return self.wrapped.no_sync()

    def _grad_norm_and_clip(self) -> float:
        grads = [param.grad for param in self._trainable if param.grad is not None]
        if not grads:
            return 0.0
        norm = torch.nn.utils.get_total_norm(grads)
        value = float(norm)
        if self.train.grad_clip_norm is not None and math.isfinite(value):
            torch.nn.utils.clip_grads_with_norm_(self._trainable, self.train.grad_clip_norm, norm)
        return value

    # --- bookkeeping --------------------------------------------------------------------------
    def record(self, outcome: StepOutcome, stage: Stage) -> None:
        """Update diagnostics and the consecutive-bad counter; stop the run when it reaches the limit."""
        step_number = self.global_step  # 0-based index of this batch in the run
        self.last_outcome = outcome
        scopes = self.diagnostics.scopes(stage.name)
        if outcome.kind == "applied":
            for scope in scopes:
                scope.record_applied(outcome.components, outcome.total or 0.0, outcome.grad_norm or 0.0,
                                     outcome.clipped)
            self.consecutive_bad = 0
            self.first_bad = None
        elif outcome.kind == "oom":
            for scope in scopes:
                scope.record_oom()
        else:
            for scope in scopes:
                if outcome.kind == "bad_loss":
                    scope.record_bad_loss(step_number, outcome.bad)
                else:
                    scope.record_bad_grad(step_number, outcome.grad_norm if outcome.grad_norm is not None else math.nan)
            culprits = sorted(outcome.bad) if outcome.kind == "bad_loss" else ["gradient"]
            if self.first_bad is None:
                self.first_bad = (step_number, culprits)
            self.consecutive_bad += 1
            log.warning("non_finite_step_skipped", step=step_number, kind=outcome.kind, components=culprits)
        self.global_step += 1
        if self.consecutive_bad >= self.train.max_consecutive_bad_steps:
            first_step, first_components = self.first_bad or (step_number, ["unknown"])
            raise TrainingStopped(
                f"training stopped: {self.consecutive_bad} non-finite steps in a row "
                f"(train.max_consecutive_bad_steps={self.train.max_consecutive_bad_steps}); first bad step "
                f"{first_step} in stage {stage.name!r}, non-finite component(s): {', '.join(first_components)}. "
                "Nothing of these steps was applied; the checkpoints are intact. Lower train.lr, check the "
                "data, or tighten train.loss_*_component_clip"
            )

    def _undecodable(self, batch: Batch, done: int, stage: Stage) -> bool:
        """Images of the batch that failed to decode: stop (error, every rank agrees) or count them (skip).
        True when nothing of the batch is left to train on."""
        bad = list(batch.bad_images)
        stop = self.on_bad_image == "error" and bool(bad)
        if self.context.enabled and self.on_bad_image == "error":  # every rank stops together
            stop = any_true(self.context, [stop])[0]
        if stop:
            raise BadImageStop(done, bad)
        if not bad:
            return False
        for scope in self.diagnostics.scopes(stage.name):
            scope.record_bad_images([int(item["image_id"]) for item in bad])
        for item in bad:
            log.warning("bad_image_skipped", image_id=item["image_id"], file=item["file"], reason=item["reason"],
                        note="data.on_bad_image=skip: left out of this batch and counted in the report")
        return batch.batch_size == 0

    # --- the epoch ----------------------------------------------------------------------------
    def run_epoch(
        self,
        *,
        loader: BatchLoader,
        stage: Stage,
        epoch: int,
        start_batch: int,
        steps_in_epoch: int,
        settings_for: Callable[[float], LossSettings],
        progress: Progress,
        on_step_end: Callable[[int], bool],
        augment: AugmentPlan | None = None,
    ) -> EpochOutcome:
        """Optimizer steps [start_batch, steps_in_epoch) of `epoch` (each over batch_plan.accumulate loader
        batches); `on_step_end(steps_done)` returns True to pause.

        A pause or an agreed stop returns at once; the caller saves mid-epoch (or ends the epoch if it is done).
        """
        set_train_mode(self.module, self.norm_eval)
        done = start_batch
        if done >= steps_in_epoch:
            return EpochOutcome(done)
        seed, rank = self.train.seed, self.context.rank
        reseed(seed, "epoch", epoch, rank)
        accumulate = self.batch_plan.accumulate
        groups = accumulation_groups(loader.iter_epoch(epoch, start_batch * accumulate, augment), accumulate,
                                     usable=lambda batch: not self._undecodable(batch, done, stage))
        for group in groups:
            if not group:
                done += 1  # every image of the step's batches was left out: nothing to step on
                if on_step_end(done):
                    return EpochOutcome(done, stop=True)
                if done >= steps_in_epoch:
                    break
                continue
            if not self.context.enabled and self.stop_requested():  # a signal during the last step's backward
                return EpochOutcome(done, stop=True)  # (ranks of DDP agree on it after the next forward instead)
            reseed(seed, "step", self.global_step, rank)
            settings = settings_for(epoch + (done + 1) / max(1, steps_in_epoch))  # progress at the end of this step
            outcome = self.step(group, stage, settings)
            self.record(outcome, stage)
            done += 1
            progress.update(step=done, loss=outcome.total, lr=self.optimizer.param_groups[0]["lr"])
            pause = on_step_end(done)
            if outcome.stop_requested or pause:
                return EpochOutcome(done, stop=True)
            if done >= steps_in_epoch:
                break
        return EpochOutcome(done)
