"""`apex-x convert`: a dataset between the COCO and YOLO (Ultralytics segmentation) layouts.

COCO -> YOLO: `OUT/images/<split>/` (copies of the images), `OUT/labels/<split>/*.txt` (one line per polygon,
coordinates normalised to [0, 1]; RLE masks become exact pixel-edge polygons; crowd regions have no YOLO
equivalent and are left out, counted) and `OUT/data.yaml`. YOLO -> COCO: `OUT/annotations/instances_<split>.json`
beside the original image folders (nothing is copied). Both print the data.* keys that use the result.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from apex_x.adapters.atomic_files import atomic_write_text
from apex_x.adapters.datasets.coco_checks import SplitPaths, read_split
from apex_x.adapters.datasets.contours import mask_to_polygons
from apex_x.adapters.datasets.findings import FindingLog
from apex_x.adapters.datasets.json_values import parse_json
from apex_x.adapters.datasets.segmentation import decode_stack, to_rle
from apex_x.adapters.datasets.yolo_labels import read_data_yaml, split_as_coco
from apex_x.domain.errors import ConfigError, DatasetError


def coco_to_yolo(splits: Mapping[str, tuple[str, str]], output: Path) -> dict[str, Any]:
    """splits: name -> (images folder, instances JSON). Returns counts per split and the data.* keys."""
    counts: dict[str, Any] = {}
    names: list[str] | None = None
    inputs = {split: _read_coco_split(split, images, instances) for split, (images, instances) in splits.items()}
    for split, (images, instances) in splits.items():
        data = inputs[split]
        categories = sorted(data.get("categories") or [], key=lambda category: category["id"])
        index = {category["id"]: position for position, category in enumerate(categories)}
        split_names = [str(category["name"]) for category in categories]
        if names is not None and split_names != names:
            raise DatasetError(f"{instances}: its categories {split_names} differ from the train split's {names}")
        names = split_names
        by_image: dict[int, list[dict[str, Any]]] = {}
        for annotation in data.get("annotations") or []:
            by_image.setdefault(annotation["image_id"], []).append(annotation)
        crowd = lines_written = 0
        for image in data.get("images") or []:
            source = Path(images) / image["file_name"]
            target = output / "images" / split / image["file_name"]
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, target)
            lines = []
            for annotation in by_image.get(image["id"], []):
                if annotation.get("iscrowd"):
                    crowd += 1
                    continue
                for polygon in _one_polygon(_polygons(annotation["segmentation"], image["height"], image["width"])):
                    coords = [value / (image["width"] if i % 2 == 0 else image["height"]) for i, value in enumerate(polygon)]
                    lines.append(" ".join([str(index[annotation["category_id"]]), *(f"{c:.8f}" for c in coords)]))
            label = (output / "labels" / split / image["file_name"]).with_suffix(".txt")
            label.parent.mkdir(parents=True, exist_ok=True)
            atomic_write_text(label, "".join(f"{line}\n" for line in lines), what="YOLO label file")
            lines_written += len(lines)
        counts[split] = {"images": len(data.get("images") or []), "label_lines": lines_written,
                         "crowd_left_out": crowd}
    # No `path:` key: Ultralytics resolves a relative `path` against the working directory (or its datasets
    # folder), not the data.yaml; without it both Ultralytics and Apex-X use the data.yaml's own folder.
    yaml_lines = [*(f"{split}: images/{split}" for split in splits), f"names: {json.dumps(names or [])}"]
    atomic_write_text(output / "data.yaml", "\n".join(yaml_lines) + "\n", what="data.yaml")
    return {"splits": counts, "keys": {"data.format": "yolo", "data.yolo_data": str(output / "data.yaml")}}


def _read_coco_split(split: str, images: str, instances: str) -> dict[str, Any]:
    """The instances JSON of a split, checked before anything is written: readable JSON with images and
    categories, an existing images folder holding every listed image, annotations naming known ids."""
    flag = f"--coco-{split}"
    try:
        data = parse_json(Path(instances).read_bytes())
    except (OSError, ValueError) as error:  # JSONDecodeError, UnicodeDecodeError, JsonTooDeep
        raise DatasetError(f"{flag}: cannot read the instances JSON {instances}: {error}") from error
    if not isinstance(data, Mapping) or not isinstance(data.get("images"), list):
        raise DatasetError(f"{flag}: {instances} is not a COCO instances file (no 'images' list)")
    if not Path(images).is_dir():
        raise DatasetError(f"{flag}: the images folder {images} does not exist")
    try:
        missing = [str(image["file_name"]) for image in data["images"] if not (Path(images) / image["file_name"]).is_file()]
        image_ids = {image["id"] for image in data["images"]}
        category_ids = {category["id"] for category in data.get("categories") or []}
        unknown = [annotation.get("id") for annotation in data.get("annotations") or []
                   if annotation["image_id"] not in image_ids or annotation["category_id"] not in category_ids]
    except (KeyError, TypeError) as error:
        raise DatasetError(f"{flag}: {instances} is not a valid COCO instances file (missing {error})") from error
    if missing:
        raise DatasetError(f"{flag}: {len(missing)} image(s) of {instances} are not in {images} "
                           f"(first: {missing[0]})")
    if unknown:
        raise DatasetError(f"{flag}: {len(unknown)} annotation(s) of {instances} name an image or category id "
                           f"it does not list (first annotation id: {unknown[0]})")
    _require_contract(SplitPaths(split, flag, flag, Path(images), Path(instances)))
    return data


def _require_contract(paths: SplitPaths) -> None:
    """The split passes the dataset contract of training (coco_checks.read_split: references, boxes, polygons
    inside the image, RLE, text, limits) before anything is converted: DatasetError with the first errors."""
    log = FindingLog()
    read_split(paths, log)
    errors = [f"[{finding.rule}] {finding.message}" for finding in log.finish() if finding.severity == "error"]
    if errors:
        raise DatasetError(f"{paths.annotations_key}: {paths.annotations_path} breaks the dataset contract "
                           f"({len(errors)} error(s); apex-x dataset-preflight lists them all): "
                           + "; ".join(errors[:3]))


def _one_polygon(polygons: list[list[float]]) -> list[list[float]]:
    """An instance's parts as one YOLO polygon (YOLO has one line per object, as Ultralytics' merge_multi_segment
    joins them): each further part is reached from the first part's first vertex by a zero-width bridge to its
    nearest vertex, walked round and back, so the object stays one instance covering the same area."""
    if len(polygons) <= 1:
        return polygons
    rings = [np.asarray(polygon, dtype=np.float64).reshape(-1, 2) for polygon in polygons]
    anchor = rings[0][0]
    path = [*rings[0], anchor]
    for ring in rings[1:]:
        start = int(np.argmin(((ring - anchor) ** 2).sum(axis=1)))
        walk = np.roll(ring, -start, axis=0)
        path += [*walk, walk[0], anchor]
    return [np.asarray(path).reshape(-1).tolist()]


def _polygons(segmentation: Any, height: int, width: int) -> list[list[float]]:
    """An annotation's polygons (with >= 3 points); RLE masks become pixel-edge polygons."""
    if isinstance(segmentation, list):
        return [list(map(float, polygon)) for polygon in segmentation if len(polygon) >= 6]
    mask = decode_stack([to_rle(segmentation, height, width)], height, width)[:, :, 0]
    polygons, _ = mask_to_polygons(mask)
    return [polygon for polygon in polygons if len(polygon) >= 6]


