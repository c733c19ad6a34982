"""Post-processing: perfect predictions round-trip through the letterbox and the evaluator to AP = 1.0;
thresholds, class-aware NMS, max detections and flipped inputs."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from pycocotools import mask as mask_utils

from apex_x.adapters.evaluation.coco_evaluator import PycocotoolsEvaluator
from apex_x.adapters.models.anchors import make_anchor_points
from apex_x.adapters.models.postprocess import PostprocessSettings, postprocess_detections
from apex_x.domain.types import CategoryMap, ImageMeta

CATEGORIES = CategoryMap(original_ids=(11, 22, 33), names=("a", "b", "c"))
INPUT, STRIDE = 128, 4
ORIG_W, ORIG_H = 64, 48  # letterboxed with scale 2 into 128 x 96, padded 16 px top and bottom
META = ImageMeta(image_id=5, file_name="5.png", orig_height=ORIG_H, orig_width=ORIG_W, scale=2.0, pad_top=16, pad_left=0)


def _objects() -> list[tuple[int, np.ndarray]]:
    """(class, original-resolution mask) with 2 x 2 pixel blocks, so the stride-4 grid represents them."""
    half = np.zeros((3, ORIG_H // 2, ORIG_W // 2), np.uint8)
    half[0, 2:10, 2:12] = 1  # rectangle
    ys, xs = np.mgrid[0 : ORIG_H // 2, 0 : ORIG_W // 2] + 0.5
    half[1] = ((xs - 22) ** 2 + (ys - 14) ** 2 <= 36).astype(np.uint8)  # disc
    half[2, 16:22, 2:14] = 1  # bar
    half[2, 18:22, 6:10] = 0  # with a notch
    return [(label, np.kron(mask, np.ones((2, 2), np.uint8))) for label, mask in zip((0, 2, 1), half, strict=True)]


def _ground_truth(objects: list[tuple[int, np.ndarray]]) -> dict:
    annotations = []
    for index, (label, mask) in enumerate(objects):
        rle = mask_utils.encode(np.asfortranarray(mask))
        bbox = mask_utils.toBbox(rle).tolist()
        rle["counts"] = rle["counts"].decode("ascii")
        annotations.append({"id": index + 1, "image_id": META.image_id, "category_id": CATEGORIES.original_ids[label],
                            "segmentation": rle, "area": float(mask.sum()), "bbox": bbox, "iscrowd": 0})
    return {"images": [{"id": META.image_id, "file_name": META.file_name, "height": ORIG_H, "width": ORIG_W}],
            "annotations": annotations,
            "categories": [{"id": i, "name": n} for i, n in zip(CATEGORIES.original_ids, CATEGORIES.names, strict=True)]}


def _perfect_outputs(objects: list[tuple[int, np.ndarray]]) -> dict[str, torch.Tensor]:
    """Raw outputs that predict every object exactly at the stride-8 anchor nearest its box centre."""
    sizes = [(INPUT // s, INPUT // s) for s in (8, 16, 32)]
    points, strides = make_anchor_points(sizes, (8, 16, 32))
    num_anchors, count = points.shape[0], len(objects)
    cls_logits = torch.full((1, num_anchors, 3), -10.0)
    boxes = torch.zeros(1, num_anchors, 4)
    coeffs = torch.zeros(1, num_anchors, count)
    grid = INPUT // STRIDE
    prototypes = torch.full((1, count, grid, grid), -20.0)
    for k, (label, mask) in enumerate(objects):
        ys, xs = np.nonzero(mask)
        box = torch.tensor([xs.min(), ys.min() + 0.0, xs.max() + 1.0, ys.max() + 1.0]) * META.scale
        box += torch.tensor([META.pad_left, META.pad_top, META.pad_left, META.pad_top])
        centre = (box[:2] + box[2:]) / 2
        anchor = int(((points[:256] - centre) ** 2).sum(1).argmin())
        cls_logits[0, anchor, label] = 10.0
        boxes[0, anchor] = box
        coeffs[0, anchor, k] = 1.0
        rows, cols = torch.meshgrid(torch.arange(grid), torch.arange(grid), indexing="ij")
        orig_rows = (rows * STRIDE + STRIDE // 2 - META.pad_top) // 2  # original pixel under each grid cell
        orig_cols = (cols * STRIDE + STRIDE // 2 - META.pad_left) // 2
        inside = (orig_rows >= 0) & (orig_rows < ORIG_H) & (orig_cols >= 0) & (orig_cols < ORIG_W)
        values = torch.from_numpy(mask)[orig_rows.clamp(0, ORIG_H - 1), orig_cols.clamp(0, ORIG_W - 1)].bool() & inside
        prototypes[0, k][values] = 20.0
    return {"cls_logits": cls_logits, "boxes": boxes, "quality": torch.full((1, num_anchors), 10.0),
            "mask_coeffs": coeffs, "prototypes": prototypes, "anchor_points": points, "strides": strides}


def test_perfect_predictions_round_trip_to_ap_one() -> None:
    objects = _objects()
    detections = postprocess_detections(_perfect_outputs(objects), [META], PostprocessSettings(), STRIDE)[0]
    assert len(detections) == len(objects)
    assert detections.masks.shape == (len(objects), ORIG_H, ORIG_W) and detections.masks.dtype == torch.bool
    by_label = {int(label): index for index, label in enumerate(detections.labels)}
    for label, mask in objects:
        assert torch.equal(detections.masks[by_label[label]], torch.from_numpy(mask).bool())
    result = PycocotoolsEvaluator().evaluate(_ground_truth(objects), [(META.image_id, detections)], CATEGORIES)
    assert result.metrics["bbox_AP"] == pytest.approx(1.0)
    assert result.metrics["segm_AP"] == pytest.approx(1.0)


def test_flipped_input_predictions_are_mirrored_back() -> None:
    objects = _objects()
    outputs = _perfect_outputs(objects)
    flipped = dict(outputs)
    flipped["boxes"] = outputs["boxes"].clone()
    flipped["boxes"][..., 0] = INPUT - outputs["boxes"][..., 2]
    flipped["boxes"][..., 2] = INPUT - outputs["boxes"][..., 0]
    flipped["prototypes"] = outputs["prototypes"].flip(-1)
    meta = ImageMeta(**{**META.__dict__, "flipped": True})
    plain = postprocess_detections(outputs, [META], PostprocessSettings(), STRIDE)[0]
    mirrored = postprocess_detections(flipped, [meta], PostprocessSettings(), STRIDE)[0]
    assert torch.allclose(plain.boxes, mirrored.boxes) and torch.equal(plain.masks, mirrored.masks)


def test_threshold_class_aware_nms_and_max_detections() -> None:
    points, strides = make_anchor_points([(2, 2)], (32,))
    logits = torch.full((1, 4, 2), -10.0)
    logits[0, 0, 0], logits[0, 1, 0], logits[0, 2, 1], logits[0, 3, 1] = 4.0, 3.0, 2.0, -3.0
    box = torch.tensor([8.0, 8.0, 40.0, 40.0])
    outputs = {
        "cls_logits": logits,
        "boxes": torch.stack([box, box + 1, box + 2, box + 50])[None],  # 0,1,2 overlap; 3 elsewhere
        "quality": torch.full((1, 4), 10.0),
        "mask_coeffs": torch.ones(1, 4, 1),
        "prototypes": torch.ones(1, 1, 16, 16),
        "anchor_points": points,
        "strides": strides,
    }
    meta = ImageMeta(0, "0.png", 64, 64, 1.0, 0, 0)
    settings = PostprocessSettings(score_threshold=0.3, nms_iou=0.5, max_detections=100, pre_nms_topk=1000)
    found = postprocess_detections(outputs, [meta], settings, mask_stride=4)[0]
    # anchor 1 is suppressed by anchor 0 (same class); anchor 2 survives (other class); anchor 3 (0.22) is below 0.3.
    assert found.labels.tolist() == [0, 1]
    assert torch.allclose(found.boxes, torch.stack([box, box + 2]))
    assert found.scores[0] > found.scores[1]
    capped = postprocess_detections(outputs, [meta], PostprocessSettings(score_threshold=0.0, max_detections=1), 4)
    assert len(capped[0]) == 1
    nothing = postprocess_detections(outputs, [meta], PostprocessSettings(score_threshold=0.999), 4)[0]
    assert len(nothing) == 0 and nothing.masks.shape == (0, 64, 64)


def _paste_whole_image(mask_logits: torch.Tensor, boxes: torch.Tensor, meta: ImageMeta) -> torch.Tensor:
    """The straightforward paste: every mask sampled at every original pixel centre, then cut to its box."""
    from torchvision.ops import roi_align

    height, width = meta.orig_height, meta.orig_width
    region = torch.tensor([[0.0, meta.pad_left, meta.pad_top, meta.pad_left + width * meta.scale,
                            meta.pad_top + height * meta.scale]]) / torch.tensor([1.0, STRIDE, STRIDE, STRIDE, STRIDE])
    sampled = roi_align(mask_logits[None], region, (height, width), sampling_ratio=1, aligned=True)[0] > 0
    xs, ys = torch.arange(width) + 0.5, torch.arange(height) + 0.5
    inside_x = (xs[None] >= boxes[:, 0:1]) & (xs[None] < boxes[:, 2:3])
    inside_y = (ys[None] >= boxes[:, 1:2]) & (ys[None] < boxes[:, 3:4])
    return sampled & inside_y[:, :, None] & inside_x[:, None, :]


@pytest.mark.parametrize("scale,pad_left,pad_top", [(2.0, 0, 16), (0.37, 5, 0), (1.0, 0, 0)])
def test_paste_in_boxes_equals_whole_image_paste(scale: float, pad_left: int, pad_top: int) -> None:
    from apex_x.adapters.models.postprocess import paste_masks_in_boxes

    gen = torch.Generator().manual_seed(0)
    meta = ImageMeta(image_id=1, file_name="1.png", orig_height=150, orig_width=173, scale=scale,
                     pad_top=pad_top, pad_left=pad_left)
    grid_h, grid_w = int((150 * scale + 2 * pad_top) / STRIDE) + 2, int((173 * scale + 2 * pad_left) / STRIDE) + 2
    logits = torch.randn(12, grid_h, grid_w, generator=gen) * 4
    corner = torch.rand(12, 2, generator=gen) * torch.tensor([173.0, 150.0])
    boxes = torch.cat([corner - 20.3, corner + torch.rand(12, 2, generator=gen) * 90], 1)  # some cross the edges
    boxes[3] = torch.tensor([10.0, 10.0, 10.4, 80.0])  # no pixel centre inside: an empty mask
    boxes[:, 0::2], boxes[:, 1::2] = boxes[:, 0::2].clamp(0, 173), boxes[:, 1::2].clamp(0, 150)
    ours = paste_masks_in_boxes(logits, boxes, meta, STRIDE)
    expected = _paste_whole_image(logits, boxes, meta)
    assert ours.shape == expected.shape == (12, 150, 173) and ours.dtype == torch.bool
    assert int(expected.sum()) > 1000 and not bool(ours[3].any())
    differing = int((ours != expected).sum())
    assert differing <= expected.numel() * 1e-5, differing  # float rounding of the bin centres only
