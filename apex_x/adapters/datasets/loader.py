"""BatchLoader over torch's DataLoader: per-rank sharding, per-epoch shuffle, exact mid-epoch resume, collate.

Batch k of epoch e is a pure function of (seed, epoch, rank, world_size, k, the epoch's AugmentPlan): the
order comes from `seed + epoch` (as DistributedSampler), each sample's augmentation from (seed, epoch, index),
the batch's input size (multi-scale) from (seed, epoch, k). The plan and size travel in the batch keys, so
persistent workers always use the epoch's own.
"""

from __future__ import annotations

import dataclasses
import gc
import math
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Protocol

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, Sampler

from apex_x.adapters.datasets.augment.multi_scale import batch_input_size
from apex_x.adapters.datasets.augment.pipeline import augment_rng, augment_sample
from apex_x.adapters.datasets.coco_samples import UnreadableImage
from apex_x.adapters.datasets.repeat_factor import epoch_indices
from apex_x.adapters.datasets.transforms import (
    RawSample,
    Sample,
    TransformSettings,
    sample_rng,
    transform_sample,
)
from apex_x.domain.augment import OFF, AugmentPlan, augment_plan
from apex_x.domain.config import DataConfig
from apex_x.domain.input_size import INPUT_SIZE_MULTIPLE
from apex_x.domain.types import Batch


class SampleProvider(Protocol):
    """Raw images with their instances, by index."""

    def __len__(self) -> int: ...

    def load(self, index: int, *, augment: bool) -> RawSample: ...


@dataclass(frozen=True)
class BadImage:
    """Stands in for a sample whose image failed to decode; collate leaves it out and lists it in the batch."""

    image_id: int
    file: str
    reason: str


SampleKey = tuple[int, int, AugmentPlan, "tuple[int, int] | None"]


class InstanceDataset(Dataset[Sample]):
    """Map-style dataset keyed by (epoch, index[, plan, size]): the randomness is per (seed, epoch, index)."""

    def __init__(
        self, provider: SampleProvider, settings: TransformSettings, *, augment: bool, seed: int
    ) -> None:
        self.provider = provider
        self.settings = settings
        self.augment = augment
        self.seed = seed

    def __len__(self) -> int:
        return len(self.provider)

    def __getitem__(self, key: tuple[int, int] | SampleKey) -> Sample | BadImage:
        """key: (epoch, index), or (epoch, index, plan, (height, width)) from a plan or multi-scale batch."""
        epoch, index = key[0], key[1]
        plan, size = (key[2], key[3]) if len(key) == 4 else (OFF, None)
        settings = self.settings
        if size is not None and size != (settings.input_height, settings.input_width):
            settings = dataclasses.replace(settings, input_height=size[0], input_width=size[1])
        try:
            if self.augment and plan.per_sample:
                return augment_sample(index, plan, settings, self._load, len(self.provider),
                                      augment_rng(self.seed, epoch, index))
            raw = self.provider.load(index, augment=self.augment)
        except UnreadableImage as error:  # the trainer decides (data.on_bad_image): stop with a resume, or skip
            return BadImage(error.image_id, error.file, error.reason)
        rng = sample_rng(self.seed, epoch, index) if self.augment else None
        return transform_sample(raw, settings, rng)

    def _load(self, index: int) -> RawSample:
        return self.provider.load(index, augment=self.augment)


def shard_indices(
    num_samples: int, *, shuffle: bool, seed: int, epoch: int, rank: int, world_size: int, pad: bool
) -> list[int]:
    """DistributedSampler's indices for a rank: shuffled by seed + epoch, padded to a multiple of world_size."""
    if shuffle:
        generator = torch.Generator()
        generator.manual_seed(int(seed) + int(epoch))
        order = torch.randperm(num_samples, generator=generator).tolist()
    else:
        order = list(range(num_samples))
    if pad and world_size > 1 and num_samples % world_size:
        total = math.ceil(num_samples / world_size) * world_size
        order = (order * math.ceil(total / max(num_samples, 1)))[:total]
    return order[rank::world_size]


