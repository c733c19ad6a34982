"""Raw samples of a checked COCO split: image and instance RLEs at the base size, optionally cached (data.cache).

The split is read from its AnnotationTable (flat numpy arrays, see annotation_table.py), never from the parsed
JSON's Python objects, and nothing is memoised per image: a DataLoader worker's memory stays flat over an epoch.
"""

from __future__ import annotations

import os
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
import structlog

from apex_x.adapters.datasets.annotation_table import AnnotationTable, TableImage
from apex_x.adapters.datasets.coco_checks import SplitPaths
from apex_x.adapters.datasets.image_cache import (
    DiskImageCache,
    ImageCache,
    NoImageCache,
    RamImageCache,
    check_disk,
    check_ram,
    default_cache_dir,
    estimate_bytes,
    file_key,
)
from apex_x.adapters.datasets.image_checks import image_file
from apex_x.adapters.datasets.images import ImageReadError, load_rgb, to_base_size
from apex_x.adapters.datasets.memory import available_memory
from apex_x.adapters.datasets.segmentation import rescaled_rle, rle_area, to_rle
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

    __slots__ = ("boxes", "labels", "crowd", "rles", "mask_size")

    def __init__(
        self, boxes: np.ndarray, labels: np.ndarray, crowd: np.ndarray, rles: list[dict[str, Any]],
        mask_size: tuple[int, int] | None = None,
    ) -> None:
        self.boxes, self.labels, self.crowd, self.rles = boxes, labels, crowd, rles
        self.mask_size = mask_size  # (height, width) of the RLEs when smaller than the image


