"""Rules for text that enters from users' files and command lines (config values, category and file names,
paths): what Apex-X can print, write to JSON and use as a path without failing later.

Refused: NUL (no path can hold it), other control characters (C0 except tab, DEL, C1: escape sequences would
rewrite the user's terminal when echoed) and lone surrogates (not Unicode text: a file name that is not
UTF-8 bytes reads as one in Python, and no UTF-8 file or console can hold it).
"""

from __future__ import annotations

import re

# C0 controls except tab and newline, DEL, C1 controls, the line/paragraph separators and bidirectional
# overrides/isolates (they reorder or break a console line), and the surrogate range (only lone ones reach a str).
_BAD = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f\u2028\u2029\u202a-\u202e\u2066-\u2069\ud800-\udfff]")
_ESCAPED = re.compile(f"{_BAD.pattern[:-1]}\n]")  # what `printable` escapes: the refused characters and newlines
_NAMES = {0: "a NUL byte", 0x1B: "an escape character (ESC, as in terminal escape sequences)",
          0x2028: "a line separator U+2028", 0x2029: "a paragraph separator U+2029"}


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
    if 0x202A <= code <= 0x202E or 0x2066 <= code <= 0x2069:
        return f"a bidirectional control U+{code:04X} (it reorders the text around it when printed)"
    return f"a control character U+{code:04X}"


def text_problem(text: str) -> str | None:
    """None when `text` is printable, JSON-safe Unicode on one line; else what is wrong and where, e.g. 'a NUL
    byte at character 5'. A line break is refused too (names, paths and config values never hold one)."""
    match = _BAD.search(text)
    if match:
        return f"{describe_character(match[0])} at character {match.start() + 1}"
    if "\n" in text:
        return f"a line break at character {text.index(chr(10)) + 1}"
    return None


def printable(text: str) -> str:
    """`text` with every refused character and every line break written as an escape (\\x1b, \\udcff, \\n):
    safe to print and log on one line."""
    return _ESCAPED.sub(lambda match: match[0].encode("unicode_escape", "backslashreplace").decode("ascii"), text)
