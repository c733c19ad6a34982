"""What the plots of an evaluation need beyond the AP numbers: per-class precision-recall curves (from COCOeval's
accumulated precision) and a confusion matrix with a background class (greedy matching at a stated IoU and
score threshold, as Ultralytics' ConfusionMatrix does).

Matrix layout: rows = the true class (last row: background, i.e. detections that matched no object), columns =
the predicted class (last column: background, i.e. objects no detection matched). `normalised` divides each
row by its sum (a true class's row says where its objects went).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
from pycocotools import mask as mask_utils
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval

from apex_x.domain.types import CategoryMap

CONFUSION_IOU = 0.5  # mask IoU for a detection to match an object
CONFUSION_SCORE = 0.25  # detections below this score are not counted (Ultralytics' default conf for the matrix)


def pr_curves(evaluation: COCOeval, categories: CategoryMap, iou_type: str) -> dict[str, Any]:
    """{"iou_type", "recall" (101 points), "per_class": {id: {"name", "precision_50", "precision_50_95"}}} for the
    classes with ground truth (area all, 100 detections); precision -1 (no ground truth) leaves a class out."""
    precision = evaluation.eval["precision"]  # (T, R, K, A, M)
    cat_ids = list(evaluation.params.catIds)
    per_class: dict[str, Any] = {}
    for original, name in zip(categories.original_ids, categories.names, strict=True):
        if original not in cat_ids:
            continue
        k = cat_ids.index(original)
        at_50, all_t = precision[0, :, k, 0, -1], precision[:, :, k, 0, -1]
        if (at_50 < 0).all():
            continue
        mean = np.where(all_t < 0, np.nan, all_t)
        per_class[str(original)] = {"name": name, "precision_50": np.clip(at_50, 0, 1).round(4).tolist(),
                                    "precision_50_95": np.nan_to_num(np.nanmean(mean, axis=0)).round(4).tolist()}
    return {"iou_type": iou_type, "recall": np.asarray(evaluation.params.recThrs).round(4).tolist(),
            "per_class": per_class}


def confusion_matrix(coco_gt: COCO, results: Sequence[dict[str, Any]], image_ids: Sequence[int],
                     categories: CategoryMap, *, iou: float = CONFUSION_IOU,
                     score: float = CONFUSION_SCORE) -> dict[str, Any]:
    """Counts and row-normalised shares over the images, from segm result records (RLE masks) and the ground
    truth's non-crowd objects; each detection (by score) takes the unmatched object of highest mask IoU >= iou."""
    index = {original: position for position, original in enumerate(categories.original_ids)}
    size = len(index) + 1  # + background
    counts = np.zeros((size, size), dtype=np.int64)
    by_image: dict[int, list[dict[str, Any]]] = {}
    for record in results:
        if record["score"] >= score and record["category_id"] in index:
            by_image.setdefault(int(record["image_id"]), []).append(record)
    for image_id in image_ids:
        objects = [annotation for annotation in coco_gt.loadAnns(coco_gt.getAnnIds(imgIds=[image_id], iscrowd=False))
                   if annotation["category_id"] in index]
        found = sorted(by_image.get(int(image_id), []), key=lambda record: -record["score"])
        matched: set[int] = set()
        if objects and found:
            truth = [coco_gt.annToRLE(annotation) for annotation in objects]
            overlaps = mask_utils.iou([record["segmentation"] for record in found], truth, [0] * len(truth))
            for d, record in enumerate(found):
                candidates = [(overlaps[d][g], g) for g in range(len(objects)) if g not in matched and overlaps[d][g] >= iou]
                if candidates:
                    _, g = max(candidates)
                    matched.add(g)
                    counts[index[objects[g]["category_id"]], index[record["category_id"]]] += 1
                else:
                    counts[size - 1, index[record["category_id"]]] += 1
        else:
            for record in found:
                counts[size - 1, index[record["category_id"]]] += 1
        for g, annotation in enumerate(objects):
            if g not in matched:
                counts[index[annotation["category_id"]], size - 1] += 1
    totals = counts.sum(axis=1, keepdims=True)
    shares = np.divide(counts, totals, out=np.zeros(counts.shape, dtype=np.float64), where=totals > 0)
    return {"labels": [*categories.names, "background"], "iou": iou, "score_threshold": score,
            "counts": counts.tolist(), "normalised": shares.round(4).tolist()}
