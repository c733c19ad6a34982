"""The train use case: checks (config, data, classes), model, curriculum, validation, checkpoints, reports."""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import structlog
import torch

from apex_x.application.engine.curriculum import Stage, check_groups, plan_stages
from apex_x.application.engine.distributed import DistContext, any_true, init_distributed, shutdown
from apex_x.application.engine.heartbeat import is_peer_error, peer_failed
from apex_x.application.engine.init_from import initialise_from
from apex_x.application.engine.progress import Progress, SilentProgress
from apex_x.application.engine.resume import (
    RunAlreadyFinished,
    check_resume_config,
    finished_message,
    run_folder_of,
)
from apex_x.application.engine.run_session import RunSession
from apex_x.application.engine.run_support import (
    ResumeCommand,
    RunNetwork,
    RunPlan,
    RunPorts,
    TrainResult,
    choose_metric,
    flag_resume_command,
    interrupt_guard,
    kernels_report,
)
from apex_x.application.engine.train_report import COCO_METRICS, LOSS_METRICS
from apex_x.application.engine.train_state import plan_remaining, seed_everything
from apex_x.application.model_summary import describe_summary, model_summary
from apex_x.domain.checkpoint import RESUME_KEYS, TrainingCheckpoint
from apex_x.domain.config import ApexConfig
from apex_x.domain.errors import ApexError, ConfigError, DatasetError, TrainingStopped
from apex_x.domain.ports import (
    AuxiliaryLoss,
    CheckpointStore,
    DatasetSource,
    Evaluator,
    ExperimentTracker,
    InitWeightsReader,
    ModelProfile,
    PreviewRenderer,
    ReportWriter,
    RunFolder,
    WeightsWriter,
)
from apex_x.domain.types import CategoryMap

log = structlog.get_logger(__name__)


