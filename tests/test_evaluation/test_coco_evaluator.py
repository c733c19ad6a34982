"""PycocotoolsEvaluator: perfect detections score 1.0, numbers equal pycocotools on the result files,
empty predictions, crowd regions and original category ids."""

from __future__ import annotations

import contextlib
import io
import json

import numpy as np
import pytest
import torch
from pycocotools import mask as mask_utils
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval

from apex_x.adapters.evaluation.coco_evaluator import (
    PycocotoolsEvaluator,
    detections_to_coco_results,
    write_results,
)
from apex_x.domain.types import CategoryMap, Detections

CATEGORIES = CategoryMap(original_ids=(7, 3, 12), names=("square", "disc", "bar"))
HEIGHT, WIDTH = 60, 80


def _rect_mask(box: tuple[int, int, int, int]) -> np.ndarray:
    mask = np.zeros((HEIGHT, WIDTH), np.uint8)
    x0, y0, x1, y1 = box
    mask[y0:y1, x0:x1] = 1
    return mask


def _disc_mask(cx: float, cy: float, radius: float) -> np.ndarray:
    ys, xs = np.mgrid[0:HEIGHT, 0:WIDTH] + 0.5
    return (((xs - cx) ** 2 + (ys - cy) ** 2) <= radius**2).astype(np.uint8)


def _annotation(ann_id: int, image_id: int, category_id: int, mask: np.ndarray, crowd: int = 0) -> dict:
    rle = mask_utils.encode(np.asfortranarray(mask))
    x, y, w, h = mask_utils.toBbox(rle).tolist()
    rle["counts"] = rle["counts"].decode("ascii")
    return {
        "id": ann_id, "image_id": image_id, "category_id": category_id, "segmentation": rle,
        "area": float(mask_utils.area(rle)), "bbox": [x, y, w, h], "iscrowd": crowd,
    }


def _ground_truth() -> dict:
    masks = {
        1: [(7, _rect_mask((5, 5, 30, 25))), (3, _disc_mask(55, 30, 12))],
        2: [(12, _rect_mask((10, 40, 70, 50))), (7, _rect_mask((40, 5, 60, 25)))],
        3: [(3, _disc_mask(20, 20, 8))],
    }
    annotations, ann_id = [], 1
    for image_id, items in masks.items():
        for category_id, mask in items:
            annotations.append(_annotation(ann_id, image_id, category_id, mask))
            ann_id += 1
    return {
        "images": [{"id": i, "file_name": f"{i}.png", "height": HEIGHT, "width": WIDTH} for i in masks],
        "annotations": annotations,
        "categories": [{"id": o, "name": n} for o, n in zip(CATEGORIES.original_ids, CATEGORIES.names, strict=True)],
    }


def _perfect_detections(ground_truth: dict) -> list[tuple[int, Detections]]:
    contiguous = CATEGORIES.to_contiguous()
    out = []
    for image in ground_truth["images"]:
        anns = [a for a in ground_truth["annotations"] if a["image_id"] == image["id"] and not a["iscrowd"]]
        masks = [mask_utils.decode(a["segmentation"]).astype(bool) for a in anns]
        out.append((image["id"], Detections(
            boxes=torch.tensor([[a["bbox"][0], a["bbox"][1], a["bbox"][0] + a["bbox"][2], a["bbox"][1] + a["bbox"][3]]
                                for a in anns], dtype=torch.float32).reshape(-1, 4),
            scores=torch.linspace(0.9, 0.5, len(anns)),
            labels=torch.tensor([contiguous[a["category_id"]] for a in anns], dtype=torch.long),
            masks=torch.from_numpy(np.stack(masks)) if masks else torch.zeros(0, HEIGHT, WIDTH, dtype=torch.bool),
        )))
    return out


def _noisy_detections(ground_truth: dict, seed: int = 0) -> list[tuple[int, Detections]]:
    """Perfect detections shifted by a few pixels, with wrong classes and spurious boxes mixed in."""
    rng = np.random.default_rng(seed)
    noisy = []
    for image_id, found in _perfect_detections(ground_truth):
        shifts = rng.integers(-3, 4, (len(found), 2))
        boxes = found.boxes + torch.from_numpy(np.concatenate([shifts, shifts], 1)).float()
        masks = torch.stack([torch.roll(m, (int(dy), int(dx)), (0, 1)) for m, (dx, dy) in zip(found.masks, shifts, strict=True)])
        spurious_box = torch.tensor([[0.0, 0.0, 20.0, 20.0]])
        spurious_mask = torch.from_numpy(_rect_mask((0, 0, 20, 20)).astype(bool))[None]
        labels = found.labels.clone()
        labels[0] = (labels[0] + 1) % CATEGORIES.num_classes  # one wrong class per image
        noisy.append((image_id, Detections(
            boxes=torch.cat([boxes, spurious_box]),
            scores=torch.from_numpy(rng.uniform(0.1, 1.0, len(found) + 1)).float(),
            labels=torch.cat([labels, torch.tensor([1])]),
            masks=torch.cat([masks, spurious_mask]),
        )))
    return noisy


