"""The model profiles' registry (domain.registry.MODEL_PROFILES, timm's `@register_model` style), seen from the
adapters: each variant module here registers its profile with `@register_profile`; `get_profile(name)` imports
`apex_x.adapters.models.profiles.<name>` on first use, so asking for one profile never imports another's
libraries, and the variant modules import their heavy model code only when a model is built.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from apex_x.domain.environment import PreflightCheck, Requirement
from apex_x.domain.registry import MODEL_PROFILES

if TYPE_CHECKING:
    from apex_x.domain.ports import ModelProfile

register_profile = MODEL_PROFILES.register


def get_profile(name: str) -> ModelProfile:
    """The registered profile `name`, its variant module imported on first use; unknown: UnknownVariantError
    (a ValueError) listing the valid names."""
    return MODEL_PROFILES.get(name)


def all_profiles() -> list[ModelProfile]:
    """Every known profile, in the registry's table order."""
    return list(MODEL_PROFILES.all())


def preflight_requirements() -> dict[str, tuple[Requirement, ...]]:
    """Preflight profile name -> the packages it adds to the base ones, for the profiles that add any."""
    return {profile.name: profile.requirements for profile in all_profiles() if profile.requirements}


def preflight_checks() -> dict[str, list[PreflightCheck]]:
    """Preflight profile name -> its extra checks, for the profiles that need any; "base" gets each profile's
    base_preflight_checks (e.g. the small profile's student backbone weights row, which every preflight shows)."""
    checks: dict[str, list[PreflightCheck]] = {
        "base": [check for profile in all_profiles() for check in profile.base_preflight_checks]
    }
    for profile in all_profiles():
        if profile.requirements or profile.preflight_checks:
            checks[profile.name] = list(profile.preflight_checks)
    return checks


__all__ = ["all_profiles", "get_profile", "preflight_checks", "preflight_requirements", "register_profile"]