class TrainUseCase:
    """Trains one run of the configured model on the configured data (single process or torchrun)."""

    def __init__(
        self,
        *,
        settings: ApexConfig,
        dataset_source: DatasetSource,
        model_profile: ModelProfile,
        checkpoint_store: CheckpointStore,
        evaluator: Evaluator,
        report_writers: Sequence[ReportWriter] = (),
        weights_writer: WeightsWriter | None = None,
        progress: Progress | None = None,
        auxiliary_losses: Sequence[AuxiliaryLoss] | Callable[..., Sequence[AuxiliaryLoss]] = (),
        run_folder: RunFolder,
        trackers: Sequence[ExperimentTracker] = (),
        init_weights_reader: InitWeightsReader | None = None,
        preview_renderer: PreviewRenderer | None = None,
    ) -> None:
        self.settings = settings
        self.source = dataset_source
        self.profile = model_profile
        self.store = checkpoint_store
        self.evaluator = evaluator
        self.writers = list(report_writers)
        self.weights_writer = weights_writer
        self.progress = progress or SilentProgress()
        self.auxiliary_losses = auxiliary_losses
        self.run_folder = run_folder
        self.trackers = list(trackers)  # train.loggers: used by rank 0 only
        self.preview_renderer = preview_renderer  # plots/val_predictions.png (train.val_preview_images), rank 0
        self.init_weights_reader = init_weights_reader  # train.init_from (a new run from earlier weights)
        self.init_summary: dict[str, Any] | None = None
        self.resume_command: ResumeCommand = flag_resume_command

    # ------------------------------------------------------------------------------------------
    def execute(self, *, resume_from: str | None = None, stop_after_steps: int | None = None,
                resume_command: ResumeCommand | None = None) -> TrainResult:
        """Run (or resume) training. stop_after_steps pauses after that many batches, saving last.pt.
        resume_command spells the resume command in messages (pause, bad image) as the caller would run it."""
        self.resume_command = resume_command or flag_resume_command
        settings = self.settings
        stages = plan_stages(settings, self.profile.default_stages(settings))
        _check_metric_name(settings.train.checkpoint_metric)
        runtime = settings.runtime
        context = init_distributed(runtime.device, runtime.collective_timeout_s, runtime.peer_timeout_s)
        # The stop-signal guard, entered when training starts, stays until the process group is shut down, so
        # a signal after the run's end (while it tears down) changes nothing instead of ending it as "stopped".
        self._signals = contextlib.ExitStack()
        try:
            return self._execute(context, stages, resume_from, stop_after_steps)
        except Exception as error:
            if context.enabled and is_peer_error(error):
                raise peer_failed(error, context.heartbeat, context.collective_timeout_s) from error
            raise
        finally:
            try:
                shutdown(context)
            finally:
                self._signals.close()

    def _execute(self, context: DistContext, stages: list[Stage], resume_from: str | None,
                 stop_after_steps: int | None) -> TrainResult:
        settings = self.settings
        init_from = settings.train.init_from
        if resume_from is None and init_from and self.run_folder.contains(settings.train.output_dir, init_from):
            raise ConfigError(  # the new run would overwrite its best.pt / last.pt / model.safetensors
                f"{init_from} is inside train.output_dir ({settings.train.output_dir}): the new run would overwrite "
                "the weights it starts from; copy the file elsewhere or choose another train.output_dir",
                key="train.init_from",
            )
        if settings.runtime.num_threads:
            torch.set_num_threads(settings.runtime.num_threads)
        seed_everything(settings.train.seed, deterministic=settings.train.deterministic)
        kernels = kernels_report(settings.runtime.kernels, context.device)
        output_dir = Path(settings.train.output_dir)
        _agree(context, lambda: self.run_folder.prepare(str(output_dir)) if context.is_main else None)
        log.info("setup", phase="checking the dataset (annotations, image files)")
        categories = self._check_data(context)
        payload = self.store.load(resume_from) if resume_from else None  # the store's configured size limits
        checkpoint = self._read_resume(payload, resume_from) if resume_from else None
        if checkpoint is not None and resume_from is not None:
            self._check_resume_data(checkpoint, categories, resume_from)
        log.info("setup", phase="building the model", profile=settings.model.profile, classes=categories.num_classes)
        model = self._build_model(categories.num_classes, checkpoint, resume_from)
        summary = model_summary(model, settings.model)
        log.info("model_size", network=describe_summary(summary), parameters=summary["parameters"],
                 gflops=summary["gflops"], **({"size_overridden": summary["size_overridden"]}
                                             if summary["size_overridden"] else {}))
        groups = model.parameter_groups()
        check_groups(stages, groups, from_defaults=not settings.train.stages)
        if not isinstance(model, torch.nn.Module):
            raise TypeError("the model factory must build a torch.nn.Module")
        model.to(context.device)
        auxiliary = self._auxiliary(categories, context)
        plan = RunPlan(settings=settings, stages=stages, categories=categories,
                       metric=choose_metric(settings.train.checkpoint_metric, self.source), kernels=kernels,
                       resume_command=self.resume_command)
        ports = RunPorts(source=self.source, store=self.store, evaluator=self.evaluator, writers=self.writers,
                         weights_writer=self.weights_writer, folder=self.run_folder,
                         progress=self.progress if context.is_main else SilentProgress(),
                         trackers=self.trackers if context.is_main else (),
                         previewer=self.preview_renderer if context.is_main else None)
        session = RunSession(plan, RunNetwork(model, groups, self.profile.weights_key, auxiliary), ports, context)
        session.model_summary = summary
        position = session.restore(checkpoint, resume_from) if checkpoint is not None and resume_from else None
        if position is None and self.init_summary is not None:
            session.report_state.init_from = self.init_summary
        schedule = plan_remaining(stages, position, session.report_state.history,
                                  ended=session.report_state.ended_stages())
        if not schedule:
            assert checkpoint is not None and resume_from is not None
            if session.never_ended(Path(run_folder_of(resume_from) or settings.train.output_dir)):
                return session.end_without_training()
            raise RunAlreadyFinished(
                finished_message(resume_from, len(session.report_state.history),
                                 checkpoint.best if checkpoint else None, settings.train,
                                 ended=session.report_state.ended_stages())
            )
        stop_flag = self._signals.enter_context(interrupt_guard())
        try:
            result = session.run(schedule, stop_flag=stop_flag, stop_after_steps=stop_after_steps)
            stop_flag.run_ended = True
            return result
        finally:
            self.progress.close()  # however the run ended: no bar or watchdog left behind

    # ------------------------------------------------------------------------------------------
    def _build_model(self, num_classes: int, checkpoint: TrainingCheckpoint | None, path: str | None) -> Any:
        """A new run: pretrained weights as configured. A resumed run: rebuilt by the profile from the checkpoint
        (the architecture from its stored values, every weight from the file, so a moved backbone folder or an
        empty Hugging Face cache does not matter)."""
        if checkpoint is None or path is None:
            model = self.profile.build(self.settings.model, num_classes)
            init_from = self.settings.train.init_from
            if init_from:  # a new run from earlier weights; a resumed run takes its weights from its checkpoint
                if self.init_weights_reader is None:
                    raise ConfigError("no weights reader is configured for it", key="train.init_from")
                self.init_summary = initialise_from(model, init_from, self.init_weights_reader,  # type: ignore[arg-type]
                                                    force=self.settings.train.init_from_force)
            return model
        if self.settings.train.init_from:
            log.info("init_from_ignored", init_from=self.settings.train.init_from, resume=path,
                     reason="--resume continues the run from its checkpoint's weights; train.init_from applied only "
                     "when the run started")
        return self.profile.from_checkpoint(checkpoint, self.settings.model, source=path)

    def _read_resume(self, payload: Any, path: str) -> TrainingCheckpoint:
        """The checkpoint to resume as a TrainingCheckpoint, checked against the config."""
        checkpoint = TrainingCheckpoint.from_payload(
            payload, path, required=RESUME_KEYS,
            why="it holds weights only and cannot be resumed. Resume from <train.output_dir>/checkpoints/last.pt",
        )
        if checkpoint.profile != self.settings.model.profile:
            raise ConfigError(
                f"cannot resume {path}: it was trained with profile {checkpoint.profile!r}, "
                f"the config says {self.settings.model.profile!r}",
                key="model.profile",
            )
        classes = len(dict(checkpoint.categories).get("original_ids", []))
        changes = check_resume_config(self.settings, dict(checkpoint.config), classes, path)
        if changes:  # what differs from the checkpoint's config and applies now, before any training
            log.warning("resume_config_diff", checkpoint=path, changes=len(changes),
                        diff="; ".join(f"{change}" for change in changes))
        return checkpoint

    def _check_data(self, context: DistContext) -> CategoryMap:
        """Dataset checks first (bad data is refused), then the class count against the data."""
        settings = self.settings
        expected = settings.model.num_classes

        def run_checks() -> None:
            report = self.source.validate(full_decode=settings.data.full_image_check, expected_num_classes=expected)
            for finding in report.findings:
                if finding.severity == "warning":
                    log.warning("dataset_warning", finding=finding.describe())
            if not report.ok:
                listed = [finding for finding in report.errors if not finding.unlisted]
                total = report.count("error")
                shown = "\n  ".join(finding.describe() for finding in listed[:10])
                more = f"\n  ... and {total - min(10, len(listed))} more" if total > min(10, len(listed)) else ""
                raise DatasetError(
                    f"the dataset failed its checks ({total} error(s)); training refuses bad data:\n  "
                    f"{shown}{more}\nRun `apex-x dataset-preflight <config>` for the full report"
                )

        _agree(context, run_checks if context.is_main else lambda: None)
        categories = self.source.categories
        if categories.num_classes == 0:
            raise DatasetError("the dataset has no categories: nothing to train (check the annotations' 'categories')")
        if expected is not None and expected != categories.num_classes:
            counted = ", ".join(f"{cid} {name!r}" for cid, name in zip(categories.original_ids[:20],
                                                                      categories.names[:20], strict=True))
            more = ", ..." if categories.num_classes > 20 else ""
            raise ConfigError(
                f"--num-classes/model.num_classes is {expected} but the dataset has {categories.num_classes} "
                f"categories (counted: {counted}{more}); pass --num-classes {categories.num_classes} or leave it "
                "unset to take the count from the data",
                key="model.num_classes",
            )
        return categories

    def _check_resume_data(self, checkpoint: TrainingCheckpoint, categories: CategoryMap, path: str) -> None:
        """The checkpoint's classes and dataset fingerprint against the data of this run."""
        stored = checkpoint.category_map(path)
        if stored != categories:
            raise DatasetError(
                f"cannot resume {path}: its classes {list(stored.names)} differ from the dataset's "
                f"{list(categories.names)}"
            )
        fingerprint = checkpoint.dataset_fingerprint
        if fingerprint and fingerprint != self.source.fingerprint():
            raise DatasetError(
                f"cannot resume {path}: the dataset changed since the checkpoint was written (fingerprint "
                f"{str(fingerprint)[:12]} vs {self.source.fingerprint()[:12]}); resume on the same data or "
                "start a new run"
            )

    def _auxiliary(self, categories: CategoryMap, context: DistContext) -> list[AuxiliaryLoss]:
        provided = self.auxiliary_losses
        losses = list(provided(categories=categories, device=context.device) if callable(provided) else provided)
        train = self.settings.train
        if train.teacher_checkpoint and train.distill_weight <= 0:
            log.warning("teacher_unused", teacher_checkpoint=train.teacher_checkpoint,
                        reason="train.teacher_checkpoint is set but train.distill_weight is 0: the teacher is "
                        "neither loaded nor used (set train.distill_weight > 0 to distil from it)")
        if self.settings.train.distill_weight > 0 and not losses:
            log.warning("distillation_inactive", reason="train.distill_weight > 0 but no auxiliary loss is configured "
                        "(set train.teacher_checkpoint)")
        return losses


def _check_metric_name(name: str) -> None:
    if name not in COCO_METRICS and name not in LOSS_METRICS:
        raise ConfigError(
            f"unknown checkpoint metric {name!r}; use one of {', '.join(COCO_METRICS + LOSS_METRICS)}",
            key="train.checkpoint_metric",
        )


def _agree(context: DistContext, action: Callable[[], Any]) -> None:
    """Run `action` (usually on rank 0 only); if it fails anywhere, every rank raises instead of hanging."""
    failure: BaseException | None = None
    try:
        action()
    except ApexError as error:
        failure = error
    if any_true(context, [failure is not None])[0]:
        if failure is not None:
            raise failure
        raise TrainingStopped("another rank failed its checks; see rank 0's error")


__all__ = ["TrainResult", "TrainUseCase"]

