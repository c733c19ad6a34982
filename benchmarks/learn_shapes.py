"""Proof that the student learns: train the `small` profile on the built-in shapes dataset for a fixed
wall-clock budget, then report train images/s and val COCO AP (bbox, segm) as JSON and Markdown.

Two ways to train:
- `--trainer api` (default): the real `train` use case (`apex_x.api.train`) with a number of epochs
  calibrated from a short measured warm-up so that the run fits the budget;
- `--trainer minimal`: a small loop here (AdamW, warmup + cosine over the *time* budget, EMA) that stops
  exactly at the budget; useful to tune the model without the rest of the pipeline.
`--peer yolov8n-seg` also trains Ultralytics YOLOv8n-seg on the same data for the same budget, if installed.

Run the full benchmark on a quiet machine (2 CPU threads, 8 minutes):
    .venv/bin/python benchmarks/learn_shapes.py --budget-s 480 --output artifacts/learn_shapes
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import time
from pathlib import Path
from typing import Any

import torch

from apex_x.adapters.datasets.coco_source import CocoDatasetSource
from apex_x.adapters.evaluation.coco_evaluator import PycocotoolsEvaluator
from apex_x.adapters.models.student import StudentModelFactory
from apex_x.domain.config import ApexConfig, StageConfig, effective_stages
from apex_x.domain.types import Detections, LossSettings


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", default="artifacts/bench_shapes", help="Shapes dataset folder (made if missing).")
    parser.add_argument("--train-images", type=int, default=512)
    parser.add_argument("--val-images", type=int, default=64)
    parser.add_argument("--size", type=int, default=256, help="Image and network input size.")
    parser.add_argument("--budget-s", type=float, default=480.0, help="Wall-clock training budget in seconds.")
    parser.add_argument("--budget-images", type=int, default=None,
                        help="minimal trainer: stop after this many training images instead of the time budget "
                        "(steady comparisons on a busy machine).")
    parser.add_argument("--trainer", choices=["api", "minimal"], default="api")
    parser.add_argument("--threads", type=int, default=2, help="torch CPU threads.")
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--lr", type=float, default=None, help="Peak lr (default: the config's train.lr).")
    parser.add_argument("--amp", choices=["off", "bf16"], default="off", help="minimal trainer: CPU bf16 autocast.")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                        help="Config override, e.g. --set model.backbone=lcnet_100 (repeatable).")
    parser.add_argument("--curriculum", choices=["joint", "default"], default="joint",
                        help="joint: one stage with det + seg + boundary from the start (best use of a short "
                        "budget); default: the profile's det_stability then seg_boundary stages.")
    parser.add_argument("--output", default="artifacts/learn_shapes", help="Folder of the JSON/Markdown report.")
    parser.add_argument("--peer", choices=["none", "yolov8n-seg"], default="none")
    parser.add_argument("--seed", type=int, default=0)
    return parser.parse_args()


def ensure_dataset(args: argparse.Namespace) -> Path:
    from apex_x.api import make_shapes

    make_shapes(args.data, train=args.train_images, val=args.val_images, size=args.size, seed=args.seed)
    return Path(args.data)


def build_config(args: argparse.Namespace, data: Path) -> ApexConfig:
    from apex_x.adapters.config_yaml import load_config

    overrides = [
        "model.profile=small",
        f"model.input_height={args.size}",
        f"model.input_width={args.size}",
        f"train.batch_size={args.batch_size}",
        f"train.seed={args.seed}",
        f"data.coco_train_images={data / 'train'}",
        f"data.coco_train_annotations={data / 'instances_train.json'}",
        f"data.coco_val_images={data / 'val'}",
        f"data.coco_val_annotations={data / 'instances_val.json'}",
        f"runtime.num_threads={args.threads}",
        "runtime.device=cpu",
    ]
    if args.lr is not None:
        overrides.append(f"train.lr={args.lr}")
    config = load_config(None, overrides=[*overrides, *args.overrides])
    if args.curriculum == "joint" and not config.train.stages:
        config.train.stages = [StageConfig(name="joint", losses={"det": 1.0, "seg": 1.0, "boundary": 1.0})]
    return config


# -- minimal trainer --------------------------------------------------------------------------------


def _param_groups(model: torch.nn.Module, weight_decay: float) -> list[dict[str, Any]]:
    decay, no_decay = [], []
    for parameter in model.parameters():
        (no_decay if parameter.ndim <= 1 else decay).append(parameter)
    return [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]


class Ema:
    """Exponential moving average of the weights with the usual warmup of the decay."""

    def __init__(self, model: torch.nn.Module, decay: float) -> None:
        import copy

        self.model = copy.deepcopy(model).eval()
        self.decay = decay
        self.updates = 0
        for parameter in self.model.parameters():
            parameter.requires_grad_(False)

    @torch.no_grad()
    def update(self, model: torch.nn.Module) -> None:
        self.updates += 1
        decay = self.decay * (1.0 - math.exp(-self.updates / 200.0))
        source = model.state_dict()
        for name, value in self.model.state_dict().items():
            if value.dtype.is_floating_point:
                value.mul_(decay).add_(source[name].detach(), alpha=1.0 - decay)
            else:
                value.copy_(source[name])


def train_minimal(config: ApexConfig, args: argparse.Namespace) -> dict[str, Any]:
    source = CocoDatasetSource(config)
    categories = source.categories
    model = StudentModelFactory().build(config.model, categories.num_classes)
    model.train()
    train = config.train
    optimizer = torch.optim.AdamW(_param_groups(model, train.weight_decay), lr=train.lr, betas=(0.9, 0.999))
    ema = Ema(model, train.ema_decay)
    loader = source.train_loader(train.batch_size, seed=train.seed)
    stages = effective_stages(config)
    images_seen, step, epoch = 0, 0, 0
    history: list[dict[str, float]] = []
    start = time.perf_counter()
    cpu_start = time.process_time()
    budget = args.budget_s
    done = False
    while not done:
        for batch in loader.iter_epoch(epoch):
            elapsed = time.perf_counter() - start
            progress = images_seen / args.budget_images if args.budget_images else elapsed / budget
            if progress >= 1.0:
                done = True
                break
            warm = min(1.0, (step + 1) / max(train.warmup_steps, 1))
            lr = train.lr * warm * (train.min_lr_ratio + (1 - train.min_lr_ratio) * 0.5 * (1 + math.cos(math.pi * progress)))
            for group in optimizer.param_groups:
                group["lr"] = lr
            stage = stages[min(int(progress * len(stages)), len(stages) - 1)]
            box_scale = train.loss_box_scale_start + (train.loss_box_scale_end - train.loss_box_scale_start) * min(
                1.0, progress * len(stages) * 2
            )
            settings = LossSettings(
                weights=dict(stage.losses), box_scale=box_scale, box_weight=train.loss_box_weight,
                quality_weight=train.loss_quality_weight, det_clip=train.loss_det_component_clip,
                seg_clip=train.loss_seg_component_clip, boundary_clip=train.loss_boundary_component_clip,
            )
            with torch.autocast("cpu", dtype=torch.bfloat16, enabled=args.amp == "bf16"):
                outputs = model(batch.images)
            losses = model.compute_losses(outputs, batch, settings)
            total = sum(settings.weights[name] * value for name, value in losses.items())
            optimizer.zero_grad(set_to_none=True)
            total.backward()
            if train.grad_clip_norm:
                torch.nn.utils.clip_grad_norm_(model.parameters(), train.grad_clip_norm)
            optimizer.step()
            ema.update(model)
            step += 1
            images_seen += batch.batch_size
            if step % 20 == 0:
                entry = {"step": step, "elapsed_s": round(time.perf_counter() - start, 1), "lr": round(lr, 6),
                         **{k: round(float(v), 4) for k, v in losses.items()}}
                history.append(entry)
                print(json.dumps(entry), flush=True)
        epoch += 1
    train_seconds = time.perf_counter() - start
    cpu_seconds = time.process_time() - cpu_start
    evaluation = evaluate_model(ema.model, source)
    return {"images_seen": images_seen, "steps": step, "epochs": images_seen / len(loader) / train.batch_size,
            "train_seconds": train_seconds, "images_per_s": images_seen / train_seconds,
            "cpu_seconds": cpu_seconds, "images_per_cpu_s": images_seen / cpu_seconds,
            "metrics": evaluation, "history": history}


@torch.no_grad()
def evaluate_model(model: torch.nn.Module, source: CocoDatasetSource) -> dict[str, Any]:
    model.eval()
    detections = []
    start = time.perf_counter()
    for batch in source.val_loader(16).iter_epoch(0):
        outputs = model(batch.images)
        for meta, found in zip(batch.metas, model.postprocess(outputs, batch.metas), strict=True):
            detections.append((meta.image_id, found))
    result = PycocotoolsEvaluator().evaluate(source.val_ground_truth(), detections, source.categories)
    return {**result.to_plain(), "eval_seconds": time.perf_counter() - start}


# -- real trainer -----------------------------------------------------------------------------------


def _epoch_history(result: Any) -> list[dict[str, Any]]:
    report = json.loads(Path(result.report_path).read_text())
    return list(report.get("history", []))


def train_api(config: ApexConfig, args: argparse.Namespace) -> dict[str, Any]:
    """The real `train` use case; epochs chosen from a measured probe so that training fills the budget."""
    from apex_x import api

    steps_per_epoch = args.train_images // config.train.batch_size
    # Probe: 2 short epochs of the real loop; the second one's images/s (no start-up) sizes the run.
    probe = config.model_copy(deep=True)
    probe.train.output_dir = str(Path(args.output) / "probe")
    probe.train.stages = [StageConfig(name="probe", epochs=2, losses={"det": 1.0, "seg": 1.0, "boundary": 1.0})]
    probe.train.steps_per_stage = 8
    probe.train.eval_every_epochs = 1000
    probe_history = _epoch_history(api.train(probe))
    probe_rate = float(probe_history[-1]["images_per_s"])
    stages = effective_stages(config)
    total_epochs = max(len(stages), int(args.budget_s * probe_rate / (steps_per_epoch * config.train.batch_size)))
    config = config.model_copy(deep=True)
    config.train.stages = [stage.model_copy(update={"epochs": None}) for stage in config.train.stages]
    config.train.epochs = max(1, round(total_epochs / len(stages)))
    config.train.output_dir = str(Path(args.output) / "run")
    config.train.eval_every_epochs = 1000  # validate once, at the end (validation is not training time)
    start = time.perf_counter()
    result = api.train(config)
    wall_seconds = time.perf_counter() - start
    history = _epoch_history(result)
    train_seconds = sum(float(entry["seconds"]) for entry in history)
    images = sum(int(entry["steps"]) for entry in history) * config.train.batch_size
    return {"images_seen": images, "epochs": len(history), "train_seconds": train_seconds,
            "wall_seconds_with_eval_and_checkpoints": wall_seconds, "probe_images_per_s": probe_rate,
            "images_per_s": images / train_seconds, "report_path": result.report_path,
            "metrics": {"metrics": result.last_val_metrics or {}}}


# -- peer -------------------------------------------------------------------------------------------


def _yolo_dataset(data: Path, root: Path) -> tuple[Path, list[int]]:
    """The COCO shapes set as an Ultralytics segmentation dataset (symlinked images, normalised polygons)."""
    import numpy as np
    from ultralytics.data.converter import merge_multi_segment

    root.mkdir(parents=True, exist_ok=True)
    category_ids: list[int] = []
    for split in ("train", "val"):
        coco = json.loads((data / f"instances_{split}.json").read_text())
        category_ids = [c["id"] for c in coco["categories"]]
        index_of = {cid: i for i, cid in enumerate(category_ids)}
        (root / "images" / split).mkdir(parents=True, exist_ok=True)
        (root / "labels" / split).mkdir(parents=True, exist_ok=True)
        by_image: dict[int, list[dict[str, Any]]] = {}
        for ann in coco["annotations"]:
            by_image.setdefault(ann["image_id"], []).append(ann)
        for image in coco["images"]:
            link = root / "images" / split / image["file_name"]
            if not link.exists():
                link.symlink_to((data / split / image["file_name"]).resolve())
            lines = []
            for ann in by_image.get(image["id"], []):
                if ann.get("iscrowd"):
                    continue
                polygons = ann["segmentation"]
                points = (np.concatenate(merge_multi_segment(polygons), 0) if len(polygons) > 1
                          else np.asarray(polygons[0]).reshape(-1, 2))
                points = points / np.array([image["width"], image["height"]])
                lines.append(" ".join([str(index_of[ann["category_id"]]), *(f"{v:.6f}" for v in points.reshape(-1))]))
            (root / "labels" / split / (Path(image["file_name"]).stem + ".txt")).write_text("\n".join(lines))
    names = {i: c["name"] for i, c in enumerate(json.loads((data / "instances_train.json").read_text())["categories"])}
    yaml_path = root / "shapes.yaml"
    yaml_path.write_text(json.dumps({"path": str(root.resolve()), "train": "images/train", "val": "images/val",
                                     "names": names}))
    return yaml_path, category_ids


def train_yolov8(args: argparse.Namespace, data: Path, config: ApexConfig) -> dict[str, Any] | None:
    """Ultralytics YOLOv8n-seg from scratch (no weights download) on the same data and budget, if installed."""
    try:
        from ultralytics import YOLO
    except ImportError:
        return None
    output = Path(args.output).resolve()
    yaml_path, category_ids = _yolo_dataset(data, output / "yolo_data")
    model = YOLO("yolov8n-seg.yaml")
    start = time.perf_counter()
    model.train(data=str(yaml_path), epochs=1000, time=args.budget_s / 3600.0, imgsz=args.size,
                batch=args.batch_size, device="cpu", workers=2, pretrained=False, amp=False, plots=False,
                project=str(output), name="yolov8n-seg", exist_ok=True, seed=args.seed, verbose=False)
    train_seconds = time.perf_counter() - start
    epochs = int(model.trainer.epoch) + 1
    # Score YOLO's predictions with the same evaluator as Apex-X (pycocotools on the COCO val file).
    source = CocoDatasetSource(config)
    ground_truth = source.val_ground_truth()
    contiguous = {cid: i for i, cid in enumerate(source.categories.original_ids)}
    detections = []
    for image in ground_truth["images"]:
        result = model.predict(str(data / "val" / image["file_name"]), imgsz=args.size, conf=0.001, iou=0.6,
                               max_det=100, retina_masks=True, verbose=False)[0]
        labels = torch.tensor([contiguous[category_ids[int(c)]] for c in result.boxes.cls.tolist()], dtype=torch.long)
        masks = (result.masks.data.bool().cpu() if result.masks is not None
                 else torch.zeros(0, image["height"], image["width"], dtype=torch.bool))
        detections.append((image["id"], Detections(result.boxes.xyxy.float().cpu(), result.boxes.conf.float().cpu(),
                                                   labels, masks)))
    evaluation = PycocotoolsEvaluator().evaluate(ground_truth, detections, source.categories)
    return {"model": "yolov8n-seg (from scratch)", "epochs": epochs, "train_seconds": train_seconds,
            "images_per_s": epochs * args.train_images / train_seconds, "metrics": evaluation.to_plain()}


def write_report(result: dict[str, Any], output: Path) -> None:
    output.mkdir(parents=True, exist_ok=True)
    (output / "learn_shapes.json").write_text(json.dumps(result, indent=2, default=str))
    metrics = result.get("apex_x", {}).get("metrics", {}).get("metrics", {})
    lines = [
        "# Apex-X learns shapes", "",
        f"- machine: {result['machine']}", f"- budget: {result['budget_s']} s, trainer: {result['trainer']}",
        f"- train images/s: {result['apex_x'].get('images_per_s', float('nan')):.1f}",
        f"- epochs: {result['apex_x'].get('epochs', 0):.1f}", "",
        "| metric | value |", "|---|---|",
        *[f"| {key} | {value:.4f} |" for key, value in sorted(metrics.items()) if key.endswith(("AP", "AP50", "AP75"))],
    ]
    (output / "learn_shapes.md").write_text("\n".join(lines) + "\n")


def main() -> None:
    args = parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    data = ensure_dataset(args)
    config = build_config(args, data)
    trained = train_minimal(config, args) if args.trainer == "minimal" else train_api(config, args)
    result = {
        "machine": f"{platform.processor() or platform.machine()}, {os.cpu_count()} cpus, torch {torch.__version__}",
        "budget_s": args.budget_s, "trainer": args.trainer, "config": config.to_plain(), "apex_x": trained,
    }
    if args.peer != "none":
        result["peer"] = train_yolov8(args, data, config)
    write_report(result, Path(args.output))
    metrics = trained.get("metrics", {}).get("metrics", {})
    print(json.dumps({"images_per_s": round(trained["images_per_s"], 2),
                      "images_per_cpu_s": round(trained.get("images_per_cpu_s", float("nan")), 2),
                      **{k: round(v, 4) for k, v in metrics.items() if k in ("bbox_AP", "segm_AP", "segm_AP50")}}))


if __name__ == "__main__":
    main()
