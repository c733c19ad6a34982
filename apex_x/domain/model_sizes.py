"""Named sizes of the student (`model.size`), like the YOLO scales: each picks the backbone, the neck width and
the depth of neck and heads. Plain values (no I/O); the schema (domain/config.py) fills the model keys of the
chosen size that the config does not set itself, so a key the config sets wins over its size's value.

Measured parameters and GFLOPs per size: README "Model sizes" (and every run's log and report).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass
from typing import Any


@dataclass(frozen=True)
class StudentScale:
    """The model keys one size sets (names of ModelConfig fields)."""

    backbone: str  # a timm model with stride 8/16/32 features and pretrained weights on the Hugging Face hub
    neck_channels: int
    width_multiplier: float
    neck_depth: int  # conv blocks per FPN/PAN merge
    head_depth: int  # conv layers per head tower

    def fields(self) -> dict[str, Any]:
        return asdict(self)


# n is the student's defaults (lcnet_075, a 64-channel neck): what a config without model.size builds.
STUDENT_SIZES: Mapping[str, StudentScale] = {
    "n": StudentScale("lcnet_075", 128, 0.5, 1, 2),
    "s": StudentScale("cs3darknet_focus_s", 128, 1.0, 1, 2),
    "m": StudentScale("cs3darknet_focus_m", 192, 1.0, 2, 2),
    "l": StudentScale("cs3darknet_focus_l", 256, 1.0, 2, 3),
}
SIZE_KEYS: tuple[str, ...] = tuple(StudentScale.__dataclass_fields__)


def check_size(value: str | None) -> str | None:
    """`value` when it names a size (or is None); ValueError listing the sizes otherwise."""
    if value is not None and value not in STUDENT_SIZES:
        raise ValueError(f"unknown model size {value!r}; valid: {', '.join(STUDENT_SIZES)} (or null: the keys as set)")
    return value


def apply_size(data: Any) -> Any:
    """A raw model section (dict) with its size's keys filled in where the section does not set them."""
    if isinstance(data, Mapping) and isinstance(data.get("size"), str) and data["size"] in STUDENT_SIZES:
        return {**STUDENT_SIZES[data["size"]].fields(), **data}
    return data


def overridden_keys(size: str | None, values: Mapping[str, Any]) -> dict[str, tuple[Any, Any]]:
    """The keys of `size` that `values` (the effective model section) sets otherwise: {key: (size's, set)}."""
    if size is None or size not in STUDENT_SIZES:
        return {}
    own = STUDENT_SIZES[size].fields()
    return {key: (own[key], values.get(key)) for key in SIZE_KEYS if values.get(key) != own[key]}
