"""The peer of benchmarks/learn_shapes.py: Ultralytics YOLOv8n-seg from scratch on the same shapes data and
budget (only when `ultralytics` is installed), scored by the same pycocotools evaluator as Apex-X."""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Any

import torch

from apex_x.adapters.datasets.coco_source import CocoDatasetSource
from apex_x.adapters.evaluation.coco_evaluator import PycocotoolsEvaluator
from apex_x.domain.config import ApexConfig
from apex_x.domain.types import Detections


def _yolo_dataset(data: Path, root: Path) -> tuple[Path, list[int]]:
    """The COCO shapes set as an Ultralytics segmentation dataset (symlinked images, normalised polygons)."""
    import numpy as np
    from ultralytics.data.converter import merge_multi_segment

    root.mkdir(parents=True, exist_ok=True)
    category_ids: list[int] = []
    for split in ("train", "val"):
        coco = json.loads((data / f"instances_{split}.json").read_text())
        category_ids = [c["id"] for c in coco["categories"]]
        index_of = {cid: i for i, cid in enumerate(category_ids)}
        (root / "images" / split).mkdir(parents=True, exist_ok=True)
        (root / "labels" / split).mkdir(parents=True, exist_ok=True)
        by_image: dict[int, list[dict[str, Any]]] = {}
        for ann in coco["annotations"]:
            by_image.setdefault(ann["image_id"], []).append(ann)
        for image in coco["images"]:
            link = root / "images" / split / image["file_name"]
            if not link.exists():
                link.symlink_to((data / split / image["file_name"]).resolve())
            lines = []
            for ann in by_image.get(image["id"], []):
                if ann.get("iscrowd"):
                    continue
                polygons = ann["segmentation"]
                points = (np.concatenate(merge_multi_segment(polygons), 0) if len(polygons) > 1
                          else np.asarray(polygons[0]).reshape(-1, 2))
                points = points / np.array([image["width"], image["height"]])
                lines.append(" ".join([str(index_of[ann["category_id"]]), *(f"{v:.6f}" for v in points.reshape(-1))]))
            (root / "labels" / split / (Path(image["file_name"]).stem + ".txt")).write_text("\n".join(lines))
    names = {i: c["name"] for i, c in enumerate(json.loads((data / "instances_train.json").read_text())["categories"])}
    yaml_path = root / "shapes.yaml"
    yaml_path.write_text(json.dumps({"path": str(root.resolve()), "train": "images/train", "val": "images/val",
                                     "names": names}))
    return yaml_path, category_ids


def train_yolov8(args: argparse.Namespace, data: Path, config: ApexConfig) -> dict[str, Any] | None:
    """Ultralytics YOLOv8n-seg from scratch (no weights download) on the same data and budget, if installed."""
    try:
        from ultralytics import YOLO
    except ImportError:
        return None
    output = Path(args.output).resolve()
    yaml_path, category_ids = _yolo_dataset(data, output / "yolo_data")
    model = YOLO("yolov8n-seg.yaml")
    start = time.perf_counter()
    model.train(data=str(yaml_path), epochs=1000, time=args.budget_s / 3600.0, imgsz=args.size,
                batch=args.batch_size, device="cpu", workers=2, pretrained=False, amp=False, plots=False,
                project=str(output), name="yolov8n-seg", exist_ok=True, seed=args.seed, verbose=False)
    train_seconds = time.perf_counter() - start
    epochs = int(model.trainer.epoch) + 1
    # Score YOLO's predictions with the same evaluator as Apex-X (pycocotools on the COCO val file).
    source = CocoDatasetSource(config)
    ground_truth = source.val_ground_truth()
    contiguous = {cid: i for i, cid in enumerate(source.categories.original_ids)}
    detections = []
    for image in ground_truth["images"]:
        result = model.predict(str(data / "val" / image["file_name"]), imgsz=args.size, conf=0.001, iou=0.6,
                               max_det=100, retina_masks=True, verbose=False)[0]
        labels = torch.tensor([contiguous[category_ids[int(c)]] for c in result.boxes.cls.tolist()], dtype=torch.long)
        masks = (result.masks.data.bool().cpu() if result.masks is not None
                 else torch.zeros(0, image["height"], image["width"], dtype=torch.bool))
        detections.append((image["id"], Detections(result.boxes.xyxy.float().cpu(), result.boxes.conf.float().cpu(),
                                                   labels, masks)))
    evaluation = PycocotoolsEvaluator().evaluate(ground_truth, detections, source.categories)
    return {"model": "yolov8n-seg (from scratch)", "epochs": epochs, "train_seconds": train_seconds,
            "images_per_s": epochs * args.train_images / train_seconds, "metrics": evaluation.to_plain()}
