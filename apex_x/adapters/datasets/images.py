"""Image decoding: EXIF orientation, gray/RGBA/palette/16-bit to RGB uint8, and a decompression-bomb guard."""

from __future__ import annotations

import os
import stat
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from apex_x.adapters.datasets.image_structure import structural_problem, structural_verdict  # noqa: F401 (re-exported)
from apex_x.adapters.datasets.png16 import colour_max, png16_colour_kind, read_png16, scale_png16

# Images larger than this (pixels, after the header) are refused before any pixel is decoded.
MAX_IMAGE_PIXELS = 89_478_485  # Pillow's default warning threshold (~0.25 GiB of RGBA)
ALPHA_BACKGROUND = (114, 114, 114)  # transparent pixels are composited over the letterbox grey
_SWAPS_AXES = {5, 6, 7, 8}  # EXIF orientations that transpose width and height


class ImageReadError(Exception):
    """An image that cannot be used: `rule` names the dataset rule broken, the message says why."""

    def __init__(self, rule: str, message: str) -> None:
        super().__init__(message)
        self.rule = rule


@dataclass(frozen=True)
class ImageProbe:
    """What the header says: size after EXIF orientation, raw size, mode and orientation tag."""

    width: int
    height: int
    raw_width: int
    raw_height: int
    mode: str
    format: str | None
    orientation: int


_FILE_KINDS = ((stat.S_ISFIFO, "a named pipe (FIFO)"), (stat.S_ISCHR, "a character device"),
               (stat.S_ISBLK, "a block device"), (stat.S_ISSOCK, "a socket"), (stat.S_ISDIR, "a folder"))


def regular_file_problem(path: str | Path) -> str | None:
    """None for a non-empty regular file (after links); else why it is not opened. A pipe, device or socket
    would block or never end when read, and an empty "file" (as /proc reports its own) is no image."""
    try:
        info = os.stat(path)
    except FileNotFoundError:
        return None  # reported as a missing file where it is opened
    except OSError as error:
        return f"cannot look at the file: {error.strerror or error}"
    if not stat.S_ISREG(info.st_mode):
        kind = next((name for test, name in _FILE_KINDS if test(info.st_mode)), "not a regular file")
        return f"not an image file but {kind}: only regular files are opened"
    if info.st_size == 0:
        return "the file is empty (0 bytes)"
    return None


def _open(path: Path) -> Image.Image:
    problem = regular_file_problem(path)
    if problem is not None:
        raise ImageReadError("image.not_a_file", problem)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            image = Image.open(path)
    except FileNotFoundError:
        raise ImageReadError("image.file_missing", "image file not found") from None
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as error:
        raise ImageReadError(
            "image.decompression_bomb",
            f"refused before decoding (decompression-bomb guard, limit {MAX_IMAGE_PIXELS} pixels): {error}",
        ) from None
    except UnidentifiedImageError:
        raise ImageReadError("image.unreadable", "not an image file Pillow can identify") from None
    except (OSError, ValueError, SyntaxError) as error:
        raise ImageReadError("image.unreadable", f"cannot read image header: {error}") from None
    width, height = image.size
    if width * height > MAX_IMAGE_PIXELS:
        image.close()
        raise ImageReadError(
            "image.decompression_bomb",
            f"header says {width}x{height} = {width * height} pixels, above the limit of {MAX_IMAGE_PIXELS} "
            "(decompression-bomb guard); the file is refused before decoding",
        )
    if width <= 0 or height <= 0:
        image.close()
        raise ImageReadError("image.unreadable", f"header has an empty size {width}x{height}")
    return image


def _orientation(image: Image.Image) -> int:
    try:
        value = image.getexif().get(0x0112, 1)
    except Exception:  # noqa: BLE001 - a broken EXIF block means "no orientation", as in browsers
        return 1
    return int(value) if isinstance(value, int) and 1 <= value <= 8 else 1


