"""A dense, small-object COCO set built from a real one: each picture is a GRID x GRID mosaic of photos of the
source split (drawn with replacement, each shrunk to one cell), with their polygons moved and scaled along.
From strawberry_coco (about 1.2 masks per 416 px photo), `--grid 6` gives about 40 masks per picture, most
under 32 px: the dense case of issue 29's item 5, for `learn_real.py --data OUT`.

    .venv/bin/python benchmarks/make_dense_tiles.py --output artifacts/strawberry_dense --grid 6

Writes OUT/train/ and OUT/valid/ (Roboflow's layout: pictures + _annotations.coco.json), so that
`learn_real.py --data OUT` reads it like the source.
"""

from __future__ import annotations

import argparse
import json
import random
from pathlib import Path
from typing import Any

from PIL import Image

SOURCE = Path(__file__).resolve().parents[2] / "shared" / "datasets" / "strawberry_coco"


def _mosaic(photos: list[dict[str, Any]], by_image: dict[int, list[dict[str, Any]]], folder: Path, grid: int,
            cell: int, image_id: int, first_annotation: int) -> tuple[Image.Image, list[dict[str, Any]]]:
    canvas = Image.new("RGB", (grid * cell, grid * cell), (114, 114, 114))
    annotations: list[dict[str, Any]] = []
    for index, photo in enumerate(photos):
        left, top = (index % grid) * cell, (index // grid) * cell
        scale_x, scale_y = cell / photo["width"], cell / photo["height"]
        with Image.open(folder / photo["file_name"]) as source:
            canvas.paste(source.convert("RGB").resize((cell, cell), Image.Resampling.BILINEAR), (left, top))
        for annotation in by_image.get(photo["id"], []):
            polygons = annotation.get("segmentation")
            if not isinstance(polygons, list) or not polygons:
                continue  # RLE masks are not moved here
            moved = [[(value * scale_x + left) if k % 2 == 0 else (value * scale_y + top)
                      for k, value in enumerate(polygon)] for polygon in polygons]
            x, y, w, h = annotation["bbox"]
            annotations.append({
                "id": first_annotation + len(annotations), "image_id": image_id,
                "category_id": annotation["category_id"], "iscrowd": 0, "segmentation": moved,
                "bbox": [x * scale_x + left, y * scale_y + top, w * scale_x, h * scale_y],
                "area": float(annotation.get("area", w * h)) * scale_x * scale_y,
            })
    return canvas, annotations


def build_split(source: Path, output: Path, *, grid: int, cell: int, count: int, seed: int) -> dict[str, int]:
    """`count` mosaics of `source` (a Roboflow split folder) into `output`; returns images and annotations."""
    data = json.loads((source / "_annotations.coco.json").read_text())
    by_image: dict[int, list[dict[str, Any]]] = {}
    for annotation in data["annotations"]:
        by_image.setdefault(annotation["image_id"], []).append(annotation)
    annotated = [image for image in data["images"] if by_image.get(image["id"])]
    rng = random.Random(seed)
    output.mkdir(parents=True, exist_ok=True)
    images: list[dict[str, Any]] = []
    annotations: list[dict[str, Any]] = []
    for image_id in range(1, count + 1):
        photos = [rng.choice(annotated) for _ in range(grid * grid)]
        canvas, moved = _mosaic(photos, by_image, source, grid, cell, image_id, len(annotations) + 1)
        name = f"dense_{image_id:05d}.jpg"
        canvas.save(output / name, quality=92)
        images.append({"id": image_id, "file_name": name, "width": canvas.width, "height": canvas.height})
        annotations += moved
    coco = {"images": images, "annotations": annotations, "categories": data["categories"]}
    (output / "_annotations.coco.json").write_text(json.dumps(coco))
    return {"images": len(images), "annotations": len(annotations)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--source", default=str(SOURCE), help="A Roboflow-layout COCO folder (train/, valid/).")
    parser.add_argument("--output", required=True)
    parser.add_argument("--grid", type=int, default=6, help="Photos per side of one picture.")
    parser.add_argument("--cell", type=int, default=69, help="Pixels per photo in the picture.")
    parser.add_argument("--train", type=int, default=240, help="Train pictures.")
    parser.add_argument("--val", type=int, default=40, help="Val pictures.")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    source, output = Path(args.source), Path(args.output)
    for split in ("train", "valid"):
        if not (source / split / "_annotations.coco.json").is_file():
            raise SystemExit(f"--source {source}: no {split}/_annotations.coco.json there; give --source a "
                             "Roboflow-layout COCO folder (the default is ../shared/datasets/strawberry_coco beside "
                             "the repository)")
    for split, count, seed in (("train", args.train, args.seed), ("valid", args.val, args.seed + 1)):
        counts = build_split(source / split, output / split, grid=args.grid, cell=args.cell, count=count, seed=seed)
        print(f"{split}: {counts['images']} pictures, {counts['annotations']} masks "
              f"({counts['annotations'] / max(counts['images'], 1):.1f} per picture)")


if __name__ == "__main__":
    main()
