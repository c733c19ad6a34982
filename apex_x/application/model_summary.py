"""The size of a network: parameters and GFLOPs of one forward pass at the input size (torch.utils.flop_counter).

GFLOPs count a multiply-add as 2 FLOPs (torch's flop counter; the convention of the YOLO tables). The pass runs
on the meta device (shapes only: no memory, no time), on a copy of the model whose weights are meta tensors; a
model that cannot run there is measured with one real zero image on a full copy instead.
"""

from __future__ import annotations

import copy
from typing import Any

import structlog
import torch
from torch.utils.flop_counter import FlopCounterMode

from apex_x.domain.model_sizes import overridden_keys

log = structlog.get_logger(__name__)


def count_flops(model: torch.nn.Module, height: int, width: int) -> int | None:
    """FLOPs of one forward pass of a (1, 3, height, width) uint8 image in eval mode; None if it cannot run.

    The pass runs on a copy of the model whose weights are meta tensors (no memory; the model itself is not
    called, so nothing of its state changes); a model that cannot run on meta is counted on a full copy."""
    for on_meta in (True, False):
        try:
            copy_ = _meta_copy(model) if on_meta else copy.deepcopy(model)
            return _flops_of(copy_.eval(), height, width, "meta" if on_meta else None)
        except Exception as error:  # noqa: BLE001 - not runnable on meta: a real copy, then give up
            log.debug("flop_count_failed", meta=on_meta, reason=f"{type(error).__name__}: {error}")
    return None


def _meta_copy(model: torch.nn.Module) -> torch.nn.Module:
    """A deep copy of `model` whose parameters and buffers are meta tensors of the same shapes."""
    memo: dict[int, Any] = {}
    for parameter in model.parameters():
        memo[id(parameter)] = torch.nn.Parameter(torch.empty_like(parameter, device="meta"),
                                                 requires_grad=parameter.requires_grad)
    for buffer in model.buffers():
        memo[id(buffer)] = torch.empty_like(buffer, device="meta")
    return copy.deepcopy(model, memo)


def _flops_of(model: torch.nn.Module, height: int, width: int, device: str | None) -> int:
    if device is None:
        first = next(iter(model.parameters()), None)
        device = str(first.device) if first is not None else "cpu"
    counter = FlopCounterMode(display=False)
    with torch.no_grad(), counter:
        model(torch.zeros((1, 3, height, width), dtype=torch.uint8, device=device))
    return int(counter.get_total_flops())


def _flops_on(model: torch.nn.Module, height: int, width: int, device: str | None) -> int:
    """Counted on a meta copy (device "meta") or a full copy (None) of `model` (tests compare the two)."""
    return _flops_of((_meta_copy(model) if device == "meta" else copy.deepcopy(model)).eval(), height, width, device)


def network_size(model: torch.nn.Module, input_size: tuple[int, int]) -> dict[str, Any]:
    """{"parameters", "gflops" (None when it cannot be counted), "input_size"} of `model` at (height, width)."""
    flops = count_flops(model, *input_size)
    return {"parameters": int(sum(parameter.numel() for parameter in model.parameters())),
            "gflops": round(flops / 1e9, 3) if flops is not None else None, "input_size": list(input_size)}


def model_summary(model: Any, config: Any) -> dict[str, Any]:
    """Plain values for logs and reports: size (and the keys set over it), backbone, parameters, GFLOPs at the
    config's input size. config: the effective ModelConfig."""
    height, width = int(config.input_height), int(config.input_width)
    parameters = sum(parameter.numel() for parameter in model.parameters())
    flops = count_flops(model, height, width)
    overridden = overridden_keys(config.size, config.model_dump())
    return {
        "size_overridden": {key: {"size": own, "set": value} for key, (own, value) in overridden.items()},
        "profile": config.profile,
        "size": getattr(config, "size", None),
        "backbone": getattr(getattr(model, "backbone", None), "name", None),  # a timm backbone's model name
        # where its weights came from and how a file was fitted (adapters/models/weight_layouts.py)
        "backbone_weights": getattr(getattr(model, "backbone", None), "weights_record", None),
        "parameters": int(parameters),
        "gflops": round(flops / 1e9, 3) if flops is not None else None,
        "input_size": [height, width],
    }


def describe_summary(summary: dict[str, Any]) -> str:
    """One line: 'model: small size n, backbone lcnet_075, 1.23M parameters, 2.34 GFLOPs at 256x256'."""
    size = f" size {summary['size']}" if summary.get("size") else ""
    gflops = summary.get("gflops")
    flops = f"{gflops:.2f} GFLOPs" if gflops is not None else "GFLOPs n/a"
    height, width = summary.get("input_size") or (0, 0)
    backbone = f", backbone {summary['backbone']}" if summary.get("backbone") else ""
    return (f"model: {summary.get('profile')}{size}{backbone}, "
            f"{summary['parameters'] / 1e6:.2f}M parameters, {flops} at {height}x{width}")
