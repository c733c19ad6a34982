"""Ultralytics YOLO segmentation data: a `data.yaml` (path, train, val, names) and one `labels/*.txt` per image.

Each label line is `class x1 y1 x2 y2 ... xn yn`: a class index and a polygon of n >= 3 points in coordinates
normalised to [0, 1] by the image width and height (ultralytics/data/utils.py: img2label_paths puts the labels
of `.../images/...` in `.../labels/...`, same stem, `.txt`). A missing or empty label file is an image with no
objects (a negative). Every problem is a finding naming the file and the line.

The split becomes a COCO instances dict (polygons in pixels, category id = class index), so the COCO checks,
loader and evaluation run on it unchanged.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from apex_x.adapters.datasets.findings import FindingLog

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp")
COORD_TOLERANCE = 1e-3  # labelling tools write 1.0001 at the border; beyond this a coordinate is an error
EXIF_SWAPS_SIDES = (5, 6, 7, 8)  # EXIF orientations that rotate by 90 degrees (the loader applies them)


@dataclass(frozen=True)
class YoloData:
    """A parsed data.yaml."""

    yaml_path: Path
    splits: dict[str, Path]  # "train" / "val" -> images folder
    names: list[str]  # class index -> name


def read_data_yaml(path: Path, log: FindingLog) -> YoloData | None:
    """The data.yaml's image folders (resolved against its `path:` root, itself relative to the yaml's folder)
    and class names (a list or an {index: name} mapping); None with findings when it cannot be used."""
    import yaml

    file = str(path)
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError) as error:
        log.error("file.unreadable", f"data.yolo_data: cannot read {file}: {error}", file=file)
        return None
    except yaml.YAMLError as error:
        log.error("yaml.invalid", f"data.yolo_data: {file} is not valid YAML: {error}", file=file)
        return None
    if not isinstance(data, Mapping):
        log.error("yaml.invalid", f"{file}: the top level must be a mapping with train, val and names", file=file)
        return None
    root = path.parent / str(data.get("path") or "")
    splits: dict[str, Path] = {}
    for split in ("train", "val"):
        value = data.get(split)
        if value is None:
            if split == "train":
                log.error("yaml.missing_key", f"{file}: 'train' (the train images folder) is not set", file=file)
            continue
        if not isinstance(value, str):
            log.error("yaml.invalid", f"{file}: '{split}' must be one images folder (a string), got "
                      f"{type(value).__name__}; list files of several folders are not supported", file=file)
            continue
        folder = root / value
        if not folder.is_dir():
            log.error("file.not_found", f"{file}: '{split}' images folder not found: {folder}", file=str(folder))
            continue
        splits[split] = folder
    names = _names(data.get("names"), data.get("nc"), file, log)
    return None if names is None or "train" not in splits else YoloData(path, splits, names)


def _names(value: Any, count: Any, file: str, log: FindingLog) -> list[str] | None:
    if isinstance(value, Mapping) and all(isinstance(key, int) for key in value):
        indices = sorted(value)
        if indices != list(range(len(indices))):
            log.error("yaml.invalid", f"{file}: 'names' indices must be 0..{len(indices) - 1}, got {indices}", file=file)
            return None
        names = [str(value[index]) for index in indices]
    elif isinstance(value, list) and value:
        names = [str(name) for name in value]
    else:
        log.error("yaml.missing_key", f"{file}: 'names' must list the class names (a list or {{index: name}})",
                  file=file)
        return None
    if count is not None and count != len(names):
        log.error("yaml.invalid", f"{file}: nc is {count} but 'names' has {len(names)} classes", file=file)
        return None
    return names


def labels_folder(images: Path) -> Path:
    """Ultralytics' rule: the last `images` component of the path becomes `labels`."""
    parts = list(images.parts)
    for index in range(len(parts) - 1, -1, -1):
        if parts[index] == "images":
            parts[index] = "labels"
            return Path(*parts)
    return images.parent / "labels"


def image_size(path: Path) -> tuple[int, int] | None:
    """(width, height) as the loader will see the image (EXIF rotation applied), read from the header only."""
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as image:
            width, height = image.size
            orientation = image.getexif().get(0x0112, 1)
    except (OSError, UnidentifiedImageError, ValueError):
        return None
    return (height, width) if orientation in EXIF_SWAPS_SIDES else (width, height)


