"""The end of a training epoch: validation (if due), the history entry, best-checkpoint choice, the run's health
warnings, early stopping, the epoch checkpoint and the report. A part of RunSession (run_session.py)."""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import structlog

from apex_x.application.engine.curriculum import Stage
from apex_x.application.engine.early_stopping import early_stop
from apex_x.application.engine.previews import PREVIEW_FILE, TRACKED_PREVIEWS, preview_record, preview_title
from apex_x.application.engine.run_health import epoch_warnings
from apex_x.application.engine.run_support import MetricChoice
from apex_x.application.engine.schedules import evaluation_loss_settings
from apex_x.application.engine.train_report import is_improvement
from apex_x.application.engine.train_state import Position
from apex_x.application.engine.validation import validate
from apex_x.domain.errors import DatasetError, TrainingStopped
from apex_x.domain.types import PreviewSample

if TYPE_CHECKING:
    from apex_x.application.engine.run_session import RunSession

log = structlog.get_logger("apex_x.application.engine.run_session")


class EpochEnd:
    """RunSession's epoch-end steps (a mixin: the state is RunSession's)."""

    def _end_epoch(self: RunSession, stage: Stage, epoch: int, seconds: float, batches_now: int,
                   interruptible: bool = True) -> None:
        """Validate (if due), record the epoch, warn, checkpoint and report. Not `interruptible`: the final
        validation after a stop request at the run's last step runs to its end (a second Ctrl-C still aborts)."""
        train = self.settings.train
        number = len(self.report_state.history) + 1  # epochs done in the run, this one included
        last_epoch = epoch >= self.last_epoch
        val_metrics: dict[str, float | None] | None = None
        evaluation = None
        if self.val_loader is not None and (number % train.eval_every_epochs == 0 or last_epoch):
            if self.ema is not None:
                self.eval_model.load_state_dict(self.ema.weights())
            result = validate(
                model=self.eval_model, loader=self.val_loader, ground_truth=self.ground_truth,
                evaluator=self.evaluator, categories=self.categories,
                settings=evaluation_loss_settings(train), context=self.context, amp_dtype=self.amp_dtype,
                should_stop=self.stop_flag.is_set if interruptible else None,
                with_loss=train.val_loss or self.metric.selected == "val_loss",
                preview_ids=self.preview_ids,  # every rank collects its shard's; rank 0 draws them
            )
            if result.error:
                raise TrainingStopped(f"validation after epoch {number} failed: {result.error}")
            if result.bad_images:
                self._bad_val_images(stage, epoch, number, result.bad_images)
            val_metrics = result.metrics
            if result.evaluation is not None:  # the flat metrics are in `val` already
                evaluation = {key: value for key, value in result.evaluation.items() if key not in ("metrics", "curves")}
                self.report_state.curves = dict(result.evaluation.get("curves") or {})  # the latest, for plots
                over = result.evaluation.get("over_limit")
                if over and not any(w.get("kind") == "eval.max_detections" for w in self.report_state.warnings):
                    self.report_state.warnings.append({"kind": "eval.max_detections", "component": None,
                                                       "epoch": number, "stage": stage.name, **over})
            if result.previews and self.previewer is not None and self.context.is_main:
                self._draw_previews(result.previews, number)
        epoch_diag = self.diagnostics.epoch
        train_loss = epoch_diag.mean_total()
        metric_value = self._metric_value(val_metrics, train_loss, number)
        best = self.report_state.best
        val_loss = (val_metrics or {}).get("val_loss")
        improved = is_improvement(self.metric.selected, metric_value, best["value"] if best else None,
                                  tie_loss=val_loss, best_tie_loss=(best or {}).get("val_loss"))
        if improved:
            tie = best is not None and metric_value == best["value"] and not self.metric.selected.endswith("loss")
            self.report_state.best = {"name": self.metric.selected, "value": metric_value, "epoch": number,
                                      "val_loss": val_loss, "chosen_by": "val_loss tie-break" if tie else "metric"}
            if tie:
                log.info("best_by_tie_break", metric=self.metric.selected, value=metric_value, epoch=number,
                         val_loss=val_loss, previous_epoch=best["epoch"] if best else None)
        self.report_state.history.append({
            "epoch": number,
            "stage": stage.name,
            "stage_index": stage.index,
            "steps": epoch_diag.steps,
            "lr": self.trainer.applied_lr,
            "train": {"total_loss": train_loss, **epoch_diag.component_means()},
            "diagnostics": epoch_diag.to_plain(),
            "val": val_metrics,
            "evaluation": evaluation,
            "metric": {"name": self.metric.selected, "value": metric_value},
            "is_best": improved,
            "seconds": round(seconds, 3),
            "images_per_s": round(batches_now * self.batch_plan.effective / seconds, 3)
            if seconds > 0 else None,
        })
        self.trackers.log({"epoch/number": float(number), "epoch/train_loss": train_loss,
                           **{f"val/{key}": value for key, value in (val_metrics or {}).items()},
                           **({"epoch/checkpoint_metric": metric_value} if metric_value is not None else {})},
                          self.trainer.global_step)
        end = self.trainer.global_step  # the scheduled lr on this epoch's steps, for the warnings' advice
        lrs = [self.trainer.lr_at(step, stage) for step in range(max(0, end - epoch_diag.steps), end)]
        for warning in epoch_warnings(epoch_diag, epoch=number, stage=stage.name, train=train,
                                      history=self.report_state.history,
                                      scheduled_lr=(min(lrs), max(lrs)) if lrs else None):
            log.warning("training_cannot_move", kind=warning["kind"], component=warning["component"],
                        message=warning["message"])
            self.report_state.warnings.append(warning)
        stop = early_stop(self.report_state.history, stage, train.patience, self.report_state.best)
        if stop is not None:
            self.report_state.early_stops.append(stop)
            self.stopped_stage = stage.index
            log.info("early_stop", **stop)
            last_epoch = last_epoch or not any(later.epochs for later in self.stages[stage.index + 1:])
        self.position = Position(stage.index, stage.name, epoch, self._epochs_in_stage(stage) - 1,
                                 self.steps_per_epoch, True, self.trainer.global_step, finished=last_epoch)
        self.keeper.save(self._payload, epoch_number=number, is_best=improved)
        if self.context.is_main:
            self.write_report()
        self.progress.end_epoch({"loss": train_loss if train_loss is not None else math.nan,
                                 self.metric.selected: metric_value if metric_value is not None else math.nan,
                                 "seconds": seconds})

    def _draw_previews(self: RunSession, samples: list[PreviewSample], number: int) -> None:
        """plots/val_predictions.png of this validation (ground truth beside predictions), the first few panels to
        the trackers, and what the report says of them."""
        assert self.previewer is not None
        panels = self.previewer.panels(samples, self.categories.names)
        self.previewer.write_grid(panels, str(self.output_dir / PREVIEW_FILE), preview_title(f"epoch {number}"))
        self.report_state.previews = preview_record(PREVIEW_FILE, number, samples)
        self.trackers.log_images({f"val/predictions/image_{sample.image_id}": panel for sample, panel
                                  in zip(samples[:TRACKED_PREVIEWS], panels, strict=False)}, self.trainer.global_step)

    def _epochs_in_stage(self: RunSession, stage: Stage) -> int:
        """Complete epochs of `stage` in the history (the one just appended included)."""
        return sum(1 for entry in self.report_state.history if entry.get("stage") == stage.name)

    def _bad_val_images(self: RunSession, stage: Stage, epoch: int, number: int, bad: list[dict[str, Any]]) -> None:
        """Val images that failed to decode: error saves last.pt (the epoch's training is kept; resuming
        validates again) and stops naming the image; skip leaves them out of the metrics and logs them."""
        first = bad[0]
        if self.settings.data.on_bad_image == "error":
            self._save_mid_epoch(stage, epoch, self.steps_per_epoch)
            raise DatasetError(
                f"val image {first['image_id']} ({first['file']}) failed to decode in the validation after epoch "
                f"{number}: {first['reason']}" + (f" (and {len(bad) - 1} more)" if len(bad) > 1 else "")
                + f". last.pt was saved with the epoch's training done. Fix or replace the file, then resume with: "
                f"{self._resume()}; or leave such images out of the metrics with: "
                f"{self._resume('data.on_bad_image=skip')}"
            )
        for item in bad:
            log.warning("bad_val_image_skipped", image_id=item["image_id"], file=item["file"], reason=item["reason"])

    def _metric_value(self: RunSession, val_metrics: Mapping[str, float | None] | None, train_loss: float | None,
                      number: int) -> float | None:
        """The checkpoint metric of this epoch. A COCO metric that is n/a (None: no ground truth) is never a
        score: the run falls back to val_loss from here on, and the report says why."""
        if self.metric.selected == "train_loss":
            return train_loss
        if val_metrics is None:
            return None
        value = val_metrics.get(self.metric.selected, math.nan)
        if value is None and not self.metric.selected.endswith("loss"):
            fallback = "val_loss" if "val_loss" in val_metrics else "train_loss"  # train.val_loss=false
            reason = (f"{self.metric.selected} was n/a at epoch {number} (no ground truth for it; COCO's -1 is "
                      f"not a score), so {fallback} selects best.pt from then on")
            log.warning("checkpoint_metric_fallback", metric=self.metric.selected, fallback=fallback, reason=reason)
            self.metric = MetricChoice(self.metric.requested, fallback, reason)
            self.report_state.best = None
            value = val_metrics.get("val_loss", math.nan) if fallback == "val_loss" else train_loss
        return value
