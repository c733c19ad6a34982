"""Post-processing: scores, pre-NMS top-k, threshold, class-aware batched NMS, masks pasted to original size."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torchvision.ops import batched_nms, roi_align

from apex_x.domain.types import Detections, ImageMeta

MASK_PIXEL_BUDGET = 64_000_000  # floats per roi_align chunk when pasting masks


@dataclass(frozen=True)
class PostprocessSettings:
    """Thresholds of post-processing (from ModelConfig)."""

    score_threshold: float = 0.05
    nms_iou: float = 0.6
    max_detections: int = 100
    pre_nms_topk: int = 1000


def detection_scores(outputs: dict[str, torch.Tensor]) -> torch.Tensor:
    """(B, A, C) detection scores: sqrt(class probability * predicted IoU)."""
    cls = outputs["cls_logits"].float().sigmoid()
    quality = outputs["quality"].float().sigmoid()[..., None]
    return (cls * quality).sqrt()


@torch.no_grad()
def postprocess_detections(
    outputs: dict[str, torch.Tensor],
    metas: Sequence[ImageMeta],
    settings: PostprocessSettings,
    mask_stride: int,
) -> list[Detections]:
    """Raw outputs of a batch -> Detections per image in original pixels (CPU tensors)."""
    return postprocess_dense(outputs["boxes"], detection_scores(outputs), outputs["mask_coeffs"],
                             outputs["prototypes"], metas, settings, mask_stride)


@torch.no_grad()
def postprocess_dense(
    boxes: torch.Tensor,  # (B, A, 4) xyxy input pixels
    scores: torch.Tensor,  # (B, A, C) detection scores (detection_scores)
    mask_coeffs: torch.Tensor,  # (B, A, K)
    prototypes: torch.Tensor,  # (B, K, H / mask_stride, W / mask_stride)
    metas: Sequence[ImageMeta],
    settings: PostprocessSettings,
    mask_stride: int,
) -> list[Detections]:
    """The dense decoding (what an exported file outputs) -> Detections per image in original pixels: top-k,
    score threshold, class-aware NMS, mask assembly and paste-back (CPU tensors)."""
    batch, num_anchors, num_classes = scores.shape
    dense_boxes = boxes
    if len(metas) != batch:
        raise ValueError(f"postprocess got {len(metas)} image metas for a batch of {batch}")
    k = min(settings.pre_nms_topk, num_anchors * num_classes)
    top_scores, top_index = scores.reshape(batch, -1).topk(k, dim=1)  # (B, k)
    anchors = top_index // num_classes
    labels = top_index % num_classes
    boxes = dense_boxes.float().gather(1, anchors[..., None].expand(batch, k, 4))  # (B, k, 4)
    keep = top_scores > settings.score_threshold
    image_index = torch.arange(batch, device=scores.device)[:, None].expand(batch, k)
    flat_boxes, flat_scores = boxes[keep], top_scores[keep]
    flat_labels, flat_images, flat_anchors = labels[keep], image_index[keep], anchors[keep]
    kept = batched_nms(flat_boxes, flat_scores, flat_images * num_classes + flat_labels, settings.nms_iou)

    results: list[Detections] = []
    for image, meta in enumerate(metas):
        mine = kept[flat_images[kept] == image][: settings.max_detections]  # sorted by score
        coeffs = mask_coeffs[image, flat_anchors[mine]].float()  # (n, K)
        mask_logits = torch.einsum("nk,khw->nhw", coeffs, prototypes[image].float())
        boxes = flat_boxes[mine]
        if meta.flipped:  # the letterboxed canvas was mirrored (data transforms): mirror predictions back
            input_width = float(mask_logits.shape[-1] * mask_stride)
            boxes = torch.stack([input_width - boxes[:, 2], boxes[:, 1], input_width - boxes[:, 0], boxes[:, 3]], 1)
            mask_logits = mask_logits.flip(-1)
        results.append(_to_original(boxes, flat_scores[mine], flat_labels[mine], mask_logits, meta, mask_stride))
    return results


def _to_original(
    boxes: torch.Tensor,  # (n, 4) xyxy input pixels
    scores: torch.Tensor,
    labels: torch.Tensor,
    mask_logits: torch.Tensor,  # (n, h, w) at mask_stride
    meta: ImageMeta,
    mask_stride: int,
) -> Detections:
    height, width = meta.orig_height, meta.orig_width
    offset = boxes.new_tensor([meta.pad_left, meta.pad_top, meta.pad_left, meta.pad_top])
    boxes = (boxes - offset) / meta.scale
    boxes[:, 0::2] = boxes[:, 0::2].clamp(0, width)
    boxes[:, 1::2] = boxes[:, 1::2].clamp(0, height)
    masks = paste_masks(mask_logits, meta, mask_stride) & _inside_boxes(boxes, height, width)
    return Detections(
        boxes=boxes.cpu(), scores=scores.float().cpu(), labels=labels.long().cpu(), masks=masks.cpu()
    )


def paste_masks(mask_logits: torch.Tensor, meta: ImageMeta, mask_stride: int) -> torch.Tensor:
    """(n, h, w) logits on the letterboxed grid -> (n, orig_H, orig_W) bool, by one bilinear sampling.

    roi_align samples each original pixel centre (i + 0.5) at input position (i + 0.5) * scale + pad,
    which undoes the letterbox and resizes in one step.
    """
    count = mask_logits.shape[0]
    height, width = meta.orig_height, meta.orig_width
    if count == 0:
        return torch.zeros(0, height, width, dtype=torch.bool, device=mask_logits.device)
    region = mask_logits.new_tensor(
        [[0.0, meta.pad_left, meta.pad_top, meta.pad_left + width * meta.scale, meta.pad_top + height * meta.scale]]
    ) / torch.tensor([1.0, mask_stride, mask_stride, mask_stride, mask_stride], device=mask_logits.device)
    chunk = max(1, MASK_PIXEL_BUDGET // max(height * width, 1))
    pieces = []
    for start in range(0, count, chunk):
        sampled = roi_align(
            mask_logits[None, start : start + chunk], region, (height, width), sampling_ratio=1, aligned=True
        )[0]
        pieces.append(sampled > 0.0)
    return torch.cat(pieces)


def _inside_boxes(boxes: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """(n, 4) xyxy -> (n, H, W) bool: pixel centres inside each box."""
    xs = torch.arange(width, device=boxes.device, dtype=torch.float32) + 0.5
    ys = torch.arange(height, device=boxes.device, dtype=torch.float32) + 0.5
    inside_x = (xs[None] >= boxes[:, 0:1]) & (xs[None] < boxes[:, 2:3])  # (n, W)
    inside_y = (ys[None] >= boxes[:, 1:2]) & (ys[None] < boxes[:, 3:4])  # (n, H)
    return inside_y[:, :, None] & inside_x[:, None, :]
