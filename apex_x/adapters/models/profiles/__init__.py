"""The model-profile registry (timm's `@register_model` style): each variant module registers its profile.

`get_profile(name)` imports `apex_x.adapters.models.profiles.<name>` on first use (names from
domain.model_profiles.MODEL_PROFILES), so asking for one profile never imports another's libraries, and
the variant modules themselves import their heavy model code only when a model is built.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from typing import TypeVar

from apex_x.domain.environment import Requirement
from apex_x.domain.model_profiles import MODEL_PROFILES
from apex_x.domain.ports import ModelProfile

_REGISTRY: dict[str, ModelProfile] = {}
_P = TypeVar("_P")


def register_profile(profile_class: Callable[[], _P]) -> Callable[[], _P]:
    """Class decorator of a variant module: registers one instance under its `name`."""
    profile = profile_class()
    _REGISTRY[profile.name] = profile  # type: ignore[attr-defined]
    return profile_class


def get_profile(name: str) -> ModelProfile:
    """The registered profile `name`, importing its variant module on first use; unknown: ValueError."""
    if name not in _REGISTRY:
        if name not in MODEL_PROFILES:
            raise ValueError(f"unknown model profile {name!r}; valid profiles: {', '.join(MODEL_PROFILES)}")
        importlib.import_module(f"{__name__}.{name}")
    if name not in _REGISTRY:
        raise LookupError(f"{__name__}.{name} did not register a profile named {name!r}")
    return _REGISTRY[name]


def all_profiles() -> list[ModelProfile]:
    """Every known profile, in the order of MODEL_PROFILES."""
    return [get_profile(name) for name in MODEL_PROFILES]


def preflight_requirements() -> dict[str, tuple[Requirement, ...]]:
    """Preflight profile name -> the packages it adds to the base ones, for the profiles that add any."""
    return {profile.name: profile.requirements for profile in all_profiles() if profile.requirements}


def preflight_checks() -> dict[str, list[object]]:
    """Preflight profile name -> its extra checks ("base" has none), for the profiles that need any."""
    checks: dict[str, list[object]] = {"base": []}
    for profile in all_profiles():
        if profile.requirements or profile.preflight_checks:
            checks[profile.name] = list(profile.preflight_checks)
    return checks


__all__ = ["all_profiles", "get_profile", "preflight_checks", "preflight_requirements", "register_profile"]
