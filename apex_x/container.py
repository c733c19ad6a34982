"""The only composition root: adapters chosen by config, use cases as factories (dependency-injector).

Adapters are imported lazily (on first use), so `apex-x preflight` does not pay for timm/transformers.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from typing import Any

from dependency_injector import containers, providers

from apex_x.adapters.config_yaml import load_config
from apex_x.domain.config import ApexConfig


def _lazy(target: str) -> Callable[..., Any]:
    """'package.module:Name' -> a callable that imports Name on first call and calls it."""
    module_name, _, attribute = target.partition(":")

    def build(*args: Any, **kwargs: Any) -> Any:
        return getattr(importlib.import_module(module_name), attribute)(*args, **kwargs)

    build.__name__ = attribute
    build.__qualname__ = attribute
    return build


class Container(containers.DeclarativeContainer):
    """Wires ports to adapters. Only the CLI, API and notebook adapters touch it; tests override providers."""

    config = providers.Configuration(strict=True)  # the plain dict of `settings`, for Selectors
    settings = providers.Dependency(instance_of=ApexConfig)  # the validated, typed config

    config_loader = providers.Object(load_config)

    # Data: the fail-fast policy picks "coco" or "synthetic" (or raises DatasetError naming the key).
    dataset_kind = providers.Callable(_lazy("apex_x.application.dataset_policy:select_dataset_kind"), settings)
    dataset_source = providers.Selector(
        dataset_kind,
        coco=providers.Singleton(_lazy("apex_x.adapters.datasets.coco_source:CocoDatasetSource"), settings),
        synthetic=providers.Singleton(
            _lazy("apex_x.adapters.datasets.synthetic_source:SyntheticDatasetSource"), settings
        ),
    )

    # Models: one factory per profile.
    model_factory = providers.Selector(
        config.model.profile,
        small=providers.Singleton(_lazy("apex_x.adapters.models.student:StudentModelFactory")),
        worldclass=providers.Singleton(_lazy("apex_x.adapters.models.teacher_v3:TeacherModelFactory")),
    )

    checkpoint_store = providers.Singleton(_lazy("apex_x.adapters.checkpoints.torch_store:TorchCheckpointStore"))
    evaluator = providers.Singleton(_lazy("apex_x.adapters.evaluation.coco_evaluator:PycocotoolsEvaluator"))
    report_writers = providers.List(
        providers.Singleton(_lazy("apex_x.adapters.reports.json_writer:JsonReportWriter")),
        providers.Singleton(_lazy("apex_x.adapters.reports.markdown_writer:MarkdownReportWriter")),
    )


def create_container(config: ApexConfig | None = None) -> Container:
    """A container configured from an effective config (defaults when None)."""
    effective = config or ApexConfig()
    container = Container()
    container.config.from_dict(effective.to_plain())
    container.settings.override(providers.Object(effective))
    return container
