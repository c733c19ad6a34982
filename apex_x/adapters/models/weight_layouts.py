"""Fitting a weights file of another library's layout onto a timm backbone (`model.backbone_pretrained: FILE`).

A file saved by efficientnet_pytorch, torchvision, an older timm or under `DataParallel` names the same tensors
differently. The mappings tried, in order (the first that gives every model tensor a value wins):

1. names: the file's names as they are, or with a leading prefix removed (`module.`, `model.`, `backbone.` ...:
   every dotted prefix of the file's names is tried, the one matching the most model tensors is kept). timm's
   features_only wrappers spell `stages.0` as `stages_0`: both spellings match.
2. in order: the i-th tensor of the model takes the i-th tensor of the file when every pair agrees in shape and
   in kind (the last name part: weight, bias, running_mean, running_var), the file's extra tensors at the end
   (a classifier the features-only model drops) unused. This is how efficientnet_pytorch's EfficientNet-Lite0
   (`_blocks.0._depthwise_conv.weight`) fits timm's `efficientnet_lite0` (`blocks.0.0.conv_dw.weight`).
   BatchNorm's `num_batches_tracked` counters are left out of the alignment and follow their layer.

Counts are taken from their own side: `loaded` and `missing` are model tensors, `unused` are file tensors, so
none can be negative. When no mapping gives every model tensor a value, WeightsLayoutError says how far each
came. (Idea of the prefix search: timm's `clean_state_dict` / mmengine's `revise_keys`; of the in-order
fallback: the one-to-one conversion scripts users write between these libraries.)
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import torch

from apex_x.domain.errors import CheckpointError

COUNTER = "num_batches_tracked"


class WeightsLayoutError(CheckpointError):
    """No mapping fits the file onto the model (exit 2): the message says how far each mapping came."""


@dataclass(frozen=True)
class WeightsMatch:
    """How a file's tensors were fitted onto a model: model name -> file name, and the counts."""

    mapping: str  # "names" | "names without the prefix 'module.'" | "in order (shapes and kinds agree)"
    pairs: dict[str, str] = field(repr=False)
    model_tensors: int
    file_tensors: int
    kept_counters: int  # num_batches_tracked the file lacks: the model's own value is kept

    @property
    def loaded(self) -> int:
        """Model tensors that got a value from the file."""
        return len(self.pairs)

    @property
    def missing(self) -> int:
        """Model tensors the file has no value for (0 for a match, counters kept aside)."""
        return self.model_tensors - self.loaded - self.kept_counters

    @property
    def unused(self) -> int:
        """File tensors no model tensor took (e.g. a classifier the features-only backbone has not)."""
        return self.file_tensors - len(set(self.pairs.values()))

    def to_plain(self) -> dict[str, Any]:
        return {"mapping": self.mapping, "loaded": self.loaded, "missing": self.missing, "unused": self.unused,
                "kept_counters": self.kept_counters, "model_tensors": self.model_tensors,
                "file_tensors": self.file_tensors}


def _canonical(name: str) -> str:
    return name.replace(".", "_")


def _kind(name: str) -> str:
    return name.rsplit(".", 1)[-1]


def _prefixes(names: list[str], depth: int = 3) -> list[str]:
    found = {""}
    for name in names:
        parts = name.split(".")
        for cut in range(1, min(depth, len(parts) - 1) + 1):
            found.add(".".join(parts[:cut]) + ".")
    return sorted(found, key=lambda prefix: (len(prefix), prefix))


def _by_names(target: Mapping[str, torch.Size], source: Mapping[str, torch.Tensor],
              prefix: str) -> tuple[dict[str, str], list[str]]:
    """(model -> file pairs, shape mismatches) with `prefix` removed from the file's names."""
    stripped = {name[len(prefix):]: name for name in source if name.startswith(prefix)}
    canonical = {_canonical(name): original for name, original in stripped.items()}
    pairs: dict[str, str] = {}
    mismatched: list[str] = []
    for name, shape in target.items():
        original = stripped.get(name) or canonical.get(_canonical(name))
        if original is None:
            continue
        if tuple(source[original].shape) != tuple(shape):
            mismatched.append(f"{name}: file {tuple(source[original].shape)} vs model {tuple(shape)}")
            continue
        pairs[name] = original
    return pairs, mismatched


