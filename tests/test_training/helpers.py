"""Build the train use case with the fakes and the real checkpoint store and report writers."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from apex_x.adapters.checkpoints.init_weights import read_init_weights
from apex_x.adapters.checkpoints.safetensors_writer import SafetensorsWeightsWriter
from apex_x.adapters.checkpoints.torch_store import TorchCheckpointStore
from apex_x.adapters.config_yaml import load_config
from apex_x.adapters.output_folder import PosixRunFolder
from apex_x.adapters.reports.json_writer import JsonReportWriter
from apex_x.adapters.reports.markdown_writer import MarkdownReportWriter
from apex_x.application.train import TrainUseCase
from apex_x.domain.config import ApexConfig

from .fakes import FakeDatasetSource, FakeEvaluator, FakeModelFactory

BASE = (
    "runtime.device=cpu",
    "train.epochs=1",
    "train.batch_size=4",
    "train.lr=0.01",
    "train.warmup_steps=2",
    "train.ema_decay=0.9",
    "model.input_height=32",
    "model.input_width=32",
)


def settings_for(output_dir: Path, *overrides: str) -> ApexConfig:
    return load_config(None, [*BASE, f"train.output_dir={output_dir}", *overrides])


def make_use_case(output_dir: Path, *overrides: str, source: FakeDatasetSource | None = None,
                  factory: FakeModelFactory | None = None, evaluator: FakeEvaluator | None = None,
                  reports: bool = True, **options: Any) -> TrainUseCase:
    return TrainUseCase(
        settings=settings_for(output_dir, *overrides),
        dataset_source=source or FakeDatasetSource(),
        model_profile=factory or FakeModelFactory(),
        checkpoint_store=TorchCheckpointStore(),
        evaluator=evaluator or FakeEvaluator(),
        report_writers=[JsonReportWriter(), MarkdownReportWriter()] if reports else [JsonReportWriter()],
        weights_writer=SafetensorsWeightsWriter(),
        run_folder=options.pop("run_folder", PosixRunFolder()),
        init_weights_reader=options.pop("init_weights_reader", read_init_weights),
        **options,
    )


def flat_state(payload_part: dict[str, Any]) -> list[tuple[str, torch.Tensor]]:
    """Every tensor of a nested state (optimizer state dicts included), in a stable order."""
    found: list[tuple[str, torch.Tensor]] = []

    def walk(value: Any, prefix: str) -> None:
        if isinstance(value, torch.Tensor):
            found.append((prefix, value))
        elif isinstance(value, dict):
            for key in sorted(value, key=str):
                walk(value[key], f"{prefix}.{key}")
        elif isinstance(value, (list, tuple)):
            for index, item in enumerate(value):
                walk(item, f"{prefix}.{index}")

    walk(payload_part, "")
    return found
