"""Checkpoint save and load time of the student: a full training payload (model, EMA, AdamW state,
RNG, progress...) through TorchCheckpointStore (atomic write with fsync; secure weights_only load), and
the final model.safetensors write. Median of --repeats; file sizes included.

    # full run (quiet machine): the default student
    .venv/bin/python benchmarks/bench_checkpoint.py --repeats 5
    # smoke run (seconds)
    .venv/bin/python benchmarks/bench_checkpoint.py --repeats 2 --set model.width_multiplier=0.25
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import torch

from apex_x.adapters.checkpoints.safetensors_writer import SafetensorsWeightsWriter
from apex_x.adapters.checkpoints.torch_store import TorchCheckpointStore
from apex_x.adapters.config_yaml import load_config
from apex_x.adapters.models.student import StudentModelFactory
from apex_x.application.engine.checkpointing import make_payload
from apex_x.application.engine.ema import ModelEma
from apex_x.application.engine.train_state import capture_rng
from apex_x.application.engine.trainer import build_optimizer


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--classes", type=int, default=80)
    parser.add_argument("--folder", default=None, help="Where to write (default: a temporary folder).")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE")
    parser.add_argument("--output-json", default=None)
    return parser.parse_args()


def timed(action: Any, repeats: int) -> list[float]:
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        action()
        times.append(time.perf_counter() - started)
    return times


def main() -> None:
    args = parse_args()
    settings = load_config(None, list(args.overrides))
    model = StudentModelFactory().build(settings.model, args.classes)
    optimizer = build_optimizer(model, settings.train)
    for param in model.parameters():  # one AdamW step so the optimizer state is full size
        param.grad = torch.zeros_like(param)
    optimizer.step()
    ema = ModelEma(model, settings.train.ema_decay)
    payload = make_payload(
        profile="small", model_state=model.state_dict(), ema_state=ema.weights(),
        optimizer_state=optimizer.state_dict(), scheduler_state={"global_step": 1}, rng=capture_rng(),
        progress={"epoch": 0}, best=None, config=settings.to_plain(),
        categories={"original_ids": list(range(args.classes)), "names": [f"c{i}" for i in range(args.classes)]},
        dataset_fingerprint="0" * 64, input_size=(settings.model.input_height, settings.model.input_width),
        train_state={},
    )
    store = TorchCheckpointStore()
    with tempfile.TemporaryDirectory(dir=args.folder) as folder:
        path = Path(folder) / "last.pt"
        weights = Path(folder) / "model.safetensors"
        save = timed(lambda: store.save(payload, str(path)), args.repeats)
        load = timed(lambda: store.load(str(path)), args.repeats)
        writer = SafetensorsWeightsWriter()
        safetensors = timed(lambda: writer.write(ema.weights(), str(weights), {"profile": "small"}), args.repeats)
        sizes = {"checkpoint_mb": path.stat().st_size / 2**20, "safetensors_mb": weights.stat().st_size / 2**20}
    result = {
        "benchmark": "checkpoint_io",
        "machine": {"platform": platform.platform(), "torch": torch.__version__},
        "parameters": sum(p.numel() for p in model.parameters()),
        "save_s": statistics.median(save), "load_s": statistics.median(load),
        "safetensors_write_s": statistics.median(safetensors), **sizes,
        "runs": {"save": save, "load": load, "safetensors": safetensors},
    }
    print(f"student {result['parameters'] / 1e6:.1f} M parameters, checkpoint {sizes['checkpoint_mb']:.1f} MiB, "
          f"model.safetensors {sizes['safetensors_mb']:.1f} MiB")
    print(f"save (atomic, fsync)      {result['save_s'] * 1000:8.1f} ms")
    print(f"load (weights_only=True)  {result['load_s'] * 1000:8.1f} ms")
    print(f"safetensors write         {result['safetensors_write_s'] * 1000:8.1f} ms")
    if args.output_json:
        Path(args.output_json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.output_json).write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
