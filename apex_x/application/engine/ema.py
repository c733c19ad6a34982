"""Exponential moving average of the model's weights (with the usual decay warmup), checkpointable."""

from __future__ import annotations

import math
from collections.abc import Mapping

import torch


class ModelEma:
    """EMA of every floating-point tensor of a model's state dict; other buffers are copied.

    decay_t = decay * (1 - exp(-updates / tau)): early updates follow the model closely.
    """

    def __init__(self, model: torch.nn.Module, decay: float, *, tau: float = 2000.0) -> None:
        self.decay = float(decay)
        self.tau = float(tau)
        self.updates = 0
        source = model.state_dict()
        self.state: dict[str, torch.Tensor] = {key: value.detach().clone() for key, value in source.items()}
        float_keys = [key for key, value in source.items() if value.is_floating_point()]
        other_keys = [key for key, value in source.items() if not value.is_floating_point()]
        # state_dict() tensors alias the live parameters/buffers (updated in place), so they are kept.
        self._float_pairs = ([self.state[key] for key in float_keys], [source[key] for key in float_keys])
        self._other_pairs = [(self.state[key], source[key]) for key in other_keys]

    def current_decay(self) -> float:
        return self.decay * (1.0 - math.exp(-self.updates / self.tau))

    @torch.no_grad()
    def update(self) -> None:
        """One EMA step towards the model's current weights."""
        self.updates += 1
        weight = 1.0 - self.current_decay()
        targets, values = self._float_pairs
        if targets:
            torch._foreach_lerp_(targets, values, weight)
        for target, value in self._other_pairs:
            target.copy_(value)

    def weights(self) -> dict[str, torch.Tensor]:
        """The EMA weights (same layout as the model's state dict)."""
        return self.state

    def load(self, weights: Mapping[str, torch.Tensor], updates: int) -> None:
        missing = sorted(set(self.state) - set(weights))
        if missing:
            raise KeyError(f"EMA weights lack {len(missing)} key(s), e.g. {missing[:3]}")
        for key, value in self.state.items():
            value.copy_(weights[key])
        self.updates = int(updates)
