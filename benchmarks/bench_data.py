"""Data benchmarks: loader throughput with the training augmentations, and preflight of a 100k-annotation JSON.

1. Loader: images/s of Apex-X's train loader (decode, letterbox + scale jitter + flip + HSV, masks at
   input/4, collate) at --size (640) against a plain torchvision-style baseline that only decodes and resizes
   (PIL decode -> RGB -> resize to size x size -> uint8 tensor, DataLoader with the same workers and batch).
   Data: tiny_coco (real JPEGs, ~7 instances per image) when present, else a shapes dataset at --size.
   Reported per worker count: images/s and images/s per worker (worker 0 = in the main process).
2. Preflight: a generated COCO JSON with --annotations (100k) polygon/RLE annotations over 10k images
   (tiny PNG files, so the header checks run too); seconds for the JSON rules alone and for the whole
   cheap validation (JSON rules + every image header), without decoding pixels.

    # full run (quiet machine):
    .venv/bin/python benchmarks/bench_data.py --size 640 --workers 0,1,2 --epochs 3 --annotations 100000
    # smoke run (seconds):
    .venv/bin/python benchmarks/bench_data.py --size 128 --workers 0 --epochs 1 --annotations 2000 --images 200
    # your own COCO split, with the real-data augmentation on (any config key with --set), loader only:
    .venv/bin/python benchmarks/bench_data.py --size 416 --workers 0 --epochs 1 --preflight off \
        --train-images DIR --train-annotations JSON --set data.mosaic=1.0 --set data.affine_scale=0.5
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image
from torch.utils.data import DataLoader, Dataset

from apex_x.adapters.config_yaml import load_config
from apex_x.adapters.datasets.coco_checks import SplitPaths, read_split
from apex_x.adapters.datasets.coco_source import CocoDatasetSource
from apex_x.adapters.datasets.findings import FindingLog
from apex_x.adapters.datasets.shapes_writer import write_shapes_dataset

TINY_COCO = Path(__file__).resolve().parents[1].parent / "shared" / "datasets" / "tiny_coco"


class _DecodeResize(Dataset[torch.Tensor]):
    """The baseline: what a plain torchvision pipeline does per image (decode, resize, to tensor)."""

    def __init__(self, files: list[Path], size: int) -> None:
        self.files, self.size = files, size

    def __len__(self) -> int:
        return len(self.files)

    def __getitem__(self, index: int) -> torch.Tensor:
        with Image.open(self.files[index]) as image:
            resized = image.convert("RGB").resize((self.size, self.size), Image.Resampling.BILINEAR)
        return torch.from_numpy(np.array(resized)).permute(2, 0, 1).contiguous()


def _data(size: int, workdir: Path, coco: tuple[str, str] | None = None) -> tuple[list[str], list[Path], str]:
    if coco is not None:
        images, annotations = coco
        files = sorted(p for p in Path(images).iterdir() if p.suffix.lower() in (".jpg", ".jpeg", ".png"))
        overrides = [f"data.coco_train_images={images}", f"data.coco_train_annotations={annotations}"]
        return overrides, files, f"{images} ({len(files)} images)"
    if TINY_COCO.is_dir():
        root = TINY_COCO
        overrides = [
            f"data.coco_train_images={root}/train2017",
            f"data.coco_train_annotations={root}/annotations/instances_train2017.json",
        ]
        return overrides, sorted((root / "train2017").glob("*.jpg")), "tiny_coco (50 real COCO JPEGs)"
    paths = write_shapes_dataset(workdir / "shapes", train=64, val=0, size=size, seed=0)
    return paths.config_overrides(), sorted(paths.train_images.glob("*.png")), f"shapes (64 PNGs at {size}px)"


def bench_loader(
    size: int, workers: list[int], epochs: int, batch_size: int, workdir: Path,
    coco: tuple[str, str] | None = None, extra: tuple[str, ...] = (),
) -> dict[str, Any]:
    overrides, files, label = _data(size, workdir, coco)
    overrides = [*overrides, *extra]
    rows = []
    for count in workers:
        settings = load_config(
            None,
            [
                *overrides,
                f"model.input_height={size}",
                f"model.input_width={size}",
                f"data.num_workers={count}",
            ],
        )
        loader = CocoDatasetSource(settings).train_loader(batch_size, seed=0)
        list(loader.iter_epoch(0))  # warm-up: workers started, files in the page cache
        started, seen = time.perf_counter(), 0
        for epoch in range(1, epochs + 1):
            seen += sum(batch.batch_size for batch in loader.iter_epoch(epoch))
        ours = seen / (time.perf_counter() - started)

        baseline = DataLoader(
            _DecodeResize(files, size),
            batch_size=batch_size,
            shuffle=True,
            num_workers=count,
            persistent_workers=count > 0,
            drop_last=True,
        )
        list(baseline)
        started, seen = time.perf_counter(), 0
        for _ in range(epochs):
            seen += sum(int(batch.shape[0]) for batch in baseline)
        base = seen / (time.perf_counter() - started)
        per = max(count, 1)
        rows.append(
            {
                "workers": count,
                "apex_images_per_s": round(ours, 1),
                "apex_images_per_s_per_worker": round(ours / per, 1),
                "baseline_images_per_s": round(base, 1),
                "baseline_images_per_s_per_worker": round(base / per, 1),
            }
        )
        print(
            f"workers={count}: apex-x {ours:7.1f} img/s ({ours / per:6.1f}/worker)   "
            f"decode+resize baseline {base:7.1f} img/s ({base / per:6.1f}/worker)"
        )
    return {"data": label, "size": size, "batch_size": batch_size, "epochs": epochs, "overrides": list(extra),
            "rows": rows}


def _generated_coco(root: Path, images: int, annotations: int) -> Path:
    """A COCO JSON with `annotations` instances (polygons, ~1% crowd RLE) over `images` tiny PNGs."""
    rng = np.random.default_rng(0)
    folder = root / "images"
    folder.mkdir(parents=True)
    Image.new("RGB", (64, 48), (90, 120, 150)).save(folder / "template.png")
    content = (folder / "template.png").read_bytes()
    entries = []
    for index in range(images):
        (folder / f"{index:06d}.png").write_bytes(content)
        entries.append({"id": index + 1, "file_name": f"{index:06d}.png", "width": 64, "height": 48})
    anns = []
    for index in range(annotations):
        x, y = (float(v) for v in rng.uniform(2, 30, 2))
        w, h = (float(v) for v in rng.uniform(4, 16, 2))
        if index % 100 == 99:
            segmentation: Any = {
                "size": [48, 64],
                "counts": [int(y) + 48 * int(x), 30, 64 * 48 - 30 - int(y) - 48 * int(x)],
            }
            crowd = 1
        else:
            angles = np.linspace(0, 2 * np.pi, 12, endpoint=False)
            points = np.stack([x + w / 2 + w / 2 * np.cos(angles), y + h / 2 + h / 2 * np.sin(angles)], 1)
            segmentation, crowd = [np.round(points, 2).reshape(-1).tolist()], 0
        anns.append(
            {
                "id": index + 1,
                "image_id": index % images + 1,
                "category_id": index % 80 + 1,
                "segmentation": segmentation,
                "bbox": [round(x, 2), round(y, 2), round(w, 2), round(h, 2)],
                "area": round(w * h, 2),
                "iscrowd": crowd,
            }
        )
    categories = [{"id": i + 1, "name": f"class_{i}"} for i in range(80)]
    path = root / "instances.json"
    path.write_text(json.dumps({"images": entries, "annotations": anns, "categories": categories}))
    return path


def bench_preflight(images: int, annotations: int, workdir: Path) -> dict[str, Any]:
    path = _generated_coco(workdir / "coco100k", images, annotations)
    split = SplitPaths(
        "train", "data.coco_train_images", "data.coco_train_annotations", path.parent / "images", path
    )
    started = time.perf_counter()
    log = FindingLog()
    read_split(split, log)
    json_seconds = time.perf_counter() - started
    settings = load_config(
        None, [f"data.coco_train_images={split.images_dir}", f"data.coco_train_annotations={path}"]
    )
    started = time.perf_counter()
    report = CocoDatasetSource(settings).validate(full_decode=False)
    cheap_seconds = time.perf_counter() - started
    errors = [f.describe() for f in report.errors][:3]
    print(
        f"preflight of {annotations} annotations / {images} images ({path.stat().st_size / 2**20:.1f} MiB JSON): "
        f"JSON rules {json_seconds:.2f} s, with every image header {cheap_seconds:.2f} s, errors: {errors or 'none'}"
    )
    return {
        "annotations": annotations,
        "images": images,
        "json_mib": round(path.stat().st_size / 2**20, 1),
        "json_rules_seconds": round(json_seconds, 3),
        "cheap_validation_seconds": round(cheap_seconds, 3),
        "ok": report.ok,
    }


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--size", type=int, default=640)
    parser.add_argument("--workers", default="0,1,2", help="Comma-separated worker counts.")
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--annotations", type=int, default=100_000)
    parser.add_argument("--images", type=int, default=10_000)
    parser.add_argument("--output-json", default=None)
    parser.add_argument("--train-images", default=None, help="A COCO images folder to load (with --train-annotations).")
    parser.add_argument("--train-annotations", default=None, help="Its COCO instances JSON.")
    parser.add_argument("--set", dest="overrides", action="append", default=[], help="A config key=value (repeat).")
    parser.add_argument("--preflight", choices=("on", "off"), default="on", help="Also time the 100k preflight.")
    args = parser.parse_args()
    coco = (args.train_images, args.train_annotations) if args.train_images else None
    torch.set_num_threads(1)
    with tempfile.TemporaryDirectory() as folder:
        workdir = Path(folder)
        result = {
            "machine": {"platform": platform.platform(), "cpus": os.cpu_count(), "torch": torch.__version__},
            "loader": bench_loader(
                args.size, [int(w) for w in args.workers.split(",")], args.epochs, args.batch_size, workdir,
                coco, tuple(args.overrides),
            ),
        }
        if args.preflight == "on":
            result["preflight"] = bench_preflight(args.images, args.annotations, workdir)
    if args.output_json:
        Path(args.output_json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.output_json).write_text(json.dumps(result, indent=2))
        print(f"wrote {args.output_json}")


if __name__ == "__main__":
    main()
