"""Issue 13, kind 8: a 16-bit image holding 12-bit data is warned about (with the bits it uses) and
data.high_bit_depth_scaling=used_bits scales it over those bits instead of the full 16-bit range."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from PIL import Image

from apex_x.adapters.datasets.images import load_rgb
from apex_x.adapters.datasets.shapes_writer import write_shapes_dataset


def _twelve_bit_png(path: Path, width: int, height: int) -> np.ndarray:
    ramp = (np.arange(width * height, dtype=np.uint32) * 4095 // (width * height - 1)).astype(np.uint16)
    values = ramp.reshape(height, width)
    Image.fromarray(values).save(path)  # mode I;16: 12-bit data in a 16-bit PNG
    return values


def test_12_bit_data_in_16_bits_is_warned_and_can_be_scaled_by_the_bits_used(tmp_path: Path) -> None:
    from apex_x.api import dataset_preflight

    paths = write_shapes_dataset(tmp_path / "shapes", train=4, val=0, size=64, seed=0)
    image = json.loads(paths.train_annotations.read_text())["images"][0]
    values = _twelve_bit_png(paths.train_images / image["file_name"], image["width"], image["height"])
    report = dataset_preflight(None, overrides=paths.config_overrides())
    [warning] = [f for f in report.findings if f.rule == "image.high_bit_depth"]
    assert warning.severity == "warning" and warning.image_id == image["id"]
    assert "use only 12 of 16 bits (values 0..4095)" in warning.message and "~16 grey levels" in warning.message
    assert "data.high_bit_depth_scaling=used_bits" in warning.message
    report = dataset_preflight(None, overrides=[*paths.config_overrides(), "data.high_bit_depth_scaling=used_bits"])
    assert [f.severity for f in report.findings if f.rule == "image.high_bit_depth"] == ["info"]

    path = paths.train_images / image["file_name"]
    full = load_rgb(path)
    used = load_rgb(path, high_bit_depth="used_bits")
    assert int(full.max()) == 16 and len(np.unique(full)) == 17  # ~16 grey levels: nearly black
    assert int(used.max()) == 255 and int(used.min()) == 0
    expected = (values.astype(np.int64) * 255 + 2047) // 4095
    assert np.array_equal(used[..., 0], expected.astype(np.uint8))


def test_the_predict_reader_scales_like_training(tmp_path: Path) -> None:
    from apex_x.adapters.image_inputs import PillowImageReader

    _twelve_bit_png(tmp_path / "x.png", 8, 4)
    assert int(PillowImageReader("used_bits").read(str(tmp_path / "x.png")).max()) == 255
    assert int(PillowImageReader().read(str(tmp_path / "x.png")).max()) == 16
