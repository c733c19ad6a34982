"""Seeding, RNG states as plain values/tensors, and resume positions: what makes a resumed run exact."""

from __future__ import annotations

import hashlib
import os
import random
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from apex_x.application.engine.curriculum import Stage
from apex_x.domain.errors import CheckpointError


def seed_everything(seed: int, *, deterministic: bool) -> None:
    """Seed python, numpy and torch (CPU and CUDA); deterministic algorithms when asked."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)
    if torch.cuda.is_available():
        torch.cuda.manual_seed_all(seed)
    if deterministic:
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
        torch.use_deterministic_algorithms(True, warn_only=True)
        torch.backends.cudnn.benchmark = False
        torch.backends.cudnn.deterministic = True


def reseed(seed: int, *parts: int | str) -> None:
    """Seed python, numpy and torch from (seed, parts): the RNG streams become a pure function of the
    position in the run (epoch, step, rank), so a resumed run draws exactly what a straight run draws,
    whatever a data loader took from the global generators in between."""
    text = ":".join(str(part) for part in (seed, *parts))
    derived = int.from_bytes(hashlib.blake2b(text.encode(), digest_size=8).digest(), "little") >> 1
    random.seed(derived)
    np.random.seed(derived % 2**32)
    torch.manual_seed(derived)


def capture_rng() -> dict[str, Any]:
    """RNG states of python, numpy, torch and CUDA as plain values and uint8 tensors (weights_only safe)."""
    version, internal, gauss = random.getstate()
    name, keys, pos, has_gauss, cached = np.random.get_state(legacy=True)
    state: dict[str, Any] = {
        "python": {"version": int(version), "state": [int(value) for value in internal], "gauss": gauss},
        "numpy": {
            "name": str(name),
            "keys": torch.from_numpy(np.asarray(keys, dtype=np.int64).copy()),
            "pos": int(pos),
            "has_gauss": int(has_gauss),
            "cached_gaussian": float(cached),
        },
        "torch": torch.get_rng_state(),
        "cuda": [],
    }
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = list(torch.cuda.get_rng_state_all())
    return state


def restore_rng(state: Mapping[str, Any]) -> None:
    """Inverse of capture_rng."""
    python = state["python"]
    random.setstate((int(python["version"]), tuple(int(v) for v in python["state"]), python["gauss"]))
    numpy_state = state["numpy"]
    np.random.set_state(
        (
            numpy_state["name"],
            numpy_state["keys"].numpy().astype(np.uint32),
            int(numpy_state["pos"]),
            int(numpy_state["has_gauss"]),
            float(numpy_state["cached_gaussian"]),
        )
    )
    torch.set_rng_state(state["torch"])
    cuda_states = list(state.get("cuda") or [])
    if cuda_states and torch.cuda.is_available() and len(cuda_states) == torch.cuda.device_count():
        torch.cuda.set_rng_state_all(cuda_states)


@dataclass(frozen=True)
class Position:
    """Where a run stands: epoch (global), its stage, batches done in it, whether it is complete."""

    stage_index: int
    stage_name: str
    epoch: int
    epoch_in_stage: int
    step_in_epoch: int
    epoch_complete: bool
    global_step: int
    finished: bool = False

    def to_plain(self) -> dict[str, Any]:
        return {
            "stage_index": self.stage_index,
            "stage_name": self.stage_name,
            "epoch": self.epoch,
            "epoch_in_stage": self.epoch_in_stage,
            "step_in_epoch": self.step_in_epoch,
            "epoch_complete": self.epoch_complete,
            "global_step": self.global_step,
            "finished": self.finished,
        }

    @classmethod
    def from_plain(cls, plain: Mapping[str, Any]) -> Position:
        return cls(
            stage_index=int(plain["stage_index"]),
            stage_name=str(plain["stage_name"]),
            epoch=int(plain["epoch"]),
            epoch_in_stage=int(plain["epoch_in_stage"]),
            step_in_epoch=int(plain["step_in_epoch"]),
            epoch_complete=bool(plain["epoch_complete"]),
            global_step=int(plain["global_step"]),
            finished=bool(plain.get("finished", False)),
        )


@dataclass(frozen=True)
class StartPoint:
    """The next epoch to run (global number and stage) and the first batch in it."""

    stage_index: int
    epoch: int
    start_batch: int


def plan_remaining(stages: list[Stage], position: Position | None,
                   history: Sequence[Mapping[str, Any]] = (), ended: Collection[str] = ()) -> list[StartPoint]:
    """The epochs still to run, in order, each with its run-wide epoch index (one numbering: the n-th epoch
    the run trains is epoch n everywhere) and its first batch.

    Fresh run: every stage's epochs in curriculum order. Resume: the interrupted epoch first (mid-epoch),
    then each stage's epochs the curriculum still owes (requested minus done, from `history`) in curriculum
    order. So extending a finished run (e.g. train.epochs 1 -> 2 of a two-stage curriculum) runs the extra
    epoch of the first stage too, then the last stage's, instead of skipping it. Stages in `ended` (stopped
    early by train.patience) owe nothing."""
    if position is None:
        return [StartPoint(stage.index, epoch, 0) for stage in stages
                for epoch in range(stage.first_epoch, stage.first_epoch + stage.epochs)]
    if not in_curriculum(position, stages):
        raise not_in_curriculum(position, stages)
    done: dict[str, int] = {}
    for entry in history:
        done[str(entry.get("stage"))] = done.get(str(entry.get("stage")), 0) + 1
    owed = {stage.index: 0 if stage.name in ended else max(0, stage.epochs - done.get(stage.name, 0))
            for stage in stages}
    number = len(history)  # complete epochs so far: the next epoch's run-wide index
    schedule: list[StartPoint] = []
    if not position.epoch_complete:
        schedule.append(StartPoint(position.stage_index, position.epoch, position.step_in_epoch))
        owed[position.stage_index] = max(0, owed[position.stage_index] - 1)
        number = position.epoch + 1
    for stage in stages:
        for _ in range(owed[stage.index]):
            schedule.append(StartPoint(stage.index, number, 0))
            number += 1
    return schedule


def in_curriculum(position: Position, stages: list[Stage]) -> bool:
    """Whether a checkpoint's position names a stage of this curriculum (index and name)."""
    return position.stage_index < len(stages) and stages[position.stage_index].name == position.stage_name


