"""PycocotoolsEvaluator (the Evaluator port): COCO bbox + segm AP through pycocotools' COCOeval.

Detections become standard COCO result lists (bbox results carry no segmentation, segm results carry a
compressed RLE and no bbox), with the original category ids restored. The numbers are exactly those of
`COCO.loadRes(file)` + `COCOeval` on the same result files (`write_results` writes them).
"""

from __future__ import annotations

import contextlib
import copy
import io
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import structlog
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval

from apex_x.adapters.evaluation.curves import confusion_matrix, pr_curves
from apex_x.adapters.evaluation.rle import encode_masks
from apex_x.domain.types import CategoryMap, Detections, EvalResult

log = structlog.get_logger(__name__)

IOU_TYPES = ("bbox", "segm")
STAT_NAMES = ("AP", "AP50", "AP75", "APs", "APm", "APl", "AR1", "AR10", "AR100", "ARs", "ARm", "ARl")
_AREA_RANGES = {"all": (0.0, 1e10), "small": (0.0, 32.0**2), "medium": (32.0**2, 96.0**2), "large": (96.0**2, 1e10)}
STAT_RANGES = {  # the area range each COCO stat is computed on (pycocotools' Params.areaRng)
    name: _AREA_RANGES[{"s": "small", "m": "medium", "l": "large"}.get(name[-1], "all")] for name in STAT_NAMES
}


def _score(value: float) -> float | None:
    """pycocotools' -1 means "no ground truth here" (not a score): None, shown as n/a / null."""
    number = float(value)
    return None if number < 0 else number


def detections_to_coco_results(
    detections: Sequence[tuple[int, Detections]], categories: CategoryMap
) -> dict[str, list[dict[str, Any]]]:
    """(image_id, Detections) pairs -> {"bbox": [...], "segm": [...]} COCO result lists (original ids)."""
    results: dict[str, list[dict[str, Any]]] = {"bbox": [], "segm": []}
    for image_id, found in detections:
        boxes = found.boxes.detach().float().cpu().numpy()
        scores = found.scores.detach().float().cpu().numpy()
        labels = found.labels.detach().cpu().numpy()
        masks = encode_masks(found.masks.detach().cpu().numpy()) if found.masks.numel() else None
        for index in range(len(found)):
            label = int(labels[index])
            if not 0 <= label < categories.num_classes:
                raise ValueError(f"image {image_id}: label {label} is outside the {categories.num_classes} classes")
            x0, y0, x1, y1 = (float(v) for v in boxes[index])
            common = {"image_id": int(image_id), "category_id": categories.to_original(label), "score": float(scores[index])}
            results["bbox"].append({**common, "bbox": [x0, y0, x1 - x0, y1 - y0]})
            if masks is not None:
                results["segm"].append({**common, "segmentation": masks[index]})
    return results


def write_results(results: dict[str, list[dict[str, Any]]], directory: str | Path) -> dict[str, Path]:
    """Write `bbox_results.json` / `segm_results.json` (standard COCO result files); returns their paths."""
    folder = Path(directory)
    folder.mkdir(parents=True, exist_ok=True)
    paths = {}
    for iou_type, items in results.items():
        paths[iou_type] = folder / f"{iou_type}_results.json"
        paths[iou_type].write_text(json.dumps(items))
    return paths


def load_ground_truth(ground_truth: dict[str, Any]) -> COCO:
    """A pycocotools COCO object from a dataset dict, without printing."""
    coco = COCO()
    coco.dataset = copy.deepcopy(ground_truth)
    with contextlib.redirect_stdout(io.StringIO()):
        coco.createIndex()
    return coco


