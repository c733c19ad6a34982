"""Rules for text that enters from users' files and command lines (config values, category and file names,
paths): what Apex-X can print, write to JSON and use as a path without failing later.

Refused: NUL (no path can hold it), other control characters (C0 except tab, DEL, C1: escape sequences would
rewrite the user's terminal when echoed) and lone surrogates (not Unicode text: a file name that is not
UTF-8 bytes reads as one in Python, and no UTF-8 file or console can hold it).
"""

from __future__ import annotations

import re

# C0 controls except tab and newline, DEL, C1 controls, and the surrogate range (only lone ones reach a str).
_BAD = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f\ud800-\udfff]")
_NAMES = {0: "a NUL byte", 0x1B: "an escape character (ESC, as in terminal escape sequences)"}


def describe_character(character: str) -> str:
    """One refused character in words: 'a NUL byte', 'a lone surrogate U+DCFF (a byte 0xff that is not
    UTF-8, as in a file name written in another encoding)', 'a control character U+0007'."""
    code = ord(character)
    if code in _NAMES:
        return _NAMES[code]
    if 0xDC80 <= code <= 0xDCFF:
        return (f"a lone surrogate U+{code:04X} (the byte 0x{code - 0xDC00:02x}, which is not UTF-8: a name "
                "written in another encoding)")
    if 0xD800 <= code <= 0xDFFF:
        return f"a lone surrogate U+{code:04X} (half of a UTF-16 pair: not Unicode text)"
    return f"a control character U+{code:04X}"


def text_problem(text: str, *, allow_newline: bool = False) -> str | None:
    """None when `text` is printable, JSON-safe Unicode; else what is wrong and where, e.g. 'a NUL byte at
    character 5'. A newline is refused unless `allow_newline` (names and paths never hold one)."""
    match = _BAD.search(text)
    if match:
        return f"{describe_character(match[0])} at character {match.start() + 1}"
    if not allow_newline and "\n" in text:
        return f"a line break at character {text.index(chr(10)) + 1}"
    return None


def printable(text: str) -> str:
    """`text` with every refused character written as an escape (\\x1b, \\udcff): safe to print and log."""
    return _BAD.sub(lambda match: match[0].encode("unicode_escape").decode("ascii"), text)
