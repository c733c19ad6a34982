"""What a training session leaves: the checkpoint payload, the final weights, the train report and the result.
A part of RunSession (run_session.py)."""

from __future__ import annotations

import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from apex_x.application.engine.checkpointing import make_payload
from apex_x.application.engine.run_support import TrainResult, refresh_kernels_report
from apex_x.application.engine.train_report import build_report
from apex_x.application.engine.train_state import capture_rng

if TYPE_CHECKING:
    from apex_x.application.engine.run_session import RunSession


class SessionOutputs:
    """RunSession's checkpoint payload, final weights, report and result (a mixin: the state is RunSession's)."""

    def _payload(self: RunSession) -> dict[str, Any]:
        assert self.position is not None
        state = self.report_state
        trainer_state = self.trainer.checkpoint_state()
        return make_payload(
            profile=self.settings.model.profile,
            weights_key=self.weights_key,
            model_state=self.model.state_dict(),
            ema_state=self.ema.weights() if self.ema is not None else None,
            optimizer_state=trainer_state["optimizer"],
            scheduler_state=trainer_state["scheduler"],
            rng=capture_rng(),
            progress={**self.position.to_plain(), "epoch_number": len(state.history) + (0 if self.position.epoch_complete else 1),
                      "ema_updates": self.ema.updates if self.ema is not None else 0,
                      "world_size": self.context.world_size},
            best=state.best,
            config=self.settings.to_plain(),
            categories=self.categories.to_plain(),
            dataset_fingerprint=self.fingerprint,
            input_size=(self.settings.model.input_height, self.settings.model.input_width),
            architecture=self.model.architecture(),
            train_state={
                "report": {**state.to_plain(), "elapsed_s": state.elapsed_s + time.time() - self.session_started},
                "diagnostics": self.diagnostics.state(),
                "consecutive_bad": trainer_state["consecutive_bad"],
                "first_bad": trainer_state["first_bad"],
            },
        )

    def _finish(self: RunSession) -> None:
        if self.context.is_main and self.weights_writer is not None:
            weights = self.ema.weights() if self.ema is not None else self.model.state_dict()
            self.weights_writer.write(weights, str(self.output_dir / "model.safetensors"), {
                "format": "apex-x-weights", "profile": self.settings.model.profile,
                "weights": "ema" if self.ema is not None else "model",
                "categories": self.categories.to_plain(),
                "input_size": [self.settings.model.input_height, self.settings.model.input_width],
                "epochs": len(self.report_state.history), "best": self.report_state.best,
            })
        if self.context.is_main:
            self.write_report()

    # --- reports --------------------------------------------------------------------------------
    def report(self: RunSession) -> dict[str, Any]:
        artifacts = {
            "output_dir": str(self.output_dir),
            "report_json": str(self.output_dir / "train_report.json"),
            "report_md": str(self.output_dir / "train_report.md"),
            "config_json": str(self.output_dir / "config.json"),
            "last_checkpoint": self._existing(self.keeper.last),
            "best_checkpoint": self._existing(self.keeper.best),
            "epoch_checkpoints": [str(path) for path in self.keeper.epoch_files()],
            "weights": self._existing(self.output_dir / "model.safetensors"),
            "val_predictions": str(self.output_dir / self.report_state.previews["file"])
            if self.report_state.previews else None,
        }
        return build_report(
            status=self.status, message=self.message, config=self.settings.to_plain(), stages=self.stages,
            state=self.report_state, diagnostics=self.diagnostics, requested_metric=self.metric.requested,
            selected_metric=self.metric.selected, metric_reason=self.metric.reason, dataset=self.dataset_info,
            run={**self.context.to_plain(), "amp": str(self.amp_dtype).replace("torch.", "") if self.amp_dtype else "off",
                 "deterministic": self.settings.train.deterministic, "seed": self.settings.train.seed,
                 "steps_per_epoch": self.steps_per_epoch, "batch_size": self.settings.train.batch_size,
                 "batch_plan": self.batch_plan.to_plain(), "trackers": self.trackers.to_plain(),
                 "global_step": self.trainer.global_step, "ema": self.ema is not None,
                 "compile_model": self.trainer.compiled_forward.to_plain(), "recipe": self.recipe.to_plain()},
            kernels=refresh_kernels_report(self.kernels), artifacts=artifacts, session_started=self.session_started,
            auxiliary_losses=self.auxiliary_names, epochs_planned=self.planned_epochs,
            model_summary=self.model_summary,
        )

    def _existing(self: RunSession, path: Path) -> str | None:
        return str(path) if self.folder.exists(str(path)) else None

    def write_report(self: RunSession) -> dict[str, Any]:
        report = self.report()
        for writer in self.writers:
            writer.write(report, str(self.output_dir))
        self.last_report = report
        return report

    def _result(self: RunSession) -> TrainResult:
        done = self.status in ("finished", "finished_with_warnings")
        report = self.write_report() if self.context.is_main and not done else self.report()
        history = self.report_state.history
        last_val = next((entry["val"] for entry in reversed(history) if entry.get("val")), None)
        return TrainResult(
            status=self.status, output_dir=str(self.output_dir),
            report_path=str(self.output_dir / "train_report.json"), best=self.report_state.best,
            selected_metric=self.metric.selected, last_val_metrics=last_val,
            checkpoints={"last": report["artifacts"]["last_checkpoint"], "best": report["artifacts"]["best_checkpoint"]},
            weights_path=report["artifacts"]["weights"], report=report, stop_signal=self.stop_signal,
        )
