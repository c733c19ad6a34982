"""One training session: restore state, loop over stages and epochs, validate, checkpoint, report."""

from __future__ import annotations

import contextlib
import copy
import time
from pathlib import Path
from typing import Any

import structlog

from apex_x.application.engine.accumulation import plan_batches
from apex_x.application.engine.checkpointing import CheckpointKeeper
from apex_x.application.engine.compiled_forward import CompiledForward
from apex_x.application.engine.curriculum import Stage, total_epochs
from apex_x.application.engine.diagnostics import RunDiagnostics
from apex_x.application.engine.distributed import DistContext, any_true
from apex_x.application.engine.early_stopping import skip_rest_of_stage
from apex_x.application.engine.ema import ModelEma
from apex_x.application.engine.epoch_end import EpochEnd
from apex_x.application.engine.previews import choose_preview_ids
from apex_x.application.engine.run_support import (
    RunNetwork,
    RunPlan,
    RunPorts,
    TrainResult,
    amp_dtype,
)
from apex_x.application.engine.schedules import loss_settings
from apex_x.application.engine.session_outputs import SessionOutputs
from apex_x.application.engine.tracking import Trackers
from apex_x.application.engine.train_report import ReportState
from apex_x.application.engine.train_state import (
    Position,
    StartPoint,
    check_optimizer_state,
    in_curriculum,
    not_in_curriculum,
    restore_rng,
)
from apex_x.application.engine.trainer import BadImageStop, Trainer, build_optimizer
from apex_x.application.engine.validation import ValidationStopped
from apex_x.domain.augment import AugmentPlan, augment_plan, closed_for_whole_run
from apex_x.domain.checkpoint import TrainingCheckpoint
from apex_x.domain.errors import CheckpointError, DatasetError, TrainingStopped
from apex_x.domain.fine_tune import resolve_recipe

log = structlog.get_logger(__name__)


