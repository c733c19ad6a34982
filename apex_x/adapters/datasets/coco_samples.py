"""Raw samples of a checked COCO split: decoded image (optionally cached in RAM) and instance RLEs."""

from __future__ import annotations

import time
from typing import Any

import numpy as np
import structlog

from apex_x.adapters.datasets.coco_checks import CheckedSplit
from apex_x.adapters.datasets.image_checks import image_path
from apex_x.adapters.datasets.images import ImageReadError, load_rgb
from apex_x.adapters.datasets.segmentation import rle_area, to_rle
from apex_x.adapters.datasets.transforms import RawSample, TransformSettings
from apex_x.domain.errors import DatasetError

logger = structlog.get_logger(__name__)


class UnreadableImage(DatasetError):
    """An image file that fails to decode while loading (e.g. changed on disk after the checks)."""

    def __init__(self, message: str, *, image_id: int, file: str, reason: str) -> None:
        super().__init__(message)
        self.image_id, self.file, self.reason = image_id, file, reason


class _Instances:
    """Targets of one image, sorted largest first and capped at max_instances."""

    __slots__ = ("boxes", "labels", "crowd", "rles")

    def __init__(
        self, boxes: np.ndarray, labels: np.ndarray, crowd: np.ndarray, rles: list[dict[str, Any]]
    ) -> None:
        self.boxes, self.labels, self.crowd, self.rles = boxes, labels, crowd, rles


class CocoSampleProvider:
    """SampleProvider over a checked split: image i of the split's image list (file order)."""

    def __init__(
        self,
        split: CheckedSplit,
        contiguous: dict[int, int],
        settings: TransformSettings,
        *,
        cache_images: bool = False,
    ) -> None:
        self.split = split
        self.contiguous = contiguous
        self.settings = settings
        self.images = list(split.images)
        self._instances: dict[int, _Instances] = {}
        self._cache: dict[int, np.ndarray] | None = None
        if cache_images:
            self._fill_cache()

    def __len__(self) -> int:
        return len(self.images)

    def _fill_cache(self) -> None:
        """Decode every image once (at the largest size the transforms use) and keep it in memory."""
        started = time.perf_counter()
        cache: dict[int, np.ndarray] = {}
        for index in range(len(self.images)):
            cache[index] = self._decode(index, augment=True)
            self.instances(index)
        self._cache = cache
        logger.info(
            "data.cache_filled",
            split=self.split.paths.split,
            images=len(cache),
            megabytes=round(sum(a.nbytes for a in cache.values()) / 2**20, 1),
            seconds=round(time.perf_counter() - started, 2),
        )

    def _decode(self, index: int, *, augment: bool) -> np.ndarray:
        image = self.images[index]
        path = image_path(self.split, image)
        size = self.settings.decode_size(image["width"], image["height"], augment=augment)
        try:
            array = load_rgb(path, min_size=size, high_bit_depth=self.settings.high_bit_depth)
        except ImageReadError as error:
            raise UnreadableImage(
                f"{self.split.paths.images_key}: image {image['id']} ({path}): {error.rule}: {error}",
                image_id=int(image["id"]), file=str(path), reason=f"{error.rule}: {error}",
            ) from None
        return array

    def image_classes(self) -> list[frozenset[int]]:
        """The contiguous class ids of each image's annotations, in image order (repeat-factor sampling)."""
        return [frozenset(self.contiguous[ann["category_id"]] for ann in self.split.annotations.get(image["id"], [])
                          if ann["category_id"] in self.contiguous) for image in self.images]

    def instances(self, index: int) -> _Instances:
        cached = self._instances.get(index)
        if cached is not None:
            return cached
        image = self.images[index]
        height, width = image["height"], image["width"]
        anns = self.split.annotations.get(image["id"], [])
        rles = [to_rle(ann["segmentation"], height, width) for ann in anns]
        areas = np.array([rle_area(rle) for rle in rles], dtype=np.float64)
        order = np.argsort(-areas, kind="stable")[: self.settings.max_instances]
        boxes = np.array([anns[i]["bbox"] for i in order], dtype=np.float32).reshape(-1, 4)
        boxes[:, 2:] += boxes[:, :2]  # xywh -> xyxy
        boxes[:, [0, 2]] = boxes[:, [0, 2]].clip(0, width)  # within the check's tolerance; clip to the image
        boxes[:, [1, 3]] = boxes[:, [1, 3]].clip(0, height)
        labels = np.array([self.contiguous[anns[i]["category_id"]] for i in order], dtype=np.int64)
        crowd = np.array([bool(anns[i].get("iscrowd", 0)) for i in order], dtype=bool)
        cached = _Instances(boxes, labels, crowd, [rles[i] for i in order])
        self._instances[index] = cached
        return cached

    def load(self, index: int, *, augment: bool) -> RawSample:
        image = self.images[index]
        array = self._cache[index] if self._cache is not None else self._decode(index, augment=augment)
        targets = self.instances(index)
        return RawSample(
            image=array,
            orig_width=int(image["width"]),
            orig_height=int(image["height"]),
            boxes=targets.boxes,
            labels=targets.labels,
            crowd=targets.crowd,
            rles=targets.rles,
            image_id=int(image["id"]),
            file_name=str(image["file_name"]),
        )