def _png_exif_after_pixels(path: Path) -> bool:
    """Whether a PNG has an eXIf chunk after its first IDAT (chunk headers only: seeks, no pixel data read).
    Pillow's getexif() decodes the whole image to look for one, so the header probe asks this first."""
    seen_pixels = False
    with open(path, "rb") as handle:
        offset = 8  # the signature
        while True:
            handle.seek(offset)
            header = handle.read(8)
            if len(header) < 8:
                return False
            kind = header[4:]
            if kind == b"IDAT":
                seen_pixels = True
            elif kind == b"eXIf" and seen_pixels:
                return True
            elif kind == b"IEND":
                return False
            offset += 12 + int.from_bytes(header[:4], "big")


def probe_image(path: str | Path) -> ImageProbe:
    """Header only (no pixel decoding): size after EXIF orientation, mode, format."""
    with _open(Path(path)) as image:
        raw_width, raw_height = image.size
        png_without_exif = image.format == "PNG" and "exif" not in image.info and not _png_exif_after_pixels(Path(path))
        orientation = 1 if png_without_exif else _orientation(image)
        width, height = (raw_height, raw_width) if orientation in _SWAPS_AXES else (raw_width, raw_height)
        return ImageProbe(width, height, raw_width, raw_height, image.mode, image.format, orientation)


def bits_used(max_value: int) -> int:
    """The bit depth a high-bit-depth image's values need (at least 8): 4095 -> 12."""
    return max(8, int(max_value).bit_length())


def high_bit_depth_max(path: str | Path) -> int | None:
    """The largest value of a 16-bit (I;16*) or 32-bit integer grey image, None for other modes (decodes it)."""
    with _open(Path(path)) as image:
        if not (image.mode.startswith("I;16") or image.mode == "I"):
            return None
        try:
            values = np.asarray(image)
        except (OSError, ValueError, SyntaxError) as error:
            raise ImageReadError("image.decode_failed", f"cannot decode pixels (truncated or corrupt): {error}") from None
        return int(values.max()) if values.size else 0


