"""The names of the model profiles (`model.profile`): plain values the config schema validates against.

Each name is one variant module, `apex_x/adapters/models/profiles/<name>.py`, that registers its
`ModelProfile` (domain.ports) under that name; the adapters' registry imports it lazily by name. A new
profile is that one file plus its name here.
"""

from __future__ import annotations

MODEL_PROFILES: tuple[str, ...] = ("small", "worldclass")
DEFAULT_PROFILE = MODEL_PROFILES[0]


def check_profile_name(value: object) -> str:
    """`value` when it names a profile; else ValueError listing the valid names."""
    if not isinstance(value, str) or value not in MODEL_PROFILES:
        raise ValueError(f"must be one of {', '.join(repr(name) for name in MODEL_PROFILES)}, got {value!r}")
    return value
