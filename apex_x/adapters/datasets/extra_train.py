"""`data.extra_train`: more train datasets in one run, their classes matched by name to the main dataset's.

The main dataset (data.format and its keys) gives the run's classes and its val split. Each extra dataset is
opened by its own registered format (coco, yolo, ...) with its train keys, checked like the main one (its findings
name it: `data.extra_train.<i>.<key>`), and its train images join the main train split. Its categories are matched
to the main classes by name, exactly and case-sensitively after trimming surrounding spaces (Detectron2 and
MMDetection also require the datasets of one run to share one class list); a name the main dataset lacks is an
error naming the dataset, its file and the names, and listing the main classes (add the class to the main dataset
or relabel it). The mapping (category id and name -> class index and name) is in `dataset.extra_train` of the
train report.
"""

from __future__ import annotations

import bisect
import dataclasses
import hashlib
import os
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import structlog

from apex_x.adapters.datasets.findings import FindingLog
from apex_x.adapters.datasets.loader import TorchBatchLoader, split_loader
from apex_x.adapters.datasets.repeat_factor import repeat_sampling
from apex_x.adapters.datasets.transforms import RawSample, TransformSettings
from apex_x.domain.config import ApexConfig, ExtraTrainData
from apex_x.domain.errors import DatasetError
from apex_x.domain.ports import DatasetSource
from apex_x.domain.registry import DATASET_FORMATS
from apex_x.domain.types import CategoryMap, DatasetReport, Finding

log = structlog.get_logger(__name__)

KEYS = tuple(name for name in ExtraTrainData.model_fields if name != "format")  # the data.* keys an extra sets


def extra_settings(settings: ApexConfig, extra: ExtraTrainData) -> ApexConfig:
    """The run's settings with the extra dataset in place of the main one: its format and train keys, no val."""
    data = settings.data.model_copy(update={
        "format": extra.format, **{key: getattr(extra, key) for key in KEYS},
        "coco_val_images": None, "coco_val_annotations": None, "extra_train": []})
    return settings.model_copy(update={"data": data})


def renamed(text: str, name: str) -> str:
    """`data.<key>` of the extra's own keys in a message -> `<name>.<key>` (e.g. data.extra_train.0.yolo_data)."""
    for key in KEYS:
        text = text.replace(f"data.{key}", f"{name}.{key}")
    return text


def _named(text: str, name: str) -> str:
    """A message of an extra dataset: its keys renamed, and starting with its name."""
    text = renamed(text, name)
    return text if text.startswith(name) else f"{name}: {text}"


def match_classes(main: CategoryMap, extra: CategoryMap) -> tuple[dict[int, int], list[str], list[str]]:
    """(extra category id -> main class index, names the main classes lack, names two main classes share)."""
    by_name: dict[str, list[int]] = {}
    for index, name in enumerate(main.names):
        by_name.setdefault(name.strip(), []).append(index)
    mapping: dict[int, int] = {}
    missing: list[str] = []
    ambiguous: list[str] = []
    for original, name in zip(extra.original_ids, extra.names, strict=True):
        found = by_name.get(name.strip(), [])
        if len(found) == 1:
            mapping[original] = found[0]
        else:
            (ambiguous if found else missing).append(name)
    return mapping, missing, ambiguous


class ConcatSamples:
    """SampleProvider of several providers one after the other (index i of the whole = the i-th image)."""

    def __init__(self, parts: Sequence[Any]) -> None:
        self.parts = list(parts)
        self.starts: list[int] = []
        total = 0
        for part in self.parts:
            self.starts.append(total)
            total += len(part)
        self.total = total

    def __len__(self) -> int:
        return self.total

    def load(self, index: int, *, augment: bool) -> RawSample:
        part = bisect.bisect_right(self.starts, index) - 1
        return self.parts[part].load(index - self.starts[part], augment=augment)

    def image_classes(self) -> list[frozenset[int]]:
        return [classes for part in self.parts for classes in part.image_classes()]


