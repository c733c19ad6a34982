"""The DatasetSource of COCO-format data on disk (pycocotools masks): checks, loaders, ground truth."""

from __future__ import annotations

import hashlib
import os
import time
from pathlib import Path
from typing import Any, Literal

import numpy as np
import structlog

from apex_x.adapters.datasets.annotation_table import TABLE_VERSION, AnnotationTable
from apex_x.adapters.datasets.check_cache import (
    check_key,
    file_stamp,
    folder_stamp,
    load_check,
    load_table,
    store_check,
    store_table,
)
from apex_x.adapters.datasets.coco_categories import compare_categories, describe_classes
from apex_x.adapters.datasets.coco_checks import CheckedSplit, SplitLimits, SplitPaths, read_split
from apex_x.adapters.datasets.coco_samples import CocoSampleProvider
from apex_x.adapters.datasets.findings import FindingLog
from apex_x.adapters.datasets.image_checks import check_image_files
from apex_x.adapters.datasets.loader import TorchBatchLoader, split_loader
from apex_x.adapters.datasets.repeat_factor import repeat_sampling
from apex_x.adapters.datasets.segmentation import rle_area, to_rle
from apex_x.adapters.datasets.transforms import TransformSettings
from apex_x.domain.config import ApexConfig
from apex_x.domain.errors import DatasetError
from apex_x.domain.types import CategoryMap, DatasetReport, Finding

logger = structlog.get_logger(__name__)

SPLIT_KEYS = {
    "train": ("data.coco_train_images", "data.coco_train_annotations"),
    "val": ("data.coco_val_images", "data.coco_val_annotations"),
}


def resolve_path(value: str, cwd: Path) -> Path:
    """A config path: absolute as given, relative against the working directory; normalised, links kept."""
    return Path(os.path.normpath(os.path.join(cwd, os.path.expanduser(value))))



_SCALARS = (str, int, float, bool, type(None))


def _flat(entry: dict[str, Any], keep: tuple[str, ...] = ()) -> dict[str, Any]:
    """A COCO entry for pycocotools: its scalar fields and the checked structured ones (`keep`); extra nested
    fields a labelling tool added (attributes, ...) are left out (pycocotools deep-copies the dict, and a field
    nested hundreds of levels deep would end in a RecursionError)."""
    return {key: value for key, value in entry.items() if key in keep or isinstance(value, _SCALARS)}

