"""Parameter count and GFLOPs of a network at an input size, counted with torch.utils.flop_counter.

GFLOPs are those of one (1, 3, H, W) forward in eval mode, as FlopCounterMode counts them (a multiply-add is 2
FLOPs, as Ultralytics' and fvcore-based "GFLOPs" figures are usually quoted x2 of MACs).
"""

from __future__ import annotations

import copy
from typing import Any

import torch
from torch.utils.flop_counter import FlopCounterMode


def model_stats(network: torch.nn.Module, input_size: tuple[int, int]) -> dict[str, Any]:
    """{"parameters": int, "gflops": float at (1, 3, *input_size), "input_size": [H, W]} (computed on a CPU copy,
    the network itself is left where it is)."""
    parameters = sum(parameter.numel() for parameter in network.parameters())
    probe = copy.deepcopy(network).cpu().eval()
    images = torch.full((1, 3, *input_size), 114, dtype=torch.uint8)
    counter = FlopCounterMode(display=False)
    with counter, torch.no_grad():
        probe(images)
    return {"parameters": int(parameters), "gflops": round(counter.get_total_flops() / 1e9, 3),
            "input_size": list(input_size)}
