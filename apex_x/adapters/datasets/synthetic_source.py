"""In-memory synthetic shapes with exact masks, for explicit smoke runs only (always reported as `synthetic`)."""

from __future__ import annotations

import hashlib
import json
from typing import Any, Literal

import numpy as np
import structlog

from apex_x.adapters.datasets.loader import TorchBatchLoader, split_loader
from apex_x.adapters.datasets.repeat_factor import repeat_sampling
from apex_x.adapters.datasets.segmentation import rle_to_plain, to_rle
from apex_x.adapters.datasets.shapes import (
    SHAPE_CATEGORIES,
    ShapeInstance,
    render_scene,
    scene_rng,
    shape_annotation,
)
from apex_x.adapters.datasets.transforms import RawSample, TransformSettings
from apex_x.domain.config import ApexConfig
from apex_x.domain.types import CategoryMap, DatasetReport, Finding

logger = structlog.get_logger(__name__)
GENERATOR_VERSION = 1


def synthetic_categories(num_classes: int) -> list[dict[str, Any]]:
    """The shapes' three classes, or K classes (shape kind = class % 3) when the config asks for K."""
    if num_classes == len(SHAPE_CATEGORIES):
        return [dict(category) for category in SHAPE_CATEGORIES]
    return [
        {"id": index + 1, "name": f"synthetic_{index}", "supercategory": "shape"}
        for index in range(num_classes)
    ]


