"""Start-up at COCO scale: pycocotools' COCO() against `dataset-preflight` and `train` to its first step.

Generates (seeded) a COCO-train2017-sized instances file: 118k images, 858k annotations, polygons of 20-40
points (about 620 MB of JSON at --scale 1), plus a 500-image val split. Images are tiny-on-disk PNG files
(all-black, hard links to one file per image size), so the header checks run on real files.

Each measurement runs in a fresh Python process and reports its wall time and peak RSS (ru_maxrss):
1. the floor: `pycocotools.coco.COCO(file)` on the train file;
2. `apex-x dataset-preflight` of the config (JSON rules + image headers), run twice with a fresh check cache
   (`APEX_X_CACHE_DIR` in the work folder): the first checks everything, the second answers from the cache;
3. `apex-x train` to its first optimizer step (the run is killed when its progress line `first_step_s`
   appears), twice as well.
4. with `--worker-memory`: the total PSS of the train loader's process tree (4 workers, batch 16) sampled
   every 50 batches over one epoch.
Goals (issue 19): preflight <= 1.3x the floor's time and <= 1.2x its memory; second start <= 5 s to the
first step (annotation part); flat worker memory.

    # COCO-sized (needs ~6 GB RAM and ~1.5 GB disk; minutes):
    .venv/bin/python benchmarks/bench_scale.py --scale 1 --workdir /tmp/apex_scale
    # smoke run (seconds):
    .venv/bin/python benchmarks/bench_scale.py --scale 0.01 --workdir /tmp/apex_scale_small --skip-train
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import textwrap
import time
import zlib
from pathlib import Path
from typing import Any

import numpy as np

COCO_IMAGES, COCO_ANNOTATIONS = 118_287, 860_001
SIZES = [(640, 480), (480, 640), (640, 427), (500, 375), (640, 360)]


def _png(width: int, height: int) -> bytes:
    """A valid all-black 8-bit grayscale PNG of the given size (a few hundred bytes)."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        body = kind + data
        return len(data).to_bytes(4, "big") + body + zlib.crc32(body).to_bytes(4, "big")

    header = width.to_bytes(4, "big") + height.to_bytes(4, "big") + bytes([8, 0, 0, 0, 0])
    raw = b"".join(b"\x00" + bytes(width) for _ in range(height))
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(raw, 9)) + chunk(b"IEND", b"")


def _polygon(rng: np.random.Generator, width: int, height: int) -> tuple[list[float], list[float], float]:
    points = int(rng.integers(20, 41))
    cx, cy = rng.uniform(0.2, 0.8) * width, rng.uniform(0.2, 0.8) * height
    radius = rng.uniform(0.03, 0.2) * min(width, height)
    angles = np.sort(rng.uniform(0, 2 * np.pi, points))
    r = radius * rng.uniform(0.7, 1.0, points)
    xs = np.clip(cx + r * np.cos(angles), 0, width - 1)
    ys = np.clip(cy + r * np.sin(angles), 0, height - 1)
    flat = np.round(np.stack([xs, ys], 1).reshape(-1), 2).tolist()
    x0, y0, x1, y1 = float(xs.min()), float(ys.min()), float(xs.max()), float(ys.max())
    return flat, [round(x0, 2), round(y0, 2), round(x1 - x0, 2), round(y1 - y0, 2)], float(np.pi * radius**2 * 0.8)


def write_split(folder: Path, name: str, images: int, annotations: int, seed: int) -> Path:
    """Images (hard links) and the instances JSON, written as a stream (no 600 MB string in memory)."""
    rng = np.random.default_rng(seed)
    image_dir = folder / name
    image_dir.mkdir(parents=True, exist_ok=True)
    blanks = {}
    for width, height in SIZES:
        blank = folder / f"blank_{width}x{height}.png"
        if not blank.exists():
            blank.write_bytes(_png(width, height))
        blanks[(width, height)] = blank
    sizes = rng.integers(0, len(SIZES), images)
    path = folder / f"instances_{name}.json"
    with path.open("w") as out:
        out.write('{"info": {"description": "bench_scale"}, "licenses": [], "categories": ')
        out.write(json.dumps([{"id": i + 1, "name": f"class_{i + 1}", "supercategory": "x"} for i in range(80)]))
        out.write(', "images": [')
        for index in range(images):
            width, height = SIZES[int(sizes[index])]
            file_name = f"{index + 1:012d}.png"
            target = image_dir / file_name
            if not target.exists():
                os.link(blanks[(width, height)], target)
            out.write(("," if index else "") + json.dumps(
                {"id": index + 1, "file_name": file_name, "width": width, "height": height}))
        out.write('], "annotations": [')
        owners = np.sort(rng.integers(0, images, annotations))
        for index, owner in enumerate(owners):
            width, height = SIZES[int(sizes[owner])]
            polygon, bbox, area = _polygon(rng, width, height)
            out.write(("," if index else "") + json.dumps(
                {"id": index + 1, "image_id": int(owner) + 1, "category_id": int(rng.integers(1, 81)),
                 "iscrowd": 0, "area": round(area, 2), "bbox": bbox, "segmentation": [polygon]}))
        out.write("]}")
    return path


