"""Files of `predict` and `eval`: COCO results JSON (RLE masks, original ids and names), PNG overlays, reports."""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import structlog
import torch
from pycocotools import mask as mask_utils

from apex_x.adapters.atomic_files import atomic_write_text
from apex_x.adapters.visualization import draw_detections, save_png
from apex_x.domain.errors import UserError
from apex_x.domain.types import CategoryMap, Detections

log = structlog.get_logger(__name__)

RESULTS_FILE = "predictions.json"
SUMMARY_FILE = "summary.json"


def coco_results(image_id: int, detections: Detections, categories: CategoryMap) -> list[dict[str, Any]]:
    """COCO results entries (bbox xywh, RLE segmentation) with original category ids and names."""
    boxes = detections.boxes.detach().cpu().double().numpy()  # (K, 4) xyxy
    scores = detections.scores.detach().cpu().double().numpy()
    labels = detections.labels.detach().cpu().numpy().astype(np.int64)
    rles: list[dict[str, Any] | None] = [None] * len(scores)
    if detections.masks.numel():
        masks = np.asfortranarray(detections.masks.detach().cpu().numpy().astype(np.uint8).transpose(1, 2, 0))
        rles = list(mask_utils.encode(masks))  # (H, W, K) Fortran order -> K RLEs
    entries = []
    for index in range(len(scores)):
        x0, y0, x1, y1 = (float(v) for v in boxes[index])
        label = int(labels[index])
        entry: dict[str, Any] = {
            "image_id": int(image_id),
            "category_id": categories.to_original(label),
            "category_name": categories.names[label],
            "bbox": [round(x0, 2), round(y0, 2), round(x1 - x0, 2), round(y1 - y0, 2)],
            "score": round(float(scores[index]), 5),
        }
        rle = rles[index]
        if rle is not None:
            entry["segmentation"] = {"size": [int(s) for s in rle["size"]], "counts": rle["counts"].decode("ascii")}
        entries.append(entry)
    return entries


class CocoJsonOverlaySink:
    """PredictionSink: one PNG overlay per image as it comes, then predictions.json and summary.json."""

    def __init__(self, output_dir: str | os.PathLike[str], categories: CategoryMap, *, overlays: bool = True) -> None:
        self.output_dir = Path(output_dir)
        self.categories = categories
        self.overlays = overlays
        self._results: list[dict[str, Any]] = []
        self._files: dict[int, dict[str, str]] = {}
        self._used_names: set[str] = set()
        try:
            self.output_dir.mkdir(parents=True, exist_ok=True)
        except OSError as error:
            raise UserError(f"cannot create the output folder {self.output_dir}: {error.strerror or error}") from None

    def add(self, image_id: int, path: str, image: torch.Tensor, detections: Detections) -> None:
        entries = coco_results(image_id, detections, self.categories)
        for entry in entries:
            entry["file_name"] = Path(path).name
        self._results.extend(entries)
        files = {"file_name": Path(path).name, "path": str(path)}
        if self.overlays:
            overlay = draw_detections(image, detections, self.categories.names)
            files["overlay"] = self._write_png(overlay, self._unique_name(Path(path).stem))
        self._files[image_id] = files

    def close(self, summary: Mapping[str, Any]) -> list[str]:
        results_path = write_json(self.output_dir / RESULTS_FILE, self._results)
        plain = dict(summary)
        plain["images"] = [{**image, **self._files.get(int(image["id"]), {})} for image in summary.get("images", [])]
        plain["categories"] = [
            {"id": original, "name": name} for original, name in zip(self.categories.original_ids, self.categories.names, strict=True)
        ]
        plain["results_file"] = results_path
        summary_path = write_json(self.output_dir / SUMMARY_FILE, plain)
        overlays = [files["overlay"] for files in self._files.values() if "overlay" in files]
        return [results_path, summary_path, *overlays]

    def _unique_name(self, stem: str) -> str:
        name, counter = f"{stem}.png", 1
        while name in self._used_names or name in (RESULTS_FILE, SUMMARY_FILE):
            counter += 1
            name = f"{stem}_{counter}.png"
        self._used_names.add(name)
        return name

    def _write_png(self, overlay: Any, name: str) -> str:
        return save_png(overlay, self.output_dir / name)  # a UserError naming the path when it cannot


def write_json(path: str | os.PathLike[str], data: Any) -> str:
    """Pretty JSON, written to a temporary file then renamed; an unwritable path is a UserError naming it."""
    return write_text(path, json.dumps(data, indent=2, allow_nan=True) + "\n")


def write_text(path: str | os.PathLike[str], text: str) -> str:
    """UTF-8 text, written atomically; an unwritable path is a UserError naming it."""
    written = atomic_write_text(path, text)
    log.debug("file_written", path=written)
    return written


class EvalReportFiles:
    """The eval report as a JSON file (machine-readable) and a markdown file (for people)."""

    def write(self, plain: Mapping[str, Any], markdown: str, json_path: str, markdown_path: str) -> list[str]:
        """Also eval_pr_curves.png and eval_confusion_matrix.png beside the JSON (the markdown links them)."""
        from pathlib import Path

        from apex_x.adapters.reports.evaluation_plots import write_evaluation_plots

        plots = write_evaluation_plots(dict(plain.get("curves") or {}), Path(json_path).parent, prefix="eval_")
        return [write_json(json_path, dict(plain)), write_text(markdown_path, markdown), *plots]
