"""Predict use case: images (files or folders) -> detections per image, handed to a sink; bad inputs reported."""

from __future__ import annotations

import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import structlog
import torch

from apex_x.application.inference import InferenceModel
from apex_x.domain.errors import UserError
from apex_x.domain.ports import ImageReader, PredictionSink
from apex_x.domain.types import Detections, ImageMeta

log = structlog.get_logger(__name__)


@dataclass(frozen=True)
class InputFailure:
    """An input that could not be used (missing, empty folder, not an image): the path and why."""

    path: str
    message: str

    def to_plain(self) -> dict[str, str]:
        return {"path": self.path, "error": self.message}


@dataclass
class ImagePrediction:
    """Detections of one image (original pixels, contiguous class ids) and where it came from."""

    image_id: int
    path: str
    height: int
    width: int
    detections: Detections

    def to_plain(self) -> dict[str, Any]:
        return {
            "id": self.image_id,
            "path": self.path,
            "height": self.height,
            "width": self.width,
            "num_detections": len(self.detections),
        }


@dataclass
class PredictionRun:
    """What a predict call produced: predictions, failed inputs and the files written."""

    predictions: list[ImagePrediction] = field(default_factory=list)
    failures: list[InputFailure] = field(default_factory=list)
    outputs: list[str] = field(default_factory=list)
    seconds: float = 0.0
    model: dict[str, Any] = field(default_factory=dict)  # InferenceModel.describe(): checkpoint, size, GFLOPs ...

    @property
    def ok(self) -> bool:
        return not self.failures

    @property
    def num_detections(self) -> int:
        return sum(len(item.detections) for item in self.predictions)


def filter_detections(detections: Detections, score_threshold: float) -> Detections:
    """Keep detections scoring at least `score_threshold`."""
    keep = detections.scores >= score_threshold
    return Detections(
        boxes=detections.boxes[keep],
        scores=detections.scores[keep],
        labels=detections.labels[keep],
        masks=detections.masks[keep],
    )


class PredictImages:
    """Runs a model over image files and folders; one bad input never stops the others."""

    def __init__(
        self,
        model: InferenceModel,
        reader: ImageReader,
        sink: PredictionSink | None = None,
        *,
        score_threshold: float | None = None,
        batch_size: int = 4,
        image_ids: dict[str, int] | None = None,
    ) -> None:
        self.image_ids = image_ids or {}  # file name -> image id of a COCO file given with the images
        self.model = model
        self.reader = reader
        self.sink = sink
        self.score_threshold = model.config.model.score_threshold if score_threshold is None else score_threshold
        self.batch_size = max(1, batch_size)

    def execute(self, inputs: Sequence[str]) -> PredictionRun:
        started = time.perf_counter()
        run = PredictionRun(model=self.model.describe())
        if not inputs:
            raise UserError("no image given: pass --image PATH (a file or a folder), repeatable")
        files = self._expand(inputs, run)
        for chunk in _chunks(self._decoded(files, run), self.batch_size):
            for prediction, image in self._predict_chunk(chunk):
                run.predictions.append(prediction)
                if self.sink is not None:
                    self.sink.add(prediction.image_id, prediction.path, image, prediction.detections)
        run.seconds = time.perf_counter() - started
        if self.sink is not None:
            run.outputs = self.sink.close(self._summary(run))
        log.info(
            "predict_done",
            images=len(run.predictions),
            failures=len(run.failures),
            detections=run.num_detections,
            seconds=round(run.seconds, 3),
        )
        return run

    def _expand(self, inputs: Sequence[str], run: PredictionRun) -> list[str]:
        files: list[str] = []
        for path in inputs:
            try:
                files.extend(self.reader.list_images(str(path)))
            except UserError as error:
                run.failures.append(InputFailure(str(path), str(error)))
        return files

    def _decoded(self, files: list[str], run: PredictionRun) -> Iterator[tuple[int, str, torch.Tensor]]:
        image_id = 0
        used = set(self.image_ids.values())
        for path in files:
            try:
                image = self.reader.read(path)  # (H, W, 3) uint8
            except UserError as error:
                run.failures.append(InputFailure(path, str(error)))
                log.warning("image_skipped", path=path, error=str(error))
                continue
            known = self.image_ids.get(path.replace("\\", "/").rsplit("/", 1)[-1])
            if known is None:
                image_id += 1
                while image_id in used:  # numbering of images the COCO file does not list
                    image_id += 1
            yield (known if known is not None else image_id), path, image

    def _predict_chunk(
        self, chunk: list[tuple[int, str, torch.Tensor]]
    ) -> list[tuple[ImagePrediction, torch.Tensor]]:
        height, width = self.model.input_size
        inputs: list[torch.Tensor] = []
        metas: list[ImageMeta] = []
        for image_id, path, image in chunk:
            tensor, meta = self.reader.prepare(
                image, image_id=image_id, file_name=path, height=height, width=width
            )
            inputs.append(tensor)
            metas.append(meta)
        detections = self.model.detect(torch.stack(inputs), metas)  # (B, 3, H, W) in
        results = []
        for (image_id, path, image), found in zip(chunk, detections, strict=True):
            kept = filter_detections(found, self.score_threshold)
            prediction = ImagePrediction(image_id, path, int(image.shape[0]), int(image.shape[1]), kept)
            results.append((prediction, image))
        return results

    def _summary(self, run: PredictionRun) -> dict[str, Any]:
        return {
            "model": self.model.describe(),
            "score_threshold": self.score_threshold,
            "images": [item.to_plain() for item in run.predictions],
            "failures": [item.to_plain() for item in run.failures],
            "num_detections": run.num_detections,
            "seconds": round(run.seconds, 3),
        }


def _chunks(items: Iterator[tuple[int, str, torch.Tensor]], size: int) -> Iterator[list[tuple[int, str, torch.Tensor]]]:
    chunk: list[tuple[int, str, torch.Tensor]] = []
    for item in items:
        chunk.append(item)
        if len(chunk) == size:
            yield chunk
            chunk = []
    if chunk:
        yield chunk
