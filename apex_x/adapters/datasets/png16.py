"""16-bit-per-channel colour PNGs (48-bit RGB, 64-bit RGBA): Pillow decodes them to 8 bits by the high byte,
so an image holding 12-bit data (0..4095) turns nearly black. These helpers find such files from the IHDR
chunk and decode their full 16-bit values with libpng (torchvision.io), so they can be scaled like 16-bit grey."""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np

_SIGNATURE = b"\x89PNG\r\n\x1a\n"
_COLOUR_TYPES = {2: "RGB", 6: "RGBA"}  # IHDR colour types with 3 or 4 channels


def png16_colour_kind(path: str | Path) -> str | None:
    """'RGB' or 'RGBA' when the file is a PNG with 16 bits per channel in colour (IHDR bit depth 16, colour
    type 2 or 6), else None. Reads the first 26 bytes only."""
    try:
        with open(path, "rb") as handle:
            head = handle.read(26)
    except OSError:
        return None
    if len(head) < 26 or head[:8] != _SIGNATURE or head[12:16] != b"IHDR" or head[24] != 16:
        return None
    return _COLOUR_TYPES.get(head[25])


def read_png16(path: str | Path) -> np.ndarray:
    """The file's values as (H, W, C) uint16 (C = 3 or 4), decoded by libpng. Raises ValueError/RuntimeError
    on a corrupt or truncated file."""
    import torch
    from torchvision.io import ImageReadMode, decode_png

    data = torch.frombuffer(bytearray(Path(path).read_bytes()), dtype=torch.uint8)
    with warnings.catch_warnings():  # torchvision 0.29 marks its decoders deprecated (still libpng, still here)
        warnings.simplefilter("ignore", DeprecationWarning)
        values = decode_png(data, mode=ImageReadMode.UNCHANGED)  # (C, H, W) torch.uint16
    if values.dtype != torch.uint16:  # an 8-bit file after all: widen so the caller's scaling still holds
        return values.permute(1, 2, 0).numpy().astype(np.uint16) * 257
    return values.permute(1, 2, 0).contiguous().view(torch.int16).numpy().view(np.uint16)


def colour_max(values: np.ndarray) -> int:
    """The largest colour value (alpha left out) of a (H, W, C) array."""
    return int(values[..., :3].max()) if values.size else 0


def scale_png16(values: np.ndarray, top: int, background: tuple[int, int, int]) -> np.ndarray:
    """(H, W, 3|4) uint16 -> (H, W, 3) uint8 RGB: colour scaled (rounded) from 0..top to 0..255; a 16-bit alpha
    (always over its full range) composites the colour over `background`."""
    colour = (values[..., :3].astype(np.int64) * 255 + top // 2) // max(top, 1)
    colour = np.clip(colour, 0, 255).astype(np.float32)
    if values.shape[-1] == 4:
        alpha = values[..., 3:4].astype(np.float32) / 65535.0
        colour = colour * alpha + np.asarray(background, dtype=np.float32) * (1.0 - alpha)
    return np.rint(colour).astype(np.uint8)
