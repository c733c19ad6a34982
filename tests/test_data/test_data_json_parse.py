"""The fast JSON parse gives the standard library's values, and its errors, for every input."""

from __future__ import annotations

import json
import math

import pytest

from apex_x.adapters.datasets.json_values import parse_json


@pytest.mark.parametrize("text", [
    b'{"images": [{"id": 1, "width": 640.0}], "x": [1, 2.5, -3e-5, true, null, "\\u00e9"]}',
    b'{"a": 1, "a": 2}',  # a repeated key: the last wins, as in json
    b'\xef\xbb\xbf{"bom": 1}',  # a UTF-8 byte-order mark, as some labelling tools write
    b'{"big": 123456789012345678901234567890}',  # past 64 bits
])
def test_values_equal_the_standard_library(text: bytes) -> None:
    assert parse_json(text) == json.loads(text)


def test_nan_literals_parse_as_the_standard_library_does() -> None:
    value = parse_json(b'{"bbox": [NaN, 1, Infinity, 2]}')
    assert math.isnan(value["bbox"][0]) and value["bbox"][2] == math.inf  # then a finding names them


def test_invalid_json_raises_the_standard_library_error() -> None:
    with pytest.raises(json.JSONDecodeError) as ours:
        parse_json(b'{"images": [1, 2,]}')
    with pytest.raises(json.JSONDecodeError) as theirs:
        json.loads(b'{"images": [1, 2,]}')
    assert (ours.value.msg, ours.value.lineno, ours.value.colno) == (theirs.value.msg, theirs.value.lineno,
                                                                      theirs.value.colno)
    with pytest.raises(UnicodeDecodeError):
        parse_json(b'{"name": "\xff\xfe"}')
