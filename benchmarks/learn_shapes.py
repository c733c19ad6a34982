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
import os
import platform
import time
from pathlib import Path
from typing import Any

import torch

from apex_x.adapters.models.profiles import get_profile
from apex_x.domain.config import ApexConfig, StageConfig, effective_stages

SUMMARY_METRICS = ("bbox_AP", "bbox_AP50", "segm_AP", "segm_AP50", "segm_AP75")


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
    parser.add_argument("--epochs", type=int, default=None,
                        help="api trainer: train this many epochs instead of sizing the run to --budget-s.")
    parser.add_argument("--threads", type=int, default=2, help="torch CPU threads.")
    parser.add_argument("--batch-size", type=int, default=8,
                        help="8: on a 2-core CPU the student learns more per second from twice the optimizer steps "
                        "of batch 16 at about the same images/s.")
    parser.add_argument("--lr", type=float, default=0.004, help="Peak lr (train.lr) of the run.")
    parser.add_argument("--amp", choices=["off", "bf16"], default="off", help="bf16 autocast on the CPU (train.amp).")
    parser.add_argument("--compile", choices=["on", "off"], default="on",
                        help="runtime.compile_model: the network's forward through torch.compile (compiled during "
                        "the probe, outside the budget; eager where no compiler is found).")
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
        f"train.lr={args.lr}",
        f"train.amp=\"{args.amp}\"",
        f"runtime.compile_model={'true' if args.compile == 'on' else 'false'}",
    ]
    config = load_config(None, overrides=[*overrides, *args.overrides])
    if args.curriculum == "joint" and not config.train.stages:
        config.train.stages = [StageConfig(name="joint", losses={"det": 1.0, "seg": 1.0, "boundary": 1.0})]
    return config


# -- real trainer -----------------------------------------------------------------------------------


def _epoch_history(result: Any) -> list[dict[str, Any]]:
    report = json.loads(Path(result.report_path).read_text())
    return list(report.get("history", []))


def _probe_rate(config: ApexConfig, args: argparse.Namespace) -> float:
    """images/s of the real loop: 3 short epochs of 16 steps, the fastest one (a busy machine only slows it down).
    The first epoch compiles (loss kernels, and the network with --compile on), outside the budget."""
    from apex_x import api

    probe = config.model_copy(deep=True)
    probe.train.output_dir = str(Path(args.output) / "probe")
    probe.train.stages = [StageConfig(name="probe", epochs=3, losses={"det": 1.0, "seg": 1.0, "boundary": 1.0})]
    probe.train.steps_per_stage = 16
    probe.train.eval_every_epochs = 1000
    return max(float(entry["images_per_s"]) for entry in _epoch_history(api.train(probe)))


def train_api(config: ApexConfig, args: argparse.Namespace) -> dict[str, Any]:
    """The real `train` use case, for --epochs or for as many epochs as the probed speed fits in the budget.

    The report gives the training seconds actually spent next to the budget (validation runs once, at the end).
    """
    from apex_x import api

    steps_per_epoch = args.train_images // config.train.batch_size
    stages = effective_stages(config, get_profile(config.model.profile).default_stages(config))
    probe_rate = None
    if args.epochs is not None:
        total_epochs = args.epochs
    else:
        probe_rate = _probe_rate(config, args)
        total_epochs = int(args.budget_s * probe_rate / (steps_per_epoch * config.train.batch_size))
    config = config.model_copy(deep=True)
    config.train.stages = [stage.model_copy(update={"epochs": None}) for stage in config.train.stages]
    config.train.epochs = max(1, round(total_epochs / len(stages)))
    config.train.output_dir = str(Path(args.output) / "run")
    config.train.eval_every_epochs = 1000
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


def _summary(trained: dict[str, Any]) -> dict[str, Any]:
    metrics = trained.get("metrics", {}).get("metrics", {})
    return {"images_per_s": trained.get("images_per_s"), "epochs": trained.get("epochs"),
            "train_seconds": trained.get("train_seconds"),
            **{key: metrics.get(key) for key in SUMMARY_METRICS}}


def write_report(result: dict[str, Any], output: Path) -> None:
    output.mkdir(parents=True, exist_ok=True)
    (output / "learn_shapes.json").write_text(json.dumps(result, indent=2, default=str))
    columns = {"Apex-X small": _summary(result["apex_x"])}
    if result.get("peer"):
        columns["YOLOv8n-seg"] = _summary(result["peer"])
    rows = ["images_per_s", "epochs", "train_seconds", *SUMMARY_METRICS]

    def cell(value: Any) -> str:
        return "n/a" if value is None else (f"{value:.4f}" if isinstance(value, float) and value < 1.5 else f"{value:.1f}")

    lines = [
        "# Apex-X learns shapes", "",
        f"- machine: {result['machine']}",
        f"- {result['sizing']} (train_seconds below: what each run really used), "
        f"trainer: {result['trainer']}, threads: {result['threads']}",
        f"- data: {result['data']}", "",
        "| | " + " | ".join(columns) + " |", "|---|" + "---|" * len(columns),
        *[f"| {row} | " + " | ".join(cell(summary[row]) for summary in columns.values()) + " |" for row in rows],
    ]
    if result.get("peer_note"):
        lines += ["", result["peer_note"]]
    (output / "learn_shapes.md").write_text("\n".join(lines) + "\n")


def main() -> None:
    args = parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    data = ensure_dataset(args)
    config = build_config(args, data)
    if args.trainer == "minimal":
        from learn_shapes_minimal import train_minimal

        trained = train_minimal(config, args)
    else:
        trained = train_api(config, args)
    result: dict[str, Any] = {
        "machine": f"{platform.processor() or platform.machine()}, {os.cpu_count()} cpus, torch {torch.__version__}",
        "budget_s": args.budget_s, "trainer": args.trainer, "threads": args.threads,
        "sizing": f"fixed {args.epochs} epochs" if args.epochs and args.trainer == "api"
        else f"budget {args.budget_s:.0f} s of training",
        "data": f"{data} ({args.train_images} train / {args.val_images} val images, {args.size} px)",
        "config": config.to_plain(), "apex_x": trained,
    }
    if args.peer != "none":
        from learn_shapes_peer import train_yolov8

        result["peer"] = train_yolov8(args, data, config)
        if result["peer"] is None:
            result["peer_note"] = "YOLOv8n-seg was requested but `ultralytics` is not installed: no peer figures."
    write_report(result, Path(args.output))
    print(json.dumps({"apex_x": _summary(trained), "peer": _summary(result["peer"]) if result.get("peer") else None}))


if __name__ == "__main__":
    main()
