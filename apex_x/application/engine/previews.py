"""Val images drawn with their predictions (plots/val_predictions.png, eval_val_predictions.png, the trackers'
images): which images (a fixed, seeded choice, so every validation shows the same ones) and what is kept of them
(the un-padded network input, the confident detections and the ground truth, in that image's pixels)."""

from __future__ import annotations

import random
from collections.abc import Mapping, Sequence
from typing import Any

import torch
import torch.nn.functional as functional

from apex_x.domain.types import Batch, Detections, ImageMeta, PreviewSample

PREVIEW_SCORE = 0.25  # detections below this score are not drawn (Ultralytics' plotting conf)
PREVIEW_MAX_DETECTIONS = 50  # per image, highest scores first: what is kept (and gathered over ranks)
PREVIEW_FILE = "plots/val_predictions.png"  # in train.output_dir, rewritten at every validation
EVAL_PREVIEW_FILE = "eval_val_predictions.png"  # beside eval_report.json
TRACKED_PREVIEWS = 4  # panels sent to the trackers per validation


def preview_title(when: str) -> str:
    """The grid's title line."""
    return (f"Val predictions, {when}: ground truth (left) and predictions with score >= {PREVIEW_SCORE} (right); "
            "masks at alpha 0.45 with outlines")


def preview_record(file: str, epoch: int | None, samples: Sequence[PreviewSample]) -> dict[str, Any]:
    """What the reports say of the overlays: the file (relative to the report), the validation, the images."""
    return {"file": file, "epoch": epoch, "score_threshold": PREVIEW_SCORE,
            "max_detections_per_image": PREVIEW_MAX_DETECTIONS,
            "images": [{"image_id": sample.image_id, "file_name": sample.file_name,
                        "predicted": sample.confident if sample.confident is not None else len(sample.detections),
                        "drawn": len(sample.detections),
                        "true": len(sample.truth) if sample.truth is not None else None} for sample in samples]}


def choose_preview_ids(ground_truth: Mapping[str, Any] | None, count: int, seed: int) -> tuple[int, ...]:
    """`count` image ids of the val split, drawn with `seed` from its ids in sorted order (the same choice at
    every validation and in `apex-x eval` of the same config), returned sorted; () without ground truth."""
    if not ground_truth or count <= 0:
        return ()
    ids = sorted({int(image["id"]) for image in ground_truth.get("images") or []})
    if len(ids) <= count:
        return tuple(ids)
    return tuple(sorted(random.Random(seed).sample(ids, count)))


def _content(meta: ImageMeta) -> tuple[int, int]:
    """(h, w) of the original image at the letterbox scale: the network input without its padding."""
    return max(1, round(meta.orig_height * meta.scale)), max(1, round(meta.orig_width * meta.scale))


def _resize_masks(masks: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """(K, H, W) bool/uint8 -> (K, h, w) bool, nearest."""
    if masks.shape[0] == 0:
        return torch.zeros((0, *size), dtype=torch.bool)
    if tuple(masks.shape[-2:]) == size:
        return masks.bool()
    return functional.interpolate(masks[None].float(), size=size, mode="nearest")[0] > 0.5


def confident_count(detections: Detections) -> int:
    """Detections at or above PREVIEW_SCORE (before the per-image cap)."""
    return int((detections.scores.detach().cpu() >= PREVIEW_SCORE).sum())


def scaled_detections(detections: Detections, meta: ImageMeta) -> Detections:
    """Confident detections (score >= PREVIEW_SCORE, the best PREVIEW_MAX_DETECTIONS) moved from original pixels to
    the letterbox scale, on the CPU."""
    keep = torch.nonzero(detections.scores.detach().cpu() >= PREVIEW_SCORE).flatten()
    keep = keep[torch.argsort(detections.scores.detach().cpu()[keep], descending=True)][:PREVIEW_MAX_DETECTIONS]
    size = _content(meta)
    masks = detections.masks.detach().cpu()
    masks = masks[keep] if masks.numel() and masks.shape[0] == len(detections) else torch.zeros(
        (len(keep), *size), dtype=torch.bool)
    return Detections(boxes=detections.boxes.detach().cpu().float()[keep] * meta.scale,
                      scores=detections.scores.detach().cpu().float()[keep],
                      labels=detections.labels.detach().cpu()[keep], masks=_resize_masks(masks, size))


def batch_truth(batch: Batch, index: int) -> Detections:
    """Image `index`'s non-crowd objects from the batch targets (input pixels, masks at the mask stride) in the
    un-padded input's pixels; scores 1."""
    meta = batch.metas[index]
    height, width = _content(meta)
    real = (batch.valid[index] & ~batch.crowd[index]).detach().cpu()
    boxes = batch.boxes[index].detach().cpu().float()[real]
    boxes = boxes - torch.tensor([meta.pad_left, meta.pad_top, meta.pad_left, meta.pad_top], dtype=torch.float32)
    masks = batch.masks[index].detach().cpu()[real]
    full = tuple(batch.images.shape[-2:])
    if masks.numel():
        masks = _resize_masks(masks, full)[:, meta.pad_top:meta.pad_top + height, meta.pad_left:meta.pad_left + width]
    else:
        masks = torch.zeros((0, height, width), dtype=torch.bool)
    return Detections(boxes=boxes, scores=torch.ones(len(boxes)), labels=batch.labels[index].detach().cpu()[real],
                      masks=masks)


def preview_sample(batch: Batch, index: int, detections: Detections) -> PreviewSample:
    """Image `index` of a (letterboxed) val batch with its detections (original pixels) and ground truth."""
    meta = batch.metas[index]
    height, width = _content(meta)
    image = batch.images[index].detach().cpu()[:, meta.pad_top:meta.pad_top + height,
                                                meta.pad_left:meta.pad_left + width]
    return PreviewSample(image_id=meta.image_id, file_name=meta.file_name, image=image.permute(1, 2, 0).contiguous(),
                         detections=scaled_detections(detections, meta), truth=batch_truth(batch, index),
                         confident=confident_count(detections))


def in_order(samples: Sequence[PreviewSample], ids: Sequence[int]) -> list[PreviewSample]:
    """One sample per chosen id (a sharded loader may repeat images), in the order of `ids`."""
    by_id = {sample.image_id: sample for sample in samples}
    return [by_id[image_id] for image_id in ids if image_id in by_id]
