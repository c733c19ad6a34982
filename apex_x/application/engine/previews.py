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
PREVIEW_SIDE = 320  # pixels: the longer side of a kept image at most (the network input's scale, never enlarged)
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


def _preview_size(meta: ImageMeta) -> tuple[int, int, float]:
    """(h, w, scale) of a preview: the original image at the letterbox scale (the network input without its
    padding), reduced so that its longer side is at most PREVIEW_SIDE; scale = preview pixels per original pixel."""
    height, width = meta.orig_height * meta.scale, meta.orig_width * meta.scale
    factor = min(1.0, PREVIEW_SIDE / max(height, width, 1.0))
    size_h, size_w = max(1, round(height * factor)), max(1, round(width * factor))
    return size_h, size_w, meta.scale * factor


def _centres(count: int, start: float, step: float, cells: int) -> torch.Tensor:
    """Indices (nearest, clamped to [0, cells)) of the cells under `count` preview pixel centres, the first at
    `start + step / 2` in cell units."""
    return ((start + (torch.arange(count, dtype=torch.float64) + 0.5) * step).floor().long()).clamp(0, cells - 1)


def _sample(masks: torch.Tensor, rows: torch.Tensor, columns: torch.Tensor) -> torch.Tensor:
    """(K, H, W) masks read at the given rows and columns (nearest): (K, len(rows), len(columns)) bool. Memory is
    that of the preview, whatever the resolution of `masks`."""
    return masks[:, rows][:, :, columns].bool()


def confident_count(detections: Detections) -> int:
    """Detections at or above PREVIEW_SCORE (before the per-image cap)."""
    return int((detections.scores.detach().cpu() >= PREVIEW_SCORE).sum())


def scaled_detections(detections: Detections, meta: ImageMeta) -> Detections:
    """Confident detections (score >= PREVIEW_SCORE, the best PREVIEW_MAX_DETECTIONS) moved from original pixels to
    the preview's (_preview_size), on the CPU."""
    scores = detections.scores.detach().cpu().float()
    keep = torch.nonzero(scores >= PREVIEW_SCORE).flatten()
    keep = keep[torch.argsort(scores[keep], descending=True)][:PREVIEW_MAX_DETECTIONS]
    height, width, scale = _preview_size(meta)
    masks = detections.masks.detach().cpu()
    if masks.numel() and masks.shape[0] == len(detections):
        rows = _centres(height, 0.0, meta.orig_height / height, masks.shape[-2])
        columns = _centres(width, 0.0, meta.orig_width / width, masks.shape[-1])
        masks = _sample(masks[keep], rows, columns)
    else:
        masks = torch.zeros((len(keep), height, width), dtype=torch.bool)
    return Detections(boxes=detections.boxes.detach().cpu().float()[keep] * scale, scores=scores[keep],
                      labels=detections.labels.detach().cpu()[keep], masks=masks)


def batch_truth(batch: Batch, index: int) -> Detections:
    """Image `index`'s non-crowd objects from the batch targets (input pixels, masks at the mask stride) in the
    preview's pixels; scores 1."""
    meta = batch.metas[index]
    height, width, scale = _preview_size(meta)
    real = (batch.valid[index] & ~batch.crowd[index]).detach().cpu()
    boxes = batch.boxes[index].detach().cpu().float()[real]
    boxes = (boxes - torch.tensor([meta.pad_left, meta.pad_top, meta.pad_left, meta.pad_top],
                                  dtype=torch.float32)) * (scale / meta.scale)
    masks = batch.masks[index].detach().cpu()[real]  # (M, H / stride, W / stride)
    stride_h = batch.images.shape[-2] / masks.shape[-2]
    stride_w = batch.images.shape[-1] / masks.shape[-1]
    step = meta.scale / scale  # input pixels per preview pixel
    rows = _centres(height, meta.pad_top / stride_h, step / stride_h, masks.shape[-2])
    columns = _centres(width, meta.pad_left / stride_w, step / stride_w, masks.shape[-1])
    return Detections(boxes=boxes, scores=torch.ones(len(boxes)), labels=batch.labels[index].detach().cpu()[real],
                      masks=_sample(masks, rows, columns))


def preview_sample(batch: Batch, index: int, detections: Detections) -> PreviewSample:
    """Image `index` of a (letterboxed) val batch with its detections (original pixels) and ground truth."""
    meta = batch.metas[index]
    height, width, _ = _preview_size(meta)
    content_h, content_w = max(1, round(meta.orig_height * meta.scale)), max(1, round(meta.orig_width * meta.scale))
    image = batch.images[index].detach().cpu()[:, meta.pad_top:meta.pad_top + content_h,
                                                meta.pad_left:meta.pad_left + content_w]
    if (content_h, content_w) != (height, width):
        image = functional.interpolate(image[None].float(), size=(height, width), mode="bilinear", antialias=True,
                                       align_corners=False)[0].round().clamp(0, 255).to(torch.uint8)
    return PreviewSample(image_id=meta.image_id, file_name=meta.file_name, image=image.permute(1, 2, 0).contiguous(),
                         detections=scaled_detections(detections, meta), truth=batch_truth(batch, index),
                         confident=confident_count(detections))


def in_order(samples: Sequence[PreviewSample], ids: Sequence[int]) -> list[PreviewSample]:
    """One sample per chosen id (a sharded loader may repeat images), in the order of `ids`."""
    by_id = {sample.image_id: sample for sample in samples}
    return [by_id[image_id] for image_id in ids if image_id in by_id]
