"""`apex-x export`: a trained model as a deployable file (ONNX or TorchScript) plus its metadata JSON.

The file holds the network and its dense decoding (adapters/export/graph.py documents the inputs and
outputs); the JSON beside it (`<file>.json`, also inside the file) holds what a deployment needs to decode
them: class ids and names, input size, mask stride and the post-processing thresholds.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import PurePath
from typing import Any

import structlog

from apex_x.application.inference import InferenceModel
from apex_x.domain.errors import ConfigError
from apex_x.domain.ports import ModelExporter, ModelProfile
from apex_x.domain.version import __version__

log = structlog.get_logger(__name__)

METADATA_FORMAT = "apex-x-export"
METADATA_VERSION = 1


@dataclass
class ExportResult:
    """What was written."""

    path: str
    metadata_path: str
    format: str
    input_size: tuple[int, int]  # (height, width) pixels
    dynamic_batch: bool
    seconds: float
    metadata: dict[str, Any]

    def to_plain(self) -> dict[str, Any]:
        return {"path": self.path, "metadata_path": self.metadata_path, "format": self.format,
                "input_size": list(self.input_size), "dynamic_batch": self.dynamic_batch,
                "seconds": round(self.seconds, 3), "metadata": self.metadata}


def default_export_path(checkpoint: str, suffix: str) -> str:
    """Beside the checkpoint, same stem: run/checkpoints/best.pt -> run/checkpoints/best.onnx."""
    return str(PurePath(checkpoint).with_suffix(suffix))


def export_metadata(model: InferenceModel, exporter: ModelExporter, input_size: tuple[int, int],
                    dynamic_batch: bool) -> dict[str, Any]:
    """Plain values a deployment needs to decode the outputs (apex_x.decode_exported reads them)."""
    config = model.config.model
    return {
        "format": METADATA_FORMAT, "format_version": METADATA_VERSION, "apex_x_version": __version__,
        "export_format": exporter.format, "runtime": exporter.runtime, "profile": model.profile,
        "checkpoint": model.checkpoint_path, "weights": model.weights,
        "input": {"name": "images", "shape": ["batch" if dynamic_batch else 1, 3, *input_size], "dtype": "uint8",
                  "layout": "RGB, letterboxed (apex_x.letterbox), pad value 114"},
        "outputs": ["boxes", "scores", "mask_coeffs", "prototypes"],
        "input_size": list(input_size), "dynamic_batch": dynamic_batch, "mask_stride": config.mask_stride,
        "classes": [{"id": int(original), "name": name}
                    for original, name in zip(model.categories.original_ids, model.categories.names, strict=True)],
        "postprocess": {"score_threshold": config.score_threshold, "nms_iou": config.nms_iou,
                        "max_detections": config.max_detections, "pre_nms_topk": config.pre_nms_topk},
    }


class ExportModel:
    """Checks the input size against the profile's rule, exports, writes the metadata JSON."""

    def __init__(self, exporter: ModelExporter, *, profile_for: Callable[[str], ModelProfile],
                 write_json: Callable[[str, Mapping[str, Any]], Any]) -> None:
        self.exporter = exporter
        self.profile_for = profile_for
        self.write_json = write_json

    def execute(self, model: InferenceModel, *, output: str | None = None, input_size: tuple[int, int] | None = None,
                dynamic_batch: bool = False) -> ExportResult:
        """Raises ConfigError (key --input-size) for a size the profile refuses, UserError when the model cannot
        be exported in the format, DependencyError when the format's packages are missing."""
        size = input_size or model.input_size
        check_input_size(model, size, self.profile_for)
        path = output or default_export_path(model.checkpoint_path, self.exporter.suffix)
        metadata = export_metadata(model, self.exporter, size, dynamic_batch)
        started = time.perf_counter()
        self.exporter.export(model.network, size, path, dynamic_batch=dynamic_batch,  # type: ignore[arg-type]
                             metadata={"apex_x_export": _json(metadata)})
        metadata_path = f"{path}.json"
        self.write_json(metadata_path, metadata)
        seconds = time.perf_counter() - started
        log.info("exported", format=self.exporter.format, path=path, input_size=list(size),
                 dynamic_batch=dynamic_batch, seconds=round(seconds, 2))
        return ExportResult(path, metadata_path, self.exporter.format, size, dynamic_batch, seconds, metadata)


def check_input_size(model: InferenceModel, size: tuple[int, int], profile_for: Callable[[str], Any]) -> None:
    """ConfigError (key --input-size) unless `size` is within the config schema's bounds and follows the
    profile's rule (multiples of 32): one check for export and benchmark."""
    _check_bounds(model, size)
    problem = profile_for(model.profile).input_size_problem(*size)
    if problem:
        raise ConfigError(problem, key="--input-size")


def _check_bounds(model: InferenceModel, size: tuple[int, int]) -> None:
    """The config schema's bounds of model.input_height / input_width (e.g. 32..4096 pixels)."""
    from pydantic import ValidationError

    from apex_x.domain.config import ModelConfig

    try:
        ModelConfig.model_validate({**model.config.model.model_dump(), "input_height": size[0], "input_width": size[1]})
    except ValidationError as error:
        first = error.errors()[0]
        raise ConfigError(f"{size[0]}x{size[1]}: {first['loc'][0]} {first['msg']}", key="--input-size") from None


def _json(value: Mapping[str, Any]) -> str:
    import json

    return json.dumps(value, sort_keys=True)
