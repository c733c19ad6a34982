"""`apex-x benchmark`: inference latency of a checkpoint's model per image, split into pre-processing (decode +
letterbox), model (the network and its dense decoding) and post-processing (NMS, masks pasted back), for eager
torch and the exported formats side by side, after a warm-up; with parameters and GFLOPs.

Every format runs the same pipeline: the same reader, the same dense outputs (export graph) and the same
decode_exported, so the figures differ only by the runtime of the model stage.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import structlog
import torch

from apex_x.application.export import check_input_size, export_metadata
from apex_x.application.inference import InferenceModel
from apex_x.application.model_summary import network_size
from apex_x.domain.errors import ConfigError, DependencyError, UserError
from apex_x.domain.ports import ImageReader, ModelExporter

log = structlog.get_logger(__name__)

Runner = Callable[[torch.Tensor], list[torch.Tensor]]
STAGES = ("pre", "model", "post", "total")


def percentile(values: Sequence[float], share: float) -> float:
    """Linear-interpolated percentile of `values` (share in [0, 1]), as numpy's default."""
    ordered = sorted(values)
    position = (len(ordered) - 1) * share
    low = int(position)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (position - low)


@dataclass
class FormatTiming:
    """One format's figures: milliseconds per image per stage (median, p90), images per second."""

    format: str
    status: str  # "ok" or "error"
    error: str | None = None
    ms_per_image: dict[str, dict[str, float]] = field(default_factory=dict)  # stage -> {"median", "p90"}
    images_per_s: float | None = None
    detections_per_image: float | None = None

    def to_plain(self) -> dict[str, Any]:
        return {"format": self.format, "status": self.status, "error": self.error, "ms_per_image": self.ms_per_image,
                "images_per_s": self.images_per_s, "detections_per_image": self.detections_per_image}


@dataclass
class BenchmarkReport:
    """What `apex-x benchmark` prints and writes."""

    checkpoint: str
    profile: str
    device: str
    batch_size: int
    input_size: tuple[int, int]
    warmup: int
    iterations: int
    images: list[str]
    model: dict[str, Any]  # {"parameters", "gflops"} at the input size, batch 1
    formats: list[FormatTiming]
    machine: dict[str, Any]

    def to_plain(self) -> dict[str, Any]:
        return {"checkpoint": self.checkpoint, "profile": self.profile, "device": self.device,
                "batch_size": self.batch_size, "input_size": list(self.input_size), "warmup": self.warmup,
                "iterations": self.iterations, "images": self.images, "model": self.model,
                "formats": [item.to_plain() for item in self.formats], "machine": self.machine,
                "units": "milliseconds per image (a batch's time / batch size); images_per_s = batch / median total"}