class PycocotoolsEvaluator:
    """COCO AP, AP50, AP75, APs/m/l (+ AR) for bbox and segm, and per-class AP, as flat metrics.

    `max_detections`: COCOeval's detection limit per image (its `maxDets` are 1, 10 and this; COCO's own is
    100), the model's `model.max_detections`, so that a model is scored on every detection it may keep. AR100
    is the recall at this limit."""

    def __init__(self, max_detections: int = 100) -> None:
        self.max_detections = int(max_detections)

    def with_limit(self, max_detections: int) -> PycocotoolsEvaluator:
        return self if int(max_detections) == self.max_detections else PycocotoolsEvaluator(max_detections)

    def encode(self, image_id: int, detections: Detections, categories: CategoryMap) -> dict[str, list[dict[str, Any]]]:
        """One image's COCO result records ({"bbox": [...], "segm": [...]}, RLE masks): small and picklable."""
        return detections_to_coco_results([(image_id, detections)], categories)

    def evaluate(
        self,
        ground_truth: dict[str, Any],
        detections: Sequence[tuple[int, Detections]],
        categories: CategoryMap,
    ) -> EvalResult:
        """Images evaluated are those in `detections` (an image without detections counts as evaluated),
        or every ground-truth image when `detections` is empty."""
        encoded = [(image_id, self.encode(image_id, found, categories)) for image_id, found in detections]
        return self.evaluate_encoded(ground_truth, encoded, categories)

    def evaluate_encoded(
        self,
        ground_truth: dict[str, Any],
        encoded: Sequence[tuple[int, dict[str, list[dict[str, Any]]]]],
        categories: CategoryMap,
    ) -> EvalResult:
        """The metrics of `evaluate` from per-image result records (see `encode`)."""
        coco_gt = load_ground_truth(ground_truth)
        known = set(coco_gt.getImgIds())
        image_ids = sorted({int(image_id) for image_id, _ in encoded}) or sorted(known)
        unknown = [image_id for image_id in image_ids if image_id not in known]
        if unknown:
            raise ValueError(f"detections for image ids not in the ground truth: {unknown[:10]}")
        results: dict[str, list[dict[str, Any]]] = {iou_type: [] for iou_type in IOU_TYPES}
        for _, records in encoded:
            for iou_type in IOU_TYPES:
                results[iou_type].extend(records.get(iou_type, ()))
        metrics: dict[str, float | None] = {}
        per_class: dict[str, dict[str, Any]] = {
            str(original): {"name": name} for original, name in zip(categories.original_ids, categories.names, strict=True)
        }
        curves: dict[str, Any] = {}
        for iou_type in IOU_TYPES:
            items = results[iou_type]
            if items:
                evaluation = run_cocoeval(coco_gt, items, iou_type, image_ids, self.max_detections)
                stats = [_score(value) for value in evaluation.stats]
                class_ap = _per_class_ap(evaluation, categories)
                if iou_type == "segm":  # the instance-segmentation view: PR of the masks, their confusion
                    curves["pr_curves"] = pr_curves(evaluation, categories, iou_type)
                    curves["confusion"] = confusion_matrix(coco_gt, items, image_ids, categories)
            else:  # pycocotools cannot load an empty result list: 0 where there is ground truth, else n/a
                stats = [0.0 if _has_ground_truth(coco_gt, image_ids, STAT_RANGES[name]) else None for name in STAT_NAMES]
                class_ap = {original: _empty_class_ap(coco_gt, original, image_ids) for original in categories.original_ids}
            metrics.update({f"{iou_type}_{name}": value for name, value in zip(STAT_NAMES, stats, strict=True)})
            for original, (ap, ap50) in class_ap.items():
                per_class[str(original)][f"{iou_type}_AP"] = ap
                per_class[str(original)][f"{iou_type}_AP50"] = ap50
        crowded = images_over_limit(coco_gt, image_ids, self.max_detections)
        log.info("coco_evaluated", images=len(image_ids), detections=len(results["bbox"]),
                 bbox_AP=_shown(metrics["bbox_AP"]), segm_AP=_shown(metrics["segm_AP"]),
                 max_detections=self.max_detections)
        if crowded:
            log.warning("eval_detection_limit", **crowded)
        return EvalResult(
            metrics=metrics, per_class=per_class, num_images=len(image_ids), num_detections=len(results["bbox"]),
            curves=curves, max_detections=self.max_detections, over_limit=crowded,
        )


