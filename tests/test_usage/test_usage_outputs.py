"""Files of predict: COCO results (RLE round trip, original ids and names), overlays, summary; image inputs."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from PIL import Image
from pycocotools import mask as mask_utils

from apex_x.adapters.image_inputs import PillowImageReader
from apex_x.adapters.inference_outputs import CocoJsonOverlaySink, coco_results
from apex_x.domain.errors import UserError
from apex_x.domain.types import CategoryMap, Detections

CATEGORIES = CategoryMap((3, 7), ("circle", "square"))


def _detections(height: int = 20, width: int = 30) -> Detections:
    masks = torch.zeros((2, height, width), dtype=torch.bool)
    masks[0, 2:8, 3:9] = True
    masks[1, 10:18, 20:29] = True
    return Detections(
        boxes=torch.tensor([[3.0, 2.0, 9.0, 8.0], [20.0, 10.0, 29.0, 18.0]]),
        scores=torch.tensor([0.9, 0.4]),
        labels=torch.tensor([1, 0]),
        masks=masks,
    )


def test_coco_results_use_original_ids_names_xywh_and_decodable_rle() -> None:
    detections = _detections()
    entries = coco_results(5, detections, CATEGORIES)
    assert [(e["image_id"], e["category_id"], e["category_name"]) for e in entries] == [(5, 7, "square"), (5, 3, "circle")]
    assert entries[0]["bbox"] == [3.0, 2.0, 6.0, 6.0] and entries[0]["score"] == pytest.approx(0.9)
    for entry, mask in zip(entries, detections.masks, strict=True):
        rle = dict(entry["segmentation"], counts=entry["segmentation"]["counts"].encode())
        assert np.array_equal(mask_utils.decode(rle).astype(bool), mask.numpy())
    json.dumps(entries)  # plain JSON


def test_sink_writes_results_summary_and_one_overlay_per_image(tmp_path) -> None:
    sink = CocoJsonOverlaySink(tmp_path / "out", CATEGORIES)
    image = torch.full((20, 30, 3), 50, dtype=torch.uint8)
    sink.add(1, "a/img.png", image, _detections())
    sink.add(2, "b/img.png", image, _detections())  # same stem: a distinct overlay name
    written = sink.close({"images": [{"id": 1, "path": "a/img.png"}, {"id": 2, "path": "b/img.png"}], "failures": []})
    results = json.loads((tmp_path / "out" / "predictions.json").read_text())
    summary = json.loads((tmp_path / "out" / "summary.json").read_text())
    assert len(results) == 4 and {entry["image_id"] for entry in results} == {1, 2}
    assert [image["overlay"].rsplit("/", 1)[-1] for image in summary["images"]] == ["img.png", "img_2.png"]
    assert summary["categories"] == [{"id": 3, "name": "circle"}, {"id": 7, "name": "square"}]
    assert sorted(p.rsplit("/", 1)[-1] for p in written) == ["img.png", "img_2.png", "predictions.json", "summary.json"]
    with Image.open(tmp_path / "out" / "img.png") as overlay:
        pixels = np.asarray(overlay.convert("RGB"))
    assert pixels.shape == (20, 30, 3) and not (pixels == 50).all()


def test_reader_lists_folders_and_names_bad_paths(tmp_path) -> None:
    folder = tmp_path / "images"
    folder.mkdir()
    for name in ("b.png", "a.jpg"):
        Image.new("RGB", (10, 8)).save(folder / name)
    (folder / "notes.txt").write_text("not an image")
    (tmp_path / "empty").mkdir()
    reader = PillowImageReader()
    assert reader.list_images(str(folder)) == [str(folder / "a.jpg"), str(folder / "b.png")]
    with pytest.raises(UserError, match=f"{tmp_path / 'empty'}: the folder has no image files"):
        reader.list_images(str(tmp_path / "empty"))
    with pytest.raises(UserError, match="missing.png: no such file or folder"):
        reader.list_images(str(tmp_path / "missing.png"))
    with pytest.raises(UserError, match="notes.txt: cannot use the image"):
        reader.read(str(folder / "notes.txt"))


def test_reader_letterboxes_like_validation_and_meta_maps_back(tmp_path) -> None:
    Image.fromarray(np.full((30, 60, 3), 200, dtype=np.uint8)).save(tmp_path / "wide.png")
    reader = PillowImageReader()
    image = reader.read(str(tmp_path / "wide.png"))
    tensor, meta = reader.prepare(image, image_id=4, file_name="wide.png", height=64, width=64)
    assert image.shape == (30, 60, 3) and tensor.shape == (3, 64, 64) and tensor.dtype == torch.uint8
    assert (meta.orig_height, meta.orig_width, meta.pad_left, meta.image_id) == (30, 60, 0, 4)
    assert meta.scale == pytest.approx(64 / 60) and meta.pad_top == 16
    assert (tensor[:, meta.pad_top + 1, :] == 200).all() and (tensor[:, 0, :] == 114).all()
