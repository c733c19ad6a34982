"""Trainer overhead: time per step of the full training loop against a bare loop of the same model.

Both loops see the same in-memory batches (collated once from the synthetic source, so data loading is
not measured). The full loop is `Trainer.run_epoch` as the train use case runs it: lr schedule, loss
settings, finiteness agreement, grad-norm clipping, EMA, diagnostics, progress hook, per-step reseeding.
The bare loop is forward -> compute_losses -> weighted sum -> backward -> AdamW step -> zero_grad.
Rounds alternate (bare, full, bare, full, ...) so drift of a shared machine hits both; the figure is the
median over rounds of the per-step mean. Goal: overhead <= 5%.

    # full run (quiet machine): the student at 256 px, batch 8
    .venv/bin/python benchmarks/bench_trainer.py --size 256 --batch-size 8 --steps 10 --rounds 5
    # smoke run (seconds)
    .venv/bin/python benchmarks/bench_trainer.py --size 64 --batch-size 2 --steps 3 --rounds 2
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import torch

from apex_x.adapters.config_yaml import load_config
from apex_x.adapters.datasets.synthetic_source import SyntheticDatasetSource
from apex_x.adapters.models.profiles import get_profile
from apex_x.adapters.models.student import StudentModelFactory
from apex_x.application.engine.curriculum import plan_stages
from apex_x.application.engine.diagnostics import RunDiagnostics
from apex_x.application.engine.distributed import DistContext
from apex_x.application.engine.ema import ModelEma
from apex_x.application.engine.progress import SilentProgress
from apex_x.application.engine.schedules import loss_settings
from apex_x.application.engine.trainer import Trainer, build_optimizer
from apex_x.domain.types import Batch


class InMemoryLoader:
    """The same pre-collated batches every epoch (the BatchLoader port)."""

    def __init__(self, batches: list[Batch]) -> None:
        self.batches = batches

    def __len__(self) -> int:
        return len(self.batches)

    def iter_epoch(self, epoch: int, start_batch: int = 0, augment: object = None) -> Iterator[Batch]:
        yield from self.batches[start_batch:]


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size", type=int, default=256)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--steps", type=int, default=10, help="Steps per round.")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE")
    parser.add_argument("--output-json", default=None)
    return parser.parse_args()


def main() -> None:
    args = parse_args()
    torch.set_num_threads(args.threads)
    settings = load_config(None, [
        f"model.input_height={args.size}", f"model.input_width={args.size}", f"train.batch_size={args.batch_size}",
        "train.allow_synthetic_fallback=true", f"data.synthetic_train_images={args.batch_size * args.steps}",
        "data.synthetic_val_images=0", "runtime.device=cpu", *args.overrides,
    ])
    source = SyntheticDatasetSource(settings)
    batches = list(source.train_loader(args.batch_size, seed=0).iter_epoch(0))[: args.steps]
    stage = plan_stages(settings, get_profile(settings.model.profile).default_stages(settings))[-1]  # det + seg + boundary: the heaviest stage
    settings_for = lambda progress: loss_settings(stage.losses, progress, settings.train)  # noqa: E731
    model = StudentModelFactory().build(settings.model, source.categories.num_classes)
    torch.manual_seed(0)

    bare_optimizer = build_optimizer(model, settings.train)

    def bare_round() -> float:
        model.train()
        started = time.perf_counter()
        for index, batch in enumerate(batches):
            loss_config = settings_for(index / len(batches))
            outputs = model(batch.images)
            components = model.compute_losses(outputs, batch, loss_config)
            total = sum(loss_config.weights[name] * value for name, value in components.items()
                        if name in loss_config.weights)
            total.backward()
            bare_optimizer.step()
            bare_optimizer.zero_grad(set_to_none=True)
        return (time.perf_counter() - started) / len(batches)

    trainer = Trainer(model=model, optimizer=build_optimizer(model, settings.train), train=settings.train,
                      context=DistContext(), ema=ModelEma(model, settings.train.ema_decay) if settings.train.ema
                      else None, diagnostics=RunDiagnostics(), total_steps=args.steps * args.rounds * 2)
    trainer.begin_stage(stage, model.parameter_groups())
    loader = InMemoryLoader(batches)

    def full_round() -> float:
        started = time.perf_counter()
        trainer.run_epoch(loader=loader, stage=stage, epoch=0, start_batch=0, steps_in_epoch=len(batches),
                          settings_for=settings_for, progress=SilentProgress(), on_step_end=lambda done: False)
        return (time.perf_counter() - started) / len(batches)

    bare_round()
    full_round()  # warm-up of both paths
    bare_times, full_times = [], []
    for _ in range(args.rounds):
        bare_times.append(bare_round())
        full_times.append(full_round())
    bare, full = statistics.median(bare_times), statistics.median(full_times)
    overhead = (full - bare) / bare
    result: dict[str, Any] = {
        "benchmark": "trainer_overhead",
        "machine": {"platform": platform.platform(), "processor": platform.processor(), "threads": args.threads,
                    "torch": torch.__version__},
        "model": {"backbone": settings.model.backbone, "input": args.size, "batch_size": args.batch_size,
                  "parameters": sum(p.numel() for p in model.parameters())},
        "steps_per_round": len(batches), "rounds": args.rounds,
        "bare_s_per_step": bare, "full_s_per_step": full,
        "bare_rounds": bare_times, "full_rounds": full_times,
        "overhead_fraction": overhead, "goal_fraction": 0.05, "meets_goal": overhead <= 0.05,
    }
    print(f"bare loop  {bare * 1000:8.1f} ms/step   (rounds: {', '.join(f'{t * 1000:.1f}' for t in bare_times)})")
    print(f"full loop  {full * 1000:8.1f} ms/step   (rounds: {', '.join(f'{t * 1000:.1f}' for t in full_times)})")
    print(f"overhead   {overhead * 100:+.2f}% (goal <= 5%): {'OK' if overhead <= 0.05 else 'ABOVE GOAL'}")
    if args.output_json:
        Path(args.output_json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.output_json).write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
