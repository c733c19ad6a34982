"""A checked COCO split as flat numpy arrays: what the loaders read, shared by DataLoader workers for free.

Python dicts and lists of a parsed COCO file grow in every forked DataLoader worker as they are read (each read
writes a reference count, so the pages holding them are copied: the copy-on-read growth known from PyTorch
issue #13246). The table holds the same entries in a few arrays instead: per image its id, size and file name;
per annotation its box, category, crowd flag, polygon area and segmentation (polygons as one float64 coordinate
buffer with offsets, RLE masks as their compressed counts in one byte buffer). Workers read slices of them, so
their memory stays flat over an epoch.

A table is saved as one `.npy` file per array plus `meta.json` (categories, summary, content hash) and opened
with `mmap_mode="r"`: a second start of the same data maps it instead of parsing the JSON again, and every
process shares the same page-cache pages. See `coco_source.CocoDatasetSource` for the key it is cached under.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from apex_x.adapters.datasets.segmentation import rle_area, to_rle

TABLE_VERSION = 1  # bump when the arrays or their meaning change
POLYGONS, RLE = 0, 1  # segmentation kinds
FIELDS = (
    "image_ids", "sizes", "name_offsets", "names",  # (N,), (N, 2) height/width, (N+1,), (bytes,) utf-8
    "ann_offsets",  # (N+1,): the annotations of image i are rows ann_offsets[i]:ann_offsets[i+1]
    "boxes", "categories", "crowd", "areas", "kinds",  # (A, 4) xywh, (A,), (A,), (A,) pixels, (A,)
    "part_starts", "part_ends",  # (A,), (A,): annotation a's polygons (rows of poly_offsets) or RLE bytes
    "poly_offsets", "coords",  # (P+1,), (C,) float64 x1, y1, x2, y2, ...
    "rle_bytes",  # (R,) uint8: compressed RLE counts, one after another
)


@dataclass(frozen=True)
class TableImage:
    """One image row of a table."""

    id: int
    file_name: str
    width: int
    height: int


@dataclass(frozen=True)
class TableAnnotation:
    """One annotation row: box (x, y, w, h pixels), category id (the file's), crowd, area (pixels: polygon area
    by the shoelace formula, RLE pixel count) and segmentation in COCO's own form (polygons or compressed RLE)."""

    bbox: np.ndarray  # (4,) float64
    category_id: int
    crowd: bool
    area: float
    segmentation: list[list[float]] | dict[str, Any]


