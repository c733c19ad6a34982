"""Writes the built-in shapes dataset to disk in COCO format (byte-identical for the same arguments)."""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import structlog
from PIL import Image

from apex_x.adapters.atomic_files import atomic_write_text
from apex_x.adapters.datasets.shapes import SHAPE_CATEGORIES, render_split, shape_annotation
from apex_x.domain.errors import DatasetError
from apex_x.domain.shapes_layout import LAYOUT_FILES, Layout

logger = structlog.get_logger(__name__)

SHAPES_VERSION = 1


@dataclass(frozen=True)
class ShapesPaths:
    """Where a written shapes dataset lives (absolute paths)."""

    root: Path
    layout: Layout
    train_images: Path
    train_annotations: Path
    val_images: Path | None
    val_annotations: Path | None

    @classmethod
    def for_layout(cls, root: str | Path, layout: Layout, *, with_val: bool = True) -> ShapesPaths:
        base = Path(os.path.abspath(root))
        names = tuple(LAYOUT_FILES[layout].values())  # train images, train annotations, val images, val annotations
        return cls(
            root=base,
            layout=layout,
            train_images=base / names[0],
            train_annotations=base / names[1],
            val_images=base / names[2] if with_val else None,
            val_annotations=base / names[3] if with_val else None,
        )

    def data_config(self) -> dict[str, str | None]:
        """The data.* keys that point a config at this dataset."""
        return {
            "coco_train_images": str(self.train_images),
            "coco_train_annotations": str(self.train_annotations),
            "coco_val_images": str(self.val_images) if self.val_images else None,
            "coco_val_annotations": str(self.val_annotations) if self.val_annotations else None,
        }

    def config_overrides(self) -> list[str]:
        """`--set` overrides (for load_config(..., overrides=...)) that point a config at this dataset."""
        return [f"data.{key}={value}" for key, value in self.data_config().items() if value is not None]


def _write_json_atomic(path: Path, payload: dict[str, Any]) -> None:
    atomic_write_text(path, json.dumps(payload, separators=(",", ":")), what="annotations", error_type=DatasetError)


def _write_split(split: str, count: int, size: int, seed: int, images_dir: Path, annotations: Path) -> int:
    images_dir.mkdir(parents=True, exist_ok=True)
    image_entries: list[dict[str, Any]] = []
    annotation_entries: list[dict[str, Any]] = []
    for index, image, shapes in render_split(split, count, size, size, seed):
        image_id = index + 1
        file_name = f"{image_id:06d}.png"
        Image.fromarray(image).save(images_dir / file_name, format="PNG", compress_level=1)
        image_entries.append({"id": image_id, "file_name": file_name, "width": size, "height": size})
        for shape in shapes:
            annotation_entries.append(
                shape_annotation(
                    shape,
                    annotation_id=len(annotation_entries) + 1,
                    image_id=image_id,
                    category_id=int(SHAPE_CATEGORIES[shape.kind]["id"]),
                )
            )
    payload = {
        "info": {
            "description": f"Apex-X built-in shapes dataset ({split})",
            "version": str(SHAPES_VERSION),
            "seed": seed,
            "image_size": size,
        },
        "licenses": [],
        "images": image_entries,
        "annotations": annotation_entries,
        "categories": [dict(category) for category in SHAPE_CATEGORIES],
    }
    _write_json_atomic(annotations, payload)  # written last: a partly written split has no JSON
    return len(annotation_entries)


def _same_dataset(paths: ShapesPaths, *, train: int, val: int, size: int, seed: int) -> bool:
    """An existing dataset written by the same generator version with the same arguments."""
    expected = {"train": (paths.train_annotations, train), "val": (paths.val_annotations, val)}
    for split, (path, count) in expected.items():
        if path is None:
            continue
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
            info = data["info"]
            same = (
                info.get("version") == str(SHAPES_VERSION)
                and info.get("seed") == seed
                and info.get("image_size") == size
                and len(data["images"]) == count
            )
        except (OSError, ValueError, KeyError, TypeError):
            return False
        images_dir = paths.train_images if split == "train" else paths.val_images
        if (
            not same
            or images_dir is None
            or not all((images_dir / image["file_name"]).is_file() for image in data["images"])
        ):
            return False
    return True


def write_shapes_dataset(
    directory: str | Path,
    *,
    train: int = 512,
    val: int = 64,
    size: int = 256,
    seed: int = 0,
    layout: Layout = "shapes",
    overwrite: bool = False,
) -> ShapesPaths:
    """Render and write the shapes dataset; refuses to replace an existing one unless `overwrite`."""
    if train < 1 or val < 0 or not 32 <= size <= 4096 or seed < 0:
        raise DatasetError(
            f"make-shapes: need --train >= 1, --val >= 0, 32 <= --size <= 4096, --seed >= 0 "
            f"(got train={train}, val={val}, size={size}, seed={seed})"
        )
    paths = ShapesPaths.for_layout(directory, layout, with_val=val > 0)
    existing = [p for p in (paths.train_annotations, paths.val_annotations) if p is not None and p.exists()]
    if existing and not overwrite and _same_dataset(paths, train=train, val=val, size=size, seed=seed):
        logger.info(
            "shapes.exists", root=str(paths.root), layout=layout, note="same arguments; nothing written"
        )
        return paths
    if existing and not overwrite:
        raise DatasetError(
            f"make-shapes: {existing[0]} already exists; choose another folder or pass --overwrite to replace "
            "the shapes dataset there"
        )
    if paths.root.exists() and not paths.root.is_dir():
        raise DatasetError(f"make-shapes: {paths.root} exists and is not a folder")
    try:
        train_count = _write_split("train", train, size, seed, paths.train_images, paths.train_annotations)
        val_count = 0
        if paths.val_images is not None and paths.val_annotations is not None:
            val_count = _write_split("val", val, size, seed, paths.val_images, paths.val_annotations)
    except OSError as error:
        raise DatasetError(f"make-shapes: cannot write to {paths.root}: {error.strerror or error}") from None
    logger.info(
        "shapes.written",
        root=str(paths.root),
        layout=layout,
        train_images=train,
        val_images=val,
        train_instances=train_count,
        val_instances=val_count,
        size=size,
        seed=seed,
    )
    return paths
