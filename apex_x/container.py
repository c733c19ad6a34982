"""The only composition root: adapters chosen by config, use cases as factories (dependency-injector).

Adapters are imported lazily (on first use), so `apex-x preflight` does not pay for timm/transformers.
"""

from __future__ import annotations

import functools
import importlib
from collections.abc import Callable
from typing import Any

from dependency_injector import containers, providers

from apex_x.adapters.config_yaml import load_config
from apex_x.domain.config import ApexConfig
from apex_x.domain.registry import DATASET_FORMATS, MODEL_PROFILES

# Every 'package.module:Name' wired below, in order (tests/test_foundation/test_container_wiring.py resolves each).
TARGETS: list[str] = []


def _resolve(target: str) -> Any:
    """'package.module:Name' -> the object Name itself (imported now)."""
    module_name, _, attribute = target.partition(":")
    return getattr(importlib.import_module(module_name), attribute)


def _attr(target: str) -> providers.Callable[Any]:
    """A provider of the object 'package.module:Name' itself (a class or function), imported on first use."""
    TARGETS.append(target)
    return providers.Callable(_resolve, target)


def _lazy(target: str) -> Callable[..., Any]:
    """'package.module:Name' -> a callable that imports Name on first call and calls it."""
    TARGETS.append(target)
    module_name, _, attribute = target.partition(":")

    def build(*args: Any, **kwargs: Any) -> Any:
        return getattr(importlib.import_module(module_name), attribute)(*args, **kwargs)

    build.__name__ = attribute
    build.__qualname__ = attribute
    return build


def _profile_for(config: ApexConfig) -> Any:
    """The ModelProfile of a config (e.g. a checkpoint's): the Selector of a container for that config."""
    return create_container(config).model_profile()


def _open_format(name: str, settings: ApexConfig) -> Any:
    """The DatasetSource of the registered dataset format `name` (its module imported on first use)."""
    return DATASET_FORMATS.get(name).open(settings)


def _format_sources(settings: providers.Provider[ApexConfig]) -> dict[str, providers.Provider[Any]]:
    """One Singleton per registered dataset format, for a Selector keyed by format name."""
    return {name: providers.Singleton(_open_format, name, settings) for name in DATASET_FORMATS.names()}


_WITH_EXTRA_TRAIN = _lazy("apex_x.adapters.datasets.extra_train:with_extra_train")


