"""JSON text from users' files -> values (fast, bounded in depth), type tests and short descriptions of those
values (for dataset findings)."""

from __future__ import annotations

import json
from typing import Any

import orjson

from apex_x.adapters.datasets.memory import address_space_left, available_memory

_DIGIT_MARKS = bytes(49 if 48 <= code <= 57 else 48 for code in range(256))  # digit -> b"1", else b"0"
_LONG_RUN = b"1" * 19
_SCAN_CHUNK = 1 << 24


def _has_long_digit_run(content: bytes) -> bool:
    """Any run of 19+ ASCII digits (bytes.translate + find per 16 MiB chunk: C speed, bounded extra memory)."""
    for start in range(0, len(content), _SCAN_CHUNK):
        if content[start : start + _SCAN_CHUNK + 18].translate(_DIGIT_MARKS).find(_LONG_RUN) != -1:
            return True
    return False



class JsonRefused(ValueError):
    """JSON that parses but that no dataset file holds; `rule` names the finding it becomes."""

    rule = "json.refused"


class JsonTooDeep(JsonRefused):
    """JSON nested deeper than MAX_JSON_DEPTH levels (a COCO file has about 5)."""

    rule = "json.too_deep"


MAX_JSON_DEPTH = 1024  # orjson's own limit; the standard library would hit Python's recursion limit instead


def parse_json(content: bytes | str) -> Any:
    """JSON text -> Python values: orjson (2-3x faster on COCO-scale files) for valid JSON; what it refuses (NaN /
    Infinity literals, invalid text) or reads differently (integers past 64 bits become floats there: any run of
    19+ digits goes the slow way) goes through the standard library, so values, the findings they lead to and the
    parse-error messages stay exactly those of `json.loads`.

    Raises json.JSONDecodeError / UnicodeDecodeError as `json.loads` does, and JsonTooDeep (a ValueError) for
    arrays or objects nested deeper than MAX_JSON_DEPTH levels, before the standard library would recurse."""
    raw = content.encode("utf-8", "surrogatepass") if isinstance(content, str) else content
    if not _has_long_digit_run(raw) and _room_to_parse(len(raw)):
        try:
            return orjson.loads(raw)
        except orjson.JSONDecodeError as error:
            if "recursion" in str(error).lower():
                raise JsonTooDeep(_too_deep()) from None
    try:
        return json.loads(content, parse_int=_bounded_int)
    except RecursionError:
        raise JsonTooDeep(_too_deep()) from None


MAX_INT_DIGITS = 30  # an id or coordinate of more digits is no COCO value (and past 308 it overflows a float)


def _bounded_int(text: str) -> int:
    """json's integer parse, refusing integers of more than MAX_INT_DIGITS digits (a 400-digit coordinate
    overflows every float check; past 4,300 digits Python refuses to convert it)."""
    if len(text.lstrip("-")) > MAX_INT_DIGITS:
        raise JsonValueError(f"an integer of {len(text.lstrip('-'))} digits (at most {MAX_INT_DIGITS}): no COCO "
                             f"id, size or coordinate is that long")
    return int(text)


class JsonValueError(JsonRefused):
    """A JSON number no COCO file holds (too many digits)."""

    rule = "json.number_invalid"


PARSE_MEMORY_FACTOR = 10  # memory the parsed values of a COCO file take, in multiples of its bytes
_ADDRESS_FACTOR = 20  # address space orjson maps at its peak (measured: 2.2 GB for a 131 MB file)


def _room_to_parse(size: int) -> bool:
    """Whether this process can parse `size` bytes with orjson: PARSE_MEMORY_FACTOR x free memory and
    _ADDRESS_FACTOR x room under its address-space limit (Linux). orjson crashes the process (a segmentation
    fault) when an allocation fails, where the standard library raises MemoryError; without the room the
    standard library parses."""
    if size < 1 << 24:
        return True
    free, room = available_memory(), address_space_left()
    return (free is None or free >= PARSE_MEMORY_FACTOR * size) and (room is None or room > _ADDRESS_FACTOR * size)


def _too_deep() -> str:
    return (f"arrays or objects nested more than {MAX_JSON_DEPTH} levels deep (a COCO file has about 5): not a "
            "dataset file as written by any labelling tool")


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
