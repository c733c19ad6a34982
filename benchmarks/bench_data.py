"""Data benchmarks: loader throughput with the training augmentations, the image cache, and preflight of a
100k-annotation JSON.

1. Loader: images/s of Apex-X's train loader (decode, letterbox + scale jitter + flip + HSV, masks at input/4,
   collate) against a plain torchvision-style baseline that only decodes and resizes (PIL decode -> RGB -> resize
   to size x size -> uint8 tensor, DataLoader with the same workers and batch), per worker count (worker 0 = in
   the main process); goal >= 0.9x per worker. With --cache, each data.cache mode's loader from the second epoch
   against the uncached one (goal >= 3x). Loaders are timed in interleaved rounds (medians), so a busy
   machine's drift hits them alike. Data (--dataset): tiny_coco (50 real COCO JPEGs, ~640x480), strawberry
   (real 416x416 JPEGs), large1024 (tiny_coco's photos stretched to 1024x1024 JPEGs, made in a temp folder),
   shapes (generated PNGs).
2. Preflight: a generated COCO JSON with --annotations (100k) polygon/RLE annotations over 10k images
   (tiny PNG files, so the header checks run too); seconds for the JSON rules alone and for the whole
   cheap validation (JSON rules + every image header), without decoding pixels.

    # the README's loader table (tiny_coco at 640; 1024 px photos and strawberry at 320; workers 0 and 2; caches):
    .venv/bin/python benchmarks/bench_data.py --suite --preflight off --output-json benchmarks/results/data_loader.json
    # one case:
    .venv/bin/python benchmarks/bench_data.py --dataset large1024 --size 320 --workers 0,2 --cache none,ram,disk \
        --preflight off
    # preflight of 100k annotations only ... and a smoke run (seconds):
    .venv/bin/python benchmarks/bench_data.py --size 640 --workers 0 --rounds 1 --annotations 100000
    .venv/bin/python benchmarks/bench_data.py --size 128 --workers 0 --rounds 1 --annotations 2000 --images 200
    # your own COCO split, with the real-data augmentation on (any config key with --set), loader only:
    .venv/bin/python benchmarks/bench_data.py --size 416 --workers 0 --preflight off \
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

DATASETS = Path(__file__).resolve().parents[1].parent / "shared" / "datasets"
TINY_COCO = DATASETS / "tiny_coco"
STRAWBERRY = DATASETS / "strawberry_coco"
GOAL_VS_DECODE = 0.9  # loader with augmentations / decode+resize, images/s per worker
GOAL_CACHE = 3.0  # cached loader from the second epoch / uncached loader


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


def _subset(images: Path, annotations: Path, limit: int | None, workdir: Path) -> tuple[Path, list[Path]]:
    """The split's JSON cut to its first `limit` images (written to workdir), and their files."""
    data = json.loads(annotations.read_text())
    if limit is not None and len(data["images"]) > limit:
        data["images"] = data["images"][:limit]
        kept = {image["id"] for image in data["images"]}
        data["annotations"] = [a for a in data["annotations"] if a["image_id"] in kept]
        annotations = workdir / f"{images.parent.name}_{images.name}_{limit}.json"
        annotations.write_text(json.dumps(data))
    return annotations, [images / image["file_name"] for image in data["images"]]


def _large_photos(workdir: Path, side: int = 1024) -> tuple[Path, Path]:
    """tiny_coco's 50 real train photos stretched to side x side (bicubic, JPEG quality 90), polygons scaled
    (crowd RLEs left out): real large JPEGs like a 1024 px Roboflow export."""
    root = workdir / f"large{side}"
    if (root / "instances.json").is_file():
        return root / "images", root / "instances.json"
    (root / "images").mkdir(parents=True)
    data = json.loads((TINY_COCO / "annotations" / "instances_train2017.json").read_text())
    factors = {}
    for image in data["images"]:
        with Image.open(TINY_COCO / "train2017" / image["file_name"]) as picture:
            picture.convert("RGB").resize((side, side), Image.Resampling.BICUBIC).save(
                root / "images" / image["file_name"], quality=90)
        factors[image["id"]] = (side / image["width"], side / image["height"])
        image["width"] = image["height"] = side
    kept = []
    for ann in data["annotations"]:
        if not isinstance(ann["segmentation"], list):
            continue
        fx, fy = factors[ann["image_id"]]
        ann["segmentation"] = [[v * (fx if k % 2 == 0 else fy) for k, v in enumerate(polygon)]
                               for polygon in ann["segmentation"]]
        x, y, w, h = ann["bbox"]
        ann["bbox"], ann["area"] = [x * fx, y * fy, w * fx, h * fy], ann["area"] * fx * fy
        kept.append(ann)
    data["annotations"] = kept
    (root / "instances.json").write_text(json.dumps(data))
    return root / "images", root / "instances.json"