class BenchmarkInference:
    """Times each format over `iterations` batches after `warmup` batches."""

    def __init__(self, reader: ImageReader, exporters: Mapping[str, ModelExporter], *,
                 eager_runner: Callable[[Any, torch.device], Runner], decode: Callable[..., list[Any]],
                 profile_for: Callable[[str], Any]) -> None:
        self.reader = reader
        self.profile_for = profile_for  # the model profile by name: its input-size rule
        self.exporters = exporters
        self.eager_runner = eager_runner
        self.decode = decode

    def execute(self, model: InferenceModel, images: Sequence[str], *, formats: Sequence[str], scratch_dir: str,
                batch_size: int = 1, input_size: tuple[int, int] | None = None, warmup: int = 3,
                iterations: int = 20) -> BenchmarkReport:
        """`images`: files cycled to fill the batches; `scratch_dir`: where the exported files go. A format that
        cannot run here (a missing package, an export failure) is reported with its error; the others still run."""
        unknown = [name for name in formats if name != "eager" and name not in self.exporters]
        if unknown or not formats:
            valid = ", ".join(["eager", *self.exporters])
            raise ConfigError(f"unknown format(s) {unknown}; valid: {valid}", key="--formats")
        size = input_size or model.input_size
        check_input_size(model, size, self.profile_for)
        metadata = export_metadata(model, next(iter(self.exporters.values())), size, dynamic_batch=True)
        batches = self._batches(images, batch_size, warmup + iterations, size)
        results = [self._time_format(name, model, batches, metadata, size, scratch_dir, warmup) for name in formats]
        stats = network_size(model.network, size)  # type: ignore[arg-type]
        return BenchmarkReport(
            checkpoint=model.checkpoint_path, profile=model.profile, device=str(model.device), batch_size=batch_size,
            input_size=size, warmup=warmup, iterations=iterations, images=list(dict.fromkeys(images)),
            model=stats, formats=results,
            machine={"torch": torch.__version__, "threads": torch.get_num_threads(),
                     "cuda": torch.cuda.get_device_name(model.device) if model.device.type == "cuda" else None},
        )

    def _batches(self, images: Sequence[str], batch_size: int, count: int, size: tuple[int, int]) -> list[list[str]]:
        if not images:
            raise UserError("benchmark needs at least one image")
        flat = [images[index % len(images)] for index in range(batch_size * count)]
        return [flat[start:start + batch_size] for start in range(0, len(flat), batch_size)]

    def _runner(self, name: str, model: InferenceModel, size: tuple[int, int], scratch_dir: str) -> Runner:
        if name == "eager":
            return self.eager_runner(model.network, model.device)
        exporter = self.exporters[name]
        path = f"{scratch_dir}/model{exporter.suffix}"
        exporter.export(model.network, size, path, dynamic_batch=True, metadata={})  # type: ignore[arg-type]
        model.network.to(model.device)  # export moved it to the CPU
        return exporter.load(path, model.device)

    def _time_format(self, name: str, model: InferenceModel, batches: list[list[str]], metadata: Mapping[str, Any],
                     size: tuple[int, int], scratch_dir: str, warmup: int) -> FormatTiming:
        try:
            runner = self._runner(name, model, size, scratch_dir)
        except (UserError, DependencyError) as error:
            log.warning("benchmark_format_failed", format=name, error=str(error))
            return FormatTiming(name, "error", error=str(error))
        times: dict[str, list[float]] = {stage: [] for stage in STAGES}
        detections = 0
        for index, files in enumerate(batches):
            started = time.perf_counter()
            prepared = [self.reader.prepare(self.reader.read(path), image_id=number, file_name=path,
                                            height=size[0], width=size[1]) for number, path in enumerate(files)]
            images = torch.stack([tensor for tensor, _ in prepared])
            loaded = time.perf_counter()
            outputs = runner(images)
            self._sync(model.device)
            ran = time.perf_counter()
            found = self.decode(outputs, [meta for _, meta in prepared], metadata)
            done = time.perf_counter()
            if index < warmup:
                continue
            count = len(files)
            for stage, seconds in zip(STAGES, (loaded - started, ran - loaded, done - ran, done - started), strict=True):
                times[stage].append(seconds * 1000.0 / count)
            detections += sum(len(item) for item in found)
        measured = len(times["total"])
        return FormatTiming(
            name, "ok",
            ms_per_image={stage: {"median": round(statistics.median(values), 3), "p90": round(percentile(values, 0.9), 3)}
                          for stage, values in times.items()},
            images_per_s=round(1000.0 / statistics.median(times["total"]), 2),
            detections_per_image=round(detections / max(1, measured * len(batches[0])), 2),
        )

    @staticmethod
    def _sync(device: torch.device) -> None:
        if device.type == "cuda":
            torch.cuda.synchronize(device)


def benchmark_table(report: BenchmarkReport) -> str:
    """The report as a plain-text table (ms per image, median / p90)."""
    height, width = report.input_size
    model = report.model
    lines = [f"{report.checkpoint}: profile {report.profile}, input {height}x{width}, batch {report.batch_size}, "
             f"device {report.device}, {report.iterations} timed batches after {report.warmup} warm-up; "
             f"{model.get('parameters', 0) / 1e6:.2f} M parameters, "
             + (f"{model['gflops']:.2f} GFLOPs" if model.get("gflops") is not None else "GFLOPs n/a"),
             f"{'format':<12} {'pre ms':>14} {'model ms':>14} {'post ms':>14} {'total ms':>14} {'img/s':>8}"]
    for item in report.formats:
        if item.status != "ok":
            lines.append(f"{item.format:<12} error: {item.error}")
            continue
        cells = [f"{item.ms_per_image[stage]['median']:.2f}/{item.ms_per_image[stage]['p90']:.2f}" for stage in STAGES]
        lines.append(f"{item.format:<12} " + " ".join(f"{cell:>14}" for cell in cells) + f" {item.images_per_s:>8.1f}")
    lines.append("(ms per image, median/p90)")
    return "\n".join(lines)
