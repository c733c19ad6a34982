"""Where a training step of the student goes, and what channels-last, torch.compile and threads change.

Two parts, on the same in-memory batches of the synthetic source (data loading is not measured; see
bench_data.py), the heaviest stage (det + seg + boundary at full weight):

1. Breakdown of one step (the default model: channels-last, eager): the forward of the backbone, neck,
   detection head and prototype mask head, the task-aligned assignment, the detection targets and matched
   masks (gather + prototype assembly), each loss component, the backward and the AdamW step. Medians of
   `--steps x --rounds` steps, milliseconds.
2. Variants, whole step (forward, loss, backward, optimizer): `default` (channels-last, eager), `contiguous`
   (NCHW), `compile` (runtime.compile_model: the forward through torch.compile; its compile time is given
   apart; compiled at the largest `--threads` value, whose thread count Inductor's code keeps), each at
   every `--threads` value. Rounds are interleaved across variants so the drift of a shared
   machine hits all of them; the figure is the median of the per-round means, in images/s.

    # full run (quiet machine, a few minutes; the first compile takes ~1 minute on 2 cores)
    .venv/bin/python benchmarks/bench_step.py --size 256 --batch-size 16 --threads 1,2 \
        --output-json benchmarks/results/step_breakdown.json
    # smoke run
    .venv/bin/python benchmarks/bench_step.py --size 64 --batch-size 2 --steps 2 --rounds 1 --threads 1
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import torch

from apex_x.adapters.config_yaml import load_config
from apex_x.adapters.datasets.synthetic_source import SyntheticDatasetSource
from apex_x.adapters.models.losses import DenseLossInputs
from apex_x.adapters.models.profiles import get_profile
from apex_x.adapters.models.student import StudentModelFactory
from apex_x.application.engine.compiled_forward import CompiledForward
from apex_x.application.engine.curriculum import plan_stages
from apex_x.application.engine.schedules import loss_settings
from apex_x.application.engine.trainer import build_optimizer
from apex_x.domain.types import Batch, LossSettings

VARIANTS = ("default", "contiguous", "compile")


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size", type=int, default=256)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--steps", type=int, default=6, help="Steps per round.")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--threads", default="2", help="Comma-separated torch thread counts, e.g. 1,2.")
    parser.add_argument("--variants", default=",".join(VARIANTS), help=f"Comma-separated, of {VARIANTS}.")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE")
    parser.add_argument("--output-json", default=None)
    return parser.parse_args()


class Setup:
    """The model, optimizer and forward of one variant."""

    def __init__(self, variant: str, settings: Any, num_classes: int) -> None:
        torch.manual_seed(0)
        self.model = StudentModelFactory().build(settings.model, num_classes)
        if variant == "contiguous":
            self.model.channels_last = False
            self.model.to(memory_format=torch.contiguous_format)
        self.model.train()
        self.optimizer = build_optimizer(self.model, settings.train)
        self.forward = CompiledForward(variant == "compile", torch.device("cpu"))

    def step(self, batch: Batch, losses: LossSettings) -> None:
        outputs = self.forward(self.model, batch.images)
        components = self.model.compute_losses(outputs, batch, losses)
        sum(losses.weights[name] * value for name, value in components.items()).backward()
        self.optimizer.step()
        self.optimizer.zero_grad(set_to_none=True)


def breakdown(setup: Setup, batches: list[Batch], losses: LossSettings, rounds: int) -> dict[str, float]:
    """Median milliseconds of each part of a step (the model's own submodules, timed one after the other)."""
    model, times = setup.model, {}

    @contextmanager
    def clock(name: str) -> Iterator[None]:
        started = time.perf_counter()
        yield
        times.setdefault(name, []).append((time.perf_counter() - started) * 1000.0)

    for _ in range(rounds):
        for batch in batches:
            x = model.normalise(batch.images)
            with clock("forward: backbone"):
                features = model.backbone(x)
            with clock("forward: neck"):
                levels = model.neck(features)
            with clock("forward: detection head"):
                model.head(levels)
            with clock("forward: prototype mask head"):
                model.mask_head(levels)
            outputs = model(batch.images)  # the outputs the loss uses (the parts above are timed, not reused)
            inputs = DenseLossInputs(model.loss, outputs, batch)
            with clock("assigner"):
                inputs.assignment  # noqa: B018 (computed on first use)
            with clock("detection targets"):
                inputs.detection_targets()
            with clock("matched masks (gather, assembly)"):
                inputs.matched_masks()
            components = {}
            for component in model.loss.components:
                if losses.weights.get(component.name, 0.0) > 0:
                    with clock(f"loss: {component.name}"):
                        components[component.name] = component.compute(inputs, losses)
            total = sum(losses.weights[name] * value for name, value in components.items())
            with clock("backward"):
                total.backward()
            with clock("optimizer (AdamW)"):
                setup.optimizer.step()
                setup.optimizer.zero_grad(set_to_none=True)
    return {name: statistics.median(values) for name, values in times.items()}


def main() -> None:
    args = parse_args()
    threads = [int(value) for value in args.threads.split(",")]
    variants = [value for value in args.variants.split(",") if value]
    unknown = sorted(set(variants) - set(VARIANTS))
    if unknown:
        raise SystemExit(f"unknown variant(s) {unknown}; choose from {VARIANTS}")
    settings = load_config(None, [
        "model.profile=small", f"model.input_height={args.size}", f"model.input_width={args.size}",
        f"train.batch_size={args.batch_size}", "train.allow_synthetic_fallback=true",
        f"data.synthetic_train_images={args.batch_size * args.steps}", "data.synthetic_val_images=0",
        "runtime.device=cpu", *args.overrides,
    ])
    source = SyntheticDatasetSource(settings)
    batches = list(source.train_loader(args.batch_size, seed=0).iter_epoch(0))[: args.steps]
    stage = plan_stages(settings, get_profile(settings.model.profile).default_stages(settings))[-1]
    losses = loss_settings(stage.losses, 1e6, settings.train)  # every ramp at its end
    setups = {variant: Setup(variant, settings, source.categories.num_classes) for variant in variants}

    torch.set_num_threads(max(threads))
    first_step_s = {}
    for variant, setup in setups.items():  # warm-up: the first step compiles (kernels, and the network for compile)
        started = time.perf_counter()
        setup.step(batches[0], losses)
        first_step_s[variant] = time.perf_counter() - started
        setup.step(batches[1 % len(batches)], losses)
    parts = breakdown(setups["default"], batches, losses, args.rounds) if "default" in setups else {}

    per_round: dict[str, list[float]] = {f"{variant} x{count}": [] for count in threads for variant in variants}
    for _ in range(args.rounds):
        for count in threads:
            torch.set_num_threads(count)
            for variant, setup in setups.items():
                started = time.perf_counter()
                for batch in batches:
                    setup.step(batch, losses)
                per_round[f"{variant} x{count}"].append(len(batches) * args.batch_size / (time.perf_counter() - started))
    rates = {name: statistics.median(values) for name, values in per_round.items()}

    print(f"step breakdown (default variant, {max(threads)} threads, ms; the forward's parts are timed apart, then "
          "the whole forward runs once more for the loss, not counted):")
    for name, value in parts.items():
        print(f"  {name:36s} {value:8.1f}")
    print(f"  {'total':36s} {sum(parts.values()):8.1f}")
    print("images/s (median of rounds):")
    for name, value in rates.items():
        print(f"  {name:20s} {value:7.1f}   rounds: {', '.join(f'{v:.1f}' for v in per_round[name])}")
    print("first step s: " + ", ".join(f"{name} {value:.1f}" for name, value in first_step_s.items()))
    result = {
        "benchmark": "step_breakdown",
        "machine": {"platform": platform.platform(), "processor": platform.processor(), "torch": torch.__version__},
        "model": {"backbone": settings.model.backbone, "input": args.size, "batch_size": args.batch_size},
        "steps_per_round": len(batches), "rounds": args.rounds, "threads": threads,
        "breakdown_ms": parts, "images_per_s": rates, "rounds_images_per_s": per_round,
        "first_step_s": first_step_s,
        "compile": setups["compile"].forward.to_plain() if "compile" in setups else None,
    }
    if args.output_json:
        Path(args.output_json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.output_json).write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