@dataclass
class ExtraDataset:
    """One item of data.extra_train, opened by its format."""

    name: str  # data.extra_train.<i>
    format: str
    config: dict[str, Any]  # its keys that are set
    source: Any  # its DatasetSource (COCO-backed: train_samples)
    mapping: dict[int, int] | None = None  # category id -> main class index, once matched
    duplicate_of: str | None = None  # the dataset (main or an earlier extra) with the same label files, if any

    @property
    def file(self) -> str:
        """The file that lists its classes (annotations JSON, data.yaml), for findings."""
        return next((str(value) for key, value in self.config.items() if not key.endswith("_images")), self.name)


class MultiTrainSource:
    """DatasetSource of the main dataset plus data.extra_train: the main one's classes and val split, the train
    images of all of them."""

    def __init__(self, main: Any, extras: Sequence[ExtraDataset], settings: ApexConfig) -> None:
        self.main, self.extras, self.settings = main, list(extras), settings
        self.mode, self.backend = main.mode, main.backend
        self.repeat_info: dict[str, Any] | None = None

    @property
    def categories(self) -> CategoryMap:
        return self.main.categories

    def has_val(self) -> bool:
        return bool(self.main.has_val())

    def val_loader(self, batch_size: int, *, rank: int = 0, world_size: int = 1) -> Any:
        return self.main.val_loader(batch_size, rank=rank, world_size=world_size)

    def val_ground_truth(self) -> dict[str, Any] | None:
        return self.main.val_ground_truth()

    def validate(self, *, full_decode: bool, expected_num_classes: int | None = None) -> DatasetReport:
        """The main dataset's checks, each extra's (messages naming data.extra_train.<i>) and the class matching."""
        report = self.main.validate(full_decode=full_decode, expected_num_classes=expected_num_classes)
        findings = list(report.findings)
        summaries = []
        main_classes = self.main.categories if report.ok else None
        for extra in self.extras:
            own = extra.source.validate(full_decode=full_decode)
            findings += [dataclasses.replace(finding, message=_named(finding.message, extra.name))
                         for finding in own.findings]
            if own.ok and main_classes is not None:
                findings += self._match(extra, main_classes)
            if extra.duplicate_of is not None:
                findings.append(Finding("warning", "extra_train.duplicate",
                                        f"{extra.name} ({extra.file}) has the same label files as {extra.duplicate_of}: "
                                        "its images are trained twice as often; to weight images on purpose use "
                                        "data.repeat_factor_threshold, otherwise remove the item", file=extra.file))
            summaries.append({**self._entry(extra), "summary": own.summary})
        usable = not any(finding.severity == "error" for finding in findings)  # an extra's too (YOLO: its labels)
        return DatasetReport(summary={**report.summary, "extra_train": summaries,
                                      "fingerprint": self.fingerprint() if usable else None}, findings=findings)

    def _match(self, extra: ExtraDataset, main: CategoryMap) -> list[Finding]:
        found = FindingLog()
        mapping, missing, ambiguous = match_classes(main, extra.source.categories)
        listed = ", ".join(repr(name) for name in main.names[:40]) + (", ..." if len(main.names) > 40 else "")
        if missing:
            found.error("extra_train.unmatched_classes",
                        f"{extra.name} ({extra.file}): categories {missing} are not classes of the main dataset "
                        f"(classes are matched by name, exactly and case-sensitively, surrounding spaces ignored; "
                        f"the main dataset's: {listed}); add them to the main dataset or relabel them", file=extra.file)
        if ambiguous:
            found.error("extra_train.ambiguous_classes",
                        f"{extra.name} ({extra.file}): categories {ambiguous} match several classes of the main "
                        f"dataset of the same name ({listed}); give the main dataset's classes distinct names",
                        file=extra.file)
        extra.mapping = mapping if not (missing or ambiguous) else None
        return found.finish()

    def _mapping(self, extra: ExtraDataset) -> dict[int, int]:
        if extra.mapping is None:
            mapping, missing, ambiguous = match_classes(self.main.categories, extra.source.categories)
            if missing or ambiguous:
                raise DatasetError(f"{extra.name} ({extra.file}): categories {missing + ambiguous} do not match one "
                                   "class of the main dataset by name; run `apex-x dataset-preflight CONFIG`")
            extra.mapping = mapping
        return extra.mapping

    def _entry(self, extra: ExtraDataset) -> dict[str, Any]:
        """The report's entry of an extra dataset: where it is and, once matched, its class mapping."""
        entry: dict[str, Any] = {"dataset": extra.name, "format": extra.format, "config": dict(extra.config)}
        if extra.mapping is not None:
            main, own = self.main.categories, extra.source.categories
            entry["classes"] = [{"id": original, "name": name, "class_index": extra.mapping[original],
                                 "class_name": main.names[extra.mapping[original]]}
                                for original, name in zip(own.original_ids, own.names, strict=True)]
        return entry

    def train_loader(self, batch_size: int, *, seed: int, rank: int = 0, world_size: int = 1) -> TorchBatchLoader:
        try:  # the COCO-backed formats (coco, yolo) hand out their train samples
            parts = [self.main.train_samples(),
                     *(extra.source.train_samples(self._mapping(extra)) for extra in self.extras)]
        except AttributeError as error:
            raise DatasetError(f"data.extra_train: a dataset format here cannot join its images to another's "
                               f"train split ({error})") from None
        samples = ConcatSamples(parts)
        data = self.settings.data
        factors, self.repeat_info = repeat_sampling(samples.image_classes, data.repeat_factor_threshold,
                                                    self.categories.names)
        log.info("extra_train", datasets=1 + len(self.extras), images=[len(part) for part in parts])
        return split_loader(samples, TransformSettings.from_config(self.settings), data, batch_size, train=True,
                            seed=seed, rank=rank, world_size=world_size, repeat_factors=factors)

    def fingerprint(self) -> str:
        digest = hashlib.sha256(f"main:{self.main.fingerprint()};".encode())
        for extra in self.extras:
            digest.update(f"{extra.name}:{extra.source.fingerprint()};".encode())
        return digest.hexdigest()

    def describe(self) -> dict[str, Any]:
        described = dict(self.main.describe())
        entries = []
        for extra in self.extras:
            train = (extra.source.describe().get("splits") or {}).get("train") or {}
            if extra.mapping is None:
                self._mapping(extra)
            entries.append({**self._entry(extra), "images": train.get("images"), "annotations": train.get("annotations")})
        return {**described, "extra_train": entries, "repeat_factor_sampling": self.repeat_info,
                "fingerprint": self.fingerprint()}


