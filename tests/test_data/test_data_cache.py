"""Large JPEGs load at a reduced base size with the right geometry; data.cache none/ram/disk give identical batches."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from structlog.testing import capture_logs

from apex_x.adapters.config_yaml import load_config
from apex_x.adapters.datasets.coco_source import CocoDatasetSource
from apex_x.adapters.datasets.image_cache import GIB, check_ram
from apex_x.adapters.datasets.transforms import transform_sample
from apex_x.cli import main
from apex_x.domain.errors import DatasetError

SIDE_W, SIDE_H = 512, 384  # photos 8x the 64 px input: loaded at a quarter of their size (base 128x96)


def _write(root: Path, count: int = 6) -> tuple[Path, Path]:
    """`count` real JPEGs (noise + one rectangle each, the last one rotated by EXIF 6) with polygon labels."""
    rng = np.random.default_rng(0)
    folder = root / "images"
    folder.mkdir(parents=True)
    images, anns = [], []
    for index in range(count):
        pixels = rng.integers(0, 255, (SIDE_H, SIDE_W, 3), dtype=np.uint8)
        x0, y0, x1, y1 = 64 + 16 * index, 96, 320 + 16 * index, 288
        pixels[y0:y1, x0:x1] = (230, 20, 20)
        name = f"{index}.jpg"
        width, height = SIDE_W, SIDE_H
        if index == count - 1:  # stored rotated; EXIF 6 turns it back: display size is 384 x 512
            exif = Image.Exif()
            exif[0x0112] = 6
            Image.fromarray(np.ascontiguousarray(np.rot90(pixels, 1))).save(folder / name, quality=95, exif=exif)
        else:
            Image.fromarray(pixels).save(folder / name, quality=95)
        images.append({"id": index + 1, "file_name": name, "width": width, "height": height})
        polygon = [x0, y0, x1, y0, x1, y1, x0, y1]
        anns.append({"id": index + 1, "image_id": index + 1, "category_id": 1, "segmentation": [polygon],
                     "bbox": [x0, y0, x1 - x0, y1 - y0], "area": (x1 - x0) * (y1 - y0), "iscrowd": 0})
    path = root / "instances.json"
    path.write_text(json.dumps({"images": images, "annotations": anns,
                                "categories": [{"id": 1, "name": "box"}]}))
    return folder, path


@pytest.fixture(scope="module")
def jpegs(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    return _write(tmp_path_factory.mktemp("jpegs"))


def _source(jpegs: tuple[Path, Path], *overrides: str) -> CocoDatasetSource:
    folder, path = jpegs
    settings = load_config(None, [f"data.coco_train_images={folder}", f"data.coco_train_annotations={path}",
                                  "model.input_height=64", "model.input_width=64", "model.num_classes=1",
                                  *overrides])
    return CocoDatasetSource(settings)


def test_large_jpeg_loads_at_base_size_with_the_original_geometry(jpegs) -> None:  # noqa: ANN001
    source = _source(jpegs)
    provider = source._provider("train")
    raw = provider.load(0, augment=True)
    # decode size 64 * 1.25 = 80 px wide -> the largest power of two keeping >= 80: 512 / 4 = 128
    assert raw.image.shape == (96, 128, 3) and raw.mask_size == (96, 128)
    assert (raw.orig_width, raw.orig_height) == (SIDE_W, SIDE_H)
    assert np.allclose(raw.boxes[0], [64, 96, 320, 288])  # boxes stay in original pixels
    sample = transform_sample(raw, source.transform_settings, rng=None)  # letterbox 512x384 -> 64x48, top 8
    assert np.allclose(sample.boxes[0], [8, 8 + 12, 40, 8 + 36], atol=0.5)
    red = sample.image[0].astype(int) - sample.image[1].astype(int) > 100  # the rectangle's pixels
    rows, cols = np.flatnonzero(red.any(1)), np.flatnonzero(red.any(0))
    assert abs(rows[0] - 20) <= 1 and abs(rows[-1] + 1 - 44) <= 1 and abs(cols[0] - 8) <= 1
    grid = sample.masks[0]  # 16 x 16 at stride 4: columns 2..9, rows 5..10
    assert grid[5:11, 2:10].all() and grid.sum() == 6 * 8


def test_exif_rotated_large_jpeg_keeps_display_orientation(jpegs) -> None:  # noqa: ANN001
    raw = _source(jpegs)._provider("train").load(5, augment=True)
    assert raw.image.shape == (96, 128, 3)  # display orientation, drafted from the stored 384 x 512 file
    red = (raw.image[..., 0].astype(int) - raw.image[..., 1].astype(int)) > 100
    assert red[26:70, 38:98].mean() > 0.95 and red[:20].mean() < 0.05  # the rectangle (x 144..400, y 96..288 of
    # the displayed 512 x 384, a quarter here) came back upright


def _batches(source: CocoDatasetSource, epochs: tuple[int, ...] = (0, 1)) -> list:
    loader = source.train_loader(2, seed=3)
    return [batch for epoch in epochs for batch in loader.iter_epoch(epoch)]


def _same(a, b) -> bool:  # noqa: ANN001
    fields = ("images", "boxes", "labels", "masks", "valid", "crowd")
    return all(torch.equal(getattr(a, name), getattr(b, name)) for name in fields) and a.metas == b.metas


AUGMENT = ("data.mosaic=0.5", "data.copy_paste=0.5", "data.affine_scale=0.3", "data.affine_degrees=10")


def test_cache_none_ram_disk_give_identical_batches(jpegs, tmp_path: Path) -> None:  # noqa: ANN001
    plain = _batches(_source(jpegs, *AUGMENT))
    ram = _batches(_source(jpegs, *AUGMENT, "data.cache=ram"))
    disk_source = _source(jpegs, *AUGMENT, "data.cache=disk", f"data.cache_dir={tmp_path}")
    disk = _batches(disk_source)
    assert len(plain) == len(ram) == len(disk) > 0
    assert all(_same(a, b) and _same(a, c) for a, b, c in zip(plain, ram, disk, strict=True))
    assert len(list(tmp_path.glob("*.npy"))) == 6  # one file per image, written on first use

    again = _source(jpegs, *AUGMENT, "data.cache=disk", f"data.cache_dir={tmp_path}")
    with capture_logs() as logs:
        provider = again._provider("train")
    estimate = next(entry for entry in logs if entry["event"] == "data.cache_estimate")
    assert estimate["images"] == 6 and estimate["images_to_write"] == 0 and estimate["megabytes_to_write"] == 0

    def refuse(index: int, *, augment: bool) -> np.ndarray:
        raise AssertionError("a cached image was decoded again")

    provider._decode = refuse  # type: ignore[method-assign]
    assert provider.load(2, augment=True).image.shape == (96, 128, 3)


def test_ram_cache_is_shared_with_workers_and_identical(jpegs) -> None:  # noqa: ANN001
    serial = _batches(_source(jpegs, *AUGMENT), epochs=(1,))
    workers = _batches(_source(jpegs, *AUGMENT, "data.cache=ram", "data.num_workers=2"), epochs=(1,))
    assert all(_same(a, b) for a, b in zip(serial, workers, strict=True))


def test_cache_estimate_is_logged_before_filling(jpegs) -> None:  # noqa: ANN001
    with capture_logs() as logs:
        _source(jpegs, "data.cache=ram")._provider("train")
    events = [entry["event"] for entry in logs]
    assert events.index("data.cache_estimate") < events.index("data.cache_filled")
    estimate = next(entry for entry in logs if entry["event"] == "data.cache_estimate")
    assert estimate["images"] == 6 and estimate["mode"] == "ram"
    assert estimate["megabytes"] == round(6 * 128 * 96 * 3 / 2**20, 1)


def test_ram_cache_refused_when_it_would_not_fit() -> None:
    check_ram(GIB, 2 * GIB, split="train", images=10)  # half of what is available: fine
    with pytest.raises(DatasetError) as caught:
        check_ram(3 * GIB, 4 * GIB, split="train", images=1000)
    text = str(caught.value)
    assert "data.cache=ram" in text and "3.00 GiB" in text and "4.00 GiB" in text and "data.cache=disk" in text


def test_bad_cache_value_is_a_clear_config_error(jpegs, capsys, tmp_path: Path) -> None:  # noqa: ANN001
    folder, path = jpegs
    config = tmp_path / "config.yaml"
    config.write_text("model:\n  num_classes: 1\n")
    code = main(["dataset-preflight", str(config), "--set", f"data.coco_train_images={folder}", "--set",
                 f"data.coco_train_annotations={path}", "--set", "data.cache=fast"])
    err = capsys.readouterr().err
    assert code == 2 and "data.cache" in err and "error:" in err and "'ram'" in err, err


def test_the_older_cache_images_key_with_a_disk_cache_is_a_clear_config_error(capsys):
    """data.cache_images=true means data.cache=ram: with data.cache=disk the two keys contradict each other."""
    config = Path(__file__).resolve().parents[2] / "configs" / "quickstart.yaml"
    code = main(["train", str(config), "--device", "cpu",
                 "--set", "data.cache_images=true", "--set", "data.cache=disk"])
    err = capsys.readouterr().err
    assert code == 2 and "Traceback" not in err
    assert "data.cache_images=true" in err and "data.cache='disk'" in err and "keep one of them" in err
    assert load_config(None, ["data.cache_images=true", "data.cache=ram"]).data.cache == "ram"  # the same choice
