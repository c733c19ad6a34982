"""The model profiles (`model.profile`): the names the config schema accepts, from the registry's table.

Each name is one variant module, `apex_x/adapters/models/profiles/<name>.py`, that registers its
`ModelProfile` (domain.ports) with `@MODEL_PROFILES.register`; domain.registry imports it lazily by name. A
new profile is that one file plus its line in the MODEL_PROFILES table of domain/registry.py.
"""

from __future__ import annotations

from apex_x.domain.registry import MODEL_PROFILES

PROFILE_NAMES: tuple[str, ...] = MODEL_PROFILES.names()
DEFAULT_PROFILE = PROFILE_NAMES[0]


def check_profile_name(value: str) -> str:
    """`value` when it names a profile; else ValueError (UnknownVariantError) listing the valid names."""
    return MODEL_PROFILES.check(value)