class CocoSampleProvider:
    """SampleProvider over a checked split: image i is row rows[i] of the split's AnnotationTable (file order,
    images left out by data.on_bad_image=skip excluded).

    Every image is loaded at its base size (TransformSettings.base_size: decode, JPEG draft mode when much larger,
    then one antialiased resize), and its masks are RLEs at that size too, so a large photo never costs a
    full-size decode of its pixels or masks. `cache` (data.cache) keeps the base-size images: see image_cache.
    """

    def __init__(
        self,
        paths: SplitPaths,
        table: AnnotationTable,
        rows: np.ndarray,
        contiguous: dict[int, int],
        settings: TransformSettings,
        *,
        cache_images: bool = False,
        cache: str = "none",
        cache_dir: Path | None = None,
        augment: bool = True,
    ) -> None:
        self.paths = paths
        self.table = table
        self.rows = np.asarray(rows, dtype=np.int64)  # (N,) rows of the table, in order
        self.contiguous = contiguous
        self.settings = settings
        self.augment = augment  # the cache holds images at the base size of this mode (train: True)
        self.cache_mode = cache if cache != "none" else ("ram" if cache_images else "none")
        self._cache: ImageCache = NoImageCache()
        if self.cache_mode != "none":
            self._open_cache(cache_dir or default_cache_dir())

    def __len__(self) -> int:
        return int(self.rows.shape[0])

    def image(self, index: int) -> TableImage:
        """Image `index`: id, file name, width and height."""
        return self.table.image(int(self.rows[index]))

    def _path(self, image: TableImage) -> Path:
        return image_file(self.paths.images_dir, image.file_name)

    def _base(self, index: int, augment: bool) -> tuple[int, int]:
        height, width = (int(v) for v in self.table.arrays["sizes"][int(self.rows[index])])
        return self.settings.base_size(width, height, augment=augment)

    def _open_cache(self, folder: Path) -> None:
        """Log the estimate, refuse what does not fit, then fill (ram) or open (disk) the cache."""
        count, split = len(self), self.paths.split
        sizes = [self._base(i, self.augment) for i in range(count)]
        needed = estimate_bytes(sizes)
        if self.cache_mode == "disk":
            keys = [file_key(self._path(self.image(i)), sizes[i], self.settings.high_bit_depth) for i in range(count)]
            cache = DiskImageCache(folder, keys)
            missing = [i for i in range(count) if not cache.path(i).is_file()]  # a later run reuses the rest
            to_write = estimate_bytes([sizes[i] for i in missing])
            logger.info("data.cache_estimate", split=split, mode="disk", images=count, megabytes=round(needed / 2**20, 1),
                        images_to_write=len(missing), megabytes_to_write=round(to_write / 2**20, 1), folder=str(folder))
            check_disk(to_write, folder, split=split, images=len(missing))
            self._cache = cache
            return
        available = available_memory()
        logger.info("data.cache_estimate", split=split, mode="ram", images=count, megabytes=round(needed / 2**20, 1),
                    available_megabytes=None if available is None else round(available / 2**20))
        check_ram(needed, available, split=split, images=count)
        self._fill_ram(RamImageCache(count))

    def _fill_ram(self, cache: RamImageCache) -> None:
        """Decode every image once (threads; Pillow releases the GIL) in this process, before workers fork."""
        started = time.perf_counter()
        threads = max(1, min(8, os.cpu_count() or 1))
        with ThreadPoolExecutor(threads) as pool:
            for index, array in enumerate(pool.map(self._decode_or_none, range(len(self)))):
                if array is not None:
                    cache.put(index, array)
        self._cache = cache
        logger.info(
            "data.cache_filled",
            split=self.paths.split,
            images=len(self),
            megabytes=round(cache.nbytes() / 2**20, 1),
            seconds=round(time.perf_counter() - started, 2),
        )

    def _decode_or_none(self, index: int) -> np.ndarray | None:
        """The cache's image, or None for an image that fails to decode (its load raises UnreadableImage later,
        where data.on_bad_image decides)."""
        try:
            return self._decode(index, augment=self.augment)
        except UnreadableImage:
            return None

    def _decode(self, index: int, *, augment: bool) -> np.ndarray:
        """The image at its base size: (h, w, 3) uint8 (decoded at reduced scale where the format allows)."""
        image = self.image(index)
        path = self._path(image)
        width, height = self._base(index, augment)
        try:
            array = load_rgb(path, min_size=self.settings.decode_size(image.width, image.height, augment=augment),
                             high_bit_depth=self.settings.high_bit_depth)
        except ImageReadError as error:
            raise UnreadableImage(
                f"{self.paths.images_key}: image {image.id} ({path}): {error.rule}: {error}",
                image_id=image.id, file=str(path), reason=f"{error.rule}: {error}",
            ) from None
        return to_base_size(array, width, height)

    def _image(self, index: int, augment: bool) -> np.ndarray:
        if augment != self.augment:
            return self._decode(index, augment=augment)
        array = self._cache.get(index)
        if array is None:
            array = self._decode(index, augment=augment)
            self._cache.put(index, array)
        return array

    def image_classes(self) -> list[frozenset[int]]:
        """The contiguous class ids of each image's annotations, in image order (repeat-factor sampling)."""
        codes, category_ids = self.table.category_codes()
        offsets = np.asarray(self.table.arrays["ann_offsets"])
        label_of_code = np.array([self.contiguous.get(value, -1) for value in category_ids] or [-1], dtype=np.int64)
        labels = label_of_code[codes] if codes.size else codes  # -1: a category outside the mapping
        owner = np.repeat(np.arange(len(offsets) - 1), np.diff(offsets))  # the table row of each annotation
        width = max(len(self.contiguous), 1)
        keys = np.sort((owner * width + labels)[labels >= 0])  # row * width + label
        keys = keys[np.concatenate([[True], keys[1:] != keys[:-1]])] if keys.size else keys  # unique (numpy
        # 2.4's np.unique takes ~45x as long as sort + mask on 10^6 ints)
        rows, found = np.divmod(keys, width)
        cuts = np.searchsorted(rows, self.rows), np.searchsorted(rows, self.rows, side="right")
        found_list = found.tolist()
        return [frozenset(found_list[start:end]) for start, end in zip(*(cut.tolist() for cut in cuts), strict=True)]

    def instances(self, index: int, *, augment: bool = True) -> _Instances:
        """Targets of image `index`: the largest max_instances annotations (by mask area in original pixels),
        masks as RLEs at the image's base size. Built on every call (not memoised: a worker's memory stays flat)."""
        row = int(self.rows[index])
        height, width = (int(v) for v in self.table.arrays["sizes"][row])
        anns = self.table.annotations(row)
        rles = [to_rle(ann.segmentation, height, width) for ann in anns]
        areas = np.array([rle_area(rle) for rle in rles], dtype=np.float64)  # largest first, in original pixels
        order = np.argsort(-areas, kind="stable")[: self.settings.max_instances]
        boxes = np.array([anns[i].bbox for i in order], dtype=np.float32).reshape(-1, 4)
        boxes[:, 2:] += boxes[:, :2]  # xywh -> xyxy
        boxes[:, [0, 2]] = boxes[:, [0, 2]].clip(0, width)  # within the check's tolerance; clip to the image
        boxes[:, [1, 3]] = boxes[:, [1, 3]].clip(0, height)
        labels = np.array([self.contiguous[anns[i].category_id] for i in order], dtype=np.int64)
        crowd = np.array([anns[i].crowd for i in order], dtype=bool)
        base_w, base_h = self._base(index, augment)
        if (base_w, base_h) == (width, height):
            return _Instances(boxes, labels, crowd, [rles[i] for i in order])
        kept = [rescaled_rle(anns[i].segmentation, rles[i], height, width, base_h, base_w) for i in order]
        return _Instances(boxes, labels, crowd, kept, (base_h, base_w))

    def load(self, index: int, *, augment: bool) -> RawSample:
        image = self.image(index)
        array = self._image(index, augment)
        targets = self.instances(index, augment=augment)
        return RawSample(
            image=array,
            orig_width=image.width,
            orig_height=image.height,
            boxes=targets.boxes,
            labels=targets.labels,
            crowd=targets.crowd,
            rles=targets.rles,
            image_id=image.id,
            file_name=image.file_name,
            mask_size=targets.mask_size,
        )
