"""Truncated BMP, GIF and TIFF files are refused by the default (cheap) dataset check, in the train and val
splits, and by train before step 1; whole files (also with trailing bytes) pass."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from PIL import Image

from apex_x.adapters.datasets.image_structure import structural_verdict
from apex_x.adapters.datasets.shapes_writer import ShapesPaths, write_shapes_dataset
from apex_x.domain.errors import DatasetError

TINY = ["model.profile=small", "model.input_height=64", "model.input_width=64",
        "model.backbone=mobilenetv3_small_050", "model.width_multiplier=0.25", "train.epochs=1",
        "train.batch_size=4", "train.warmup_steps=0", "runtime.device=cpu", "train.steps_per_stage=1"]
FORMATS = {"BMP": ".bmp", "GIF": ".gif", "TIFF": ".tif"}
SUFFIX = {**FORMATS, "WEBP": ".webp"}


def _convert(images: Path, annotations: Path, index: int, image_format: str) -> Path:
    """Re-save image `index` of a split in `image_format` and point the JSON at it."""
    data = json.loads(annotations.read_text())
    entry = data["images"][index]
    png = images / entry["file_name"]
    target = png.with_suffix(FORMATS[image_format])
    Image.open(png).convert("RGB").save(target, image_format)
    png.unlink()
    entry["file_name"] = target.name
    annotations.write_text(json.dumps(data))
    return target


def _cut(path: Path, share: float = 0.6) -> None:
    data = path.read_bytes()
    path.write_bytes(data[: int(len(data) * share)])


@pytest.fixture
def formats(tmp_path: Path) -> tuple[ShapesPaths, dict[str, Path]]:
    """A shapes set whose train images 0..2 are BMP, GIF, TIFF and val image 0 is a BMP, all whole."""
    paths = write_shapes_dataset(tmp_path / "shapes", train=8, val=4, size=64, seed=0)
    files = {fmt: _convert(paths.train_images, paths.train_annotations, i, fmt) for i, fmt in enumerate(FORMATS)}
    assert paths.val_images is not None and paths.val_annotations is not None
    files["val BMP"] = _convert(paths.val_images, paths.val_annotations, 0, "BMP")
    return paths, files


@pytest.mark.parametrize("image_format", ["BMP", "GIF", "WEBP"])
def test_cheap_check_sees_a_cut_file_and_passes_a_whole_one(tmp_path: Path, image_format: str) -> None:
    path = tmp_path / f"x{SUFFIX[image_format]}"
    Image.effect_noise((40, 30), 60).convert("RGB").save(path, image_format)
    whole = path.read_bytes()
    assert structural_verdict(path, image_format) == (True, None)
    path.write_bytes(whole + b"\0" * 100)  # trailing bytes are tolerated
    assert structural_verdict(path, image_format) == (True, None)
    path.write_bytes(whole[: int(len(whole) * 0.6)])
    checked, problem = structural_verdict(path, image_format)
    assert checked and "cut short" in (problem or "")


def test_a_bmp_whose_size_field_is_right_but_pixels_are_missing(tmp_path: Path) -> None:
    path = tmp_path / "x.bmp"
    Image.new("RGB", (40, 30)).save(path)
    data = bytearray(path.read_bytes()[:2000])
    data[2:6] = (2000).to_bytes(4, "little")
    path.write_bytes(bytes(data))
    assert "should end at byte 3654" in (structural_verdict(path, "BMP")[1] or "")  # 54 + 40*3 rows of 120 * 30


def test_tiff_has_no_cheap_check() -> None:
    assert structural_verdict("whatever.tif", "TIFF") == (False, None)


def test_whole_files_pass_the_default_check(formats) -> None:  # noqa: ANN001
    from apex_x.api import dataset_preflight

    paths, files = formats
    for path in files.values():
        path.write_bytes(path.read_bytes() + b"\0" * 64)  # trailing bytes: every format here tolerates them
    report = dataset_preflight(None, overrides=paths.config_overrides())
    assert report.ok, [f.message for f in report.errors]


def test_default_preflight_refuses_cut_bmp_gif_tiff_in_train_and_val(formats) -> None:  # noqa: ANN001
    from apex_x.api import dataset_preflight

    paths, files = formats
    for path in files.values():
        _cut(path)
    report = dataset_preflight(None, overrides=paths.config_overrides())
    assert not report.ok
    found = {(Path(f.file or "").name, f.image_id) for f in report.errors}
    assert found == {(files["BMP"].name, 1), (files["GIF"].name, 2), (files["TIFF"].name, 3), (files["val BMP"].name, 1)}
    assert {f.rule for f in report.errors} <= {"image.truncated", "image.decode_failed"}
    assert report.summary["splits"]["train"]["files"]["undecodable_images"] == 3
    assert report.summary["splits"]["val"]["files"]["undecodable_images"] == 1


@pytest.mark.parametrize("image_format", ["BMP", "GIF", "TIFF"])
def test_train_refuses_a_cut_file_before_step_one(formats, tmp_path: Path, image_format: str) -> None:  # noqa: ANN001
    from apex_x.api import train

    paths, files = formats
    _cut(files[image_format])
    run = tmp_path / "run"
    with pytest.raises(DatasetError) as info:
        train(None, overrides=[*TINY, *paths.config_overrides(), f"train.output_dir={run}"])
    assert files[image_format].name in str(info.value)
    assert not (run / "checkpoints" / "last.pt").exists()