def yolo_to_coco(yolo_data: Path, output: Path) -> dict[str, Any]:
    """The data.yaml's splits as COCO instances JSON files in OUT/annotations/. Label problems: DatasetError
    listing the first findings (file:line), nothing written."""
    log = FindingLog()
    data = read_data_yaml(yolo_data, log)
    converted = {split: split_as_coco(folder, data.names, log) for split, folder in data.splits.items()} if data else {}
    errors = [finding.message for finding in log.finish() if finding.severity == "error"]
    if errors or data is None:
        raise DatasetError(f"{yolo_data}: cannot convert: " + "; ".join(errors[:5])
                           + (f" (and {len(errors) - 5} more)" if len(errors) > 5 else ""))
    keys: dict[str, str] = {"data.format": "coco"}
    counts: dict[str, Any] = {}
    for split, coco in converted.items():
        path = output / "annotations" / f"instances_{split}.json"
        atomic_write_text(path, json.dumps(coco), what="COCO instances file")
        try:
            _require_contract(SplitPaths(split, "--yolo-data", "--yolo-data", data.splits[split], path))
        except DatasetError:
            path.unlink()
            raise
        keys[f"data.coco_{split}_images"] = str(data.splits[split])
        keys[f"data.coco_{split}_annotations"] = str(path)
        counts[split] = {"images": len(coco["images"]), "annotations": len(coco["annotations"])}
    return {"splits": counts, "keys": keys}


def to_yolo(output: Path, *, coco_splits: Mapping[str, tuple[str, str]] | None = None,
            yolo_data: str | None = None) -> dict[str, Any]:
    """`apex-x convert --to yolo`: from COCO splits (ConfigError naming the flags when they are not given)."""
    if not coco_splits or "train" not in coco_splits or yolo_data is not None:
        raise ConfigError("--to yolo needs --coco-train IMAGES_DIR INSTANCES_JSON (not --yolo-data)", key="--to")
    return coco_to_yolo(coco_splits, output)


def to_coco(output: Path, *, coco_splits: Mapping[str, tuple[str, str]] | None = None,
            yolo_data: str | None = None) -> dict[str, Any]:
    """`apex-x convert --to coco`: from an Ultralytics data.yaml (ConfigError naming the flags otherwise)."""
    if yolo_data is None or coco_splits:
        raise ConfigError("--to coco needs --yolo-data DATA_YAML (not --coco-train/--coco-val)", key="--to")
    return yolo_to_coco(Path(yolo_data).resolve(), output)