class AnnotationTable:
    """A split's images and usable annotations in flat arrays (see the module docstring); `meta` holds the
    split's categories, left-out grouping categories, summary and content hash (plain JSON values)."""

    def __init__(self, arrays: dict[str, np.ndarray], meta: dict[str, Any]) -> None:
        missing = [name for name in FIELDS if name not in arrays]
        if missing:
            raise ValueError(f"annotation table lacks {missing}")
        self.arrays, self.meta = arrays, meta

    def __len__(self) -> int:
        return int(self.arrays["image_ids"].shape[0])

    @property
    def num_annotations(self) -> int:
        return int(self.arrays["categories"].shape[0])

    def image(self, row: int) -> TableImage:
        names, offsets = self.arrays["names"], self.arrays["name_offsets"]
        name = bytes(names[int(offsets[row]):int(offsets[row + 1])]).decode("utf-8")
        height, width = (int(v) for v in self.arrays["sizes"][row])
        return TableImage(int(self.arrays["image_ids"][row]), name, width, height)

    def annotation_rows(self, row: int) -> range:
        offsets = self.arrays["ann_offsets"]
        return range(int(offsets[row]), int(offsets[row + 1]))

    def counts(self) -> np.ndarray:
        """(N,) int64: annotations per image."""
        return np.diff(np.asarray(self.arrays["ann_offsets"]))

    def annotations(self, row: int) -> list[TableAnnotation]:
        """The usable annotations of image `row`, in file order (new Python objects, freed after use)."""
        a = self.arrays
        out = []
        for index in self.annotation_rows(row):
            start, end = int(a["part_starts"][index]), int(a["part_ends"][index])
            segmentation: list[list[float]] | dict[str, Any]
            if int(a["kinds"][index]) == POLYGONS:
                bounds = a["poly_offsets"][start:end + 1]
                segmentation = [a["coords"][int(lo):int(hi)].tolist() for lo, hi in zip(bounds[:-1], bounds[1:], strict=True)]
            else:
                height, width = (int(v) for v in a["sizes"][row])
                segmentation = {"size": [height, width], "counts": bytes(a["rle_bytes"][start:end])}
            out.append(TableAnnotation(np.asarray(a["boxes"][index], dtype=np.float64), int(a["categories"][index]),
                                       bool(a["crowd"][index]), float(a["areas"][index]), segmentation))
        return out

    def category_ids(self) -> np.ndarray:
        """(A,) int64: every annotation's category id (the file's), image by image."""
        return np.asarray(self.arrays["categories"])

    # -- building and storing ------------------------------------------------------------------------

    @classmethod
    def from_entries(cls, images: list[dict[str, Any]], annotations: dict[int, list[dict[str, Any]]],
                     meta: dict[str, Any]) -> AnnotationTable:
        """Build from checked entries: `images` (id, file_name, width, height) and image id -> its usable
        annotations (bbox, category_id, iscrowd, segmentation), as coco_checks.read_split leaves them."""
        count = len(images)
        ids = np.fromiter((int(image["id"]) for image in images), dtype=np.int64, count=count)
        sizes = np.array([(int(image["height"]), int(image["width"])) for image in images], dtype=np.int32)
        encoded = [str(image["file_name"]).encode("utf-8") for image in images]
        name_offsets = np.zeros(count + 1, dtype=np.int64)
        np.cumsum([len(name) for name in encoded], out=name_offsets[1:])
        rows = [ann for image in images for ann in annotations.get(image["id"], [])]
        ann_offsets = np.zeros(count + 1, dtype=np.int64)
        np.cumsum([len(annotations.get(image["id"], [])) for image in images], out=ann_offsets[1:])
        kinds = np.array([POLYGONS if isinstance(ann["segmentation"], list) else RLE for ann in rows], dtype=np.int8)
        owner = np.repeat(np.arange(count), np.diff(ann_offsets))
        polygons = [polygon for ann in rows if isinstance(ann["segmentation"], list) for polygon in ann["segmentation"]]
        poly_offsets = np.zeros(len(polygons) + 1, dtype=np.int64)
        np.cumsum([len(polygon) for polygon in polygons], out=poly_offsets[1:])
        coords = np.fromiter((value for polygon in polygons for value in polygon), dtype=np.float64,
                             count=int(poly_offsets[-1]))
        rle_chunks: list[bytes] = []
        part_sizes = np.zeros(len(rows), dtype=np.int64)
        areas = np.zeros(len(rows), dtype=np.float64)
        for index, ann in enumerate(rows):
            segmentation = ann["segmentation"]
            if isinstance(segmentation, list):
                part_sizes[index] = len(segmentation)
                continue
            height, width = (int(v) for v in sizes[owner[index]])
            rle = to_rle(segmentation, height, width)
            counts = rle["counts"] if isinstance(rle["counts"], bytes) else str(rle["counts"]).encode("ascii")
            rle_chunks.append(counts)
            part_sizes[index] = len(counts)
            areas[index] = rle_area(rle)
        is_polygon = kinds == POLYGONS
        # polygons are counted in rows of poly_offsets, RLEs in bytes of rle_bytes: one running sum for each
        part_ends = np.where(is_polygon, np.cumsum(np.where(is_polygon, part_sizes, 0)),
                             np.cumsum(np.where(is_polygon, 0, part_sizes))).astype(np.int64)
        part_starts = part_ends - part_sizes
        arrays = {
            "image_ids": ids, "sizes": sizes.reshape(-1, 2), "name_offsets": name_offsets,
            "names": np.frombuffer(b"".join(encoded), dtype=np.uint8).copy(),
            "ann_offsets": ann_offsets,
            "boxes": np.array([ann["bbox"] for ann in rows], dtype=np.float64).reshape(-1, 4),
            "categories": np.fromiter((int(ann["category_id"]) for ann in rows), dtype=np.int64, count=len(rows)),
            "crowd": np.fromiter((bool(ann.get("iscrowd", 0)) for ann in rows), dtype=bool, count=len(rows)),
            "areas": areas, "kinds": kinds, "part_starts": part_starts, "part_ends": part_ends, "poly_offsets": poly_offsets,
            "coords": coords, "rle_bytes": np.frombuffer(b"".join(rle_chunks), dtype=np.uint8).copy(),
        }
        table = cls(arrays, meta)
        table._fill_polygon_areas(is_polygon)
        return table

    def _fill_polygon_areas(self, is_polygon: np.ndarray) -> None:
        """Shoelace area of each polygon annotation: the sum over its polygons (vectorised over all points).
        Polygons are checked before (>= 3 points, x/y pairs), so every one has an even count >= 6."""
        a = self.arrays
        coords, offsets = a["coords"], a["poly_offsets"]
        if not len(coords):
            return
        lengths = np.diff(offsets)
        if (lengths < 6).any() or (lengths % 2).any():
            raise ValueError("annotation table: a polygon with fewer than 3 points or an odd count of numbers")
        x, y = coords[0::2], coords[1::2]
        point_starts = offsets[:-1] // 2
        successor = np.arange(1, len(x) + 1)  # each point's next one within its own polygon; the last wraps
        successor[offsets[1:] // 2 - 1] = point_starts
        per_polygon = np.abs(np.add.reduceat(x * y[successor] - x[successor] * y, point_starts)) / 2
        polygon_sums = np.concatenate([[0.0], np.cumsum(per_polygon)])
        rows = np.flatnonzero(is_polygon)
        a["areas"][rows] = polygon_sums[a["part_ends"][rows]] - polygon_sums[a["part_starts"][rows]]

    def save(self, folder: Path) -> None:
        """Write the arrays and meta.json into `folder` atomically (a temp folder renamed into place); a table
        already there (another process of the same run wrote the same key) is kept."""
        folder.parent.mkdir(parents=True, exist_ok=True)
        temp = Path(tempfile.mkdtemp(prefix=".tmp-", dir=folder.parent))
        try:
            for name in FIELDS:
                np.save(temp / f"{name}.npy", np.ascontiguousarray(self.arrays[name]), allow_pickle=False)
            (temp / "meta.json").write_text(json.dumps({"version": TABLE_VERSION, **self.meta}))
            if folder.exists() and AnnotationTable.load(folder) is None:  # partial or of another version
                shutil.rmtree(folder, ignore_errors=True)
            try:
                os.rename(temp, folder)
            except OSError:
                if AnnotationTable.load(folder) is None:
                    raise
        finally:
            if temp.exists():
                shutil.rmtree(temp, ignore_errors=True)

    @classmethod
    def load(cls, folder: Path) -> AnnotationTable | None:
        """The table saved in `folder`, memory-mapped read-only; None when absent, partial or of another version."""
        try:
            meta = json.loads((folder / "meta.json").read_text())
            if meta.pop("version", None) != TABLE_VERSION:
                return None
            arrays = {name: np.load(folder / f"{name}.npy", mmap_mode="r", allow_pickle=False) for name in FIELDS}
        except (OSError, ValueError):
            return None
        return cls(arrays, meta)