def _data(size: int, workdir: Path, coco: tuple[str, str] | None = None, dataset: str = "auto",
          limit: int | None = None) -> tuple[list[str], list[Path], str]:
    """Config overrides, image files and a label of the benchmark data."""
    if coco is not None:
        images, annotations = Path(coco[0]), Path(coco[1])
        label = str(images)
    elif dataset == "strawberry":
        images, annotations = STRAWBERRY / "train", STRAWBERRY / "train" / "_annotations.coco.json"
        label = "strawberry_coco train (real 416x416 JPEGs)"
    elif dataset == "large1024":
        images, annotations = _large_photos(workdir)
        label = "tiny_coco train photos stretched to 1024x1024 JPEGs"
    elif dataset in ("tiny_coco", "auto") and TINY_COCO.is_dir():
        images, annotations = TINY_COCO / "train2017", TINY_COCO / "annotations" / "instances_train2017.json"
        label = "tiny_coco train (50 real COCO JPEGs, ~640x480)"
    else:
        paths = write_shapes_dataset(workdir / "shapes", train=64, val=0, size=size, seed=0)
        return paths.config_overrides(), sorted(paths.train_images.glob("*.png")), f"shapes (64 PNGs at {size}px)"
    annotations, files = _subset(images, annotations, limit, workdir)
    overrides = [f"data.coco_train_images={images}", f"data.coco_train_annotations={annotations}"]
    return overrides, files, f"{label} ({len(files)} images)"


def _apex_loader(overrides: list[str], size: int, workers: int, batch_size: int, cache: str, workdir: Path
                 ) -> tuple[Any, float]:
    """The train loader (and seconds to build it: a ram cache is filled then) with data.cache=cache."""
    cache_keys = [f"data.cache={cache}", f"data.cache_dir={workdir / 'cache' / str(time.time_ns())}"]
    settings = load_config(None, [*overrides, f"model.input_height={size}", f"model.input_width={size}",
                                  f"data.num_workers={workers}", *cache_keys])
    started = time.perf_counter()
    loader = CocoDatasetSource(settings).train_loader(batch_size, seed=0)
    return loader, time.perf_counter() - started


def _timed_epoch(run: Any) -> float:
    started = time.perf_counter()
    seen = run()
    return seen / (time.perf_counter() - started)


def bench_loader(
    size: int, workers: list[int], epochs: int, batch_size: int, workdir: Path,
    coco: tuple[str, str] | None = None, extra: tuple[str, ...] = (), dataset: str = "auto",
    caches: tuple[str, ...] = ("none",), limit: int | None = None, rounds: int = 5,
) -> dict[str, Any]:
    """Per worker count: the uncached loader (with the training augmentations) against decode+resize, and each
    cache mode's loader from the second epoch against the uncached one.

    Every loader is built and run once (epoch 0: warm-up, workers started, page cache, the cache filled), then
    `rounds` rounds time `epochs` epochs of each loader in turn (interleaved, so a busy machine's drift hits
    them alike); the figures are the medians of the rounds."""
    overrides, files, label = _data(size, workdir, coco, dataset, limit)
    overrides = [*overrides, *extra]
    rows = []
    for count in workers:
        per = max(count, 1)
        runs: dict[str, Any] = {}
        first: dict[str, float] = {}
        built: dict[str, float] = {}
        for cache in dict.fromkeys(("none", *caches)):
            loader, built[cache] = _apex_loader(overrides, size, count, batch_size, cache, workdir)
            epoch_counter = iter(range(1, 10**6))
            runs[cache] = (lambda loader=loader, counter=epoch_counter: sum(
                batch.batch_size for _ in range(epochs) for batch in loader.iter_epoch(next(counter))))
            first[cache] = _timed_epoch(lambda loader=loader: sum(b.batch_size for b in loader.iter_epoch(0)))
        baseline = DataLoader(_DecodeResize(files, size), batch_size=batch_size, shuffle=True, num_workers=count,
                              persistent_workers=count > 0, drop_last=True)
        list(baseline)
        runs["baseline"] = lambda baseline=baseline: sum(
            int(batch.shape[0]) for _ in range(epochs) for batch in baseline)
        rates: dict[str, list[float]] = {name: [] for name in runs}
        for _ in range(rounds):
            for name, run in runs.items():
                rates[name].append(_timed_epoch(run))
        median = {name: float(np.median(values)) for name, values in rates.items()}
        ours, base = median["none"], median["baseline"]
        row: dict[str, Any] = {
            "workers": count,
            "apex_images_per_s": round(ours, 1),
            "apex_images_per_s_per_worker": round(ours / per, 1),
            "baseline_images_per_s": round(base, 1),
            "baseline_images_per_s_per_worker": round(base / per, 1),
            "apex_vs_baseline": round(ours / base, 2),
            "rounds": {name: [round(v, 1) for v in values] for name, values in rates.items()},
        }
        text = (f"workers={count}: apex-x {ours:7.1f} img/s ({ours / per:6.1f}/worker)   decode+resize baseline "
                f"{base:7.1f} img/s ({base / per:6.1f}/worker)   ratio {ours / base:.2f} (goal >= {GOAL_VS_DECODE})")
        for cache in caches:
            if cache == "none":
                continue
            rate = median[cache]
            row[f"cache_{cache}"] = {"images_per_s": round(rate, 1), "first_epoch_images_per_s": round(first[cache], 1),
                                     "loader_build_s": round(built[cache], 2)}
            row[f"cache_{cache}_vs_uncached"] = round(rate / ours, 2)
            text += (f"\n    data.cache={cache}: {rate:7.1f} img/s from epoch 2 ({rate / ours:.2f}x uncached, goal >= "
                     f"{GOAL_CACHE}); first epoch {first[cache]:.1f} img/s, loader built in {built[cache]:.1f} s")
        rows.append(row)
        print(text, flush=True)
        del runs
    return {"data": label, "size": size, "batch_size": batch_size, "epochs_per_round": epochs, "rounds": rounds,
            "overrides": list(extra), "rows": rows}