class _Scenes:
    """Scenes of one split rendered on first use (deterministic per index, so workers agree)."""

    def __init__(
        self, split: str, count: int, settings: TransformSettings, seed: int, num_classes: int
    ) -> None:
        self.split, self.count, self.settings, self.seed, self.num_classes = (
            split,
            count,
            settings,
            seed,
            num_classes,
        )
        self._cache: dict[int, tuple[np.ndarray, list[ShapeInstance], list[int]]] = {}

    def __len__(self) -> int:
        return self.count

    def scene(self, index: int) -> tuple[np.ndarray, list[ShapeInstance], list[int]]:
        """(image, shapes, contiguous labels)."""
        if index not in self._cache:
            rng = scene_rng(self.seed, self.split, index)
            image, shapes = render_scene(self.settings.input_height, self.settings.input_width, rng)
            # K classes: the shape kind fixes the class modulo 3 (K = 3: exactly the kind).
            groups = max(1, self.num_classes // 3)
            labels = [(shape.kind + 3 * int(rng.integers(0, groups))) % self.num_classes for shape in shapes]
            self._cache[index] = (image, shapes, labels)
        return self._cache[index]

    def image_classes(self) -> list[frozenset[int]]:
        """The contiguous class ids of each scene (repeat-factor sampling)."""
        return [frozenset(self.scene(index)[2]) for index in range(self.count)]

    def load(self, index: int, *, augment: bool) -> RawSample:
        image, shapes, labels = self.scene(index)
        height, width = image.shape[:2]
        order = sorted(
            range(len(shapes)), key=lambda i: -int(shapes[i].visible.sum())
        )  # largest first, stable
        order = order[: self.settings.max_instances]
        annotations = [
            shape_annotation(shapes[i], annotation_id=0, image_id=index + 1, category_id=0) for i in order
        ]
        boxes = np.array([a["bbox"] for a in annotations], dtype=np.float32).reshape(-1, 4)
        boxes[:, 2:] += boxes[:, :2]
        return RawSample(
            image=image,
            orig_width=width,
            orig_height=height,
            boxes=boxes,
            labels=np.array([labels[i] for i in order], dtype=np.int64),
            crowd=np.zeros(len(order), dtype=bool),
            rles=[to_rle(a["segmentation"], height, width) for a in annotations],
            image_id=index + 1,
            file_name=f"synthetic_{self.split}_{index + 1:06d}.png",
        )


class SyntheticDatasetSource:
    """Procedural shapes at the model's input size; sizes from data.synthetic_{train,val}_images."""

    mode: Literal["real", "synthetic"] = "synthetic"
    backend = "synthetic"

    def __init__(self, settings: ApexConfig) -> None:
        self.settings = settings
        self.transform_settings = TransformSettings.from_config(settings)
        self.num_classes = settings.model.num_classes or len(SHAPE_CATEGORIES)
        self._categories = synthetic_categories(self.num_classes)
        self.seed = settings.train.seed
        self.repeat_info: dict[str, Any] | None = None  # repeat-factor sampling, described by train_loader
        self._train = _Scenes(
            "train",
            settings.data.synthetic_train_images,
            self.transform_settings,
            self.seed,
            self.num_classes,
        )
        self._val = _Scenes(
            "val", settings.data.synthetic_val_images, self.transform_settings, self.seed, self.num_classes
        )

    @property
    def categories(self) -> CategoryMap:
        return CategoryMap(
            tuple(c["id"] for c in self._categories), tuple(c["name"] for c in self._categories)
        )

    def has_val(self) -> bool:
        return len(self._val) > 0

    def train_loader(
        self, batch_size: int, *, seed: int, rank: int = 0, world_size: int = 1
    ) -> TorchBatchLoader:
        factors, self.repeat_info = repeat_sampling(
            self._train.image_classes, self.settings.data.repeat_factor_threshold, self.categories.names)
        return split_loader(
            self._train, self.transform_settings, self.settings.data, batch_size,
            train=True, seed=seed, rank=rank, world_size=world_size, repeat_factors=factors,
        )

    def val_loader(self, batch_size: int, *, rank: int = 0, world_size: int = 1) -> TorchBatchLoader | None:
        if not self.has_val():
            return None
        return split_loader(
            self._val, self.transform_settings, self.settings.data, batch_size,
            train=False, rank=rank, world_size=world_size,
        )

    def val_ground_truth(self) -> dict[str, Any] | None:
        """The generated val split as a COCO dict: polygons for whole shapes, RLE for occluded ones."""
        if not self.has_val():
            return None
        images, annotations = [], []
        for index in range(len(self._val)):
            image, shapes, labels = self._val.scene(index)
            height, width = image.shape[:2]
            images.append(
                {
                    "id": index + 1,
                    "file_name": f"synthetic_val_{index + 1:06d}.png",
                    "height": height,
                    "width": width,
                }
            )
            for shape, label in zip(shapes, labels, strict=True):
                ann = shape_annotation(
                    shape,
                    annotation_id=len(annotations) + 1,
                    image_id=index + 1,
                    category_id=int(self._categories[label]["id"]),
                )
                if len(ann["segmentation"]) > 1:
                    ann["segmentation"] = rle_to_plain(to_rle(ann["segmentation"], height, width))
                annotations.append(ann)
        return {
            "info": {"description": "Apex-X synthetic smoke data (in memory)"},
            "images": images,
            "annotations": annotations,
            "categories": [dict(c) for c in self._categories],
        }

    def validate(self, *, full_decode: bool, expected_num_classes: int | None = None) -> DatasetReport:
        findings = [
            Finding(
                "warning",
                "dataset.synthetic",
                "training on synthetic in-memory shapes (smoke run): not a real dataset",
            )
        ]
        if expected_num_classes is not None and expected_num_classes != self.num_classes:
            findings.append(
                Finding(
                    "error",
                    "dataset.num_classes_mismatch",
                    f"the model expects {expected_num_classes} classes but the synthetic data has {self.num_classes}",
                )
            )
        summary = {
            "mode": self.mode,
            "backend": self.backend,
            "full_decode": full_decode,
            "num_classes": self.num_classes,
            "categories": [dict(c) for c in self._categories],
            "splits": {
                "train": {"images": len(self._train)},
                **({"val": {"images": len(self._val)}} if self.has_val() else {}),
            },
        }
        return DatasetReport(summary=summary, findings=findings)

    def fingerprint(self) -> str:
        identity = {
            "generator": GENERATOR_VERSION,
            "seed": self.seed,
            "train": len(self._train),
            "val": len(self._val),
            "height": self.transform_settings.input_height,
            "width": self.transform_settings.input_width,
            "classes": self.num_classes,
        }
        return hashlib.sha256(json.dumps(identity, sort_keys=True).encode()).hexdigest()

    def describe(self) -> dict[str, Any]:
        return {
            "mode": self.mode,
            "backend": self.backend,
            "splits": {"train": {"images": len(self._train)}, "val": {"images": len(self._val)}},
            "num_classes": self.num_classes,
            "categories": [c["name"] for c in self._categories],
            "repeat_factor_sampling": self.repeat_info,
            "fingerprint": self.fingerprint(),
        }
