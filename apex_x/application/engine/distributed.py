"""Process group under torchrun (gloo on CPU, NCCL on CUDA) and the collectives the trainer agrees with."""

from __future__ import annotations

import datetime
import os
from dataclasses import dataclass
from typing import Any

import structlog
import torch
import torch.distributed as dist

from apex_x.application.engine.heartbeat import Heartbeat
from apex_x.domain.errors import ConfigError

log = structlog.get_logger(__name__)


@dataclass
class DistContext:
    """Where this process sits: rank, world size, its device; `enabled` when a process group is up."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    device: torch.device = torch.device("cpu")
    enabled: bool = False
    owns_group: bool = False
    heartbeat: Heartbeat | None = None
    collective_timeout_s: float = 0.0

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    def to_plain(self) -> dict[str, Any]:
        return {
            "rank": self.rank,
            "world_size": self.world_size,
            "backend": dist.get_backend() if self.enabled else None,
            "device": str(self.device),
        }


def torchrun_env() -> tuple[int, int, int] | None:
    """(rank, world_size, local_rank) when launched by torchrun with more than one process."""
    if "RANK" not in os.environ or "WORLD_SIZE" not in os.environ:
        return None
    world_size = int(os.environ["WORLD_SIZE"])
    if world_size <= 1:
        return None
    return int(os.environ["RANK"]), world_size, int(os.environ.get("LOCAL_RANK", os.environ["RANK"]))


def resolve_device(preference: str, local_rank: int = 0) -> torch.device:
    """runtime.device (auto/cpu/cuda) -> a device; asking for CUDA without one is a clear error."""
    if preference == "cuda" or (preference == "auto" and torch.cuda.is_available()):
        if not torch.cuda.is_available():
            raise ConfigError(
                "CUDA was requested but torch sees no CUDA device; use --device cpu (or auto)", key="runtime.device"
            )
        return torch.device("cuda", local_rank % max(1, torch.cuda.device_count()))
    return torch.device("cpu")


def init_distributed(device_preference: str, timeout_s: float = 600.0, peer_timeout_s: float | None = None) -> DistContext:
    """Join the torchrun process group if there is one; a single process gets a disabled context.

    timeout_s bounds every collective (runtime.collective_timeout_s); peer_timeout_s starts heartbeats
    that name a rank which stops answering (runtime.peer_timeout_s; None = no heartbeat)."""
    env = torchrun_env()
    if env is None:
        return DistContext(device=resolve_device(device_preference))
    rank, world_size, local_rank = env
    device = resolve_device(device_preference, local_rank)
    if device.type == "cuda":
        torch.cuda.set_device(device)
    owns = not dist.is_initialized()
    if owns:
        backend = "nccl" if device.type == "cuda" else "gloo"
        dist.init_process_group(backend=backend, timeout=datetime.timedelta(seconds=timeout_s))
    log.info("distributed_init", rank=rank, world_size=world_size, backend=dist.get_backend(), device=str(device),
             collective_timeout_s=timeout_s, peer_timeout_s=peer_timeout_s)
    heartbeat = None
    if peer_timeout_s is not None:
        heartbeat = Heartbeat(rank, world_size, peer_timeout_s)
        if not heartbeat.start():
            heartbeat = None
    return DistContext(rank, world_size, local_rank, device, enabled=True, owns_group=owns, heartbeat=heartbeat,
                       collective_timeout_s=timeout_s)


def shutdown(context: DistContext) -> None:
    if context.heartbeat is not None:
        context.heartbeat.stop()
    if context.enabled and context.owns_group and dist.is_initialized():
        dist.destroy_process_group()


def any_true(context: DistContext, flags: list[bool]) -> list[bool]:
    """Element-wise OR of boolean flags over all ranks (one small all_reduce), so every rank decides alike."""
    if not context.enabled:
        return list(flags)
    tensor = torch.tensor([1.0 if flag else 0.0 for flag in flags], device=context.device)
    dist.all_reduce(tensor, op=dist.ReduceOp.MAX)
    return [bool(value > 0) for value in tensor.tolist()]


def broadcast_from_main(context: DistContext, value: Any) -> Any:
    """Rank 0's value on every rank (pickled plain values)."""
    if not context.enabled:
        return value
    holder = [value if context.is_main else None]
    dist.broadcast_object_list(holder, src=0)
    return holder[0]


def gather_to_main(context: DistContext, value: Any) -> list[Any] | None:
    """Every rank's value, in rank order, on rank 0 (None elsewhere)."""
    if not context.enabled:
        return [value]
    gathered: list[Any] | None = [None] * context.world_size if context.is_main else None
    dist.gather_object(value, gathered, dst=0)
    return gathered


def barrier(context: DistContext) -> None:
    if context.enabled:
        dist.barrier()
