"""Gradient accumulation to a nominal batch size (`train.nominal_batch_size`), as Ultralytics' `nbs` does.

An optimizer step sums the gradients of `accumulate` consecutive loader batches (micro-batches), each
weighted 1 / accumulate, so it sees about `nominal_batch_size` images whatever fits in memory. lr and
weight decay are the values at the nominal batch size and are scaled linearly by effective / nominal (the
linear scaling rule of Goyal et al. 2017, "Accurate, Large Minibatch SGD"; MMDetection's `auto_scale_lr`;
Ultralytics scales weight decay the same way), so rounding the accumulation count changes nothing else.

Everything that counts steps (warm-up, the cosine schedule, train.steps_per_stage, checkpoint_every_steps,
the progress of a checkpoint) counts optimizer steps; a mid-epoch checkpoint is always at an optimizer-step
boundary, so resuming never loses half an accumulated gradient.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import Any

import structlog

from apex_x.domain.config import TrainConfig
from apex_x.domain.types import Batch

log = structlog.get_logger(__name__)


@dataclass(frozen=True)
class BatchPlan:
    """How many images an optimizer step sees and how lr / weight decay follow."""

    batch_size: int  # images per loader batch (micro-batch) per process
    world_size: int  # processes
    accumulate: int  # micro-batches per optimizer step
    nominal: int | None  # train.nominal_batch_size; None = no accumulation, no scaling
    limited_by_epoch: bool = False  # the epoch has fewer batches than the accumulation asks for
    unused_batches: int = 0  # loader batches per epoch left over after the last whole group (not trained on)

    @property
    def effective(self) -> int:
        """Images per optimizer step over every process."""
        return self.batch_size * self.world_size * self.accumulate

    @property
    def scale(self) -> float:
        """Factor on train.lr and train.weight_decay: effective / nominal (1 without a nominal batch size)."""
        return self.effective / self.nominal if self.nominal else 1.0

    def to_plain(self) -> dict[str, Any]:
        return {"batch_size": self.batch_size, "world_size": self.world_size, "accumulate": self.accumulate,
                "nominal_batch_size": self.nominal, "effective_batch_size": self.effective,
                "lr_weight_decay_scale": round(self.scale, 6), "limited_by_epoch": self.limited_by_epoch,
                "unused_batches_per_epoch": self.unused_batches}


def plan_batches(train: TrainConfig, world_size: int, batches_per_epoch: int) -> BatchPlan:
    """accumulate = round(nominal / (batch_size * world_size)), at least 1 and at most the batches of an epoch.

    plan_batches(nominal 64, batch 8, 1 process) accumulates 8; batch 6 accumulates 11 (66 images, scale 66/64).
    """
    nominal = train.nominal_batch_size
    if nominal is None:
        return BatchPlan(train.batch_size, world_size, 1, None)
    wanted = max(1, round(nominal / (train.batch_size * world_size)))
    accumulate = max(1, min(wanted, batches_per_epoch))
    plan = BatchPlan(train.batch_size, world_size, accumulate, nominal, limited_by_epoch=accumulate < wanted,
                     unused_batches=batches_per_epoch % accumulate)
    log.info("batch_plan", **plan.to_plain())
    if plan.unused_batches:  # accumulation_groups drops the partial group at the end of every epoch
        log.warning("accumulation_remainder", unused_batches_per_epoch=plan.unused_batches,
                    note=f"an epoch has {batches_per_epoch} batch(es) per process, {accumulate} per optimizer step: "
                    f"the last {plan.unused_batches} batch(es) of every epoch ({plan.unused_batches * train.batch_size} "
                    f"image(s) per process, different ones each epoch) are not trained on; a train.nominal_batch_size "
                    f"or train.batch_size whose accumulation divides {batches_per_epoch} uses them all")
    if plan.limited_by_epoch:
        log.warning("accumulation_limited", wanted=wanted, accumulate=accumulate, batches_per_epoch=batches_per_epoch,
                    note=f"an epoch has only {batches_per_epoch} batch(es): an optimizer step sees {plan.effective} "
                    f"images instead of train.nominal_batch_size={nominal}; lr and weight decay are scaled to it")
    return plan


def accumulation_groups(
    batches: Iterable[Batch], accumulate: int, usable: Callable[[Batch], bool]
) -> Iterator[list[Batch]]:
    """Consecutive groups of `accumulate` loader batches, each group one optimizer step. A batch for which
    `usable` is False (every image failed to decode and was skipped) still takes its place in the group, so
    the steps of an epoch are fixed by the loader; a group may come out empty. A partial group at the end of
    the epoch is dropped (as a partial batch is)."""
    group: list[Batch] = []
    taken = 0
    for batch in batches:
        taken += 1
        if usable(batch):
            group.append(batch)
        if taken == accumulate:
            yield group
            group, taken = [], 0