MEASURE = textwrap.dedent("""
    import json, resource, runpy, sys, time
    started = time.perf_counter()
    code = 0
    try:
        {body}
    except SystemExit as stop:
        code = stop.code if isinstance(stop.code, int) else (0 if stop.code is None else 1)
    print("MEASURED " + json.dumps({{"seconds": time.perf_counter() - started, "exit_code": code,
          "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}}), flush=True)
""")


def measure(body: str, env: dict[str, str] | None = None, timeout: float = 3600) -> dict[str, Any]:
    """Wall time and peak RSS of `body` run in a fresh interpreter."""
    script = MEASURE.format(body=textwrap.indent(body, "    ").strip())
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, env=env, timeout=timeout)
    lines = [line for line in result.stdout.splitlines() if line.startswith("MEASURED ")]
    if not lines:
        raise RuntimeError(f"measurement failed:\n{result.stdout[-2000:]}\n{result.stderr[-3000:]}")
    return json.loads(lines[-1][len("MEASURED "):])


def time_to_first_step(config: Path, workdir: Path, env: dict[str, str]) -> float:
    """Seconds from launching `apex-x train` until its log shows the first optimizer step (then it is stopped)."""
    output = workdir / "train_run"
    command = [sys.executable, "-m", "apex_x.cli", "train", str(config), "--set", f"train.output_dir={output}"]
    started = time.perf_counter()
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env)
    assert process.stdout is not None
    try:
        for line in process.stdout:
            if "first_step_s" in line:  # the progress line of the run's first optimizer step
                return time.perf_counter() - started
        raise RuntimeError(f"train ended (exit {process.wait()}) before its first step")
    finally:
        process.kill()
        process.wait()


WORKER_MEMORY = """
import json, os, sys, time
from apex_x.adapters.config_yaml import load_config
from apex_x.container import create_container

def pss_mb(pid):
    try:
        with open(f"/proc/{pid}/smaps_rollup") as handle:
            return next(int(line.split()[1]) for line in handle if line.startswith("Pss:")) / 1024
    except (OSError, StopIteration):
        return 0.0

def tree_pss():
    main = os.getpid()
    children = [int(p) for p in open(f"/proc/{main}/task/{main}/children").read().split()]
    return pss_mb(main) + sum(pss_mb(child) for child in children), len(children)

settings = load_config(sys.argv[1], ["data.num_workers=4", "train.batch_size=16", "data.check_cache=true"])
source = create_container(settings).dataset_source()
loader = source.train_loader(16, seed=0)
samples, started = [], time.perf_counter()
for index, batch in enumerate(loader.iter_epoch(0)):
    if index % 50 == 0:
        total, workers = tree_pss()
        samples.append({"batch": index, "seconds": round(time.perf_counter() - started, 1),
                        "pss_mb": round(total, 1), "workers": workers})
total, workers = tree_pss()
samples.append({"batch": index + 1, "seconds": round(time.perf_counter() - started, 1), "pss_mb": round(total, 1),
                "workers": workers})
print("WORKERS " + json.dumps(samples))
"""


