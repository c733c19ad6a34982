"""The DatasetSource of `data.format: yolo`: the YOLO splits converted to COCO instances files (content-addressed,
in the temp folder), then read by CocoDatasetSource; the label files' findings (file:line) join its report."""

from __future__ import annotations

import hashlib
import json
import tempfile
from pathlib import Path
from typing import Any

from apex_x.adapters.atomic_files import atomic_write_text
from apex_x.adapters.datasets.coco_source import CocoDatasetSource
from apex_x.adapters.datasets.findings import FindingLog
from apex_x.adapters.datasets.yolo_labels import YoloData, read_data_yaml, split_as_coco
from apex_x.domain.config import ApexConfig
from apex_x.domain.errors import DatasetError
from apex_x.domain.types import DatasetReport, Finding

CACHE = "apex_x_yolo"  # under tempfile.gettempdir(): <sha256 of the converted split>/instances_<split>.json


def resolve(path: str, cwd: Path | None = None) -> Path:
    return ((cwd or Path.cwd()) / Path(path).expanduser()).resolve()


class YoloDatasetSource:
    """DatasetSource over an Ultralytics data.yaml (data.yolo_data); everything but the label findings is the
    COCO source's."""

    mode = "real"
    backend = "ultralytics-yolo"

    def __init__(self, settings: ApexConfig) -> None:
        if settings.data.yolo_data is None:
            raise DatasetError("data.yolo_data is not set: point it at your Ultralytics data.yaml")
        self.yaml_path = resolve(settings.data.yolo_data)
        log = FindingLog()
        data = read_data_yaml(self.yaml_path, log)
        self.coco: CocoDatasetSource | None = None
        if data is not None:
            self.coco = CocoDatasetSource(_as_coco_settings(settings, data, log))
        self.label_findings: list[Finding] = log.finish()

    def _source(self) -> CocoDatasetSource:
        if self.coco is None or any(finding.severity == "error" for finding in self.label_findings):
            report = DatasetReport(summary={}, findings=[f for f in self.label_findings if f.severity == "error"])
            raise DatasetError(f"data.yolo_data ({self.yaml_path}): {report.error_summary()}")
        return self.coco

    def validate(self, *, full_decode: bool, expected_num_classes: int | None = None) -> DatasetReport:
        if self.coco is None:
            return DatasetReport(summary={"yolo_data": str(self.yaml_path)}, findings=list(self.label_findings))
        report = self.coco.validate(full_decode=full_decode, expected_num_classes=expected_num_classes)
        return DatasetReport(summary={**report.summary, "yolo_data": str(self.yaml_path), "backend": self.backend},
                             findings=[*self.label_findings, *report.findings])

    def describe(self) -> dict[str, Any]:
        return {**self._source().describe(), "backend": self.backend, "yolo_data": str(self.yaml_path)}

    def __getattr__(self, name: str) -> Any:  # categories, loaders, ground truth, fingerprint: the COCO source's
        return getattr(self._source(), name)


def _as_coco_settings(settings: ApexConfig, data: YoloData, log: FindingLog) -> ApexConfig:
    paths: dict[str, str] = {}
    for split, images in data.splits.items():
        coco = split_as_coco(images, data.names, log)
        text = json.dumps(coco, sort_keys=True)
        folder = Path(tempfile.gettempdir()) / CACHE / hashlib.sha256(text.encode()).hexdigest()[:16]
        target = folder / f"instances_{split}.json"
        if not target.is_file():
            atomic_write_text(target, text, what="converted YOLO labels")
        paths[f"coco_{split}_images"] = str(images)
        paths[f"coco_{split}_annotations"] = str(target)
    return settings.model_copy(update={"data": settings.data.model_copy(update={"format": "coco", **paths})})
