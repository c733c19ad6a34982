"""Post-processing: scores, pre-NMS top-k, threshold, class-aware batched NMS, masks pasted to original size."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torchvision.ops import batched_nms, roi_align

from apex_x.domain.types import Detections, ImageMeta


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
    masks = paste_masks_in_boxes(mask_logits, boxes, meta, mask_stride)
    return Detections(
        boxes=boxes.cpu(), scores=scores.float().cpu(), labels=labels.long().cpu(), masks=masks.cpu()
    )


def _region(meta: ImageMeta, mask_stride: int, x0: int, y0: int, x1: int, y1: int, like: torch.Tensor) -> torch.Tensor:
    """roi_align box (1, 5) on the mask grid covering original pixels [x0, x1) x [y0, y1)."""
    scale, left, top = meta.scale, meta.pad_left, meta.pad_top
    return like.new_tensor([[0.0, (left + x0 * scale) / mask_stride, (top + y0 * scale) / mask_stride,
                             (left + x1 * scale) / mask_stride, (top + y1 * scale) / mask_stride]])  # fmt: skip


def paste_masks_in_boxes(
    mask_logits: torch.Tensor,  # (n, h, w) on the letterboxed grid
    boxes: torch.Tensor,  # (n, 4) xyxy original pixels
    meta: ImageMeta,
    mask_stride: int,
) -> torch.Tensor:
    """(n, orig_H, orig_W) bool: each mask sampled only over the pixels whose centres lie in its box.

    Equal to sampling every mask over the whole image and keeping the pixels inside its box (the same
    bilinear samples: roi_align bins of one original pixel, at (i + 0.5) * scale + pad on the input grid), but the work is the sum of the box areas instead of n x H x W, as Detectron2's
    paste_masks_in_image does on CPU. Outside its box a mask is False.
    """
    count = mask_logits.shape[0]
    height, width = meta.orig_height, meta.orig_width
    masks = torch.zeros(count, height, width, dtype=torch.bool, device=mask_logits.device)
    if count == 0:
        return masks
    # pixel i is inside when x0 <= i + 0.5 < x1: i from ceil(x0 - 0.5) to ceil(x1 - 0.5) - 1
    first = torch.ceil(boxes[:, :2] - 0.5).clamp(min=0).long().tolist()
    stop = torch.ceil(boxes[:, 2:] - 0.5).long()
    stop = torch.stack([stop[:, 0].clamp(max=width), stop[:, 1].clamp(max=height)], 1).tolist()
    for index, ((x0, y0), (x1, y1)) in enumerate(zip(first, stop, strict=True)):
        if x1 <= x0 or y1 <= y0:
            continue
        region = _region(meta, mask_stride, x0, y0, x1, y1, mask_logits)
        sampled = roi_align(mask_logits[None, index : index + 1], region, (y1 - y0, x1 - x0),
                            sampling_ratio=1, aligned=True)  # fmt: skip
        masks[index, y0:y1, x0:x1] = sampled[0, 0] > 0.0
    return masks
