"""The one rule for network input sizes: every dense profile needs sides that are multiples of its
coarsest feature stride (32: the P5 level of the student's FPN and of the teacher's simple pyramid).

Every place that picks or checks an input size (the config loader, via the profile, the model's forward, the smoke
runner's square-resize retry, the notebook's overrides) asks this module, never its own arithmetic.
The DINOv2 teacher pads its input to the patch size (14) itself, so its profile needs the same rule.
"""

from __future__ import annotations

INPUT_SIZE_MULTIPLE = 32  # the coarsest feature stride of every dense model profile


def is_valid_side(value: int, multiple: int = INPUT_SIZE_MULTIPLE) -> bool:
    """True when `value` (pixels) is a positive multiple of `multiple`."""
    return value > 0 and value % multiple == 0


def nearest_valid_sides(value: int, multiple: int = INPUT_SIZE_MULTIPLE) -> tuple[int, ...]:
    """The valid sides around `value`: (below, above), or (value,) when it is valid already.

    nearest_valid_sides(500) == (480, 512); nearest_valid_sides(20) == (32,).
    """
    if is_valid_side(value, multiple):
        return (value,)
    below = (value // multiple) * multiple
    above = below + multiple
    return (above,) if below < multiple else (below, above)


def round_up_side(value: int, multiple: int = INPUT_SIZE_MULTIPLE) -> int:
    """The smallest valid side >= value (at least one multiple)."""
    return max(multiple, -(-int(value) // multiple) * multiple)


def square_input_size(input_size: tuple[int, int], multiple: int = INPUT_SIZE_MULTIPLE) -> tuple[int, int]:
    """A square input covering `input_size` (height, width), each side valid for the model."""
    side = round_up_side(max(input_size), multiple)
    return side, side


def input_size_problem(height: int, width: int, multiple: int = INPUT_SIZE_MULTIPLE) -> str | None:
    """None when (height, width) is valid, else the sentence saying why and the nearest valid sizes."""
    bad = [(name, value) for name, value in (("height", height), ("width", width)) if not is_valid_side(value, multiple)]
    if not bad:
        return None
    parts = [
        f"{name} {value} (nearest valid: {' or '.join(map(str, nearest_valid_sides(value, multiple)))})"
        for name, value in bad
    ]
    return f"input size {height}x{width} must be a multiple of {multiple} on each side: " + "; ".join(parts)
