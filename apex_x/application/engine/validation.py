"""Validation after an epoch: val loss and COCO metrics, sharded over ranks, agreed by every rank."""

from __future__ import annotations

import contextlib
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import structlog
import torch

from apex_x.application.engine.distributed import DistContext, broadcast_from_main, gather_to_main
from apex_x.application.engine.previews import in_order, preview_sample
from apex_x.domain.ports import BatchLoader, Evaluator, SegmentationModel
from apex_x.domain.types import CategoryMap, Detections, EvalResult, LossSettings, PreviewSample

log = structlog.get_logger(__name__)


@dataclass
class ValidationResult:
    """Flat metrics (COCO metrics when there is ground truth, plus val_loss) and the full evaluation."""

    metrics: dict[str, float | None]  # None: n/a (no ground truth for that COCO metric)
    evaluation: dict[str, Any] | None  # EvalResult.to_plain()
    num_images: int
    seconds: float
    error: str | None = None
    bad_images: list[dict[str, Any]] = field(default_factory=list)  # val images that failed to decode (left out)
    previews: list[PreviewSample] = field(default_factory=list)  # the chosen images drawn later (rank 0 only)


class ValidationStopped(Exception):
    """A stop was requested (SIGTERM/SIGINT) between validation batches: the caller saves and stops."""


@torch.no_grad()
def _run_shard(
    model: SegmentationModel,
    loader: BatchLoader,
    device: torch.device,
    settings: LossSettings,
    amp_dtype: torch.dtype | None,
    encode: Callable[[int, Detections], Any] | None,
    should_stop: Callable[[], bool] | None = None,
    with_loss: bool = True,
    preview_ids: frozenset[int] = frozenset(),
) -> tuple[float, int, int, list[tuple[int, Any]], list[dict[str, Any]], list[PreviewSample]]:
    """Val loss over the shard (with_loss) and, with `encode`, each image's detections in the evaluator's
    compact form (encoded batch by batch: full-resolution masks never pile up over the split), and the images
    of `preview_ids` with their confident detections at the network's scale (previews.py)."""
    loss_sum, loss_count, images = 0.0, 0, 0
    found: list[tuple[int, Any]] = []
    bad: list[dict[str, Any]] = []
    previews: list[PreviewSample] = []
    network: torch.nn.Module = model  # type: ignore[assignment]
    was_training = network.training
    network.eval()
    autocast = (
        torch.autocast(device_type=device.type, dtype=amp_dtype) if amp_dtype is not None else contextlib.nullcontext()
    )
    try:
        for batch in loader.iter_epoch(0):
            if should_stop is not None and should_stop():
                raise ValidationStopped(f"stop requested after {images} validation image(s)")
            bad.extend(batch.bad_images)
            if batch.batch_size == 0:
                continue
            batch = batch.to(device, non_blocking=device.type == "cuda")
            with autocast:
                outputs = model(batch.images)
                components = model.compute_losses(outputs, batch, settings) if with_loss else {}
            if with_loss:
                total = sum(float(settings.weights.get(name, 0.0)) * float(value) for name, value in components.items())
                if math.isfinite(total):
                    loss_sum += total * batch.batch_size
                    loss_count += batch.batch_size
            images += batch.batch_size
            if encode is not None:
                detections = model.postprocess(outputs, batch.metas)
                found.extend(
                    (meta.image_id, encode(meta.image_id, item)) for meta, item in zip(batch.metas, detections, strict=True)
                )
                previews.extend(preview_sample(batch, index, item) for index, (meta, item)
                                in enumerate(zip(batch.metas, detections, strict=True)) if meta.image_id in preview_ids)
    finally:
        network.train(was_training)
    return loss_sum, loss_count, images, found, bad, previews


def validate(
    *,
    model: SegmentationModel,
    loader: BatchLoader,
    ground_truth: dict[str, Any] | None,
    evaluator: Evaluator,
    categories: CategoryMap,
    settings: LossSettings,
    context: DistContext,
    amp_dtype: torch.dtype | None = None,
    should_stop: Callable[[], bool] | None = None,
    with_loss: bool = True,
    preview_ids: tuple[int, ...] = (),
) -> ValidationResult:
    """Each rank runs its shard of the val loader; rank 0 scores the gathered detections; the metrics are
    broadcast so every rank takes the same best/stop decisions. An evaluator failure on rank 0 does not
    hang the others: the error text is broadcast instead and raised everywhere by the caller.

    should_stop (single process only: ranks would not agree) is polled between batches and before the
    COCO evaluation; a stop raises ValidationStopped. Without `with_loss` (train.val_loss=false) the metrics
    have no val_loss key: the loss is not computed, and no stand-in value is reported. preview_ids: val images
    whose detections (and ground truth) come back in `previews`, in that order, on rank 0 (needs ground truth:
    they are drawn with it)."""
    started = time.perf_counter()
    log.info("validation_start", batches=len(loader),
             scoring=" + ".join(part for part, on in (("COCO AP", ground_truth is not None), ("val loss", with_loss))
                                if on) or "predictions only")
    collect = ground_truth is not None
    encode = (lambda image_id, found: evaluator.encode(image_id, found, categories)) if collect else None
    should_stop = should_stop if not context.enabled else None
    shard = _run_shard(model, loader, context.device, settings, amp_dtype, encode, should_stop, with_loss,
                       frozenset(preview_ids) if collect else frozenset())
    if should_stop is not None and should_stop():
        raise ValidationStopped("stop requested before the COCO evaluation")
    gathered = gather_to_main(context, shard)
    result: ValidationResult | None = None
    previews: list[PreviewSample] = []
    if context.is_main:
        assert gathered is not None
        loss_sum = sum(item[0] for item in gathered)
        loss_count = sum(item[1] for item in gathered)
        images = sum(item[2] for item in gathered)
        seen: set[int] = set()
        encoded = []  # a DistributedSampler pads shards with repeats: keep each image once
        for item in gathered:
            for image_id, found in item[3]:
                if image_id not in seen:
                    seen.add(image_id)
                    encoded.append((image_id, found))
        metrics: dict[str, float | None] = {}
        if with_loss:
            metrics["val_loss"] = loss_sum / loss_count if loss_count else math.nan
        evaluation: dict[str, Any] | None = None
        error: str | None = None
        if collect:
            try:
                scored: EvalResult = evaluator.evaluate_encoded(ground_truth, encoded, categories)  # type: ignore[arg-type]
                metrics.update({key: None if value is None else float(value) for key, value in scored.metrics.items()})
                evaluation = scored.to_plain()
            except Exception as failure:  # noqa: BLE001 - broadcast, then raised on every rank
                error = f"{type(failure).__name__}: {failure}"
        bad_images = [item for shard in gathered for item in shard[4]]
        result = ValidationResult(metrics, evaluation, images, time.perf_counter() - started, error, bad_images)
        previews = in_order([sample for shard in gathered for sample in shard[5]], preview_ids)
    result = broadcast_from_main(context, result)  # without the previews: only rank 0 draws them
    assert result is not None
    if context.is_main:
        result.previews = previews
    headline = ("segm_AP", "bbox_AP", "segm_AP50", "bbox_AP50", "val_loss")
    log.info("validation_done", images=result.num_images, seconds=round(result.seconds, 2),
             **{key: _shown(result.metrics[key]) for key in headline if key in result.metrics})
    return result


def _shown(value: float | None) -> float | str:
    """A metric for the console: n/a where COCO has no ground truth, else 4 decimals."""
    return "n/a" if value is None or not math.isfinite(value) else round(value, 4)