class Container(containers.DeclarativeContainer):
    """Wires ports to adapters. Only the CLI, API and notebook adapters touch it; tests override providers."""

    config = providers.Configuration(strict=True)  # the plain dict of `settings`, for Selectors
    settings = providers.Dependency(instance_of=ApexConfig)  # the validated, typed config

    config_loader = providers.Object(load_config)

    # Data: the configured format (data.format); the fail-fast policy picks its name or "synthetic" (or raises
    # DatasetError naming the key); the Selector opens that registered format's splits.
    dataset_format = providers.Callable(DATASET_FORMATS.get, config.data.format)
    dataset_kind = providers.Callable(
        _lazy("apex_x.application.dataset_policy:select_dataset_kind"), settings, dataset_format
    )
    dataset_source = providers.Selector(dataset_kind, **_format_sources(settings))
    # dataset-preflight checks the real data of a config (its data.format, never the synthetic fallback).
    evaluation_settings = providers.Callable(
        _lazy("apex_x.application.dataset_policy:select_evaluation_settings"), settings, dataset_format
    )
    configured_dataset_source = providers.Selector(config.data.format, **_format_sources(settings))
    # data.extra_train: more train datasets joined to the main one (classes matched by name); train and
    # dataset-preflight see them, eval the main dataset's val split alone.
    train_dataset_source = providers.Callable(_WITH_EXTRA_TRAIN, dataset_source, settings)
    preflight_dataset_source = providers.Callable(_WITH_EXTRA_TRAIN, configured_dataset_source, settings)
    dataset_preflight = providers.Factory(
        _lazy("apex_x.application.dataset_preflight:DatasetPreflight"),
        dataset_format=dataset_format,
        source_factory=preflight_dataset_source.provider,
    )
    shapes_writer = providers.Object(_lazy("apex_x.adapters.datasets.shapes_writer:write_shapes_dataset"))

    # Models: the ModelProfile of model.profile, from the registry (its variant module is imported on first use).
    model_profile = providers.Selector(
        config.model.profile,
        **{name: providers.Singleton(_lazy("apex_x.adapters.models.profiles:get_profile"), name)
           for name in MODEL_PROFILES.names()},
    )

    json_file_writer = providers.Object(_lazy("apex_x.adapters.atomic_files:write_json_file"))
    run_folder = providers.Singleton(_lazy("apex_x.adapters.output_folder:PosixRunFolder"))
    checkpoint_store = providers.Singleton(_lazy("apex_x.adapters.checkpoints.torch_store:TorchCheckpointStore"))
    evaluator = providers.Singleton(_lazy("apex_x.adapters.evaluation.coco_evaluator:PycocotoolsEvaluator"),
                                    max_detections=config.model.max_detections)
    report_writers = providers.List(
        providers.Singleton(_lazy("apex_x.adapters.reports.json_writer:JsonReportWriter")),
        providers.Singleton(_lazy("apex_x.adapters.reports.markdown_writer:MarkdownReportWriter")),
    )

    # Training (issue 5): the final weights file, progress display, auxiliary losses and the use case.
    weights_writer = providers.Singleton(
        _lazy("apex_x.adapters.checkpoints.safetensors_writer:SafetensorsWeightsWriter")
    )
    progress = providers.Factory(_lazy("apex_x.adapters.progress:make_progress"), config.train.log_every_steps)
    # Extra loss terms (e.g. teacher distillation): a list of AuxiliaryLoss, or a callable
    # `(categories=CategoryMap, device=torch.device) -> list[AuxiliaryLoss]` the use case calls once.
    # Teacher distillation (train.distill_weight > 0 + train.teacher_checkpoint), else no extra term.
    auxiliary_losses = providers.Factory(
        _lazy("apex_x.adapters.models.distillation:DistillationLossBuilder"), settings, checkpoint_store
    )
    # Experiment trackers of train.loggers, by name (ExperimentTracker port).
    tracker_factories = providers.Dict(
        tensorboard=providers.Factory(_lazy("apex_x.adapters.tracking.tensorboard_tracker:TensorBoardTracker")),
        mlflow=providers.Factory(_lazy("apex_x.adapters.tracking.mlflow_tracker:MlflowTracker")),
    )
    trackers = providers.Callable(
        lambda names, factories: [factories[name] for name in names], config.train.loggers, tracker_factories
    )
    # Val prediction overlays (PreviewRenderer port): plots/val_predictions.png, eval_val_predictions.png.
    preview_renderer = providers.Singleton(_lazy("apex_x.adapters.reports.prediction_grid:PillowPreviewRenderer"))
    train_use_case = providers.Factory(
        _lazy("apex_x.application.train:TrainUseCase"),
        settings=settings,
        dataset_source=train_dataset_source,
        model_profile=model_profile,
        checkpoint_store=checkpoint_store,
        evaluator=evaluator,
        report_writers=report_writers,
        weights_writer=weights_writer,
        progress=progress,
        auxiliary_losses=auxiliary_losses,
        run_folder=run_folder,
        trackers=trackers,
        init_weights_reader=providers.Object(_lazy("apex_x.adapters.checkpoints.init_weights:read_init_weights")),
        preview_renderer=preview_renderer,
    )

    # Dependency preflight: "base", plus each model profile that needs more (its packages and checks, e.g. the
    # worldclass backbone weights); a profile's checks run after base's. A check is a callable
    # `check(context: PreflightContext) -> Iterable[CheckResult]`.
    environment_probe = providers.Singleton(_lazy("apex_x.adapters.environment_probe:ImportlibEnvironmentProbe"))
    preflight_checks = providers.Singleton(_lazy("apex_x.adapters.models.profiles:preflight_checks"))
    preflight_requirements = providers.Singleton(_lazy("apex_x.adapters.models.profiles:preflight_requirements"))
    preflight = providers.Factory(
        _lazy("apex_x.application.preflight:PreflightUseCase"),
        probe=environment_probe,
        extra_checks=preflight_checks,
        requirements=preflight_requirements,
    )
    # module name -> the Requirement (base's or a profile's) that provides it, for "No module named X" hints.
    requirement_for_module = providers.Factory(
        functools.partial, _lazy("apex_x.application.preflight_requirements:requirement_for_module"),
        extra=providers.Callable(lambda table: [item for items in table.values() for item in items],
                                 preflight_requirements),
    )

    # Using a trained model (eval, predict, notebook): the image reader, the files of predict, the use cases.
    image_reader = providers.Singleton(_lazy("apex_x.adapters.image_inputs:PillowImageReader"),
                                       config.data.high_bit_depth_scaling)
    model_state_loader = providers.Object(_lazy("apex_x.adapters.checkpoints.torch_store:apply_model_state"))
    prediction_sink = providers.Factory(_lazy("apex_x.adapters.inference_outputs:CocoJsonOverlaySink"))
    eval_report_writer = providers.Singleton(_lazy("apex_x.adapters.inference_outputs:EvalReportFiles"))
    coco_classes_reader = providers.Object(_lazy("apex_x.adapters.datasets.coco_categories:read_coco_classes"))
    predict_images = providers.Factory(_lazy("apex_x.application.predict:PredictImages"), reader=image_reader)
    resolve_device = _attr("apex_x.application.engine.distributed:resolve_device")
    load_model = providers.Factory(
        _lazy("apex_x.application.inference:LoadModel"), store=checkpoint_store,
        profile_for=providers.Object(_profile_for), resolve_device=resolve_device,
    )
    # Export formats of `apex-x export --format NAME` (ModelExporter port), and the use case.
    model_exporters = providers.Dict(
        onnx=providers.Factory(_lazy("apex_x.adapters.export.onnx_exporter:OnnxModelExporter")),
        torchscript=providers.Factory(_lazy("apex_x.adapters.export.torchscript_exporter:TorchScriptModelExporter")),
    )
    export_model = providers.Factory(
        _lazy("apex_x.application.export:ExportModel"), profile_for=providers.Object(MODEL_PROFILES.get),
        write_json=json_file_writer,
    )
    benchmark_inference = providers.Factory(
        _lazy("apex_x.application.benchmark:BenchmarkInference"), reader=image_reader, exporters=model_exporters,
        eager_runner=providers.Object(_lazy("apex_x.adapters.export.graph:eager_runner")),
        decode=providers.Object(_lazy("apex_x.adapters.export.decode:decode_exported")),
        profile_for=providers.Object(MODEL_PROFILES.get),
    )
    benchmark_table = _attr("apex_x.application.benchmark:benchmark_table")
    write_sample_image = _attr("apex_x.adapters.image_inputs:write_sample_image")
    letterbox = _attr("apex_x.adapters.export.decode:letterbox")
    dataset_converters = providers.Dict(  # apex-x convert --to NAME
        yolo=providers.Object(_lazy("apex_x.adapters.datasets.convert:to_yolo")),
        coco=providers.Object(_lazy("apex_x.adapters.datasets.convert:to_coco")),
    )
    decode_exported = _attr("apex_x.adapters.export.decode:decode_exported")
    evaluate_checkpoint = providers.Factory(
        _lazy("apex_x.application.evaluate:EvaluateCheckpoint"), dataset=dataset_source, evaluator=evaluator,
        on_bad_image=config.data.on_bad_image, dataset_format=dataset_format,
        preview_images=config.train.val_preview_images, seed=config.train.seed, previewer=preview_renderer,
        kernels=config.runtime.kernels,
    )

    # What the entry adapters (api, cli, commands, notebook, train.checkpoint) use besides the use cases: they
    # reach adapters and application helpers only here (import-linter holds it).
    configure_logging = _attr("apex_x.adapters.logging_structlog:configure_logging")
    check_output_file = _attr("apex_x.adapters.output_folder:check_output_file")
    check_output_folder = _attr("apex_x.adapters.output_folder:check_output_folder")
    check_run_folder = _attr("apex_x.adapters.output_folder:check_run_folder")
    run_folder_of = _attr("apex_x.application.engine.resume:run_folder_of")
    resume_settings = providers.Callable(
        _lazy("apex_x.application.engine.resume:resume_settings"), store=checkpoint_store
    )
    eval_markdown = _attr("apex_x.application.evaluate:eval_markdown")
    eval_table = _attr("apex_x.application.evaluate:eval_table")
    format_metric = _attr("apex_x.application.evaluate:format_metric")
    format_dataset_report = _attr("apex_x.application.dataset_preflight:format_dataset_report")
    filter_detections = _attr("apex_x.application.predict:filter_detections")
    coco_results = _attr("apex_x.adapters.inference_outputs:coco_results")
    plot_training_curves = _attr("apex_x.adapters.training_curves:plot_training_curves")
    as_rgb_array = _attr("apex_x.adapters.visualization:as_rgb_array")
    draw_detections = _attr("apex_x.adapters.visualization:draw_detections")
    save_png = _attr("apex_x.adapters.visualization:save_png")
    pillow_image_reader = _attr("apex_x.adapters.image_inputs:PillowImageReader")
    # The public checkpoint helpers (apex_x.train.checkpoint): the secure store's functions and report type.
    extract_model_state = _attr("apex_x.adapters.checkpoints.torch_store:extract_model_state")
    apply_model_state = _attr("apex_x.adapters.checkpoints.torch_store:apply_model_state")
    state_load_report = _attr("apex_x.adapters.checkpoints.torch_store:StateLoadReport")

def create_container(config: ApexConfig | None = None) -> Container:
    """A container configured from an effective config (defaults when None)."""
    effective = config or ApexConfig()
    container = Container()
    container.config.from_dict(effective.to_plain())
    container.settings.override(providers.Object(effective))
    return container