def test_perfect_detections_score_one() -> None:
    ground_truth = _ground_truth()
    result = PycocotoolsEvaluator().evaluate(ground_truth, _perfect_detections(ground_truth), CATEGORIES)
    for key in ("bbox_AP", "bbox_AP50", "bbox_AP75", "segm_AP", "segm_AP50", "segm_AP75"):
        assert result.metrics[key] == pytest.approx(1.0), key
    assert result.per_class["3"]["segm_AP"] == pytest.approx(1.0)
    assert result.num_images == 3 and result.num_detections == 5


def test_metrics_equal_pycocotools_on_the_written_result_files(tmp_path) -> None:
    ground_truth = _ground_truth()
    detections = _noisy_detections(ground_truth)
    result = PycocotoolsEvaluator().evaluate(ground_truth, detections, CATEGORIES)
    paths = write_results(detections_to_coco_results(detections, CATEGORIES), tmp_path)
    gt_path = tmp_path / "gt.json"
    gt_path.write_text(json.dumps(ground_truth))
    with contextlib.redirect_stdout(io.StringIO()):
        coco_gt = COCO(str(gt_path))
        for iou_type in ("bbox", "segm"):
            evaluation = COCOeval(coco_gt, coco_gt.loadRes(str(paths[iou_type])), iouType=iou_type)
            evaluation.evaluate()
            evaluation.accumulate()
            evaluation.summarize()
            for index, name in enumerate(("AP", "AP50", "AP75", "APs", "APm", "APl")):
                expected = None if evaluation.stats[index] == -1 else evaluation.stats[index]  # -1: n/a
                assert result.metrics[f"{iou_type}_{name}"] == expected, f"{iou_type}_{name}"
    assert 0.0 < result.metrics["segm_AP"] < 1.0
    written = json.loads(paths["bbox"].read_text())
    assert {item["category_id"] for item in written} <= set(CATEGORIES.original_ids)


def test_zero_predictions_give_zeros_not_a_crash() -> None:
    ground_truth = _ground_truth()
    empty = [
        (image["id"], Detections(torch.zeros(0, 4), torch.zeros(0), torch.zeros(0, dtype=torch.long),
                                 torch.zeros(0, HEIGHT, WIDTH, dtype=torch.bool)))
        for image in ground_truth["images"]
    ]
    for detections in (empty, []):
        result = PycocotoolsEvaluator().evaluate(ground_truth, detections, CATEGORIES)
        assert result.metrics["bbox_AP"] == 0.0 and result.metrics["segm_AP50"] == 0.0
        assert result.per_class["7"]["segm_AP"] == 0.0
        assert result.num_detections == 0


def test_crowd_regions_are_ignored_not_false_positives() -> None:
    ground_truth = _ground_truth()
    crowd_mask = _rect_mask((60, 40, 80, 60))
    ground_truth["annotations"].append(_annotation(99, 3, 7, crowd_mask, crowd=1))
    detections = _perfect_detections(ground_truth)
    image_id, found = detections[2]
    # A confident detection on the crowd region (same class): ignored when the region is crowd.
    detections[2] = (image_id, Detections(
        boxes=torch.cat([torch.tensor([[60.0, 40.0, 80.0, 60.0]]), found.boxes]),
        scores=torch.cat([torch.tensor([0.99]), found.scores]),
        labels=torch.cat([torch.tensor([0]), found.labels]),
        masks=torch.cat([torch.from_numpy(crowd_mask.astype(bool))[None], found.masks]),
    ))
    with_crowd = PycocotoolsEvaluator().evaluate(ground_truth, detections, CATEGORIES)
    assert with_crowd.metrics["segm_AP"] == pytest.approx(1.0)
    ground_truth["annotations"].pop()  # without the crowd region the same detection is a false positive
    without_crowd = PycocotoolsEvaluator().evaluate(ground_truth, detections, CATEGORIES)
    assert without_crowd.metrics["segm_AP"] < 1.0


def test_detections_for_unknown_images_are_an_error() -> None:
    detections = _perfect_detections(_ground_truth())
    with pytest.raises(ValueError, match="not in the ground truth"):
        PycocotoolsEvaluator().evaluate(_ground_truth(), [(404, detections[0][1])], CATEGORIES)


def test_encoded_per_image_records_give_the_same_metrics_and_hold_no_dense_masks() -> None:
    ground_truth = _ground_truth()
    detections = _noisy_detections(ground_truth, seed=3)
    evaluator = PycocotoolsEvaluator()
    encoded = [(image_id, evaluator.encode(image_id, found, CATEGORIES)) for image_id, found in detections]
    for _, records in encoded:  # compact and plain: RLE strings, no tensors or arrays
        assert all(isinstance(item["segmentation"]["counts"], str) for item in records["segm"])
        json.dumps(records)
    assert evaluator.evaluate_encoded(ground_truth, encoded, CATEGORIES).metrics == (
        evaluator.evaluate(ground_truth, detections, CATEGORIES).metrics
    )


