"""TeacherModelV3 benchmark: train-step time, peak memory and trainable parameters per worldclass stage.

The DINOv2 architecture is built from a config with random weights (nothing is downloaded). Each row is
one (architecture, input size, gradient checkpointing, stage): a full training step (forward, the real
det/seg/boundary losses, backward, AdamW step) on a synthetic batch, the median over --steps after
--warmup steps. Peak memory is torch.cuda.max_memory_allocated on CUDA; on CPU it is the growth of the
process's peak RSS during the row (a coarse figure: earlier rows may already have raised the peak).

    # the full run (quiet machine; on a GPU add --device cuda, both checkpointing settings are measured):
    python benchmarks/bench_teacher.py --arch large --sizes 224,512 --batch-size 2 --steps 5
    # a smoke run (seconds):
    python benchmarks/bench_teacher.py --arch tiny --sizes 64 --batch-size 2 --steps 2 --warmup 1
"""

from __future__ import annotations

import argparse
import json
import platform
import resource
import statistics
import sys
import time
from typing import Any

import torch

from apex_x.adapters.models.profiles import get_profile
from apex_x.adapters.models.teacher_v3 import TeacherModelV3
from apex_x.application.engine.curriculum import apply_trainable, plan_stages
from apex_x.domain.config import ApexConfig, ModelConfig, TrainConfig
from apex_x.domain.types import Batch, LossSettings

# DINOv2 sizes (facebook/dinov2-*): hidden, layers, heads, MLP width. "tiny" is for smoke runs only.
ARCHITECTURES: dict[str, dict[str, int]] = {
    "tiny": {"hidden_size": 32, "num_hidden_layers": 2, "num_attention_heads": 2, "intermediate_size": 64},
    "small": {"hidden_size": 384, "num_hidden_layers": 12, "num_attention_heads": 6, "intermediate_size": 1536},
    "base": {"hidden_size": 768, "num_hidden_layers": 12, "num_attention_heads": 12, "intermediate_size": 3072},
    "large": {"hidden_size": 1024, "num_hidden_layers": 24, "num_attention_heads": 16, "intermediate_size": 4096},
}
NUM_CLASSES = 80


def build_teacher(arch: str, size: int, checkpointing: bool) -> tuple[TeacherModelV3, ApexConfig]:
    from transformers import Dinov2Config, Dinov2Model

    torch.manual_seed(0)
    dinov2 = Dinov2Model(Dinov2Config(**ARCHITECTURES[arch], patch_size=14, image_size=518))
    model_config = ModelConfig(
        profile="worldclass", input_height=size, input_width=size, gradient_checkpointing=checkpointing,
        teacher_backbone=f"facebook/dinov2-{arch} (random init)",
    )
    settings = ApexConfig(model=model_config, train=TrainConfig(enable_lora_finetune=True))
    return TeacherModelV3(dinov2, num_classes=NUM_CLASSES, config=model_config), settings


def synthetic_batch(batch_size: int, size: int, mask_stride: int, instances: int = 8) -> Batch:
    """Random images with `instances` rectangles each (boxes, labels and their masks)."""
    generator = torch.Generator().manual_seed(0)
    images = torch.randint(0, 256, (batch_size, 3, size, size), dtype=torch.uint8, generator=generator)
    corners = torch.rand(batch_size, instances, 2, generator=generator) * size * 0.7
    extent = 8 + torch.rand(batch_size, instances, 2, generator=generator) * size * 0.3
    boxes = torch.cat([corners, (corners + extent).clamp(max=size - 1)], dim=-1)
    labels = torch.randint(0, NUM_CLASSES, (batch_size, instances), generator=generator)
    side = size // mask_stride
    cells = (torch.arange(side) + 0.5) * mask_stride
    inside_y = (cells[None, None, :] >= boxes[..., 1:2]) & (cells[None, None, :] <= boxes[..., 3:4])
    inside_x = (cells[None, None, :] >= boxes[..., 0:1]) & (cells[None, None, :] <= boxes[..., 2:3])
    masks = (inside_y[..., :, None] & inside_x[..., None, :]).to(torch.uint8)
    valid = torch.ones(batch_size, instances, dtype=torch.bool)
    return Batch(images=images, boxes=boxes, labels=labels, masks=masks, valid=valid, crowd=~valid)


