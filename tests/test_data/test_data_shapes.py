"""The built-in shapes dataset: deterministic files, annotations that rasterise to the drawn pixels, layouts."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from pycocotools import mask as mask_utils

from apex_x.adapters.config_yaml import load_config
from apex_x.adapters.datasets.coco_source import CocoDatasetSource
from apex_x.adapters.datasets.shapes import render_scene, scene_rng
from apex_x.adapters.datasets.shapes_writer import ShapesPaths, write_shapes_dataset
from apex_x.cli import main
from apex_x.domain.errors import DatasetError

from .builders import snapshot


def _files(root: Path) -> dict[str, str]:
    return {
        key: digest
        for key, (_, digest) in ((str(Path(k).relative_to(root)), v) for k, v in snapshot(root).items())
    }


def test_same_seed_gives_byte_identical_files(tmp_path: Path) -> None:
    first = write_shapes_dataset(tmp_path / "a", train=6, val=2, size=64, seed=3)
    second = write_shapes_dataset(tmp_path / "b", train=6, val=2, size=64, seed=3)
    other = write_shapes_dataset(tmp_path / "c", train=6, val=2, size=64, seed=4)
    assert _files(first.root) == _files(second.root)
    assert _files(first.root) != _files(other.root)
    assert sorted(_files(first.root)) == sorted(
        [f"train/{i:06d}.png" for i in range(1, 7)]
        + ["val/000001.png", "val/000002.png", "instances_train.json", "instances_val.json"]
    )


def test_annotations_rasterise_to_the_drawn_pixels(shapes_dataset: ShapesPaths) -> None:
    data = json.loads(shapes_dataset.train_annotations.read_text())
    assert [c["name"] for c in data["categories"]] == ["circle", "rectangle", "triangle"]
    per_image: dict[int, list[dict]] = {}
    for ann in data["annotations"]:
        per_image.setdefault(ann["image_id"], []).append(ann)
    occluded = 0
    for image in data["images"]:
        anns = per_image.get(image["id"], [])
        assert 1 <= len(anns) <= 6
        pixels = np.asarray(Image.open(shapes_dataset.train_images / image["file_name"]), dtype=np.int16)
        height, width = image["height"], image["width"]
        _, shapes = render_scene(height, width, scene_rng(0, "train", image["id"] - 1))
        assert len(shapes) == len(anns)
        for ann, shape in zip(anns, shapes, strict=True):
            mask = mask_utils.decode(
                mask_utils.merge(mask_utils.frPyObjects(ann["segmentation"], height, width))
            )
            assert np.array_equal(mask.astype(bool), shape.visible)  # exactly the visible pixels
            assert ann["area"] == int(mask.sum())
            x, y, w, h = ann["bbox"]
            ys, xs = np.nonzero(mask)
            assert x <= xs.min() + 1 and xs.max() <= x + w and y <= ys.min() + 1 and ys.max() <= y + h
            inside = pixels[mask.astype(bool)].mean(axis=0)
            assert np.abs(inside - shape.colour).max() < 30  # the drawn colour (shading and noise aside)
            occluded += int(not np.array_equal(shape.visible, shape.full))
            assert all(len(polygon) >= 6 and len(polygon) % 2 == 0 for polygon in ann["segmentation"])
    assert occluded > 0  # some shapes are partly hidden


def test_val_loader_masks_equal_the_ground_truth(shapes_dataset: ShapesPaths) -> None:
    settings = load_config(
        None,
        [
            *shapes_dataset.config_overrides(),
            "model.input_height=128",
            "model.input_width=128",
            "model.mask_stride=1",
        ],
    )
    source = CocoDatasetSource(settings)
    truth = source.val_ground_truth()
    by_image: dict[int, list[dict]] = {}
    for ann in truth["annotations"]:
        by_image.setdefault(ann["image_id"], []).append(ann)
    for batch in source.val_loader(4).iter_epoch(0):
        for row, meta in enumerate(batch.metas):
            assert meta.scale == 1.0 and meta.pad_left == meta.pad_top == 0
            expected = sorted(by_image[meta.image_id], key=lambda a: -a["area"])
            for k, ann in enumerate(expected):
                gt = mask_utils.decode(
                    mask_utils.merge(mask_utils.frPyObjects(ann["segmentation"], 128, 128))
                )
                assert torch.equal(batch.masks[row, k], torch.from_numpy(gt))
                x, y, w, h = ann["bbox"]
                assert batch.boxes[row, k].tolist() == pytest.approx([x, y, x + w, y + h], abs=1e-4)


def test_coco_layout_and_preflight_accepts_it(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code = main(
        [
            "make-shapes",
            str(tmp_path / "data" / "coco"),
            "--train",
            "4",
            "--val",
            "2",
            "--size",
            "64",
            "--layout",
            "coco",
        ]
    )
    assert code == 0
    root = tmp_path / "data" / "coco"
    for name in (
        "train2017/000004.png",
        "val2017/000002.png",
        "annotations/instances_train2017.json",
        "annotations/instances_val2017.json",
    ):
        assert (root / name).is_file()
    config = Path(__file__).resolve().parents[2] / "configs" / "coco_baseline.yaml"
    overrides = [f"--set=data.coco_{s}_images={root}/{s}2017" for s in ("train", "val")] + [
        f"--set=data.coco_{s}_annotations={root}/annotations/instances_{s}2017.json" for s in ("train", "val")
    ]
    capsys.readouterr()
    assert main(["dataset-preflight", str(config), "--num-classes", "3", "--full-decode", *overrides]) == 0
    assert "result: OK" in capsys.readouterr().out


def test_existing_dataset_is_kept_or_refused(tmp_path: Path) -> None:
    paths = write_shapes_dataset(tmp_path / "s", train=3, val=1, size=48, seed=0)
    before = snapshot(paths.root)
    assert (
        write_shapes_dataset(tmp_path / "s", train=3, val=1, size=48, seed=0) == paths
    )  # same arguments: kept
    with pytest.raises(DatasetError, match="--overwrite"):
        write_shapes_dataset(tmp_path / "s", train=3, val=1, size=48, seed=1)
    assert snapshot(paths.root) == before
    write_shapes_dataset(tmp_path / "s", train=3, val=1, size=48, seed=1, overwrite=True)
    assert snapshot(paths.root) != before


def test_bad_arguments_are_user_errors(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["make-shapes", str(tmp_path / "x"), "--size", "8"]) == 2
    assert "--size" in capsys.readouterr().err
    (tmp_path / "file").write_text("x")
    assert main(["make-shapes", str(tmp_path / "file"), "--train", "1", "--val", "0", "--size", "32"]) == 2
