"""Small COCO datasets written by the tests (no committed binaries): images, JSON, hand-made PNG headers."""

from __future__ import annotations

import copy
import hashlib
import json
import struct
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

WIDTH, HEIGHT = 40, 30


def png_bytes(
    width: int, height: int, *, bit_depth: int, color_type: int, pixels: bytes | None = None
) -> bytes:
    """A PNG written by hand (16-bit RGB, or a header that lies about its size). `pixels`: raw rows, no filter."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return (
            struct.pack(">I", len(data))
            + kind
            + data
            + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)
        )

    header = struct.pack(">IIBBBBB", width, height, bit_depth, color_type, 0, 0, 0)
    if pixels is None:
        body = zlib.compress(b"\x00" * 64)  # far too little data for the size: only the header is usable
    else:
        row = len(pixels) // height
        body = zlib.compress(b"".join(b"\x00" + pixels[r * row : (r + 1) * row] for r in range(height)))
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", body) + chunk(b"IEND", b"")


def rgb_image(width: int = WIDTH, height: int = HEIGHT, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return rng.integers(0, 256, (height, width, 3), dtype=np.uint8)


def base_annotations() -> dict[str, Any]:
    """3 images (the third has no annotations), 2 categories, polygons and one uncompressed crowd RLE."""
    crowd_counts = [WIDTH * HEIGHT - 50, 50]  # column-major: the last 50 pixels (bottom-right columns)
    return {
        "info": {"description": "test dataset"},
        "images": [
            {"id": 1, "file_name": "a.png", "width": WIDTH, "height": HEIGHT},
            {"id": 2, "file_name": "b.png", "width": WIDTH, "height": HEIGHT},
            {"id": 3, "file_name": "c.png", "width": WIDTH, "height": HEIGHT},
        ],
        "annotations": [
            {
                "id": 10,
                "image_id": 1,
                "category_id": 1,
                "segmentation": [[5, 5, 20, 5, 20, 20, 5, 20]],
                "bbox": [5, 5, 15, 15],
                "area": 225,
                "iscrowd": 0,
            },
            {
                "id": 11,
                "image_id": 2,
                "category_id": 2,
                "segmentation": [[10, 2, 30, 2, 20, 25]],
                "bbox": [10, 2, 20, 23],
                "area": 230,
                "iscrowd": 0,
            },
            {
                "id": 12,
                "image_id": 2,
                "category_id": 1,
                "segmentation": {"size": [HEIGHT, WIDTH], "counts": crowd_counts},
                "bbox": [38, 0, 2, 30],
                "area": 50,
                "iscrowd": 1,
            },
        ],
        "categories": [
            {"id": 1, "name": "circle", "supercategory": "shape"},
            {"id": 2, "name": "square", "supercategory": "shape"},
        ],
    }


@dataclass
class SmallDataset:
    """A dataset folder: images/, instances.json, and a config pointing at it (train = val unless changed)."""

    root: Path
    images: Path
    annotations: Path
    data: dict[str, Any]

    def write_json(
        self, payload: Any | None = None, *, path: Path | None = None, raw: bytes | None = None
    ) -> None:
        target = path or self.annotations
        if raw is not None:
            target.write_bytes(raw)
        else:
            target.write_text(json.dumps(self.data if payload is None else payload), encoding="utf-8")

    def config(self, *, val_annotations: Path | None = None, with_val: bool = False) -> Path:
        lines = [
            "data:",
            f"  coco_train_images: {self.images}",
            f"  coco_train_annotations: {self.annotations}",
        ]
        if with_val or val_annotations is not None:
            lines += [
                f"  coco_val_images: {self.images}",
                f"  coco_val_annotations: {val_annotations or self.annotations}",
            ]
        path = self.root / "config.yaml"
        path.write_text("\n".join(lines) + "\n", encoding="utf-8")
        return path


def small_dataset(root: Path) -> SmallDataset:
    images = root / "images"
    images.mkdir(parents=True)
    for index, name in enumerate(("a.png", "b.png", "c.png")):
        Image.fromarray(rgb_image(seed=index)).save(images / name)
    dataset = SmallDataset(root, images, root / "instances.json", copy.deepcopy(base_annotations()))
    dataset.write_json()
    return dataset


def snapshot(root: Path) -> dict[str, tuple[int, str]]:
    """Every file under root -> (mtime_ns, sha256): proof that nothing was modified."""
    return {
        str(path): (path.stat().st_mtime_ns, hashlib.sha256(path.read_bytes()).hexdigest())
        for path in sorted(root.rglob("*"))
        if path.is_file()
    }
