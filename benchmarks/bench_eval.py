"""Validation cost against training cost, per image, at the same input size and batch size.

Both sides see the same in-memory batches (collated once from the configured dataset, so data loading is
not measured). Training: forward -> compute_losses (the heaviest stage: det + seg + boundary) -> backward ->
AdamW step, per image. Validation: Apex-X's own `validate()` (eval-mode forward, the val loss unless
`--set train.val_loss=false`, post-processing, RLE encoding, COCOeval), per image, plus a breakdown of its
parts timed separately (forward, loss, post-processing + encoding; COCOeval once over the split).
Goal: validation (loss included) <= 0.5x a training step's time per image.

The model is a fresh student: its detections per image are printed, since post-processing cost grows with
them; `--set model.score_threshold=0` gives the worst case (model.max_detections per image).

    # real photos (strawberry_coco, 416 px), quiet machine, 1 thread:
    .venv/bin/python benchmarks/bench_eval.py --size 416 --batch-size 4 --images 16 --threads 1 \\
        --set data.coco_train_images=../shared/datasets/strawberry_coco/train \\
        --set data.coco_train_annotations=../shared/datasets/strawberry_coco/train/_annotations.coco.json \\
        --set data.coco_val_images=../shared/datasets/strawberry_coco/valid \\
        --set data.coco_val_annotations=../shared/datasets/strawberry_coco/valid/_annotations.coco.json
    # smoke run on the synthetic data (seconds):
    .venv/bin/python benchmarks/bench_eval.py --size 128 --batch-size 2 --images 4
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import time
from pathlib import Path
from typing import Any

import torch
from bench_trainer import InMemoryLoader  # the same pre-collated batches every epoch (BatchLoader port)

from apex_x.adapters.config_yaml import load_config
from apex_x.adapters.evaluation.coco_evaluator import PycocotoolsEvaluator
from apex_x.adapters.models.profiles import get_profile
from apex_x.adapters.models.student import StudentModelFactory
from apex_x.application.engine.curriculum import plan_stages
from apex_x.application.engine.distributed import DistContext
from apex_x.application.engine.schedules import loss_settings
from apex_x.application.engine.trainer import build_optimizer
from apex_x.application.engine.validation import validate
from apex_x.container import create_container
from apex_x.domain.types import Batch
from apex_x.kernels import active_backend_report, resolve_backend, set_backend_preference


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size", type=int, default=320)
    parser.add_argument("--batch-size", type=int, default=4)
    parser.add_argument("--images", type=int, default=16, help="Images on each side (rounded down to batches).")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE")
    parser.add_argument("--output-json", default=None)
    return parser.parse_args()


def _batches(loader: Any, count: int) -> list[Batch]:
    found: list[Batch] = []
    for batch in loader.iter_epoch(0):
        if batch.batch_size:
            found.append(batch)
        if len(found) == count:
            break
    return found


def main() -> None:
    args = parse_args()
    torch.set_num_threads(args.threads)
    synthetic = [f"data.synthetic_train_images={args.images}", f"data.synthetic_val_images={args.images}",
                 "train.allow_synthetic_fallback=true"]
    settings = load_config(None, [
        f"model.input_height={args.size}", f"model.input_width={args.size}", f"train.batch_size={args.batch_size}",
        "runtime.device=cpu", *synthetic, *args.overrides,
    ])
    set_backend_preference(settings.runtime.kernels)
    source = create_container(settings).dataset_source()
    steps = max(1, args.images // args.batch_size)
    train_batches = _batches(source.train_loader(args.batch_size, seed=0), steps)
    val_loader = source.val_loader(args.batch_size)
    if val_loader is None:
        raise SystemExit("error: the dataset has no val split (set the val keys of data.format)")
    val_batches = _batches(val_loader, steps)
    val_ids = {meta.image_id for batch in val_batches for meta in batch.metas}
    ground_truth = source.val_ground_truth()
    if ground_truth is not None:  # only the images timed
        ground_truth = {**ground_truth, "images": [i for i in ground_truth["images"] if i["id"] in val_ids],
                        "annotations": [a for a in ground_truth["annotations"] if a["image_id"] in val_ids]}
    categories = source.categories
    stage = plan_stages(settings, get_profile(settings.model.profile).default_stages(settings))[-1]
    losses = loss_settings(stage.losses, 1.0, settings.train)
    torch.manual_seed(0)
    model = StudentModelFactory().build(settings.model, categories.num_classes)
    optimizer = build_optimizer(model, settings.train)
    evaluator = PycocotoolsEvaluator()
    backend = resolve_backend(torch.empty(0))

    def train_round() -> float:
        model.train()
        started = time.perf_counter()
        for batch in train_batches:
            outputs = model(batch.images)
            components = model.compute_losses(outputs, batch, losses)
            total = sum(losses.weights[name] * value for name, value in components.items() if name in losses.weights)
            total.backward()
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)
        return (time.perf_counter() - started) / sum(b.batch_size for b in train_batches)

    def val_round() -> float:
        started = time.perf_counter()
        validate(model=model, loader=InMemoryLoader(val_batches), ground_truth=ground_truth, evaluator=evaluator,
                 categories=categories, settings=losses, context=DistContext(), with_loss=settings.train.val_loss)
        return (time.perf_counter() - started) / sum(b.batch_size for b in val_batches)

    @torch.no_grad()
    def breakdown() -> dict[str, float]:
        model.eval()
        parts = {"forward": 0.0, "loss": 0.0, "postprocess_and_encode": 0.0, "cocoeval": 0.0}
        encoded, detections = [], 0
        for batch in val_batches:
            start = time.perf_counter()
            outputs = model(batch.images)
            parts["forward"] += time.perf_counter() - start
            start = time.perf_counter()
            model.compute_losses(outputs, batch, losses)
            parts["loss"] += time.perf_counter() - start
            start = time.perf_counter()
            for meta, found in zip(batch.metas, model.postprocess(outputs, batch.metas), strict=True):
                detections += len(found)
                encoded.append((meta.image_id, evaluator.encode(meta.image_id, found, categories)))
            parts["postprocess_and_encode"] += time.perf_counter() - start
        if ground_truth is not None:
            start = time.perf_counter()
            evaluator.evaluate_encoded(ground_truth, encoded, categories)
            parts["cocoeval"] += time.perf_counter() - start
        images = sum(b.batch_size for b in val_batches)
        model.train()
        return {**{key: value / images for key, value in parts.items()}, "detections_per_image": detections / images}

    train_round()
    val_round()  # warm-up (and the compiled losses' first compilation)
    train_times, val_times = [], []
    for _ in range(args.rounds):
        train_times.append(train_round())
        val_times.append(val_round())
    train_s, val_s = statistics.median(train_times), statistics.median(val_times)
    parts = breakdown()
    ratio = val_s / train_s
    result: dict[str, Any] = {
        "benchmark": "validation_vs_training",
        "machine": {"platform": platform.platform(), "processor": platform.processor(), "threads": args.threads,
                    "torch": torch.__version__},
        "kernels": {"backend": backend, **active_backend_report()},
        "model": {"backbone": settings.model.backbone, "input": args.size, "batch_size": args.batch_size},
        "images": sum(b.batch_size for b in val_batches), "val_loss": settings.train.val_loss,
        "train_s_per_image": train_s, "val_s_per_image": val_s, "ratio": ratio,
        "train_rounds": train_times, "val_rounds": val_times, "val_breakdown_s_per_image": parts,
        "goal_ratio": 0.5, "meets_goal": ratio <= 0.5,
    }
    print(f"kernels     {backend}")
    print(f"train step  {train_s * 1000:8.1f} ms/image  (rounds: {', '.join(f'{t * 1000:.1f}' for t in train_times)})")
    print(f"validation  {val_s * 1000:8.1f} ms/image  (rounds: {', '.join(f'{t * 1000:.1f}' for t in val_times)})")
    print("  breakdown  " + ", ".join(f"{k} {v * 1000:.1f} ms" for k, v in parts.items() if k != "detections_per_image")
          + f" ({parts['detections_per_image']:.1f} detections/image)")
    print(f"ratio       {ratio:.2f}x a training step per image (goal <= 0.5x): {'OK' if ratio <= 0.5 else 'ABOVE GOAL'}")
    if args.output_json:
        Path(args.output_json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.output_json).write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
