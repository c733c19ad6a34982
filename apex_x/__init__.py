"""Apex-X: train detection + instance-segmentation models on COCO-format data.

The importable use-case API (loaded lazily, nothing happens at import time):
`train`, `evaluate`, `predict`, `preflight`, `dataset_preflight`, `load_config`, `make_shapes`, and for
deployment `export`, `letterbox`, `decode_exported`.
"""

from __future__ import annotations

import importlib
import types
from typing import Any

from apex_x.domain.version import __version__

_API = {
    "load_config": ("apex_x.api", "load_config"),
    "train": ("apex_x.api", "train"),
    "evaluate": ("apex_x.api", "evaluate"),
    "predict": ("apex_x.api", "predict"),
    "preflight": ("apex_x.api", "preflight"),
    "dataset_preflight": ("apex_x.api", "dataset_preflight"),
    "make_shapes": ("apex_x.api", "make_shapes"),
    "export": ("apex_x.api", "export"),
    "benchmark": ("apex_x.api", "benchmark"),
    "letterbox": ("apex_x.api", "letterbox"),
    "decode_exported": ("apex_x.api", "decode_exported"),
}

__all__ = ["__version__", *_API]


class _TrainPackage(types.ModuleType):
    """`apex_x.train` is both the package of the user guide's `apex_x.train.checkpoint` helpers and the train use
    case: once the package is imported it shadows the lazy attribute below, so calling it runs training."""

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        return importlib.import_module("apex_x.api").train(*args, **kwargs)


importlib.import_module("apex_x.train").__class__ = _TrainPackage  # a docstring-only package: cheap


def __getattr__(name: str) -> Any:
    if name in _API:
        module_name, attribute = _API[name]
        return getattr(importlib.import_module(module_name), attribute)
    raise AttributeError(f"module 'apex_x' has no attribute {name!r}")