def not_in_curriculum(position: Position, stages: list[Stage], path: str | None = None) -> CheckpointError:
    names = [stage.name for stage in stages]
    return CheckpointError(
        f"{path + ': ' if path else ''}the checkpoint's progress is at stage {position.stage_index} ({position.stage_name!r}), which is not in "
        f"this run's curriculum {names}: the file is damaged or belongs to another curriculum"
    )


def next_start(stages: list[Stage], position: Position | None) -> StartPoint | None:
    """Where to continue in (possibly re-planned) stages; None when the run has nothing left to do.

    The stage and its epoch-in-stage anchor the position, so extending train.epochs continues the
    current stage before moving on.
    """
    if position is None:
        first = next((stage for stage in stages if stage.epochs > 0), None)
        return StartPoint(first.index, first.first_epoch, 0) if first else None
    if not in_curriculum(position, stages):
        raise not_in_curriculum(position, stages)
    stage_index = position.stage_index
    epoch_in_stage = position.epoch_in_stage
    start_batch = position.step_in_epoch
    if position.epoch_complete:
        epoch_in_stage += 1
        start_batch = 0
    while stage_index < len(stages) and epoch_in_stage >= stages[stage_index].epochs:
        stage_index += 1
        epoch_in_stage = 0
        start_batch = 0
    if stage_index >= len(stages):
        return None
    return StartPoint(stage_index, stages[stage_index].first_epoch + epoch_in_stage, start_batch)


def check_optimizer_state(optimizer: torch.optim.Optimizer, path: str) -> None:
    """After load_state_dict: every per-parameter state tensor fits its parameter (AdamW's exp_avg and
    exp_avg_sq have the parameter's shape, `step` is one number), so a tampered state is refused here
    instead of failing inside the first step."""
    index = 0
    for group in optimizer.param_groups:
        for parameter in group["params"]:
            for name, value in optimizer.state.get(parameter, {}).items():
                if not isinstance(value, torch.Tensor):
                    continue
                expected = (1,) if name == "step" else tuple(parameter.shape)
                fits = value.numel() == 1 if name == "step" else tuple(value.shape) == expected
                if not fits:
                    raise CheckpointError(
                        f"{path}: checkpoint value 'optimizer.state.{index}.{name}' has shape {tuple(value.shape)}, "
                        f"its parameter needs {expected if name != 'step' else 'one number'}; the file is damaged "
                        "or was not written for this model"
                    )
            index += 1