def test_curves_of_perfect_detections_are_flat_at_one_and_the_confusion_is_diagonal() -> None:
    ground_truth = _ground_truth()
    curves = PycocotoolsEvaluator().evaluate(ground_truth, _perfect_detections(ground_truth), CATEGORIES).curves
    pr = curves["pr_curves"]
    assert pr["iou_type"] == "segm" and len(pr["recall"]) == 101
    assert set(pr["per_class"]) == {"7", "3", "12"}
    assert all(value == 1.0 for item in pr["per_class"].values() for value in item["precision_50"])
    confusion = curves["confusion"]
    assert confusion["labels"] == ["square", "disc", "bar", "background"]
    # 5 objects: 2 squares, 2 discs, 1 bar, every one found with its class (scores 0.9..0.5 >= 0.25)
    assert confusion["counts"] == [[2, 0, 0, 0], [0, 2, 0, 0], [0, 0, 1, 0], [0, 0, 0, 0]]


def test_the_confusion_matrix_counts_wrong_classes_misses_and_false_positives() -> None:
    ground_truth = _ground_truth()
    contiguous = CATEGORIES.to_contiguous()
    found = dict(_perfect_detections(ground_truth))
    one = found[1]  # square (7) and disc (3): call the disc a bar, and add a false square on empty ground
    fake = torch.from_numpy(_rect_mask((62, 50, 78, 58)).astype(bool))[None]
    found[1] = Detections(boxes=torch.cat([one.boxes, torch.tensor([[62.0, 50.0, 78.0, 58.0]])]),
                          scores=torch.tensor([0.9, 0.8, 0.7]),
                          labels=torch.tensor([contiguous[7], contiguous[12], contiguous[7]]),
                          masks=torch.cat([one.masks, fake]))
    found[3] = Detections(boxes=found[3].boxes, scores=torch.tensor([0.1]), labels=found[3].labels,
                          masks=found[3].masks)  # below the 0.25 score threshold: the disc counts as missed
    confusion = PycocotoolsEvaluator().evaluate(ground_truth, list(found.items()), CATEGORIES).curves["confusion"]
    assert confusion["iou"] == 0.5 and confusion["score_threshold"] == 0.25
    #            square disc bar background (predicted)
    assert confusion["counts"] == [
        [2, 0, 0, 0],  # true squares: both found as squares
        [0, 0, 1, 1],  # true discs: one called a bar, one missed (its detection scored 0.1)
        [0, 0, 1, 0],  # the bar
        [1, 0, 0, 0],  # background: the false square
    ]
    assert confusion["normalised"][1] == [0.0, 0.0, 0.5, 0.5]


def _dense_ground_truth(objects: int) -> dict:
    """One 80x60 image with `objects` non-overlapping 2x2 squares of class 7 (a dense scene)."""
    annotations = []
    for index in range(objects):
        x, y = (index % 20) * 4, (index // 20) * 3
        annotations.append(_annotation(index + 1, 1, 7, _rect_mask((x, y, x + 2, y + 2))))
    return {"images": [{"id": 1, "file_name": "1.png", "height": HEIGHT, "width": WIDTH}], "annotations": annotations,
            "categories": [{"id": o, "name": n} for o, n in zip(CATEGORIES.original_ids, CATEGORIES.names, strict=True)]}


@pytest.mark.parametrize(("limit", "capped"), [(100, True), (200, False)])
def test_the_detection_limit_of_the_evaluation_follows_the_model(limit: int, capped: bool) -> None:
    """Issue 28, kind 4: COCOeval's maxDets is (1, 10, max_detections). A perfect model on an image with 200
    objects scores AP 1 when the evaluation counts 200 detections; at COCO's 100 it is capped (about 0.5) and the
    result says which images are over the limit."""
    ground_truth = _dense_ground_truth(200)
    result = PycocotoolsEvaluator(max_detections=limit).evaluate(ground_truth, _perfect_detections(ground_truth),
                                                                 CATEGORIES)
    assert result.max_detections == limit and result.to_plain()["max_detections"] == limit
    if capped:
        assert 0.4 < result.metrics["segm_AP"] < 0.6 and result.metrics["bbox_AR100"] == pytest.approx(0.5)
        assert result.over_limit is not None
        assert (result.over_limit["images"], result.over_limit["max_instances"], result.over_limit["image_id"]) == (1, 200, 1)
        assert "model.max_detections=200" in result.over_limit["message"]
    else:
        assert result.metrics["segm_AP"] == pytest.approx(1.0) and result.metrics["bbox_AR100"] == pytest.approx(1.0)
        assert result.over_limit is None