class EpochBatchSampler(Sampler[list[tuple[int, int]]]):
    """Batches of (epoch, index) keys for one rank; set_epoch(epoch, start_batch) before each iteration."""

    def __init__(
        self,
        num_samples: int,
        batch_size: int,
        *,
        shuffle: bool,
        seed: int,
        rank: int,
        world_size: int,
        drop_last: bool,
        repeat_factors: np.ndarray | None = None,
    ) -> None:
        if not 0 <= rank < world_size:
            raise ValueError(f"rank {rank} is outside world_size {world_size}")
        self.num_samples = num_samples
        self.batch_size = batch_size
        self.shuffle = shuffle
        self.seed = seed
        self.rank = rank
        self.world_size = world_size
        self.repeat_factors = repeat_factors  # (N,) r_i of repeat-factor sampling (repeat_factor.py), or None
        self.pad = (
            shuffle  # training shards are padded (equal batches on every rank); eval shards are disjoint
        )
        per_rank = len(self._indices(0))
        self.drop_last = drop_last and per_rank >= batch_size
        self.epoch = 0
        self.start_batch = 0
        self.plan = OFF
        self.base_size: tuple[int, int] | None = None  # (height, width) that multi-scale varies
        self.size_multiple = INPUT_SIZE_MULTIPLE  # multi-scale sides are multiples of it (the profile's rule)

    def _indices(self, epoch: int) -> list[int]:
        if self.repeat_factors is not None:  # the epoch's images with their repeats, then shuffled and sharded
            pool = epoch_indices(self.repeat_factors, self.seed, epoch)
            positions = shard_indices(len(pool), shuffle=self.shuffle, seed=self.seed, epoch=epoch, rank=self.rank,
                                      world_size=self.world_size, pad=self.pad)
            return [pool[position] for position in positions]
        return shard_indices(
            self.num_samples,
            shuffle=self.shuffle,
            seed=self.seed,
            epoch=epoch,
            rank=self.rank,
            world_size=self.world_size,
            pad=self.pad,
        )

    def batches(self, epoch: int) -> list[list[int]]:
        indices = self._indices(epoch)
        stop = len(indices) - (len(indices) % self.batch_size if self.drop_last else 0)
        return [
            indices[start : min(start + self.batch_size, stop)] for start in range(0, stop, self.batch_size)
        ]

    def num_batches(self) -> int:
        per_rank = len(self._indices(0))
        return per_rank // self.batch_size if self.drop_last else math.ceil(per_rank / self.batch_size)

    def set_epoch(self, epoch: int, start_batch: int = 0, plan: AugmentPlan = OFF) -> None:
        self.epoch = int(epoch)
        self.start_batch = max(0, int(start_batch))
        self.plan = plan

    def input_size(self, batch: int) -> tuple[int, int] | None:
        """(height, width) of batch `batch` of the current epoch under multi-scale, else None (the base size)."""
        if self.plan.multi_scale is None or self.base_size is None:
            return None
        return batch_input_size(self.seed, self.epoch, batch, self.base_size, self.plan.multi_scale,
                                self.size_multiple)

    def __iter__(self) -> Iterator[list[tuple[int, int]] | list[SampleKey]]:
        plain = self.plan == OFF
        for number, batch in enumerate(self.batches(self.epoch)[self.start_batch :], start=self.start_batch):
            if plain:
                yield [(self.epoch, index) for index in batch]
            else:
                size = self.input_size(number)
                yield [(self.epoch, index, self.plan, size) for index in batch]

    def __len__(self) -> int:
        return max(0, self.num_batches() - self.start_batch)


def collate_samples(items: Sequence[Sample | BadImage], max_instances: int) -> Batch:
    """Samples -> Batch with instances padded to M = max count in the batch (>= 1, <= max_instances).

    Built with numpy (single-threaded memcpy) and wrapped with torch.from_numpy: torch's multi-threaded
    copies stall badly when the CPU is oversubscribed (a training process next to its loader).
    """
    samples = [item for item in items if isinstance(item, Sample)]
    bad = [{"image_id": item.image_id, "file": item.file, "reason": item.reason}
           for item in items if isinstance(item, BadImage)]
    if not samples:  # every image of the batch failed to decode: an empty batch that lists them
        empty = torch.zeros(0, 1)
        return Batch(images=torch.zeros(0, 3, 1, 1, dtype=torch.uint8), boxes=empty, labels=empty.long(),
                     masks=empty.byte(), valid=empty.bool(), crowd=empty.bool(), metas=[], bad_images=bad)
    count = max(1, min(max_instances, max((len(s.labels) for s in samples), default=0)))
    size = len(samples)
    mask_h, mask_w = samples[0].masks.shape[1:]
    images = np.stack([s.image for s in samples])  # (B, 3, H, W) uint8
    boxes = np.zeros((size, count, 4), dtype=np.float32)
    labels = np.full((size, count), -1, dtype=np.int64)
    masks = np.zeros((size, count, mask_h, mask_w), dtype=np.uint8)
    valid = np.zeros((size, count), dtype=bool)
    crowd = np.zeros((size, count), dtype=bool)
    for row, sample in enumerate(samples):
        n = min(len(sample.labels), count)
        boxes[row, :n] = sample.boxes[:n]
        labels[row, :n] = sample.labels[:n]
        masks[row, :n] = sample.masks[:n]
        valid[row, :n] = True
        crowd[row, :n] = sample.crowd[:n]
    return Batch(
        images=torch.from_numpy(images),
        boxes=torch.from_numpy(boxes),
        labels=torch.from_numpy(labels),
        masks=torch.from_numpy(masks),
        valid=torch.from_numpy(valid),
        crowd=torch.from_numpy(crowd),
        metas=[s.meta for s in samples],
        bad_images=bad,
    )