def _in_order(target: Mapping[str, torch.Size], source: Mapping[str, torch.Tensor]) -> tuple[dict[str, str], str]:
    """(pairs, '') when every model tensor aligns with the file's in order; else ({}, where it first differs)."""
    model = [name for name in target if _kind(name) != COUNTER]
    file = [name for name in source if _kind(name) != COUNTER]
    if len(file) < len(model):
        return {}, f"the file has {len(file)} tensors, the model {len(model)}"
    pairs: dict[str, str] = {}
    for index, (name, original) in enumerate(zip(model, file, strict=False)):
        shape, other = tuple(target[name]), tuple(source[original].shape)
        if shape != other or _kind(name) != _kind(original):
            return {}, (f"tensor #{index + 1} differs: model {name} {shape} vs file {original} {other}")
        pairs[name] = original
        counter, file_counter = _sibling(name), _sibling(original)
        if _kind(name) == "running_var" and counter in target and file_counter in source:
            pairs[counter] = file_counter
    return pairs, ""


def _sibling(name: str) -> str:
    return name.rsplit(".", 1)[0] + "." + COUNTER if "." in name else COUNTER


def _match(mapping: str, pairs: dict[str, str], target: Mapping[str, torch.Size],
           source: Mapping[str, torch.Tensor]) -> WeightsMatch | None:
    """A WeightsMatch when every model tensor but missing counters has a value; None otherwise."""
    left = [name for name in target if name not in pairs]
    if any(_kind(name) != COUNTER for name in left):
        return None
    return WeightsMatch(mapping, pairs, len(target), len(source), kept_counters=len(left))


def match_weights(target: Mapping[str, torch.Size], source: Mapping[str, torch.Tensor],
                  where: str = "the weights file") -> WeightsMatch:
    """Fit `source` (file name -> tensor) onto `target` (model name -> shape, in the model's order).

    Raises WeightsLayoutError naming `where` when no mapping gives every model tensor a value."""
    best: tuple[int, str, dict[str, str], list[str]] = (-1, "", {}, [])
    for prefix in _prefixes(list(source)):
        pairs, mismatched = _by_names(target, source, prefix)
        label = "names" if not prefix else f"names without the prefix {prefix!r}"
        found = _match(label, pairs, target, source)
        if found is not None:
            return found
        if len(pairs) + len(mismatched) > best[0]:
            best = (len(pairs) + len(mismatched), label, pairs, mismatched)
    pairs, differs = _in_order(target, source)
    found = _match("in order (shapes and kinds agree)", pairs, target, source) if pairs else None
    if found is not None:
        return found
    wanted = sum(1 for name in target if _kind(name) != COUNTER)
    counted, label, pairs, mismatched = best
    missing = [name for name in target if name not in pairs and _kind(name) != COUNTER
               and not any(line.startswith(name + ":") for line in mismatched)]
    fit = sum(1 for name in pairs if _kind(name) != COUNTER)  # BatchNorm counters (scalars) always fit: not counted
    named = f"by name ({label}) {fit} of {wanted} model tensors fit"
    if mismatched:
        named += f", {len(mismatched)} differ in shape (first: {mismatched[:3]})"
    if missing:
        named += f", {len(missing)} are not in the file (first: {missing[:4]})"
    raise WeightsLayoutError(
        f"{where}: its layout fits the backbone by no mapping: {named}; in order, {differs}. Give a file of the "
        "timm model's own layout (its state_dict), or one of a library whose names or order match it"
    )


__all__ = ["WeightsLayoutError", "WeightsMatch", "match_weights"]
