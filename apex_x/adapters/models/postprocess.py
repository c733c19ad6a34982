"""Post-processing: scores, pre-NMS top-k, threshold, class-aware batched NMS, masks pasted to original size."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
import torchvision  # noqa: F401 - registers torch.ops.torchvision
from torchvision.ops import batched_nms

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


PASTE_GROUP = 16  # detections per roi_align call (sorted by box area, so a group's window fits them all)


def paste_masks_in_boxes(
    mask_logits: torch.Tensor,  # (n, h, w) on the letterboxed grid
    boxes: torch.Tensor,  # (n, 4) xyxy original pixels
    meta: ImageMeta,
    mask_stride: int,
) -> torch.Tensor:
    """(n, orig_H, orig_W) bool: each mask sampled only around its box, False outside the box.

    Equal to sampling every mask over the whole image and keeping the pixels whose centres lie inside its
    box (the same bilinear samples: roi_align bins of one original pixel, at (i + 0.5) * scale + pad on the
    input grid), but the work is about the sum of the box areas instead of n x H x W (Detectron2's
    paste_masks_in_image pastes box by box on CPU for the same reason). Detections sorted by box area go in
    groups of PASTE_GROUP: one roi_align call per group, each mask sampled over a window of the group's
    largest box size placed over its own box.
    """
    count = mask_logits.shape[0]
    height, width = meta.orig_height, meta.orig_width
    masks = torch.zeros(count, height, width, dtype=torch.bool, device=mask_logits.device)
    if count == 0:
        return masks
    limit = boxes.new_tensor([width, height]).long()
    # pixel i is inside when x0 <= i + 0.5 < x1: i from ceil(x0 - 0.5) to ceil(x1 - 0.5) - 1
    first = torch.ceil(boxes[:, :2] - 0.5).long().clamp(min=0)  # (n, 2) x, y
    stop = torch.minimum(torch.ceil(boxes[:, 2:] - 0.5).long(), limit)
    size = (stop - first).clamp(min=0)
    nonempty = torch.nonzero((size > 0).all(1)).flatten()
    order = nonempty[torch.argsort(size[nonempty].prod(1))]
    logits = mask_logits[:, None].float()  # (n, 1, h, w)
    scale = boxes.new_tensor([meta.scale, meta.scale]).float()
    pad = boxes.new_tensor([meta.pad_left, meta.pad_top]).float()
    device = boxes.device
    for chunk in order.split(PASTE_GROUP):
        group_w, group_h = (int(v) for v in size[chunk].max(0).values)
        group = torch.tensor([group_w, group_h], device=device)
        window = torch.minimum(first[chunk], limit - group)  # (g, 2), inside the image
        start = (pad + window.float() * scale) / mask_stride
        end = (pad + (window + group).float() * scale) / mask_stride
        rois = torch.cat([chunk[:, None].float(), start, end], 1)  # (g, 5): detection index, x0, y0, x1, y1
        # torchvision's registered op: roi_align's Python wrapper costs more than a small group's sampling
        sampled = torch.ops.torchvision.roi_align(logits, rois, 1.0, group_h, group_w, 1, True)[:, 0] > 0.0
        cols = window[:, 0:1] + torch.arange(group_w, device=device)  # (g, gw) original x of each sample
        rows = window[:, 1:2] + torch.arange(group_h, device=device)  # (g, gh)
        inside_x = (cols >= first[chunk, 0:1]) & (cols < stop[chunk, 0:1])
        inside_y = (rows >= first[chunk, 1:2]) & (rows < stop[chunk, 1:2])
        masks[chunk[:, None, None], rows[:, :, None], cols[:, None, :]] = (
            sampled & inside_y[:, :, None] & inside_x[:, None, :]
        )
    return masks
