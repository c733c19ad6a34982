"""Image decoding: EXIF orientation, gray/RGBA/palette/16-bit conversion, truncation and bomb guards."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from apex_x.adapters.datasets.images import (
    ALPHA_BACKGROUND,
    MAX_IMAGE_PIXELS,
    ImageReadError,
    load_rgb,
    probe_image,
)

from .builders import png_bytes


def test_exif_orientation_is_applied(tmp_path: Path) -> None:
    raw = np.zeros((4, 6, 3), dtype=np.uint8)  # stored 6 wide, 4 high
    raw[0, 0] = (255, 0, 0)  # a red marker at the stored top-left
    exif = Image.Exif()
    exif[0x0112] = 6  # display = stored image rotated 90 degrees clockwise
    path = tmp_path / "rotated.png"
    Image.fromarray(raw).save(path, exif=exif.tobytes())

    probe = probe_image(path)
    assert (probe.width, probe.height, probe.raw_width, probe.raw_height, probe.orientation) == (
        4,
        6,
        6,
        4,
        6,
    )
    image = load_rgb(path)
    assert image.shape == (6, 4, 3)
    assert tuple(image[0, -1]) == (255, 0, 0)  # the stored top-left is now the displayed top-right
    assert image[..., 0].sum() == 255


def test_grayscale_is_replicated(tmp_path: Path) -> None:
    gray = np.arange(24, dtype=np.uint8).reshape(4, 6) * 10
    Image.fromarray(gray).save(tmp_path / "g.png")
    image = load_rgb(tmp_path / "g.png")
    assert image.dtype == np.uint8 and image.shape == (4, 6, 3)
    assert all(np.array_equal(image[..., c], gray) for c in range(3))


def test_rgba_is_composited_over_grey(tmp_path: Path) -> None:
    rgba = np.zeros((2, 2, 4), dtype=np.uint8)
    rgba[0, 0] = (200, 100, 0, 255)  # opaque
    rgba[0, 1] = (200, 100, 0, 0)  # fully transparent: the hidden colour must not leak
    Image.fromarray(rgba).save(tmp_path / "a.png")
    image = load_rgb(tmp_path / "a.png")
    assert tuple(image[0, 0]) == (200, 100, 0)
    assert tuple(image[0, 1]) == ALPHA_BACKGROUND


def test_palette_with_transparency(tmp_path: Path) -> None:
    palette_image = Image.new("P", (3, 1))
    palette_image.putpalette([255, 0, 0, 0, 255, 0] + [0] * 762)
    palette_image.putdata([0, 1, 1])
    palette_image.info["transparency"] = 1
    palette_image.save(tmp_path / "p.png", transparency=1)
    image = load_rgb(tmp_path / "p.png")
    assert tuple(image[0, 0]) == (255, 0, 0)
    assert tuple(image[0, 1]) == ALPHA_BACKGROUND


def test_sixteen_bit_gray_is_scaled_not_clipped(tmp_path: Path) -> None:
    values = np.array([[0, 257, 32896, 65535]], dtype=np.uint16)
    Image.fromarray(values).save(tmp_path / "d.png")
    image = load_rgb(tmp_path / "d.png")
    assert image[0, :, 0].tolist() == [0, 1, 128, 255]


def test_sixteen_bit_rgb_keeps_the_high_byte(tmp_path: Path) -> None:
    pixels = np.array([[[65535, 0, 32768], [256, 512, 1024]]], dtype=">u2").tobytes()
    (tmp_path / "rgb16.png").write_bytes(png_bytes(2, 1, bit_depth=16, color_type=2, pixels=pixels))
    image = load_rgb(tmp_path / "rgb16.png")
    assert image.tolist() == [[[255, 0, 128], [1, 2, 4]]]


def test_truncated_file_fails_to_decode_but_has_a_header(tmp_path: Path) -> None:
    buffer = io.BytesIO()
    Image.fromarray(np.random.default_rng(0).integers(0, 256, (64, 64, 3), dtype=np.uint8)).save(
        buffer, format="PNG"
    )
    path = tmp_path / "t.png"
    path.write_bytes(buffer.getvalue()[: len(buffer.getvalue()) // 2])
    assert probe_image(path).width == 64
    with pytest.raises(ImageReadError) as info:
        load_rgb(path)
    assert info.value.rule == "image.decode_failed"


def test_non_image_and_missing_files(tmp_path: Path) -> None:
    (tmp_path / "x.png").write_text("hello")
    with pytest.raises(ImageReadError) as info:
        probe_image(tmp_path / "x.png")
    assert info.value.rule == "image.unreadable"
    with pytest.raises(ImageReadError) as info:
        load_rgb(tmp_path / "missing.png")
    assert info.value.rule == "image.file_missing"


@pytest.mark.parametrize(
    "side", [10000, 20000]
)  # above our limit (PIL only warns), and above PIL's error limit
def test_decompression_bomb_is_refused_from_the_header(tmp_path: Path, side: int) -> None:
    assert side * side > MAX_IMAGE_PIXELS
    path = tmp_path / "bomb.png"
    path.write_bytes(png_bytes(side, side, bit_depth=8, color_type=0))
    for read in (probe_image, load_rgb):
        with pytest.raises(ImageReadError) as info:
            read(path)
        assert info.value.rule == "image.decompression_bomb"


def test_jpeg_draft_decodes_smaller_but_large_enough(tmp_path: Path) -> None:
    Image.fromarray(np.full((480, 640, 3), 90, dtype=np.uint8)).save(tmp_path / "big.jpg", quality=90)
    full = load_rgb(tmp_path / "big.jpg")
    reduced = load_rgb(tmp_path / "big.jpg", min_size=(200, 150))
    assert full.shape == (480, 640, 3)
    assert reduced.shape[0] >= 150 and reduced.shape[1] >= 200 and reduced.shape[1] < 640


def test_exif_orientation_in_a_png_chunk_after_the_pixels_is_found(tmp_path: Path) -> None:
    """The header probe skips Pillow's full decode for PNGs without eXIf, yet finds one placed after IDAT."""
    import struct
    import zlib

    buffer = io.BytesIO()
    Image.fromarray(np.zeros((4, 6, 3), dtype=np.uint8)).save(buffer, format="PNG")
    data = buffer.getvalue()
    exif = Image.Exif()
    exif[0x0112] = 6
    payload = exif.tobytes()[6:]  # the TIFF block without the "Exif\0\0" prefix, as PNG stores it
    chunk = struct.pack(">I", len(payload)) + b"eXIf" + payload + struct.pack(">I", zlib.crc32(b"eXIf" + payload))
    end = data.rindex(b"IEND") - 4  # the IEND chunk starts with its length
    late = tmp_path / "late_exif.png"
    late.write_bytes(data[:end] + chunk + data[end:])
    assert data.index(b"IDAT") < late.read_bytes().index(b"eXIf")
    probe = probe_image(late)
    assert (probe.width, probe.height, probe.orientation) == (4, 6, 6)
    plain = tmp_path / "plain.png"
    plain.write_bytes(data)
    assert probe_image(plain).orientation == 1 and (probe_image(plain).width, probe_image(plain).height) == (6, 4)
