"""A checked COCO split as flat numpy arrays: what the loaders read, shared by DataLoader workers for free.

Python dicts and lists of a parsed COCO file grow in every forked DataLoader worker as they are read (each read
writes a reference count, so the pages holding them are copied: the copy-on-read growth known from PyTorch
issue #13246). The table holds the same entries in a few arrays instead: per image its id, size and file name;
per annotation its box, category, crowd flag and segmentation (polygons as one float64 coordinate buffer with
offsets, RLE masks as their compressed counts in one byte buffer). Workers read slices of them, so
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

from apex_x.adapters.datasets.json_values import parse_json
from apex_x.adapters.datasets.segmentation import to_rle

TABLE_VERSION = 2  # bump when the arrays or their meaning change
POLYGONS, RLE = 0, 1  # segmentation kinds
FIELDS = (
    "id_offsets", "ids",  # (N+1,), (bytes,): image ids as decimal text (any size of integer)
    "sizes", "name_offsets", "names",  # (N, 2) height/width, (N+1,), (bytes,) utf-8 (surrogateescape)
    "ann_offsets",  # (N+1,): the annotations of image i are rows ann_offsets[i]:ann_offsets[i+1]
    "boxes", "category_codes", "crowd", "kinds",  # (A, 4) xywh, (A,) index into meta["category_ids"], (A,), (A,)
    "part_starts", "part_ends",  # (A,), (A,): annotation a's polygons (rows of poly_offsets) or RLE bytes
    "poly_offsets", "coords",  # (P+1,), (C,) float64 x1, y1, x2, y2, ...
    "rle_bytes",  # (R,) uint8: compressed RLE counts, one after another
)
META_KEYS = ("readable", "categories", "left_out", "summary", "content_sha256", "category_ids")


def _text(buffer: np.ndarray, offsets: np.ndarray, row: int) -> str:
    return bytes(buffer[int(offsets[row]):int(offsets[row + 1])]).decode("utf-8", "surrogateescape")


def _packed(texts: list[str]) -> tuple[np.ndarray, np.ndarray]:
    """Texts -> (offsets (N+1,) int64, one uint8 buffer), utf-8 with surrogateescape (names that are not utf-8
    on disk round-trip)."""
    encoded = [text.encode("utf-8", "surrogateescape") for text in texts]
    offsets = np.zeros(len(encoded) + 1, dtype=np.int64)
    np.cumsum([len(item) for item in encoded], out=offsets[1:])
    return offsets, np.frombuffer(b"".join(encoded), dtype=np.uint8).copy()


@dataclass(frozen=True)
class TableImage:
    """One image row of a table."""

    id: int
    file_name: str
    width: int
    height: int


@dataclass(frozen=True)
class TableAnnotation:
    """One annotation row: box (x, y, w, h pixels), category id (the file's), crowd and segmentation in COCO's
    own form (polygons, or an RLE with compressed counts)."""

    bbox: np.ndarray  # (4,) float64
    category_id: int
    crowd: bool
    segmentation: list[list[float]] | dict[str, Any]


class AnnotationTable:
    """A split's images and usable annotations in flat arrays (see the module docstring); `meta` holds the
    split's categories, left-out grouping categories, summary and content hash (plain JSON values)."""

    def __init__(self, arrays: dict[str, np.ndarray], meta: dict[str, Any], folder: Path | None = None) -> None:
        missing = [name for name in FIELDS if name not in arrays] + [key for key in META_KEYS if key not in meta]
        if missing:
            raise ValueError(f"annotation table lacks {missing}")
        self.arrays, self.meta = arrays, meta
        self.folder = folder  # where it is stored, when it was loaded from there (memory-mapped)
        self._category_ids = [int(value) for value in meta["category_ids"]]

    def __reduce__(self) -> tuple[Any, ...]:
        """A table mapped from its folder pickles as that folder (spawned DataLoader workers map it too, instead
        of receiving a copy of every array)."""
        if self.folder is not None:
            return _reopen, (str(self.folder),)
        return AnnotationTable, (self.arrays, self.meta)

    def __len__(self) -> int:
        return int(self.arrays["sizes"].shape[0])

    @property
    def num_annotations(self) -> int:
        return int(self.arrays["category_codes"].shape[0])

    def image(self, row: int) -> TableImage:
        a = self.arrays
        height, width = (int(v) for v in a["sizes"][row])
        return TableImage(int(_text(a["ids"], a["id_offsets"], row)), _text(a["names"], a["name_offsets"], row),
                          width, height)

    def image_ids(self) -> list[int]:
        """Every image's id, in row order."""
        a = self.arrays
        return [int(_text(a["ids"], a["id_offsets"], row)) for row in range(len(self))]

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
            out.append(TableAnnotation(np.asarray(a["boxes"][index], dtype=np.float64),
                                       self._category_ids[int(a["category_codes"][index])], bool(a["crowd"][index]),
                                       segmentation))
        return out

    def category_codes(self) -> tuple[np.ndarray, list[int]]:
        """((A,) int64 code of every annotation, image by image; the category id of each code)."""
        return np.asarray(self.arrays["category_codes"]), list(self._category_ids)

    # -- building and storing ------------------------------------------------------------------------

    @classmethod
    def from_entries(cls, images: list[dict[str, Any]], annotations: dict[int, list[dict[str, Any]]],
                     meta: dict[str, Any]) -> AnnotationTable:
        """Build from checked entries: `images` (id, file_name, width, height) and image id -> its usable
        annotations (bbox, category_id, iscrowd, segmentation), as coco_checks.read_split leaves them. `meta`:
        the split's readable, categories, left_out, summary and content_sha256 (plain JSON values)."""
        count = len(images)
        id_offsets, id_text = _packed([str(int(image["id"])) for image in images])
        name_offsets, names = _packed([str(image["file_name"]) for image in images])
        sizes = np.array([(int(image["height"]), int(image["width"])) for image in images], dtype=np.int32)
        rows = [ann for image in images for ann in annotations.get(image["id"], [])]
        ann_offsets = np.zeros(count + 1, dtype=np.int64)
        np.cumsum([len(annotations.get(image["id"], [])) for image in images], out=ann_offsets[1:])
        category_ids = sorted({int(ann["category_id"]) for ann in rows})
        code = {value: index for index, value in enumerate(category_ids)}
        kinds = np.array([POLYGONS if isinstance(ann["segmentation"], list) else RLE for ann in rows], dtype=np.int8)
        owner = np.repeat(np.arange(count), np.diff(ann_offsets))
        polygons = [polygon for ann in rows if isinstance(ann["segmentation"], list) for polygon in ann["segmentation"]]
        poly_offsets = np.zeros(len(polygons) + 1, dtype=np.int64)
        np.cumsum([len(polygon) for polygon in polygons], out=poly_offsets[1:])
        coords = np.fromiter((value for polygon in polygons for value in polygon), dtype=np.float64,
                             count=int(poly_offsets[-1]))
        rle_chunks: list[bytes] = []
        part_sizes = np.zeros(len(rows), dtype=np.int64)
        for index, ann in enumerate(rows):
            segmentation = ann["segmentation"]
            if isinstance(segmentation, list):
                part_sizes[index] = len(segmentation)
                continue
            height, width = (int(v) for v in sizes[owner[index]])
            counts = to_rle(segmentation, height, width)["counts"]
            counts = counts if isinstance(counts, bytes) else str(counts).encode("ascii")
            rle_chunks.append(counts)
            part_sizes[index] = len(counts)
        is_polygon = kinds == POLYGONS
        # polygons are counted in rows of poly_offsets, RLEs in bytes of rle_bytes: one running sum for each
        part_ends = np.where(is_polygon, np.cumsum(np.where(is_polygon, part_sizes, 0)),
                             np.cumsum(np.where(is_polygon, 0, part_sizes))).astype(np.int64)
        arrays = {
            "id_offsets": id_offsets, "ids": id_text, "sizes": sizes.reshape(-1, 2), "name_offsets": name_offsets,
            "names": names, "ann_offsets": ann_offsets,
            "boxes": np.array([ann["bbox"] for ann in rows], dtype=np.float64).reshape(-1, 4),
            "category_codes": np.fromiter((code[int(ann["category_id"])] for ann in rows), dtype=np.int64,
                                          count=len(rows)),
            "crowd": np.fromiter((bool(ann.get("iscrowd", 0)) for ann in rows), dtype=bool, count=len(rows)),
            "kinds": kinds, "part_starts": part_ends - part_sizes, "part_ends": part_ends,
            "poly_offsets": poly_offsets, "coords": coords,
            "rle_bytes": np.frombuffer(b"".join(rle_chunks), dtype=np.uint8).copy(),
        }
        return cls(arrays, {**meta, "category_ids": category_ids})

    def consistent(self) -> bool:
        """Whether the arrays fit together (lengths and offsets): a damaged folder is not used."""
        a = self.arrays
        images, annotations = a["sizes"].shape[0], a["category_codes"].shape[0]
        try:
            return (a["sizes"].shape == (images, 2) and a["boxes"].shape == (annotations, 4)
                    and all(a[name].shape == (images + 1,) for name in ("id_offsets", "name_offsets", "ann_offsets"))
                    and all(a[name].shape == (annotations,) for name in ("crowd", "kinds", "part_starts", "part_ends"))
                    and int(a["id_offsets"][-1]) == a["ids"].shape[0]
                    and int(a["name_offsets"][-1]) == a["names"].shape[0]
                    and int(a["ann_offsets"][-1]) == annotations
                    and int(a["poly_offsets"][-1]) == a["coords"].shape[0]
                    and (annotations == 0 or (int(a["category_codes"].max()) < len(self._category_ids)
                                              and int(a["category_codes"].min()) >= 0)))
        except (IndexError, ValueError):
            return False

    def save(self, folder: Path) -> None:
        """Write the arrays and meta.json into `folder` atomically (a temp folder renamed into place, readable as
        the umask allows); a table already there (another process of the same run wrote the same key) is kept."""
        folder.parent.mkdir(parents=True, exist_ok=True)
        temp = Path(tempfile.mkdtemp(prefix=".tmp-", dir=folder.parent))
        try:
            for name in FIELDS:
                np.save(temp / f"{name}.npy", np.ascontiguousarray(self.arrays[name]), allow_pickle=False)
            (temp / "meta.json").write_text(json.dumps({"version": TABLE_VERSION, **self.meta}))
            umask = os.umask(0)
            os.umask(umask)
            for path in (temp, *temp.iterdir()):  # mkdtemp makes 0700: other users of a shared cache read it too
                path.chmod((0o777 if path.is_dir() else 0o666) & ~umask)
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
        """The table saved in `folder`, memory-mapped read-only; None when absent, partial, damaged or of another
        version."""
        try:
            meta = parse_json((folder / "meta.json").read_bytes())
            if not isinstance(meta, dict) or meta.pop("version", None) != TABLE_VERSION:
                return None
            arrays = {name: np.load(folder / f"{name}.npy", mmap_mode="r", allow_pickle=False) for name in FIELDS}
            table = cls(arrays, meta, folder)
        except (OSError, ValueError, TypeError):
            return None
        return table if table.consistent() else None


def _reopen(folder: str) -> AnnotationTable:
    table = AnnotationTable.load(Path(folder))
    if table is None:
        raise OSError(f"annotation table {folder} changed or went away while the run used it")
    return table