def worker_memory(config: Path, env: dict[str, str]) -> list[dict[str, Any]]:
    """Total PSS (main process + its DataLoader workers, /proc smaps_rollup) sampled every 50 batches over one
    train epoch of the loader alone (4 workers, batch 16): flat means the workers do not copy the annotations."""
    result = subprocess.run([sys.executable, "-c", WORKER_MEMORY, str(config)], capture_output=True, text=True,
                            env=env, timeout=7200)
    lines = [line for line in result.stdout.splitlines() if line.startswith("WORKERS ")]
    if not lines:
        raise RuntimeError(f"worker memory run failed:\n{result.stderr[-3000:]}")
    return json.loads(lines[-1][len("WORKERS "):])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--scale", type=float, default=1.0, help="Fraction of COCO train2017's size.")
    parser.add_argument("--workdir", default="/tmp/apex_scale")
    parser.add_argument("--skip-train", action="store_true")
    parser.add_argument("--worker-memory", action="store_true",
                        help="Also sample the total memory of the train loader with 4 workers over one epoch.")
    parser.add_argument("--output-json", default=None)
    args = parser.parse_args()
    workdir = Path(args.workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    images, annotations = max(10, int(COCO_IMAGES * args.scale)), max(20, int(COCO_ANNOTATIONS * args.scale))
    train_json = workdir / "instances_train.json"
    marker = workdir / f"generated_{images}_{annotations}"
    started = time.perf_counter()
    if not marker.exists():
        write_split(workdir, "train", images, annotations, seed=0)
        write_split(workdir, "val", 500, 3600, seed=1)
        marker.write_text("ok")
    generated = time.perf_counter() - started
    config = workdir / "config.yaml"
    config.write_text(textwrap.dedent(f"""\
        model: {{num_classes: 80, input_height: 320, input_width: 320}}
        data:
          coco_train_images: {workdir / 'train'}
          coco_train_annotations: {train_json}
          coco_val_images: {workdir / 'val'}
          coco_val_annotations: {workdir / 'instances_val.json'}
        train: {{batch_size: 2, epochs: 1}}
        runtime: {{device: cpu, kernels: torch}}
    """))
    cache = workdir / f"check_cache_{time.time_ns()}"  # a fresh check cache: the first runs are really cold
    env = {**os.environ, "APEX_X_CACHE_DIR": str(cache)}
    floor = measure(f"from pycocotools.coco import COCO\nCOCO({str(train_json)!r})")
    preflight_body = ("sys.argv = ['apex-x', 'dataset-preflight', " + repr(str(config)) + "]\n"
                      "runpy.run_module('apex_x.cli', run_name='__main__')")
    preflight = [measure(preflight_body, env) for _ in range(2)]  # cold, then answered from the check cache
    result: dict[str, Any] = {
        "benchmark": "scale",
        "machine": {"platform": platform.platform(), "processor": platform.processor(), "cpus": os.cpu_count()},
        "images": images, "annotations": annotations, "json_mb": train_json.stat().st_size / 2**20,
        "generate_seconds": generated, "pycocotools": floor, "preflight_first": preflight[0],
        "preflight_second": preflight[1],
        "preflight_time_ratio": preflight[0]["seconds"] / floor["seconds"],
        "preflight_memory_ratio": preflight[0]["peak_rss_mb"] / floor["peak_rss_mb"],
    }
    if not args.skip_train:  # a cache of its own: the first start checks the data, the second reuses the verdict
        env["APEX_X_CACHE_DIR"] = str(cache) + "_train"
        result["train_first_step_seconds"] = [time_to_first_step(config, workdir, env) for _ in range(2)]
    if args.worker_memory:
        result["worker_memory"] = samples = worker_memory(config, env)
        first, peak, last = samples[1 if len(samples) > 2 else 0]["pss_mb"], max(x["pss_mb"] for x in samples), \
            samples[-1]["pss_mb"]
        result["worker_memory_growth"] = (last - first) / first if first else None
    print(json.dumps(result, indent=2))
    print(f"pycocotools COCO(): {floor['seconds']:.1f} s, {floor['peak_rss_mb']:.0f} MB")
    for label, item in (("first", preflight[0]), ("second", preflight[1])):
        print(f"dataset-preflight ({label}): {item['seconds']:.1f} s, {item['peak_rss_mb']:.0f} MB "
              f"(exit {item['exit_code']})")
    print(f"preflight / floor: time {result['preflight_time_ratio']:.2f}x (goal <= 1.3x), "
          f"memory {result['preflight_memory_ratio']:.2f}x (goal <= 1.2x)")
    if "train_first_step_seconds" in result:
        first, second = result["train_first_step_seconds"]
        print(f"train to first step: {first:.1f} s, second start {second:.1f} s (goal <= 5 s, annotation part)")
    if "worker_memory" in result:
        print(f"loader with 4 workers over one epoch: total PSS {first:.0f} MB after 50 batches, peak {peak:.0f} MB, "
              f"end {last:.0f} MB ({result['worker_memory_growth']:+.1%}; goal: flat)")
    if args.output_json:
        Path(args.output_json).write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
