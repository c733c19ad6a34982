"""A PNG with 16 bits per colour channel (48-bit RGB, 64-bit RGBA) holding 12-bit data: preflight warns with
the bits used and what survives, and data.high_bit_depth_scaling=used_bits scales it over those bits on every
path that decodes images (train/eval loader, predict reader, notebook)."""

from __future__ import annotations

import json
import struct
import zlib
from pathlib import Path

import numpy as np
from PIL import Image

from apex_x.adapters.datasets.images import ALPHA_BACKGROUND, load_rgb
from apex_x.adapters.datasets.png16 import png16_colour_kind
from apex_x.adapters.datasets.shapes_writer import write_shapes_dataset


def _png16(path: Path, values: np.ndarray) -> None:
    """Write (H, W, 3|4) uint16 values as a 48/64-bit PNG (Pillow cannot write one)."""
    height, width, channels = values.shape
    raw = b"".join(b"\x00" + values[row].astype(">u2").tobytes() for row in range(height))

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    header = struct.pack(">IIBBBBB", width, height, 16, 2 if channels == 3 else 6, 0, 0, 0)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(raw))
                     + chunk(b"IEND", b""))


def _twelve_bit(height: int, width: int) -> np.ndarray:
    ramp = np.arange(height * width * 3, dtype=np.int64) * 4095 // (height * width * 3 - 1)
    return ramp.reshape(height, width, 3).astype(np.uint16)


def test_the_ihdr_says_which_pngs_have_16_bit_colour(tmp_path: Path) -> None:
    _png16(tmp_path / "rgb.png", _twelve_bit(4, 5))
    _png16(tmp_path / "rgba.png", np.concatenate([_twelve_bit(4, 5), np.full((4, 5, 1), 65535, np.uint16)], 2))
    Image.new("RGB", (4, 4)).save(tmp_path / "rgb8.png")
    Image.fromarray(np.full((4, 4), 1000, np.uint16)).save(tmp_path / "gray16.png")
    kinds = [png16_colour_kind(tmp_path / name) for name in ("rgb.png", "rgba.png", "rgb8.png", "gray16.png")]
    assert kinds == ["RGB", "RGBA", None, None]