def split_as_coco(images: Path, names: list[str], log: FindingLog) -> dict[str, Any]:
    """One split as a COCO instances dict: images (file_name relative to `images`), polygon annotations in pixels,
    categories id = class index. Lines that break a rule are left out, each with a finding naming file:line."""
    labels = labels_folder(images)
    coco: dict[str, Any] = {"images": [], "annotations": [],
                            "categories": [{"id": index, "name": name} for index, name in enumerate(names)]}
    files = sorted(item for item in images.rglob("*") if item.is_file() and item.suffix.lower() in IMAGE_SUFFIXES)
    if not files:
        log.error("images.none", f"no image files ({', '.join(IMAGE_SUFFIXES)}) in {images}", file=str(images))
    for image_id, path in enumerate(files, start=1):
        relative = path.relative_to(images)
        size = image_size(path)
        if size is None:
            log.error("image.unreadable", f"{path}: not an image this machine can decode", file=str(path),
                      image_id=image_id)
            continue
        width, height = size
        coco["images"].append({"id": image_id, "file_name": relative.as_posix(), "width": width, "height": height})
        label_file = (labels / relative).with_suffix(".txt")
        if label_file.is_file():
            _read_label_file(label_file, image_id, width, height, len(names), coco["annotations"], log)
    return coco


def _read_label_file(path: Path, image_id: int, width: int, height: int, num_classes: int,
                     annotations: list[dict[str, Any]], log: FindingLog) -> None:
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as error:
        log.error("label.unreadable", f"{path}: cannot read the label file: {error}", file=str(path), image_id=image_id)
        return
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        polygon = _polygon(line, f"{path}:{number}", num_classes, log, image_id)
        if polygon is None:
            continue
        label, points = polygon
        pixels = [value * (width if index % 2 == 0 else height) for index, value in enumerate(points)]
        xs, ys = pixels[0::2], pixels[1::2]
        x0, y0 = max(0.0, min(xs)), max(0.0, min(ys))
        x1, y1 = min(float(width), max(xs)), min(float(height), max(ys))
        area = 0.5 * abs(sum(xs[i] * ys[i - 1] - xs[i - 1] * ys[i] for i in range(len(xs))))
        annotations.append({"id": len(annotations) + 1, "image_id": image_id, "category_id": label,
                            "segmentation": [pixels], "bbox": [x0, y0, x1 - x0, y1 - y0], "area": area,
                            "iscrowd": 0})


def _polygon(line: str, where: str, num_classes: int, log: FindingLog,
             image_id: int) -> tuple[int, list[float]] | None:
    """(class index, [x1, y1, ...] normalised) of one label line, or None with a finding naming `where`."""
    tokens = line.split()
    try:
        label = int(tokens[0])
        values = [float(token) for token in tokens[1:]]
    except ValueError:
        log.error("label.not_a_number", f"{where}: expected 'class x1 y1 x2 y2 ...' numbers, got {line.strip()[:80]!r}",
                  file=where.rsplit(":", 1)[0], image_id=image_id)
        return None
    file = where.rsplit(":", 1)[0]
    if not 0 <= label < num_classes:
        log.error("label.class_out_of_range", f"{where}: class {label} is not in 0..{num_classes - 1} (data.yaml "
                  "names)", file=file, image_id=image_id)
        return None
    if len(values) == 4:
        log.error("label.box_not_polygon", f"{where}: 4 coordinates is a detection box (cx cy w h), not a polygon; "
                  "instance segmentation needs polygons 'class x1 y1 x2 y2 x3 y3 ...'", file=file, image_id=image_id)
        return None
    if len(values) % 2 or len(values) < 6:
        log.error("label.too_few_points", f"{where}: a polygon needs an even count of at least 6 coordinates (3 "
                  f"points), got {len(values)}", file=file, image_id=image_id)
        return None
    bad = [value for value in values if not math.isfinite(value) or not -COORD_TOLERANCE <= value <= 1 + COORD_TOLERANCE]
    if bad:
        log.error("label.outside_image", f"{where}: coordinates must be normalised to [0, 1], got {bad[0]}",
                  file=file, image_id=image_id)
        return None
    return label, [min(1.0, max(0.0, value)) for value in values]