class RunSession(EpochEnd, SessionOutputs):
    """The state of a run in this process and the loop over its remaining epochs."""

    def __init__(self, plan: RunPlan, network: RunNetwork, ports: RunPorts, context: DistContext) -> None:
        """plan: what the run does; network: what trains; ports: where it reads and writes; context: its
        process group (rank, world size, device). Raises DatasetError when the train split gives no batch."""
        settings, source = plan.settings, ports.source
        self.settings, self.stages, self.categories = settings, plan.stages, plan.categories
        self.metric, self.kernels, self.resume_command = plan.metric, plan.kernels, plan.resume_command
        self.model, self.groups, self.weights_key = network.model, network.groups, network.weights_key
        self.source, self.store, self.evaluator, self.writers = source, ports.store, ports.evaluator, ports.writers
        self.weights_writer, self.folder, self.progress = ports.weights_writer, ports.folder, ports.progress
        self.trackers = Trackers(ports.trackers)
        self.previewer = ports.previewer
        self.context = context
        model, stages, auxiliary_losses = network.model, plan.stages, network.auxiliary_losses
        train = settings.train
        self.output_dir = Path(train.output_dir)
        self.train_loader = source.train_loader(
            train.batch_size, seed=train.seed, rank=context.rank, world_size=context.world_size
        )
        self.val_loader = (
            source.val_loader(train.batch_size, rank=context.rank, world_size=context.world_size)
            if source.has_val() else None
        )
        self.ground_truth = source.val_ground_truth() if self.val_loader is not None else None
        self.preview_ids = choose_preview_ids(self.ground_truth, train.val_preview_images, train.seed)
        batches = len(self.train_loader)
        if batches == 0:
            raise DatasetError(
                f"the train split gives no batch of train.batch_size={train.batch_size} "
                f"(world size {context.world_size}); lower train.batch_size or add images"
            )
        self.batch_plan = plan_batches(train, context.world_size, batches)
        steps = batches // self.batch_plan.accumulate  # optimizer steps
        self.steps_per_epoch = min(steps, train.steps_per_stage or steps)
        self.amp_dtype = amp_dtype(train.amp, context.device)
        self.ema = ModelEma(model, train.ema_decay) if train.ema else None
        self.eval_model = copy.deepcopy(model) if self.ema is not None else model
        self.diagnostics = RunDiagnostics()
        self.report_state = ReportState()
        self.model_summary: dict[str, Any] | None = None  # parameters and GFLOPs (application/model_summary.py)
        self.recipe = resolve_recipe(settings)  # the fine-tuning recipe (domain/fine_tune.py)
        self.keeper = CheckpointKeeper(self.store, self.output_dir / "checkpoints", context, train.keep_last_epochs)
        self.trainer = Trainer(
            model=model, optimizer=build_optimizer(model, train, self.batch_plan.scale, self.groups.get("backbone", ()),
                                                   self.recipe.backbone_lr_mult), train=train, context=context,
            ema=self.ema, batch_plan=self.batch_plan,
            diagnostics=self.diagnostics, auxiliary_losses=auxiliary_losses, amp_dtype=self.amp_dtype,
            total_steps=total_epochs(stages) * self.steps_per_epoch, on_bad_image=settings.data.on_bad_image,
            compiled_forward=CompiledForward(settings.runtime.compile_model, context.device),
        )
        if self.recipe.backbone_norm_eval:
            self.trainer.norm_eval = frozenset(id(param) for param in self.groups.get("backbone", ()))
        self.auxiliary_names = [loss.name for loss in auxiliary_losses]
        self.fingerprint = source.fingerprint()
        self.dataset_info = {**dict(source.describe()), "fingerprint": self.fingerprint}
        self.session_started = time.time()
        self.session_steps = 0
        self.position: Position | None = None
        self.status = "running"
        self.message: str | None = None
        self.stop_signal: int | None = None
        self.stop_flag: Any = None
        self.planned_epochs = total_epochs(stages)  # set by run() from the schedule (resume: done + remaining)
        self.last_epoch = self.planned_epochs - 1
        self.stopped_stage: int | None = None  # set by an early stop (train.patience) at the end of an epoch
        self.augment_logged: AugmentPlan | None = None

    # --- resume ---------------------------------------------------------------------------------
    def restore(self, checkpoint: TrainingCheckpoint, path: str) -> Position:
        """Continue from a checkpoint whose weights the model was rebuilt with (ModelProfile.from_checkpoint):
        optimizer, EMA, progress, diagnostics, report state and RNG. CheckpointError naming `path` when a
        part does not fit this run."""
        progress = dict(checkpoint.progress or {})
        position = Position.from_plain(progress)
        if not in_curriculum(position, self.stages):
            raise not_in_curriculum(position, self.stages, path)
        saved_world = int(progress.get("world_size", 1))
        if not position.epoch_complete and saved_world != self.context.world_size:
            raise CheckpointError(
                f"{path} was written mid-epoch by {saved_world} process(es); resuming it mid-epoch needs the same "
                f"number (now {self.context.world_size}), because the batches of an epoch are split per process. "
                "Resume with the same torchrun --nproc_per_node, or from an end-of-epoch checkpoint (epoch_XXXX.pt)"
            )
        state = dict(checkpoint.train_state or {})
        self.diagnostics = RunDiagnostics.from_state(state.get("diagnostics"))
        try:
            self.trainer.restore(checkpoint.optimizer, global_step=position.global_step,
                                 diagnostics=self.diagnostics, consecutive_bad=int(state.get("consecutive_bad", 0)),
                                 first_bad=state.get("first_bad"))
        except (ValueError, RuntimeError, KeyError, TypeError, IndexError) as error:
            raise CheckpointError(f"{path}: its optimizer state does not fit this model's optimizer: {error}") from None
        check_optimizer_state(self.trainer.optimizer, path)
        if self.ema is not None and checkpoint.ema_state is not None:
            self.ema.load(checkpoint.ema_state, int(progress.get("ema_updates", 0)))
        elif self.ema is not None:
            self.ema.load(self.model.state_dict(), 0)
        self.report_state = ReportState.from_plain(state.get("report"))
        try:
            restore_rng(checkpoint.rng)
        except (ValueError, RuntimeError, TypeError, KeyError) as error:
            raise CheckpointError(f"{path}: its RNG state ('rng') cannot be restored: {error}") from None
        self.position = position
        log.info("resumed", **resumed_fields(position, path))
        return position

    def _note_backbone_never_trains(self) -> None:
        """train.freeze_backbone_epochs covering every epoch of the run: the backbone never trains (a linear
        probe of the heads, wanted or not); a report warning saying so, once per run."""
        frozen = [stage for stage in self.stages if stage.epochs and "backbone" in stage.frozen]
        trained = [stage for stage in self.stages if stage.epochs]
        if not trained or len(frozen) < len(trained) or any(w.get("kind") == "train.freeze_backbone_epochs"
                                                             for w in self.report_state.warnings):
            return
        epochs = sum(stage.epochs for stage in trained)
        message = (f"train.freeze_backbone_epochs={self.settings.train.freeze_backbone_epochs} covers the whole run "
                   f"of {epochs} epoch(s): the backbone stays frozen and never trains (only the neck and heads do). "
                   f"Set it below {epochs} to fine-tune the backbone after the frozen epochs")
        log.warning("backbone_never_trains", message=message)
        self.report_state.warnings.append({"kind": "train.freeze_backbone_epochs", "component": "backbone",
                                           "epoch": None, "stage": None, "message": message})

    def _note_dropped_instances(self) -> None:
        """Instances over data.max_instances are dropped from the train targets: a report warning with the
        counts (once per run, also after a resume), so the report says what the run did not learn from."""
        train = dict((self.dataset_info.get("splits") or {}).get("train") or {})
        dropped, images = int(train.get("instances_dropped") or 0), int(train.get("images_over_max_instances") or 0)
        if not dropped or any(w.get("kind") == "data.max_instances" for w in self.report_state.warnings):
            return
        cap = self.settings.data.max_instances
        self.report_state.warnings.append({
            "kind": "data.max_instances", "component": None, "epoch": None, "stage": None,
            "images": images, "instances_dropped": dropped,
            "message": f"{images} train image(s) have more than data.max_instances={cap} instances: {dropped} of "
                       "their smallest instances were dropped from the training targets (raise data.max_instances "
                       "to keep them)",
        })

    # --- the loop -------------------------------------------------------------------------------
    def run(self, schedule: list[StartPoint], *, stop_flag: Any, stop_after_steps: int | None) -> TrainResult:
        """Run the planned epochs (train_state.plan_remaining): one run-wide epoch numbering throughout."""
        self.trainer.watch_stop(stop_flag.is_set)
        self.stop_flag = stop_flag
        self.report_state.sessions += 1
        self.planned_epochs = len(self.report_state.history) + len(schedule)
        self.last_epoch = schedule[-1].epoch if schedule else -1
        self._note_dropped_instances()
        self._note_backbone_never_trains()
        if self.context.is_main:
            self.write_report()
        self.trackers.start(str(self.output_dir), self.settings.to_plain(), run_name=self.output_dir.name)
        try:
            current: Stage | None = None
            done = 0
            while done < len(schedule):
                item = schedule[done]
                done += 1
                stage = self.stages[item.stage_index]
                if stage is not current:
                    self.trainer.begin_stage(stage, self.groups)
                    current = stage
                if item.start_batch == 0:
                    self.diagnostics.new_epoch()
                paused = self._run_epoch(stage, item.epoch, item.start_batch, stop_after_steps)
                if self.stopped_stage is not None:  # train.patience ran out: the stage's other epochs are skipped
                    schedule = skip_rest_of_stage(schedule, done, self.stopped_stage)
                    self.planned_epochs = len(self.report_state.history) + len(schedule) - done
                    self.last_epoch = schedule[-1].epoch
                    self.stopped_stage = None
                if paused:
                    self.status = "interrupted" if self.stop_flag.is_set() else "paused"
                    self.stop_signal = getattr(self.stop_flag, "signal_number", None)
                    return self._result()
            return self._end_run()
        except (TrainingStopped, DatasetError) as stopped:
            self.status = "stopped"
            self.message = str(stopped)
            if self.context.is_main:
                self.write_report()
            raise
        except BaseException as error:  # noqa: BLE001 - the report says how the run ended, then re-raise
            self.status = "failed" if not isinstance(error, KeyboardInterrupt) else "interrupted"
            self.message = f"{type(error).__name__}: {error}"
            if self.context.is_main:
                with contextlib.suppress(Exception):
                    self.write_report()
            raise
        finally:
            self.trackers.close(self.status)

    def _track_step(self) -> None:
        """The step's losses, lr and grad norm to the trackers (train.loggers), at its optimizer step."""
        outcome = self.trainer.last_outcome
        if outcome is None or outcome.kind != "applied" or not self.trackers.active:
            return
        metrics = {"train/loss": outcome.total, "train/lr": self.trainer.applied_lr, "train/grad_norm": outcome.grad_norm,
                   **{f"train/{name}": value for name, value in outcome.components.items()}}
        self.trackers.log(metrics, self.trainer.global_step)

    def never_ended(self, run_folder: Path) -> bool:
        """All epochs are done but the run never ended (no final weights in the folder of the run that wrote
        the checkpoint): e.g. a pause at its last step written by an older version. Resuming it ends it
        instead of refusing."""
        missing = self.weights_writer is not None and not self.folder.exists(str(run_folder / "model.safetensors"))
        return any_true(self.context, [self.context.is_main and missing])[0]

    def end_without_training(self) -> TrainResult:
        """End a run whose epochs are all done (never_ended): final report and weights, status finished."""
        self.report_state.sessions += 1
        self.planned_epochs = len(self.report_state.history)
        log.info("run_ended_on_resume", reason="every epoch was done but the run had not ended (no "
                 "model.safetensors): writing the final weights and report", epochs=self.planned_epochs)
        return self._end_run()

    def _end_run(self) -> TrainResult:
        warnings = self.report_state.warnings
        self.status = "finished_with_warnings" if warnings else "finished"
        self.message = (f"{len(warnings)} warning(s): " + "; ".join(w["message"] for w in warnings[:3])
                        + (" ..." if len(warnings) > 3 else "")) if warnings else None
        self._finish()
        return self._result()

    def _run_epoch(self, stage: Stage, epoch: int, start_batch: int, stop_after_steps: int | None) -> bool:
        """One epoch; True when the run pauses (stop requested or stop_after_steps reached)."""
        train = self.settings.train
        started = time.perf_counter()
        seen_before = self.diagnostics.epoch.steps
        self.progress.start_epoch(stage=stage.name, epoch=epoch + 1, total_epochs=self.planned_epochs,
                                  total_steps=self.steps_per_epoch, initial_step=start_batch)

        def on_step_end(done: int) -> bool:
            self.session_steps += 1
            self._track_step()
            pause = stop_after_steps is not None and self.session_steps >= stop_after_steps
            every = train.checkpoint_every_steps
            if not pause and every and self.trainer.global_step % every == 0 and done < self.steps_per_epoch:
                self._save_mid_epoch(stage, epoch, done)
            return pause

        try:
            outcome = self.trainer.run_epoch(
                loader=self.train_loader, stage=stage, epoch=epoch, start_batch=start_batch,
                steps_in_epoch=self.steps_per_epoch,
                settings_for=lambda progress: loss_settings(stage.losses, progress, train),
                progress=self.progress, on_step_end=on_step_end,
                augment=self._augment(stage, epoch),
            )
        except BadImageStop as stop:
            self._save_mid_epoch(stage, epoch, stop.steps_done)
            first = stop.bad_images[0]
            others = f" (and {len(stop.bad_images) - 1} more in the same batch)" if len(stop.bad_images) > 1 else ""
            raise DatasetError(
                f"image {first['image_id']} ({first['file']}) failed to decode during training{others}: "
                f"{first['reason']}. last.pt was saved at the last completed step (global step "
                f"{self.trainer.global_step}, batch {stop.steps_done} of epoch {len(self.report_state.history) + 1}). "
                f"Fix or replace the file, then resume with: {self._resume()}; or leave such images out (counted "
                f"in the report) with: {self._resume('data.on_bad_image=skip')}"
            ) from None
        # A stop request (agreed by every rank at the step) skips the epoch's validation; a stop_after_steps
        # pause at the last step (the same on every rank) still ends the epoch. A stop of either kind after the
        # run's final step ends the run as a normal end (final validation, report, weights): nothing is left
        # to resume.
        counted_pause = stop_after_steps is not None and self.session_steps >= stop_after_steps
        signalled = outcome.stop and not counted_pause
        final_step = epoch >= self.last_epoch and outcome.steps_done >= self.steps_per_epoch
        if outcome.stop and not final_step and (outcome.steps_done < self.steps_per_epoch or signalled):
            return self._pause_mid_epoch(stage, epoch, outcome.steps_done)
        if final_step and not outcome.stop:  # a signal during the last step, after its agreed poll
            signalled = any_true(self.context, [self.stop_flag.is_set()])[0]
        finishing = final_step and (outcome.stop or signalled)
        if finishing:
            if signalled:  # last.pt first: a kill during the final validation loses no training
                self._save_mid_epoch(stage, epoch, outcome.steps_done)
            log.info("stop_after_final_step", action="the run's last step is done: finishing the run (final "
                     "validation, report, weights) instead of pausing", signalled=signalled)
        seconds = time.perf_counter() - started
        try:
            self._end_epoch(stage, epoch, seconds, self.diagnostics.epoch.steps - seen_before,
                            interruptible=not finishing)
        except ValidationStopped:
            return self._pause_mid_epoch(stage, epoch, self.steps_per_epoch)
        if outcome.stop and not finishing:
            self.message = f"paused after epoch {len(self.report_state.history)}; resume with: {self._resume()}"
            log.info("paused", message=self.message)
        return outcome.stop and not finishing

    def _augment(self, stage: Stage, epoch: int) -> AugmentPlan:
        """The epoch's augmentation (data.*, the stage's override, close_mosaic); logged when it changes."""
        total = total_epochs(self.stages)
        plan = augment_plan(self.settings.data, stage.augment, epoch=epoch, total_epochs=total)
        if self.augment_logged is None and closed_for_whole_run(
                self.settings.data, [item.augment for item in self.stages], total):
            log.warning("augmentation_never_used", close_mosaic_epochs=self.settings.data.close_mosaic_epochs,
                        epochs=total, note=f"data.close_mosaic_epochs={self.settings.data.close_mosaic_epochs} covers "
                        f"every epoch of this {total}-epoch run: mosaic, copy-paste, mixup, affine and multi-scale "
                        "are switched off throughout; lower data.close_mosaic_epochs to use them")
        if plan != self.augment_logged:
            log.info("augment_plan", stage=stage.name, epoch=epoch + 1, **plan.to_plain())
            self.augment_logged = plan
        return plan

    def _pause_mid_epoch(self, stage: Stage, epoch: int, done: int) -> bool:
        """Save last.pt at batch `done` of the epoch (its validation, if due, runs after --resume)."""
        self._save_mid_epoch(stage, epoch, done)
        where = "after the last batch, before validation," if done >= self.steps_per_epoch else f"at batch {done}"
        self.message = (f"paused {where} of epoch {len(self.report_state.history) + 1}; "
                        f"resume with: {self._resume()}")
        log.info("paused", message=self.message)
        return True

    def _resume(self, *overrides: str) -> str:
        """The command that resumes this run from last.pt, as the caller spells it."""
        return self.resume_command(str(self.keeper.last), overrides)

    def _save_mid_epoch(self, stage: Stage, epoch: int, done: int) -> None:
        self.position = Position(stage.index, stage.name, epoch, self._epochs_in_stage(stage), done, False,
                                 self.trainer.global_step)
        self.keeper.save(self._payload, epoch_number=None, is_best=False)

def resumed_fields(position: Position, path: str) -> dict[str, Any]:
    """The `resumed` log line in the run's one numbering (1-based epochs, as the log, files and report say):
    after epoch N (complete) or in epoch N after `batches_done` of its batches; global_step = steps done."""
    return {"checkpoint": path, "epoch": position.epoch + 1, "epoch_complete": position.epoch_complete,
            "stage": position.stage_name, "epoch_of_stage": position.epoch_in_stage + 1,
            "batches_done": position.step_in_epoch, "global_step": position.global_step,
            "at": f"after epoch {position.epoch + 1}" if position.epoch_complete
            else f"epoch {position.epoch + 1}, after batch {position.step_in_epoch}"}