def test_used_bits_scales_12_bit_colour_over_12_bits(tmp_path: Path) -> None:
    values = _twelve_bit(6, 8)
    _png16(tmp_path / "x.png", values)
    assert int(np.asarray(Image.open(tmp_path / "x.png")).max()) == 15  # Pillow alone: the high byte
    full = load_rgb(tmp_path / "x.png")
    used = load_rgb(tmp_path / "x.png", high_bit_depth="used_bits")
    assert full.shape == used.shape == (6, 8, 3)
    assert np.array_equal(full, ((values.astype(np.int64) * 255 + 32767) // 65535).astype(np.uint8))
    assert int(full.max()) == 16
    assert np.array_equal(used, ((values.astype(np.int64) * 255 + 2047) // 4095).astype(np.uint8))
    assert int(used.max()) == 255 and int(used.min()) == 0


def test_a_16_bit_alpha_composites_over_the_background(tmp_path: Path) -> None:
    values = _twelve_bit(2, 2)
    alpha = np.array([[[65535], [0]], [[65535], [0]]], dtype=np.uint16)
    _png16(tmp_path / "x.png", np.concatenate([values, alpha], axis=2))
    used = load_rgb(tmp_path / "x.png", high_bit_depth="used_bits")
    expected = ((values.astype(np.int64) * 255 + 2047) // 4095).astype(np.uint8)
    assert np.array_equal(used[:, 0], expected[:, 0])
    assert np.array_equal(used[:, 1], np.array([ALPHA_BACKGROUND] * 2, dtype=np.uint8))


def test_the_predict_reader_scales_48_bit_pngs_like_training(tmp_path: Path) -> None:
    from apex_x.adapters.image_inputs import PillowImageReader

    _png16(tmp_path / "x.png", _twelve_bit(4, 8))
    assert int(PillowImageReader("used_bits").read(str(tmp_path / "x.png")).max()) == 255
    assert int(PillowImageReader().read(str(tmp_path / "x.png")).max()) == 16


def test_preflight_warns_with_the_bits_used_and_what_survives(tmp_path: Path) -> None:
    from apex_x.api import dataset_preflight

    paths = write_shapes_dataset(tmp_path / "shapes", train=4, val=0, size=64, seed=0)
    images = json.loads(paths.train_annotations.read_text())["images"]
    for image in images[:2]:
        _png16(paths.train_images / image["file_name"], _twelve_bit(image["height"], image["width"]))
    report = dataset_preflight(None, overrides=paths.config_overrides())
    assert report.ok
    [warning] = [f for f in report.findings if f.rule == "image.high_bit_depth_colour"]
    assert warning.severity == "warning" and warning.image_id == images[0]["id"]
    assert "2 PNG(s) with 16 bits per colour channel (48/64-bit) use 12 of 16 bits (max 4095)" in warning.message
    assert "ends at 16 of 255 (~17 levels per channel" in warning.message
    assert "data.high_bit_depth_scaling=used_bits" in warning.message
    report = dataset_preflight(None, overrides=[*paths.config_overrides(), "data.high_bit_depth_scaling=used_bits"])
    [info] = [f for f in report.findings if f.rule == "image.high_bit_depth_colour"]
    assert info.severity == "info" and "scaled over those bits" in info.message


def test_a_cut_48_bit_png_is_refused(tmp_path: Path) -> None:
    from apex_x.api import dataset_preflight

    paths = write_shapes_dataset(tmp_path / "shapes", train=4, val=0, size=64, seed=0)
    image = json.loads(paths.train_annotations.read_text())["images"][0]
    path = paths.train_images / image["file_name"]
    _png16(path, _twelve_bit(image["height"], image["width"]))
    path.write_bytes(path.read_bytes()[:-20])  # IEND and the end of IDAT gone
    report = dataset_preflight(None, overrides=paths.config_overrides())
    assert [(f.rule, f.image_id) for f in report.errors] == [("image.truncated", image["id"])]


def _tiff48(path: Path, values: np.ndarray) -> None:
    """Write (H, W, 3) uint16 values as an uncompressed 48-bit little-endian TIFF."""
    height, width, _ = values.shape
    data = values.astype("<u2").tobytes()
    ifd_offset = 14 + len(data)
    short = [(256, width), (257, height), (259, 1), (262, 2), (277, 3), (278, height)]
    entries = [struct.pack("<HHIHH", tag, 3, 1, value, 0) for tag, value in short]
    entries += [struct.pack("<HHII", 258, 3, 3, 8), struct.pack("<HHII", 273, 4, 1, 14),
                struct.pack("<HHII", 279, 4, 1, len(data))]
    entries.sort(key=lambda entry: struct.unpack("<H", entry[:2])[0])
    path.write_bytes(b"II*\x00" + struct.pack("<I", ifd_offset) + struct.pack("<HHH", 16, 16, 16) + data
                     + struct.pack("<H", len(entries)) + b"".join(entries) + b"\0\0\0\0")


def test_a_16_bit_colour_tiff_is_named_as_not_rescalable(tmp_path: Path) -> None:
    from apex_x.api import dataset_preflight

    paths = write_shapes_dataset(tmp_path / "shapes", train=4, val=0, size=64, seed=0)
    data = json.loads(paths.train_annotations.read_text())
    image = data["images"][0]
    (paths.train_images / image["file_name"]).unlink()
    image["file_name"] = "x.tif"
    paths.train_annotations.write_text(json.dumps(data))
    _tiff48(paths.train_images / "x.tif", _twelve_bit(image["height"], image["width"]))
    assert Image.open(paths.train_images / "x.tif").mode == "RGB"
    report = dataset_preflight(None, overrides=[*paths.config_overrides(), "data.high_bit_depth_scaling=used_bits"])
    assert report.ok
    [warning] = [f for f in report.findings if f.rule == "image.high_bit_depth_colour"]
    assert warning.severity == "warning" and warning.image_id == image["id"]
    assert "1 TIFF(s) with 16 bits per colour channel" in warning.message
    assert "max value after decoding 15 of 255" in warning.message and "cannot rescale" in warning.message
