"""Fine-tuning from earlier weights (`train.init_from`): which tensors of a file fit a freshly built model.

A model tensor is loaded when the file has a tensor of the same name and shape; every other model tensor keeps
its fresh init (e.g. the class logits after a class-count change) and is listed as re-initialised with the
reason; file tensors the model has no place for are listed as unused. The share of the model's elements that
was loaded decides whether the file was meant for this model (MIN_SHARE). Pure values: no I/O.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import torch


def share_text(share: float) -> str:
    """A share as a percentage that never rounds a partial load to 100.0% or 0.0% (e.g. ">99.9%", "<0.1%")."""
    if 0.999 < share < 1.0:
        return ">99.9%"
    if 0.0 < share < 0.001:
        return "<0.1%"
    return f"{share:.1%}"

MIN_SHARE = 0.5  # of the model's elements (parameters and buffers): below it the file is probably another model
NAMES_LISTED = 50  # names kept per list in reports and logs (the counts are always whole)
_COUNTERS = ("num_batches_tracked",)  # BatchNorm step counters: no weights, never counted either way


@dataclass(frozen=True)
class WeightsTransfer:
    """What a file gives a model: loaded names, re-initialised names with why, unused file names, and shares."""

    loaded: list[str]
    reinitialised: list[tuple[str, str]]  # (model key, reason)
    unused: list[str]
    loaded_elements: int
    model_elements: int
    state: dict[str, torch.Tensor] = field(default_factory=dict, repr=False)  # what to load (name -> tensor)

    @property
    def share(self) -> float:
        """Loaded elements / the model's elements (0 for an empty model)."""
        return self.loaded_elements / self.model_elements if self.model_elements else 0.0

    def to_plain(self, source: str, layout: str, forced: bool) -> dict[str, Any]:
        """For train_report.json and the log: counts, the share and (at most NAMES_LISTED of) each list."""
        return {
            "path": source,
            "layout": layout,
            "loaded": len(self.loaded),
            "reinitialised": len(self.reinitialised),
            "unused": len(self.unused),
            "loaded_share": round(self.share, 6),
            "min_share": MIN_SHARE,
            "forced": forced,
            "loaded_names": self.loaded[:NAMES_LISTED],
            "reinitialised_names": [f"{name} ({why})" for name, why in self.reinitialised[:NAMES_LISTED]],
            "unused_names": self.unused[:NAMES_LISTED],
        }


def _shape(value: Any) -> tuple[int, ...]:
    return tuple(int(size) for size in value)


def match_weights(model_shapes: Mapping[str, Any], source: Mapping[str, torch.Tensor]) -> WeightsTransfer:
    """model_shapes: the fresh model's state_dict names -> shapes; source: the file's tensors by name."""
    loaded: list[str] = []
    reinitialised: list[tuple[str, str]] = []
    state: dict[str, torch.Tensor] = {}
    loaded_elements = model_elements = 0
    for name, raw_shape in model_shapes.items():
        if name.endswith(_COUNTERS):
            continue
        shape = _shape(raw_shape)
        elements = 1
        for size in shape:
            elements *= size
        model_elements += elements
        tensor = source.get(name)
        if tensor is None:
            reinitialised.append((name, "not in the file"))
        elif tuple(tensor.shape) != shape:
            reinitialised.append((name, f"file {list(tensor.shape)} vs model {list(shape)}"))
        else:
            loaded.append(name)
            state[name] = tensor
            loaded_elements += elements
    unused = [name for name in source if name not in model_shapes and not name.endswith(_COUNTERS)]
    return WeightsTransfer(loaded, reinitialised, unused, loaded_elements, model_elements, state)


def too_little_message(transfer: WeightsTransfer, source: str) -> str:
    """Why a file whose tensors fit less than MIN_SHARE of the model is refused, and the way to force it."""
    shown = ", ".join(f"{name} ({why})" for name, why in transfer.reinitialised[:5])
    return (
        f"train.init_from: {source} fits only {share_text(transfer.share)} of the model's weights ({len(transfer.loaded)} "
        f"tensors loaded, {len(transfer.reinitialised)} would stay freshly initialised, {len(transfer.unused)} of "
        f"the file unused; the minimum is {MIN_SHARE:.0%}), so it was probably written for another model "
        f"(another model.size, backbone or profile). First misfits: {shown}. Use a checkpoint of the same "
        "architecture, set model.backbone_pretrained: PATH to load backbone weights alone, or set "
        "train.init_from_force: true to load what fits anyway"
    )


__all__ = ["MIN_SHARE", "WeightsTransfer", "match_weights", "too_little_message"]
