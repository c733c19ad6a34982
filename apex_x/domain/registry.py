"""Registries of the axes along which Apex-X varies (DESIGN.md "Axes of variation"), timm `@register_model` style.

A registry maps each variant's name to the module that defines it: that table line is the variant's one
registration line. The module registers its variant with `@REGISTRY.register` when it is imported, and
the registry imports it only the first time its name is asked for, so validating a config (names only)
imports nothing. No other module branches on a variant's name: it asks the registry.

    LOSS_COMPONENTS: `train.stages[*].losses` keys (det, seg, boundary, distill); apex_x/loss_components/
    DATASET_FORMATS: `data.format` values (coco, synthetic, yolo); apex_x/adapters/datasets/formats/
    MODEL_PROFILES: `model.profile` values (small, worldclass); apex_x/adapters/models/profiles/
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Generic, TypeVar

if TYPE_CHECKING:
    from apex_x.domain.ports import DatasetFormat, LossComponent, ModelProfile

T = TypeVar("T")


class UnknownVariantError(ValueError):
    """A name no variant of the registry has; the message lists the valid names."""


def quoted_choices(names: tuple[str, ...]) -> str:
    """'a', 'b' or 'c' (how config errors list choices)."""
    quoted = [repr(name) for name in names]
    return quoted[0] if len(quoted) == 1 else f"{', '.join(quoted[:-1])} or {quoted[-1]}"


class Registry(Generic[T]):
    """Variants of one axis by name; each variant's module is imported the first time its name is asked for."""

    def __init__(self, kind: str, modules: Mapping[str, str]) -> None:
        self.kind = kind  # e.g. "loss component", for messages
        self._modules = dict(modules)  # name -> module that registers it
        self._variants: dict[str, T] = {}
        self._all: tuple[T, ...] | None = None

    def names(self) -> tuple[str, ...]:
        """Every variant's name, in registration-table order (no import)."""
        return tuple(self._modules)

    def register(self, factory: Callable[[], T]) -> Callable[[], T]:
        """Class decorator of a variant: registers one instance under its `name` attribute."""
        variant = factory()
        name = str(getattr(variant, "name"))  # noqa: B009 - the protocol's attribute, read generically
        if name not in self._modules:
            raise UnknownVariantError(f"{self.kind} {name!r} is not in the registry's table: add its line there")
        self._variants[name] = variant
        return factory

    def check(self, name: str) -> str:
        """`name` itself when a variant has it; UnknownVariantError listing the valid names otherwise."""
        if name not in self._modules:
            raise UnknownVariantError(f"unknown {self.kind} {name!r}; valid: {quoted_choices(self.names())}")
        return name

    def get(self, name: str) -> T:
        """The variant called `name` (its module imported on first use); UnknownVariantError if none is."""
        variant = self._variants.get(name)
        if variant is None:
            importlib.import_module(self._modules[self.check(name)])
            variant = self._variants.get(name)
            if variant is None:
                raise UnknownVariantError(f"{self._modules[name]} does not register the {self.kind} {name!r}")
        return variant

    def find(self, name: str) -> T | None:
        """The variant called `name`, or None when no variant has that name."""
        return self.get(name) if name in self._modules else None

    def all(self) -> tuple[T, ...]:
        """Every variant, in table order (imports those not imported yet; cached)."""
        if self._all is None:
            self._all = tuple(self.get(name) for name in self._modules)
        return self._all


LOSS_COMPONENTS: Registry[LossComponent] = Registry("loss component", {
    "det": "apex_x.loss_components.det",
    "seg": "apex_x.loss_components.seg",
    "boundary": "apex_x.loss_components.boundary",
    "distill": "apex_x.loss_components.distill",
})

# The components a stage turns on when it names none (the model's own det, seg and boundary), in this order.
# A newly registered component is off until a stage (`train.stages[*].losses`) names it or it is added here,
# so registering one never changes what an existing config trains.
DEFAULT_LOSS_COMPONENTS: tuple[str, ...] = ("det", "seg", "boundary")


def default_loss_components(weight: float) -> dict[str, float]:
    """The `losses` of a stage that names none: DEFAULT_LOSS_COMPONENTS at `weight` (no module imported)."""
    return {name: weight for name in DEFAULT_LOSS_COMPONENTS}


DATASET_FORMATS: Registry[DatasetFormat] = Registry("dataset format", {
    "coco": "apex_x.adapters.datasets.formats.coco",
    "synthetic": "apex_x.adapters.datasets.formats.synthetic",
    "yolo": "apex_x.adapters.datasets.formats.yolo",
})

MODEL_PROFILES: Registry[ModelProfile] = Registry("model profile", {
    "small": "apex_x.adapters.models.profiles.small",
    "worldclass": "apex_x.adapters.models.profiles.worldclass",
})
