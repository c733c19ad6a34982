"""Cheap structural checks that an image file is whole, without decoding pixels (JPEG, PNG, BMP, GIF, WebP).

A format without such a check (TIFF and anything else Pillow opens) is reported as not checked: the caller then
decodes it fully, so no image type can pass the default dataset check and fail later in training."""

from __future__ import annotations

from pathlib import Path

_TAIL_BYTES = 4096  # where the end marker of a whole JPEG/PNG must be (longer trailers get a full decode)
CHEAP_CHECK_FORMATS = ("JPEG", "MPO", "PNG", "BMP", "GIF", "WEBP")


def structural_verdict(path: str | Path, image_format: str | None) -> tuple[bool, str | None]:
    """(checked, problem): `checked` is False when no cheap check exists for the format (or this file's
    variant, e.g. a compressed BMP without a size field): decode it to know. `problem` says why the file looks
    cut short or corrupt. A problem is only a hint: the caller confirms a suspect file with a full decode."""
    if image_format not in CHEAP_CHECK_FORMATS:
        return False, None
    try:
        size = Path(path).stat().st_size
        if image_format == "PNG":
            return True, _png_problem(path, size)
        if image_format == "BMP":
            return _bmp_verdict(path, size)
        if image_format == "GIF":
            return True, _gif_problem(path, size)
        if image_format == "WEBP":
            return True, _webp_problem(path, size)
        return True, _jpeg_problem(path, size)
    except OSError as error:
        return True, f"cannot read the file: {error.strerror or error}"


def structural_problem(path: str | Path, image_format: str | None) -> str | None:
    """Why a file of a format with a cheap check looks cut short, or None (also None for unchecked formats)."""
    return structural_verdict(path, image_format)[1]


def _tail(path: str | Path, size: int) -> bytes:
    with open(path, "rb") as handle:
        handle.seek(max(0, size - _TAIL_BYTES))
        return handle.read()


def _jpeg_problem(path: str | Path, size: int) -> str | None:
    if b"\xff\xd9" not in _tail(path, size):  # inside entropy-coded data FF is always stuffed (FF 00)
        return f"no end-of-image marker (FF D9) at the end of the JPEG ({size} bytes): the file is cut short"
    return None


def _png_problem(path: str | Path, size: int) -> str | None:
    """The PNG must end with IEND (trailing padding tolerated), and its chunk headers (seeks only, no pixel data
    read) must each fit the file, have a 4-letter type, and lead to IEND."""
    if b"IEND" not in _tail(path, size):
        return f"no IEND chunk at the end of the PNG ({size} bytes): the file is cut short"
    with open(path, "rb") as handle:
        offset = 8  # the signature
        while offset + 8 <= size:
            handle.seek(offset)
            header = handle.read(8)
            length, kind = int.from_bytes(header[:4], "big"), header[4:]
            if not kind.isalpha() or offset + 12 + length > size:
                return (f"PNG chunk at byte {offset} is broken (type {kind!r}, length {length}, file {size} "
                        "bytes): the file is corrupt or cut short")
            if kind == b"IEND":
                return None
            offset += 12 + length
    return f"the PNG's chunks end at byte {offset} without an IEND chunk: the file is corrupt or cut short"


def _bmp_verdict(path: str | Path, size: int) -> tuple[bool, str | None]:
    """The BMP header's file-size field, and pixel-data offset + pixel-data size, must fit the real size
    (trailing bytes tolerated). A compressed BMP without an image-size field cannot be checked cheaply."""
    with open(path, "rb") as handle:
        head = handle.read(54)
    if len(head) < 26:
        return True, f"the BMP header is cut short ({size} bytes)"
    declared = int.from_bytes(head[2:6], "little")
    offset = int.from_bytes(head[10:14], "little")
    dib = int.from_bytes(head[14:18], "little")
    if declared > size:
        return True, f"the BMP header says {declared} bytes but the file has {size}: the file is cut short"
    if dib == 12:  # OS/2 BITMAPCOREHEADER: uncompressed
        width, height = int.from_bytes(head[18:20], "little"), int.from_bytes(head[20:22], "little")
        bpp, compression, image_size = int.from_bytes(head[24:26], "little"), 0, 0
    elif dib >= 40 and len(head) >= 38:
        width = int.from_bytes(head[18:22], "little", signed=True)
        height = int.from_bytes(head[22:26], "little", signed=True)
        bpp = int.from_bytes(head[28:30], "little")
        compression = int.from_bytes(head[30:34], "little")
        image_size = int.from_bytes(head[34:38], "little")
    else:
        return False, None
    if compression in (0, 3, 6):  # BI_RGB, BI_BITFIELDS, BI_ALPHABITFIELDS: rows padded to 4 bytes
        data = ((abs(width) * bpp + 31) // 32) * 4 * abs(height)
    elif image_size:
        data = image_size
    else:
        return declared > 0, None  # RLE/JPEG/PNG inside a BMP with no size field: only the size field checked
    if offset + data > size:
        return True, (f"the BMP's pixel data should end at byte {offset + data} (offset {offset} + {data} bytes) "
                      f"but the file has {size}: the file is cut short")
    return True, None


def _gif_problem(path: str | Path, size: int) -> str | None:
    """Walk the GIF's blocks (sizes only, no LZW decoding) up to its trailer (0x3B); bytes after it are
    tolerated."""
    data = Path(path).read_bytes()
    cut = f"the GIF ends at byte {size} inside its data, before the trailer (0x3B): the file is cut short"
    if len(data) < 13:
        return cut
    position = 13
    if data[10] & 0x80:
        position += 3 * 2 ** ((data[10] & 7) + 1)
    while position < len(data):
        marker = data[position]
        if marker == 0x3B:
            return None
        if marker == 0x21:  # extension: label, then sub-blocks
            position += 2
        elif marker == 0x2C:  # image descriptor, optional local colour table, LZW code size, sub-blocks
            if position + 10 > len(data):
                return cut
            flags = data[position + 9]
            position += 10 + (3 * 2 ** ((flags & 7) + 1) if flags & 0x80 else 0) + 1
        else:
            return f"the GIF has an unknown block 0x{marker:02X} at byte {position}: the file is corrupt"
        while position < len(data) and data[position]:
            position += data[position] + 1
        position += 1
    return cut


def _webp_problem(path: str | Path, size: int) -> str | None:
    """The RIFF header's size field must fit the file (trailing bytes tolerated)."""
    with open(path, "rb") as handle:
        head = handle.read(12)
    declared = int.from_bytes(head[4:8], "little") + 8 if len(head) >= 8 else size + 1
    if declared > size:
        return f"the WebP (RIFF) header says {declared} bytes but the file has {size}: the file is cut short"
    return None
