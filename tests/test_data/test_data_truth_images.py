"""Issue 13, kind 1: a truncated JPEG/PNG is caught by the default (cheap) dataset checks, in preflight and
before train's first step; data.on_bad_image=skip leaves it out and counts it."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from PIL import Image

from apex_x.adapters.datasets.images import structural_problem
from apex_x.adapters.datasets.shapes_writer import ShapesPaths, write_shapes_dataset
from apex_x.domain.errors import DatasetError

TINY = ["model.profile=small", "model.input_height=64", "model.input_width=64",
        "model.backbone=mobilenetv3_small_050", "model.width_multiplier=0.25", "train.epochs=1",
        "train.batch_size=4", "train.warmup_steps=0", "runtime.device=cpu", "train.steps_per_stage=2"]


def _cut(path: Path, share: float) -> None:
    data = path.read_bytes()
    path.write_bytes(data[: int(len(data) * share)])


@pytest.fixture
def broken(tmp_path: Path) -> tuple[ShapesPaths, Path, Path]:
    """A fresh shapes set whose first train image is a JPEG cut to 60% and whose second PNG is cut short."""
    paths = write_shapes_dataset(tmp_path / "shapes", train=8, val=4, size=64, seed=0)
    data = json.loads(paths.train_annotations.read_text())
    first, second = data["images"][0], data["images"][1]
    png = paths.train_images / first["file_name"]
    jpeg = png.with_suffix(".jpg")
    Image.open(png).convert("RGB").save(jpeg, quality=95)
    png.unlink()
    first["file_name"] = jpeg.name
    paths.train_annotations.write_text(json.dumps(data))
    _cut(jpeg, 0.6)
    cut_png = paths.train_images / second["file_name"]
    _cut(cut_png, 0.9)
    return paths, jpeg, cut_png


def test_structural_check_finds_the_missing_end_markers(broken) -> None:  # noqa: ANN001
    paths, jpeg, cut_png = broken
    assert "FF D9" in (structural_problem(jpeg, "JPEG") or "")
    assert "IEND" in (structural_problem(cut_png, "PNG") or "")
    whole = next(p for p in sorted(paths.train_images.iterdir()) if p not in (jpeg, cut_png))
    assert structural_problem(whole, "PNG") is None


def test_a_png_with_a_broken_chunk_in_the_middle_is_found_without_decoding(tmp_path: Path) -> None:
    path = tmp_path / "x.png"
    Image.new("RGB", (16, 16), (10, 20, 30)).save(path)
    data = bytearray(path.read_bytes())
    assert structural_problem(path, "PNG") is None
    data[33:37] = (10**6).to_bytes(4, "big")  # the length of the chunk after IHDR (8 + 25 bytes)
    path.write_bytes(bytes(data))
    assert "PNG chunk at byte 33 is broken" in (structural_problem(path, "PNG") or "")


def test_default_preflight_refuses_truncated_jpeg_and_png(broken, tmp_path: Path) -> None:  # noqa: ANN001
    from apex_x.api import dataset_preflight

    paths, jpeg, cut_png = broken
    report = dataset_preflight(None, overrides=paths.config_overrides())
    assert not report.ok
    found = {(f.rule, f.image_id, Path(f.file or "").name) for f in report.errors}
    assert found == {("image.truncated", 1, jpeg.name), ("image.truncated", 2, cut_png.name)}
    assert report.summary["splits"]["train"]["files"]["undecodable_images"] == 2


def test_train_refuses_before_step_one(broken, tmp_path: Path) -> None:  # noqa: ANN001
    from apex_x.api import train

    paths, jpeg, _ = broken
    run = tmp_path / "run"
    with pytest.raises(DatasetError, match="image.truncated") as info:
        train(None, overrides=[*TINY, *paths.config_overrides(), f"train.output_dir={run}"])
    assert jpeg.name in str(info.value)
    assert not (run / "checkpoints" / "last.pt").exists()


def test_skip_leaves_the_images_out_and_counts_them(broken, tmp_path: Path) -> None:  # noqa: ANN001
    from apex_x.api import dataset_preflight, train

    paths, _, _ = broken
    overrides = [*paths.config_overrides(), "data.on_bad_image=skip"]
    report = dataset_preflight(None, overrides=overrides)
    assert report.ok and {f.rule for f in report.findings if f.severity == "warning"} >= {"image.truncated"}
    assert report.summary["splits"]["train"]["files"]["skipped_images"] == 2
    result = train(None, overrides=[*TINY, *overrides, f"train.output_dir={tmp_path / 'run'}"])
    assert result.status.startswith("finished")
    assert result.report["dataset"]["splits"]["train"]["skipped_images"] == 2
    assert result.report["run"]["steps_per_epoch"] == 1  # 8 listed, 2 left out: one batch of 4