def profile_loader(size: int, batch_size: int, workdir: Path, dataset: str, extra: tuple[str, ...], epochs: int,
                   limit: int | None) -> None:
    """Where the time goes: the uncached loader in this process under cProfile (top 15 by own time)."""
    import cProfile
    import pstats

    overrides, _, label = _data(size, workdir, None, dataset, limit)
    loader, _ = _apex_loader([*overrides, *extra], size, 0, batch_size, "none", workdir)
    list(loader.iter_epoch(0))
    profiler = cProfile.Profile()
    profiler.enable()
    seen = sum(batch.batch_size for epoch in range(1, epochs + 1) for batch in loader.iter_epoch(epoch))
    profiler.disable()
    print(f"-- profile of {seen} images of {label} at {size} px (workers 0)")
    pstats.Stats(profiler).sort_stats("tottime").print_stats(15)


SUITE = (  # (dataset, size, workers, caches, limit): the figures of the README's data-loader table
    ("tiny_coco", 640, [0, 2], ("none", "ram", "disk"), None),
    ("large1024", 320, [0, 2], ("none", "ram"), None),
    ("strawberry", 320, [0, 2], ("none", "ram"), 200),
)


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
    parser.add_argument("--epochs", type=int, default=1, help="Epochs per loader per round.")
    parser.add_argument("--rounds", type=int, default=5, help="Interleaved timing rounds (medians reported).")
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--annotations", type=int, default=100_000)
    parser.add_argument("--images", type=int, default=10_000)
    parser.add_argument("--output-json", default=None)
    parser.add_argument("--train-images", default=None, help="A COCO images folder to load (with --train-annotations).")
    parser.add_argument("--train-annotations", default=None, help="Its COCO instances JSON.")
    parser.add_argument("--set", dest="overrides", action="append", default=[], help="A config key=value (repeat).")
    parser.add_argument("--preflight", choices=("on", "off"), default="on", help="Also time the 100k preflight.")
    parser.add_argument("--dataset", choices=("auto", "tiny_coco", "strawberry", "large1024", "shapes"),
                        default="auto", help="Benchmark data (auto: tiny_coco when present, else shapes).")
    parser.add_argument("--cache", default="none", help="Comma-separated data.cache modes to time (none,ram,disk).")
    parser.add_argument("--limit", type=int, default=None, help="Use only the split's first N images.")
    parser.add_argument("--suite", action="store_true", help="Run the README's loader suite (tiny_coco 640, "
                        "1024 px photos and strawberry at 320; workers 0 and 2; caches) and skip --size etc.")
    parser.add_argument("--profile", action="store_true", help="Profile the uncached loader (workers 0) instead.")
    args = parser.parse_args()
    coco = (args.train_images, args.train_annotations) if args.train_images else None
    torch.set_num_threads(1)
    with tempfile.TemporaryDirectory() as folder:
        workdir = Path(folder)
        if args.profile:
            profile_loader(args.size, args.batch_size, workdir, args.dataset, tuple(args.overrides),
                           max(args.rounds, 1), args.limit)
            return
        result: dict[str, Any] = {
            "machine": {"platform": platform.platform(), "cpus": os.cpu_count(), "torch": torch.__version__,
                        "load_average_before": os.getloadavg()},
        }
        if args.suite:
            result["loader_suite"] = []
            for dataset, size, workers, caches, limit in SUITE:
                print(f"-- {dataset} at {size} px", flush=True)
                result["loader_suite"].append(bench_loader(size, workers, args.epochs, args.batch_size, workdir,
                                                           None, tuple(args.overrides), dataset, caches, limit,
                                                           args.rounds))
        else:
            result["loader"] = bench_loader(
                args.size, [int(w) for w in args.workers.split(",")], args.epochs, args.batch_size, workdir,
                coco, tuple(args.overrides), args.dataset, tuple(args.cache.split(",")), args.limit, args.rounds,
            )
        result["machine"]["load_average_after"] = os.getloadavg()
        if args.preflight == "on":
            result["preflight"] = bench_preflight(args.images, args.annotations, workdir)
    if args.output_json:
        Path(args.output_json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.output_json).write_text(json.dumps(result, indent=2))
        print(f"wrote {args.output_json}")


if __name__ == "__main__":
    main()