class CocoDatasetSource:
    """COCO instances JSON + images folder per split (val optional); categories remapped to 0..K-1 by id."""

    mode: Literal["real", "synthetic"] = "real"
    backend = "pycocotools"

    def __init__(self, settings: ApexConfig, *, cwd: str | Path | None = None) -> None:
        self.settings = settings
        self.repeat_info: dict[str, Any] | None = None  # repeat-factor sampling, described by train_loader
        base = Path(cwd) if cwd is not None else Path.cwd()
        self.cwd = base
        self.paths: dict[str, SplitPaths] = {}
        for split, (images_key, annotations_key) in SPLIT_KEYS.items():
            images = getattr(settings.data, images_key.split(".")[1])
            annotations = getattr(settings.data, annotations_key.split(".")[1])
            if images is None and annotations is None and split == "val":
                continue
            if images is None or annotations is None:
                missing = images_key if images is None else annotations_key
                raise DatasetError(
                    f"{missing} is not set: the {split} split needs both {images_key} and {annotations_key} "
                    f"(set it in the config or with --set {missing}=PATH)"
                )
            self.paths[split] = SplitPaths(
                split,
                images_key,
                annotations_key,
                resolve_path(images, base),
                resolve_path(annotations, base),
            )
        self.transform_settings = TransformSettings.from_config(settings)
        self._splits: dict[str, tuple[CheckedSplit, list[Finding]]] = {}
        self._tables: dict[str, AnnotationTable] = {}  # split -> its table, once a loader needed it
        self._last_report: DatasetReport | None = None
        self._bad_images: dict[str, dict[int, str]] = {}  # split -> image id -> why it cannot be decoded

    # -- parsing (cached) ------------------------------------------------------------------------------

    def _split(self, name: str) -> tuple[CheckedSplit, list[Finding]]:
        if name not in self._splits:
            log = FindingLog()
            decided = None  # which categories are grouping ones is decided once, from the train split
            if name != "train":
                train = self._meta("train")
                if train["readable"]:
                    decided = ({int(c["id"]) for c in train["left_out"]},
                               {int(c["id"]) for c in [*train["categories"], *train["left_out"]]})
            paths = self.paths[name]
            logger.info("dataset_check", split=name, part="annotations", file=str(paths.annotations_path),
                        mb=round(os.path.getsize(paths.annotations_path) / 2**20, 1)
                        if os.path.isfile(paths.annotations_path) else None)
            started = time.perf_counter()
            data = self.settings.data
            checked = read_split(paths, log, keep_grouping=data.keep_grouping_categories, grouping_decided=decided,
                                 limits=SplitLimits(data.max_annotations_per_image, data.max_categories))
            self._splits[name] = (checked, log.finish())
            logger.info("dataset_check_done", split=name, part="annotations", images=len(checked.images),
                        seconds=round(time.perf_counter() - started, 2))
        return self._splits[name]

    def _usable_split(self, name: str) -> CheckedSplit:
        checked, findings = self._split(name)
        errors = [finding for finding in findings if finding.severity == "error"]
        if errors:
            report = DatasetReport(summary={}, findings=errors)
            raise DatasetError(f"{self.paths[name].annotations_key}: {report.error_summary()}")
        return checked

    # -- the annotation table (flat arrays the loaders read; cached on disk with the check) ------------

    def _table_key(self, content_sha256: str) -> str:
        """The train table's key: the sha256 of the annotation bytes it was built from (so a file replaced after
        it was parsed never gets the old table) and the grouping setting."""
        return check_key({"table": TABLE_VERSION, "content_sha256": content_sha256,
                          "keep_grouping": self.settings.data.keep_grouping_categories})

    def _cached_table(self, name: str) -> AnnotationTable | None:
        """The split's table in memory or, for train with data.check_cache, from the disk cache when it was built
        from the bytes the file holds now; nothing is parsed. (A val table is not stored: evaluation parses the
        val file for its ground truth anyway.)"""
        if name == "train" and name not in self._tables and name not in self._splits and self.settings.data.check_cache:
            sha = file_stamp(self.paths[name].annotations_path).get("sha256")
            table = load_table(self._table_key(sha)) if sha else None
            if table is not None and table.meta.get("content_sha256") == sha:
                logger.info("annotation_table_cached", split=name, images=len(table),
                            annotations=table.num_annotations)
                self._tables[name] = table
        return self._tables.get(name)

    def _table(self, name: str) -> AnnotationTable:
        """The usable split as an AnnotationTable: cached, or built from the parsed split (DatasetError when the
        split has errors), then stored (train); the train split's parsed entries are released once it is built."""
        table = self._cached_table(name)
        if table is not None:
            return table
        split = self._usable_split(name)
        started = time.perf_counter()
        table = AnnotationTable.from_entries(split.images, split.annotations, _split_meta(split))
        self._tables[name] = table
        logger.info("annotation_table_built", split=name, images=len(table), annotations=table.num_annotations,
                    seconds=round(time.perf_counter() - started, 2))
        if name == "train" and self.settings.data.check_cache:
            store_table(self._table_key(split.content_sha256), table)
        if name == "train":  # the loaders read the table: the JSON's Python objects are not needed any more
            del self._splits[name]
        return table

    def _meta(self, name: str) -> dict[str, Any]:
        """A split's categories, grouping categories left out, summary and content hash: from its table when
        there is one (no parsing), else from the parsed split."""
        table = self._cached_table(name)
        return table.meta if table is not None else _split_meta(self._split(name)[0])

    def _usable_meta(self, name: str) -> dict[str, Any]:
        table = self._cached_table(name)
        return table.meta if table is not None else _split_meta(self._usable_split(name))

    def _rows(self, name: str) -> Any:
        """The table rows a loader uses: every image but those data.on_bad_image=skip leaves out."""
        table = self._table(name)
        bad = self._bad_images.get(name)
        if bad and self.settings.data.on_bad_image == "skip":  # left out, counted in the dataset summary
            return np.array([row for row, image_id in enumerate(table.image_ids()) if image_id not in bad],
                            dtype=np.int64)
        return np.arange(len(table))

    @property
    def categories(self) -> CategoryMap:
        meta = self._usable_meta("train")
        return CategoryMap(tuple(int(c["id"]) for c in meta["categories"]), tuple(str(c["name"]) for c in meta["categories"]))

    def has_val(self) -> bool:
        return "val" in self.paths

    # -- validation ------------------------------------------------------------------------------------

    def _check_key(self, full_decode: bool, expected_num_classes: int | None) -> str:
        stamps = {name: {"annotations": file_stamp(paths.annotations_path), "images": folder_stamp(paths.images_dir)}
                  for name, paths in self.paths.items()}
        return check_key({"format": self.backend, "data": self.settings.data.model_dump(mode="json"),
                          "full_decode": full_decode, "expected_num_classes": expected_num_classes, "splits": stamps,
                          "max_detections": self.settings.model.max_detections})

    def validate(self, *, full_decode: bool, expected_num_classes: int | None = None) -> DatasetReport:
        """The dataset contract: JSON rules of every split, image files, train/val categories, class count.
        A passed check is cached (check_cache.py, data.check_cache): the same data again returns its verdict."""
        key = self._check_key(full_decode, expected_num_classes) if self.settings.data.check_cache else None
        cached = load_check(key) if key is not None else None
        if cached is not None:
            logger.info("dataset_check_cached", key=key[:16], note="same files and settings as a passed check")
            self._bad_images = {name: {int(i): why for i, why in bad.items()}
                                for name, bad in (cached.get("bad_images") or {}).items()}
            report = DatasetReport(summary={**cached["summary"], "check_cached": True},
                                   findings=[Finding(**finding) for finding in cached["findings"]])
            self._last_report = report
            return report
        report = self._validate(full_decode, expected_num_classes)
        if key is not None and report.ok:
            store_check(key, {"summary": report.summary, "findings": [f.to_plain() for f in report.findings],
                              "bad_images": {name: {str(i): why for i, why in bad.items()}
                                             for name, bad in self._bad_images.items()}})
        return report

    def _validate(self, full_decode: bool, expected_num_classes: int | None) -> DatasetReport:
        findings: list[Finding] = []
        splits_summary: dict[str, Any] = {}
        checked: dict[str, CheckedSplit] = {}
        for name in self.paths:
            split, json_findings = self._split(name)
            checked[name] = split
            findings.extend(json_findings)
            log = FindingLog()
            on_bad = self.settings.data.on_bad_image
            if split.readable:
                logger.info("dataset_check", split=name, part="image files", images=len(split.images),
                            full_decode=full_decode)
            started = time.perf_counter()
            files = check_image_files(
                split, log, full_decode=full_decode, on_bad_image=on_bad,
                high_bit_depth=self.settings.data.high_bit_depth_scaling,
                allow_external_links=self.settings.data.allow_external_links,
            ) if split.readable else {}
            if split.readable:
                logger.info("dataset_check_done", split=name, part="image files",
                            seconds=round(time.perf_counter() - started, 2))
                over = self._over_cap(name, log)
                splits_over = {"images_over_max_instances": len(over), "instances_dropped": sum(over.values())}
                if name == "val":
                    splits_over["images_over_max_detections"] = self._over_detection_limit(split, log)
            else:
                splits_over = {}
            bad = files.pop("bad_images", {}) if files else {}
            self._bad_images[name] = dict(bad)
            if files:
                files["undecodable_images"] = len(bad)
                files["skipped_images"] = len(bad) if on_bad == "skip" else 0
            findings.extend(log.finish())
            splits_summary[name] = {**split.summary, **splits_over, **({"files": files} if files else {})} or {
                "images_dir": str(split.paths.images_dir),
                "annotations_file": str(split.paths.annotations_path),
            }
        cross = FindingLog()
        train = checked["train"]
        if "val" in checked and train.readable and checked["val"].readable and train.categories:
            val = checked["val"]
            compare_categories(
                train.categories,
                val.categories,
                train_key=train.paths.annotations_key,
                val_key=val.paths.annotations_key,
                val_file=str(val.paths.annotations_path),
                log=cross,
            )
        num_classes = len(train.categories) if train.readable else None
        if expected_num_classes is not None and num_classes and expected_num_classes != num_classes:
            cross.error(
                "dataset.num_classes_mismatch",
                f"the model expects {expected_num_classes} classes (--num-classes / model.num_classes) but "
                f"{train.paths.annotations_key} gives {describe_classes(train.categories)}{self._grouping_note()}; "
                "drop --num-classes (the count comes from the data) or point the config at the dataset you meant",
                file=str(train.paths.annotations_path),
            )
        findings.extend(cross.finish())
        summary: dict[str, Any] = {
            "mode": self.mode,
            "backend": self.backend,
            "full_decode": full_decode,
            "num_classes": num_classes,
            "expected_num_classes": expected_num_classes,
            "categories": list(train.categories) if train.readable else [],
            "splits": splits_summary,
            "fingerprint": self.fingerprint() if all(s.readable for s in checked.values()) else None,
        }
        report = DatasetReport(summary=summary, findings=findings)
        self._last_report = report
        return report

    def _over_cap(self, name: str, log: FindingLog | None = None) -> dict[int, int]:
        """Images with more instances than data.max_instances -> how many are dropped (the smallest)."""
        cap = self.settings.data.max_instances
        table = self._cached_table(name)
        if table is not None:
            counts = table.counts()
            over = {table.image(int(row)).id: int(counts[row]) - cap for row in np.flatnonzero(counts > cap)}
            annotations_path = self.paths[name].annotations_path
        else:
            split, _ = self._split(name)
            over = {image_id: len(anns) - cap for image_id, anns in split.annotations.items() if len(anns) > cap}
            annotations_path = split.paths.annotations_path
        if over and log is not None:
            worst = max(over, key=over.__getitem__)
            log.warning(
                "data.max_instances",
                f"{len(over)} image(s) of {name} have more than data.max_instances={cap} instances (up to "
                f"{over[worst] + cap} in image {worst}); {sum(over.values())} of their smallest instances are dropped "
                f"from the training targets. Raise data.max_instances (e.g. --set data.max_instances="
                f"{over[worst] + cap}) to keep them",
                file=str(annotations_path), image_id=worst,
            )
        return over

    def _over_detection_limit(self, split: CheckedSplit, log: FindingLog) -> int:
        """Val images holding more non-crowd instances than model.max_detections (the evaluation's detection
        limit per image: AP is capped there); a warning naming the densest. Returns how many."""
        limit = self.settings.model.max_detections
        counts = {image_id: sum(1 for ann in anns if not ann.get("iscrowd")) for image_id, anns in split.annotations.items()}
        over = {image_id: count for image_id, count in counts.items() if count > limit}
        if over:
            worst = max(over, key=over.__getitem__)
            log.warning(
                "eval.max_detections",
                f"{len(over)} val image(s) hold more instances than model.max_detections={limit}, the detections per "
                f"image the model keeps and COCO AP counts (up to {over[worst]} in image {worst}): their recall and AP "
                f"are capped, a perfect model scores below 1. Raise it (e.g. --set model.max_detections={over[worst]})",
                file=str(split.paths.annotations_path), image_id=worst,
            )
        return len(over)

    def _grouping_note(self) -> str:
        """For class-count messages: which grouping categories were left out (or kept) of the count."""
        left_out = [f"{c['id']} {c['name']!r}" for c in self._meta("train")["left_out"]]
        if left_out:
            return f" (left out as grouping categories: {', '.join(left_out[:5])}; data.keep_grouping_categories=true keeps them)"
        return ""

    def _require_usable(self) -> None:
        """Loaders refuse data with errors: the last validation's, or else the (cached) JSON rules' errors.

        Image files are not probed here (that is validate's job, run once by the trainer on the main rank);
        a file that fails to decode later still raises a DatasetError naming it.
        """
        if self._last_report is not None:
            errors = self._last_report.errors
        else:  # a split with a table was usable when it was built
            errors = [f for name in self.paths if self._cached_table(name) is None
                      for f in self._split(name)[1] if f.severity == "error"]
        if errors:
            report = DatasetReport(summary={}, findings=errors)
            raise DatasetError(
                f"{report.error_summary()}. Run `apex-x dataset-preflight CONFIG` for the full report."
            )

    # -- loaders -------------------------------------------------------------------------------------

    def _provider(self, name: str, contiguous: dict[int, int] | None = None) -> CocoSampleProvider:
        return CocoSampleProvider(
            self.paths[name],
            self._table(name),
            self._rows(name),
            contiguous if contiguous is not None else self.categories.to_contiguous(),
            self.transform_settings,
            cache_images=self.settings.data.cache_images,
            cache=self.settings.data.cache,
            cache_dir=resolve_path(self.settings.data.cache_dir, self.cwd) if self.settings.data.cache_dir else None,
            augment=name == "train",
        )

    def train_samples(self, contiguous: dict[int, int] | None = None) -> CocoSampleProvider:
        """The train split's samples, category ids mapped by `contiguous` (original id -> the run's class index;
        default: this source's own classes): how data.extra_train joins its images to the main train split."""
        self._require_usable()
        return self._provider("train", contiguous)

    def train_loader(
        self, batch_size: int, *, seed: int, rank: int = 0, world_size: int = 1
    ) -> TorchBatchLoader:
        self._require_usable()
        provider = self._provider("train")
        factors, self.repeat_info = repeat_sampling(
            provider.image_classes, self.settings.data.repeat_factor_threshold, self.categories.names)
        return split_loader(
            provider, self.transform_settings, self.settings.data, batch_size,
            train=True, seed=seed, rank=rank, world_size=world_size, repeat_factors=factors,
        )

    def val_loader(self, batch_size: int, *, rank: int = 0, world_size: int = 1) -> TorchBatchLoader | None:
        if not self.has_val():
            return None
        self._require_usable()
        return split_loader(
            self._provider("val"), self.transform_settings, self.settings.data, batch_size,
            train=False, rank=rank, world_size=world_size,
        )

    def val_ground_truth(self) -> dict[str, Any] | None:
        """The val split as a COCO dict (original ids); iscrowd and area filled in where the file lacks them."""
        if not self.has_val():
            return None
        split = self._usable_split("val")
        bad = self._bad_images.get("val") if self.settings.data.on_bad_image == "skip" else None
        images = [image for image in split.images if not bad or image["id"] not in bad]
        annotations = []
        for image in images:
            for ann in split.annotations.get(image["id"], []):
                entry = _flat(ann, keep=("segmentation", "bbox"))
                entry["iscrowd"] = int(bool(entry.get("iscrowd", 0)))
                area = entry.get("area")
                if not isinstance(area, (int, float)) or isinstance(area, bool) or not area >= 0:
                    entry["area"] = rle_area(to_rle(ann["segmentation"], image["height"], image["width"]))
                annotations.append(entry)
        return {
            "info": _flat(split.raw["info"]) if split.raw and isinstance(split.raw.get("info"), dict) else {},
            "images": [_flat(image) for image in images],
            "annotations": annotations,
            "categories": [_flat(c) for c in split.categories],
        }

    # -- identity --------------------------------------------------------------------------------------

    def fingerprint(self) -> str:
        """sha256 over the annotation files' bytes (train, then val): moving the folder keeps it."""
        digest = hashlib.sha256()
        for name in ("train", "val"):
            if name in self.paths:
                digest.update(f"{name}:{self._meta(name)['content_sha256']};".encode())
        return digest.hexdigest()

    def describe(self) -> dict[str, Any]:
        splits: dict[str, Any] = {}
        for name, paths in self.paths.items():
            meta = self._meta(name)
            over = self._over_cap(name) if meta["readable"] else {}
            splits[name] = {
                "images_dir": str(paths.images_dir),
                "annotations_file": str(paths.annotations_path),
                "images": meta["summary"].get("images"),
                "annotations": meta["summary"].get("annotations"),
                "skipped_images": len(self._bad_images.get(name, {}))
                if self.settings.data.on_bad_image == "skip" else 0,
                "images_over_max_instances": len(over),  # data.max_instances: the smallest instances are dropped
                "instances_dropped": sum(over.values()),
            }
        train = self._meta("train")
        return {
            "mode": self.mode,
            "backend": self.backend,
            "splits": splits,
            "num_classes": len(train["categories"]) if train["readable"] else None,
            "categories": [c["name"] for c in train["categories"]],
            "max_instances": self.settings.data.max_instances,
            "repeat_factor_sampling": self.repeat_info,
            "fingerprint": self.fingerprint(),
        }


def _split_meta(split: CheckedSplit) -> dict[str, Any]:
    """What the source needs of a split besides its entries (plain JSON values, stored with its table)."""
    return {"readable": split.readable, "categories": [dict(c) for c in split.categories],
            "left_out": [dict(c) for c in split.left_out], "summary": dict(split.summary),
            "content_sha256": split.content_sha256}