class _Collate:
    """Picklable collate function (workers may be spawned)."""

    def __init__(self, max_instances: int) -> None:
        self.max_instances = max_instances

    def __call__(self, samples: list[Sample | BadImage]) -> Batch:
        return collate_samples(samples, self.max_instances)


class TorchBatchLoader:
    """The BatchLoader port over one persistent torch DataLoader (workers are reused across epochs)."""

    def __init__(
        self,
        dataset: InstanceDataset,
        batch_size: int,
        *,
        shuffle: bool,
        seed: int,
        rank: int = 0,
        world_size: int = 1,
        num_workers: int = 0,
        pin_memory: bool = False,
        drop_last: bool = False,
        repeat_factors: np.ndarray | None = None,
        plan: AugmentPlan = OFF,
    ) -> None:
        """plan: the augmentation of an epoch that iter_epoch is not given one for (data.* without stages)."""
        self.dataset = dataset
        self.batch_size = batch_size
        self.plan = plan
        self.sampler = EpochBatchSampler(
            len(dataset),
            batch_size,
            shuffle=shuffle,
            seed=seed,
            rank=rank,
            world_size=world_size,
            drop_last=drop_last,
            repeat_factors=repeat_factors,
        )
        self.sampler.base_size = (dataset.settings.input_height, dataset.settings.input_width)
        self.sampler.size_multiple = dataset.settings.size_multiple
        self._loader = DataLoader(
            dataset,  # type: ignore[arg-type]
            batch_sampler=self.sampler,
            num_workers=num_workers,
            collate_fn=_Collate(dataset.settings.max_instances),
            pin_memory=pin_memory,
            persistent_workers=num_workers > 0,
        )

    def __len__(self) -> int:
        return self.sampler.num_batches()

    def iter_epoch(self, epoch: int, start_batch: int = 0, augment: AugmentPlan | None = None) -> Iterator[Batch]:
        """Batches of `epoch`, skipping the first `start_batch` without loading them (exact resume); augment: the
        epoch's plan (domain.augment.augment_plan; None = the loader's own). A loader that does not augment
        (validation) ignores it."""
        plan = (augment if augment is not None else self.plan) if self.dataset.augment else OFF
        self.sampler.set_epoch(epoch, start_batch, plan)
        if start_batch >= len(self):
            return
        yield from self._started()

    def _started(self) -> Iterator[Batch]:
        """iter() of the DataLoader; its first call forks the workers. The garbage collector's objects are frozen
        across the fork (gc.freeze, as the Python docs advise for pre-fork servers): a collection in a worker
        then never walks, so never copies, the pages of the objects it inherited."""
        if self._loader.num_workers == 0:
            return iter(self._loader)
        frozen_before = gc.get_freeze_count()  # objects the program froze itself stay frozen
        gc.collect()  # garbage left now would stay, uncollectable, in every worker
        gc.freeze()
        try:
            return iter(self._loader)
        finally:
            if not frozen_before:
                gc.unfreeze()

    def epoch_indices(self, epoch: int = 0) -> list[int]:
        """The dataset indices this rank sees in `epoch`, in order (for tests and debugging)."""
        return [index for batch in self.sampler.batches(epoch) for index in batch]


def split_loader(
    provider: SampleProvider,
    settings: TransformSettings,
    data: DataConfig,
    batch_size: int,
    *,
    train: bool,
    seed: int = 0,
    rank: int = 0,
    world_size: int = 1,
    repeat_factors: np.ndarray | None = None,
) -> TorchBatchLoader:
    """One split's loader: train augments, shuffles and drops the last partial batch; val does none of these (seed 0).
    `repeat_factors` (train only): repeat-factor sampling (repeat_factor.image_repeat_factors)."""
    seed = seed if train else 0
    return TorchBatchLoader(
        InstanceDataset(provider, settings, augment=train, seed=seed),
        batch_size,
        shuffle=train,
        seed=seed,
        rank=rank,
        world_size=world_size,
        drop_last=train,
        num_workers=data.num_workers,
        pin_memory=data.pin_memory and torch.cuda.is_available(),
        repeat_factors=repeat_factors if train else None,
        plan=augment_plan(data) if train else OFF,
    )
