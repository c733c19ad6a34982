"""Type tests and short descriptions of values read from a COCO JSON file (for dataset findings)."""

from __future__ import annotations

from typing import Any

NUMBER_TYPES = frozenset((int, float))  # JSON numbers by exact type: bool is its own type, so never one


def is_int(value: Any) -> bool:
    """A JSON integer (bool is not one)."""
    return isinstance(value, int) and not isinstance(value, bool)


def is_number(value: Any) -> bool:
    """A JSON number, int or float (bool is not one)."""
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def describe(value: Any) -> str:
    """`repr` cut to 40 characters, with the type name: for 'got ...' in a finding's message."""
    text = repr(value)
    return (
        f"{text[:40]}... ({type(value).__name__})" if len(text) > 40 else f"{text} ({type(value).__name__})"
    )
