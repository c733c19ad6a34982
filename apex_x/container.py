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
from apex_x.domain.registry import DATASET_FORMATS


def _lazy(target: str) -> Callable[..., Any]:
    """'package.module:Name' -> a callable that imports Name on first call and calls it."""
    module_name, _, attribute = target.partition(":")

    def build(*args: Any, **kwargs: Any) -> Any:
        return getattr(importlib.import_module(module_name), attribute)(*args, **kwargs)

    build.__name__ = attribute
    build.__qualname__ = attribute
    return build


def _open_format(name: str, settings: ApexConfig) -> Any:
    """The DatasetSource of the registered dataset format `name` (its module imported on first use)."""
    return DATASET_FORMATS.get(name).open(settings)


def _format_sources(settings: providers.Provider[ApexConfig]) -> dict[str, providers.Provider[Any]]:
    """One Singleton per registered dataset format, for a Selector keyed by format name."""
    return {name: providers.Singleton(_open_format, name, settings) for name in DATASET_FORMATS.names()}


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
    configured_dataset_source = providers.Selector(config.data.format, **_format_sources(settings))
    dataset_preflight = providers.Factory(
        _lazy("apex_x.application.dataset_preflight:DatasetPreflight"),
        dataset_format=dataset_format,
        source_factory=configured_dataset_source.provider,
    )
    shapes_writer = providers.Object(_lazy("apex_x.adapters.datasets.shapes_writer:write_shapes_dataset"))

    # Models: one factory per profile.
    model_factory = providers.Selector(
        config.model.profile,
        small=providers.Singleton(_lazy("apex_x.adapters.models.student:StudentModelFactory")),
        worldclass=providers.Singleton(_lazy("apex_x.adapters.models.teacher_v3:TeacherModelFactory")),
    )

    json_file_writer = providers.Object(_lazy("apex_x.adapters.atomic_files:write_json_file"))
    run_folder = providers.Singleton(_lazy("apex_x.adapters.output_folder:PosixRunFolder"))
    checkpoint_store = providers.Singleton(_lazy("apex_x.adapters.checkpoints.torch_store:TorchCheckpointStore"))
    evaluator = providers.Singleton(_lazy("apex_x.adapters.evaluation.coco_evaluator:PycocotoolsEvaluator"))
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
    train_use_case = providers.Factory(
        _lazy("apex_x.application.train:TrainUseCase"),
        settings=settings,
        dataset_source=dataset_source,
        model_factory=model_factory,
        checkpoint_store=checkpoint_store,
        evaluator=evaluator,
        report_writers=report_writers,
        weights_writer=weights_writer,
        progress=progress,
        auxiliary_losses=auxiliary_losses,
        run_folder=run_folder,
    )

    # Dependency preflight. Extra checks per profile ("worldclass" runs base's too): each entry is a
    # callable `check(context: PreflightContext) -> Iterable[CheckResult]`, registered lazily, e.g.
    #   worldclass=providers.List(providers.Object(_lazy("apex_x.adapters.models.x:check_backbone_weights"))),
    environment_probe = providers.Singleton(_lazy("apex_x.adapters.environment_probe:ImportlibEnvironmentProbe"))
    preflight_checks = providers.Dict(
        base=providers.List(),
        worldclass=providers.List(
            # DINOv2 weights of model.teacher_backbone reachable (folder, cache or hub); CheckResult injected.
            providers.Object(
                functools.partial(
                    _lazy("apex_x.adapters.models.backbone_weights_check:check_backbone_weights"),
                    make_result=_lazy("apex_x.application.preflight:CheckResult"),
                )
            ),
        ),
    )
    preflight = providers.Factory(
        _lazy("apex_x.application.preflight:PreflightUseCase"),
        probe=environment_probe,
        extra_checks=preflight_checks,
    )

    # Using a trained model (eval, predict, notebook): the image reader, the files of predict, the use cases.
    image_reader = providers.Singleton(_lazy("apex_x.adapters.image_inputs:PillowImageReader"),
                                       config.data.high_bit_depth_scaling)
    model_state_loader = providers.Object(_lazy("apex_x.adapters.checkpoints.torch_store:apply_model_state"))
    prediction_sink = providers.Factory(_lazy("apex_x.adapters.inference_outputs:CocoJsonOverlaySink"))
    eval_report_writer = providers.Singleton(_lazy("apex_x.adapters.inference_outputs:EvalReportFiles"))
    coco_classes_reader = providers.Object(_lazy("apex_x.adapters.datasets.coco_categories:read_coco_classes"))
    predict_images = providers.Factory(_lazy("apex_x.application.predict:PredictImages"), reader=image_reader)
    evaluate_checkpoint = providers.Factory(
        _lazy("apex_x.application.evaluate:EvaluateCheckpoint"), dataset=dataset_source, evaluator=evaluator,
        on_bad_image=config.data.on_bad_image,
    )


def create_container(config: ApexConfig | None = None) -> Container:
    """A container configured from an effective config (defaults when None)."""
    effective = config or ApexConfig()
    container = Container()
    container.config.from_dict(effective.to_plain())
    container.settings.override(providers.Object(effective))
    return container
