"""The size of a network: parameters and GFLOPs of one forward pass at the input size (torch.utils.flop_counter).

GFLOPs count a multiply-add as 2 FLOPs (torch's flop counter; the convention of the YOLO tables). The pass runs
on the meta device (shapes only: no memory, no time), with the model's weights swapped for meta tensors through
torch.func.functional_call; a model that cannot run there is measured with one real zero image instead.
"""

from __future__ import annotations

from typing import Any

import structlog
import torch
from torch.utils.flop_counter import FlopCounterMode

from apex_x.domain.model_sizes import overridden_keys

log = structlog.get_logger(__name__)


def count_flops(model: torch.nn.Module, height: int, width: int) -> int | None:
    """FLOPs of one forward pass of a (1, 3, height, width) uint8 image, in eval mode; None if it cannot run."""
    was_training = model.training
    model.eval()
    try:
        for device in ("meta", None):
            try:
                return _flops_on(model, height, width, device)
            except Exception as error:  # noqa: BLE001 - a model meta cannot run: try real tensors, then give up
                log.debug("flop_count_failed", device=device or "model", reason=f"{type(error).__name__}: {error}")
        return None
    finally:
        model.train(was_training)


def _flops_on(model: torch.nn.Module, height: int, width: int, device: str | None) -> int:
    counter = FlopCounterMode(display=False)
    with torch.no_grad():
        if device == "meta":
            tensors = {name: torch.empty_like(value, device="meta")
                       for name, value in [*model.named_parameters(), *model.named_buffers()]}
            images = torch.zeros((1, 3, height, width), dtype=torch.uint8, device="meta")
            with counter:
                torch.func.functional_call(model, tensors, (images,), strict=False)
        else:
            first = next(iter(model.parameters()), None)
            images = torch.zeros((1, 3, height, width), dtype=torch.uint8,
                                 device=first.device if first is not None else None)
            with counter:
                model(images)
    return int(counter.get_total_flops())


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