def peak_memory_mib(device: torch.device, rss_before_kib: int) -> float:
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**20
    return max(0, resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - rss_before_kib) / 1024


def measure(arch: str, size: int, checkpointing: bool, args: argparse.Namespace, device: torch.device) -> list[dict]:
    model, settings = build_teacher(arch, size, checkpointing)
    model.to(device).train()
    batch = synthetic_batch(args.batch_size, size, model.mask_stride).to(device)
    settings_for_loss = LossSettings(weights={"det": 1.0, "seg": 1.0, "boundary": 1.0})
    amp = torch.autocast("cuda", dtype=torch.bfloat16) if device.type == "cuda" else None
    groups = model.parameter_groups()
    rows = []
    for stage in plan_stages(settings, get_profile(settings.model.profile).default_stages(settings)):
        trainable = apply_trainable(model, groups, stage)
        optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-4)
        if device.type == "cuda":
            torch.cuda.synchronize(device)
            torch.cuda.reset_peak_memory_stats(device)
        rss_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        times = []
        for step in range(args.warmup + args.steps):
            start = time.perf_counter()
            with amp if amp is not None else torch.autocast("cpu", enabled=False):
                outputs = model(batch.images)
                losses = model.compute_losses(outputs, batch, settings_for_loss)
            total = torch.stack([value.float() for value in losses.values()]).sum()
            total.backward()
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)
            if device.type == "cuda":
                torch.cuda.synchronize(device)
            if step >= args.warmup:
                times.append(time.perf_counter() - start)
        rows.append({
            "arch": arch, "input": size, "batch": args.batch_size, "checkpointing": checkpointing,
            "stage": stage.name, "trainable_params": trainable,
            "total_params": sum(p.numel() for p in model.parameters()),
            "step_ms_median": 1000 * statistics.median(times), "step_ms_min": 1000 * min(times),
            "images_per_s": args.batch_size / statistics.median(times),
            "peak_mem_mib": peak_memory_mib(device, rss_before), "device": str(device),
        })
        print(_format(rows[-1]), flush=True)
        del optimizer
    return rows


def _format(row: dict[str, Any]) -> str:
    return (
        f"{row['arch']:>6} {row['input']:>5}px b{row['batch']} ckpt={'on ' if row['checkpointing'] else 'off'} "
        f"{row['stage']:<22} trainable={row['trainable_params']:>11,d} / {row['total_params']:>11,d}  "
        f"step={row['step_ms_median']:9.1f} ms  {row['images_per_s']:7.2f} img/s  peak={row['peak_mem_mib']:9.1f} MiB"
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--arch", choices=sorted(ARCHITECTURES), default="large", help="DINOv2 size (random init).")
    parser.add_argument("--sizes", default="224,512", help="Comma-separated input sides (multiples of 32).")
    parser.add_argument("--batch-size", type=int, default=2)
    parser.add_argument("--steps", type=int, default=5, help="Timed steps per row.")
    parser.add_argument("--warmup", type=int, default=2, help="Untimed steps per row.")
    parser.add_argument("--device", choices=["auto", "cpu", "cuda"], default="auto")
    parser.add_argument("--checkpointing", choices=["both", "on", "off"], default=None,
                        help="Gradient checkpointing; default: both on CUDA, off on CPU.")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads.")
    parser.add_argument("--output-json", default=None, help="Also write the rows as JSON here.")
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    use_cuda = args.device == "cuda" or (args.device == "auto" and torch.cuda.is_available())
    device = torch.device("cuda" if use_cuda else "cpu")
    mode = args.checkpointing or ("both" if use_cuda else "off")
    settings = {"both": [False, True], "on": [True], "off": [False]}[mode]
    name = torch.cuda.get_device_name(device) if use_cuda else platform.processor() or platform.machine()
    print(f"TeacherModelV3 benchmark on {device} ({name}), torch {torch.__version__}, threads {torch.get_num_threads()}")
    rows = []
    for size in (int(text) for text in args.sizes.split(",")):
        for checkpointing in settings:
            rows.extend(measure(args.arch, size, checkpointing, args, device))
    if args.output_json:
        with open(args.output_json, "w", encoding="utf-8") as handle:
            json.dump({"device": str(device), "device_name": name, "rows": rows}, handle, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