def to_rgb_array(image: Image.Image, high_bit_depth: str = "full_range") -> np.ndarray:
    """Any Pillow mode -> (H, W, 3) uint8 RGB: 16-bit scaled (not clipped) over the full 16-bit range, or over the
    bits the image uses (`high_bit_depth="used_bits"`), alpha composited, palette expanded."""
    mode = image.mode
    if mode == "RGB":
        return np.asarray(image, dtype=np.uint8)
    if mode == "P":
        image = image.convert("RGBA" if "transparency" in image.info else "RGB")
        mode = image.mode
        if mode == "RGB":
            return np.asarray(image, dtype=np.uint8)
    if mode in {"RGBA", "LA", "PA", "RGBa", "La"}:
        rgba = np.asarray(image.convert("RGBA"), dtype=np.float32)  # (H, W, 4)
        alpha = rgba[..., 3:4] / 255.0
        background = np.asarray(ALPHA_BACKGROUND, dtype=np.float32)
        return np.rint(rgba[..., :3] * alpha + background * (1.0 - alpha)).astype(np.uint8)
    if mode.startswith("I;16") or mode == "I":
        values = np.asarray(image).astype(np.int64)  # (H, W)
        if mode == "I" and values.size and (values.min() < 0 or values.max() > 65535):
            low, high = int(values.min()), int(values.max())
            gray = (values - low) * 255 // max(high - low, 1)
        else:
            top = 65535 if high_bit_depth != "used_bits" else 2 ** bits_used(int(values.max()) if values.size else 0) - 1
            gray = (values * 255 + top // 2) // top  # 0..top -> 0..255, rounded
        return np.repeat(gray.astype(np.uint8)[..., None], 3, axis=2)
    if mode == "F":
        values = np.nan_to_num(np.asarray(image, dtype=np.float32))
        scale = 255.0 if values.size and values.max() <= 1.0 else 1.0
        gray = np.clip(np.rint(values * scale), 0, 255).astype(np.uint8)
        return np.repeat(gray[..., None], 3, axis=2)
    if mode in {"L", "1"}:
        gray = np.asarray(image.convert("L"), dtype=np.uint8)
        return np.repeat(gray[..., None], 3, axis=2)
    return np.asarray(image.convert("RGB"), dtype=np.uint8)  # CMYK, YCbCr, LAB, HSV, ...


_TRANSPOSES = {
    2: Image.Transpose.FLIP_LEFT_RIGHT, 3: Image.Transpose.ROTATE_180, 4: Image.Transpose.FLIP_TOP_BOTTOM,
    5: Image.Transpose.TRANSPOSE, 6: Image.Transpose.ROTATE_270, 7: Image.Transpose.TRANSVERSE,
    8: Image.Transpose.ROTATE_90,
}  # EXIF orientation -> the transpose that displays it (as ImageOps.exif_transpose)


def png16_max(path: str | Path) -> int:
    """The largest colour value of a 16-bit-per-channel colour PNG (decodes it with libpng)."""
    try:
        return colour_max(read_png16(path))
    except (OSError, RuntimeError, ValueError) as error:
        raise ImageReadError("image.decode_failed", f"cannot decode pixels (truncated or corrupt): {error}") from None


def is_tiff16_colour(path: str | Path) -> bool:
    """A TIFF with 16 bits per colour channel (Pillow decodes it to 8 bits by the high byte; no rescaling
    possible here). Header only."""
    with _open(Path(path)) as image:
        if image.format != "TIFF" or image.mode not in ("RGB", "RGBA"):
            return False
        bits = image.tag_v2.get(258, ())  # BitsPerSample
        return isinstance(bits, tuple) and len(bits) >= 3 and all(int(b) == 16 for b in bits[:3])


def _png16_rgb(path: Path, high_bit_depth: str) -> np.ndarray:
    """A 48/64-bit PNG scaled from its 16-bit values (Pillow alone would keep only the high byte): over the
    full 16-bit range, or over the bits the image uses (`used_bits`)."""
    try:
        values = read_png16(path)
    except (OSError, RuntimeError, ValueError) as error:
        raise ImageReadError("image.decode_failed", f"cannot decode pixels (truncated or corrupt): {error}") from None
    top = 65535 if high_bit_depth != "used_bits" else 2 ** bits_used(colour_max(values)) - 1
    return scale_png16(values, top, ALPHA_BACKGROUND)


def load_rgb(path: str | Path, *, min_size: tuple[int, int] | None = None,
             high_bit_depth: str = "full_range") -> np.ndarray:
    """Decode fully to (H, W, 3) uint8 RGB in display orientation (EXIF applied).

    `min_size` (width, height) in display orientation lets JPEGs decode at a reduced scale (draft mode)
    that is still at least that large; the caller maps coordinates with the returned array's size.
    """
    image = _open(Path(path))
    try:
        orientation = _orientation(image)
        if image.format == "PNG" and png16_colour_kind(path):
            array = _png16_rgb(Path(path), high_bit_depth)
            if orientation != 1:
                array = np.asarray(Image.fromarray(array).transpose(_TRANSPOSES[orientation]))
            return np.ascontiguousarray(array)
        if min_size is not None and image.format == "JPEG" and image.mode in {"RGB", "L", "CMYK"}:
            want_w, want_h = min_size
            if orientation in _SWAPS_AXES:
                want_w, want_h = want_h, want_w
            if want_w < image.size[0] and want_h < image.size[1]:
                image.draft(image.mode, (max(int(want_w), 1), max(int(want_h), 1)))
        try:
            image.load()
        except (OSError, ValueError, SyntaxError) as error:
            raise ImageReadError(
                "image.decode_failed", f"cannot decode pixels (truncated or corrupt): {error}"
            ) from None
        if orientation != 1:
            image = ImageOps.exif_transpose(image)
        return np.ascontiguousarray(to_rgb_array(image, high_bit_depth))
    finally:
        image.close()


def to_base_size(array: np.ndarray, width: int, height: int) -> np.ndarray:
    """(h, w, 3) uint8 -> (height, width, 3): box-averaged by the integer factor when (width, height) is (w, h)
    divided by one and rounded up (TransformSettings.base_size; a JPEG drafted to it is returned as is), else an
    antialiased bilinear resize (e.g. a JSON size that differs from the file's)."""
    h, w = array.shape[:2]
    if (h, w) == (height, width):
        return array
    factor = max(1, w // max(width, 1))
    picture = Image.fromarray(array)
    if factor > 1 and -(-w // factor) == width and -(-h // factor) == height:
        return np.asarray(picture.reduce(factor))
    return np.asarray(picture.resize((width, height), Image.Resampling.BILINEAR))