def _shown(value: float | None) -> float | str:
    return "n/a" if value is None else round(value, 4)


def images_over_limit(coco_gt: COCO, image_ids: list[int], limit: int) -> dict[str, Any] | None:
    """The evaluated images holding more non-crowd ground-truth instances than the detection limit (even a
    perfect model cannot reach AP 1 there), or None: {images, max_instances, image_id, max_detections, message}."""
    counts = {image_id: sum(1 for annotation in coco_gt.imgToAnns.get(image_id, ()) if not annotation.get("iscrowd"))
              for image_id in image_ids}
    over = {image_id: count for image_id, count in counts.items() if count > limit}
    if not over:
        return None
    worst = max(over, key=over.__getitem__)
    return {"images": len(over), "max_instances": over[worst], "image_id": worst, "max_detections": limit,
            "message": f"{len(over)} val image(s) hold more ground-truth instances than the {limit} detections per "
                       f"image the evaluation counts (model.max_detections; up to {over[worst]} in image {worst}): "
                       "their recall and AP are capped, a perfect model scores below 1 there. Raise "
                       f"model.max_detections (e.g. --set model.max_detections={over[worst]})"}


def run_cocoeval(coco_gt: COCO, results: list[dict[str, Any]], iou_type: str, image_ids: list[int],
                 max_detections: int = 100) -> COCOeval:
    """loadRes + evaluate + accumulate + summarize, with pycocotools' printing silenced; maxDets = 1, 10 and
    `max_detections` (pycocotools reads AP at the last one)."""
    with contextlib.redirect_stdout(io.StringIO()):
        coco_dt = coco_gt.loadRes(copy.deepcopy(results))
        evaluation = COCOeval(coco_gt, coco_dt, iouType=iou_type)
        evaluation.params.imgIds = image_ids
        evaluation.params.maxDets = [1, 10, int(max_detections)]
        evaluation.evaluate()
        evaluation.accumulate()
        evaluation.summarize()
    if int(max_detections) != 100:  # pycocotools' summarize reads AP@[.5:.95] at a fixed maxDets=100 (-1 if absent)
        table = evaluation.eval["precision"][:, :, :, 0, -1]  # (T, R, K) at area "all", the last maxDets
        valid = table[table > -1]
        evaluation.stats[0] = float(valid.mean()) if valid.size else -1.0
    return evaluation


def _per_class_ap(evaluation: COCOeval, categories: CategoryMap) -> dict[int, tuple[float | None, float | None]]:
    """AP and AP50 per category id (area all, 100 detections); None where the class has no ground truth."""
    precision = evaluation.eval["precision"]  # (T, R, K, A, M)
    cat_ids = list(evaluation.params.catIds)
    out: dict[int, tuple[float | None, float | None]] = {}
    for original in categories.original_ids:
        if original not in cat_ids:
            out[original] = (None, None)
            continue
        k = cat_ids.index(original)
        values: list[float | None] = []
        for table in (precision[:, :, k, 0, -1], precision[0, :, k, 0, -1]):
            valid = table[table > -1]
            values.append(float(valid.mean()) if valid.size else None)
        out[original] = (values[0], values[1])
    return out


def _has_ground_truth(coco_gt: COCO, image_ids: list[int], area: tuple[float, float],
                      category_id: int | None = None) -> bool:
    """Whether a non-crowd ground-truth object lies in `area` (pycocotools' rule: lo <= area <= hi)."""
    ids = coco_gt.getAnnIds(imgIds=image_ids, catIds=[category_id] if category_id is not None else [], iscrowd=False)
    return any(area[0] <= float(annotation.get("area", 0.0)) <= area[1] for annotation in coco_gt.loadAnns(ids))


def _empty_class_ap(coco_gt: COCO, original_id: int, image_ids: list[int]) -> tuple[float | None, float | None]:
    has_gt = _has_ground_truth(coco_gt, image_ids, _AREA_RANGES["all"], original_id)
    return (0.0, 0.0) if has_gt else (None, None)