def with_extra_train(source: DatasetSource, settings: ApexConfig) -> DatasetSource:
    """`source` (the main dataset's) with data.extra_train's datasets joined; `source` itself when there are none
    or when the run uses synthetic data. DatasetError naming data.extra_train.<i> when one is not configured."""
    items = settings.data.extra_train
    if not items:
        return source
    if source.mode != "real":
        log.warning("extra_train_ignored", reason="the run uses synthetic data", datasets=len(items))
        return source
    extras: list[ExtraDataset] = []
    main_files = _label_files(DATASET_FORMATS.get(settings.data.format).config_keys(settings))
    for index, item in enumerate(items):
        name = f"data.extra_train.{index}"
        dataset_format = DATASET_FORMATS.get(item.format)
        if dataset_format.mode != "real":
            raise DatasetError(f"{name}.format: {item.format} has no files to add; use a format with files "
                               "(e.g. coco or yolo)")
        sub = extra_settings(settings, item)
        problems = [finding.message for finding in dataset_format.config_problems(sub) if finding.severity == "error"]
        if problems:
            raise DatasetError(_named("; ".join(problems), name))
        opened = dataset_format.open(sub)
        config = {key: value for key, value in dataset_format.config_keys(sub).items()
                  if value is not None and key in KEYS}
        files = _label_files(config)
        duplicate_of = ("the main dataset" if files and files == main_files
                        else next((extra.name for extra in extras if files and _label_files(extra.config) == files), None))
        extras.append(ExtraDataset(name, item.format, config, opened, duplicate_of=duplicate_of))
    return MultiTrainSource(source, extras, settings)


def _label_files(config: dict[str, Any]) -> frozenset[str]:
    """The real paths of a dataset's train label files (annotations JSON, data.yaml) among its data.* keys."""
    return frozenset(os.path.realpath(str(value)) for key, value in config.items()
                     if key in KEYS and value is not None and not key.endswith("_images"))
