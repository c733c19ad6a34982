"""AnnotationTable: a checked split as flat arrays (what the loaders read), stored with the check cache so a
second start of the same data maps it instead of parsing the JSON."""

from __future__ import annotations

import json
import pickle
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from pycocotools import mask as mask_utils

from apex_x.adapters.config_yaml import load_config
from apex_x.adapters.datasets import coco_source
from apex_x.adapters.datasets.annotation_table import AnnotationTable
from apex_x.adapters.datasets.coco_source import CocoDatasetSource
from apex_x.adapters.datasets.segmentation import to_rle

SQUARE = [0.0, 0.0, 4.0, 0.0, 4.0, 4.0, 0.0, 4.0]  # 16 px^2
TRIANGLE = [5.0, 5.0, 7.0, 5.0, 7.0, 8.0]  # 3 px^2


META = {"readable": True, "categories": [], "left_out": [], "summary": {}, "content_sha256": "x"}


def _entries() -> tuple[list[dict[str, Any]], dict[int, list[dict[str, Any]]]]:
    images = [{"id": 5, "file_name": "sub/é.jpg", "width": 10, "height": 8},
              {"id": 7, "file_name": "empty.jpg", "width": 20, "height": 10},
              {"id": 9, "file_name": "c.jpg", "width": 6, "height": 6}]
    annotations = {
        5: [{"bbox": [0, 0, 7, 8], "category_id": 3, "iscrowd": 0, "segmentation": [SQUARE, TRIANGLE]},
            {"bbox": [1, 1, 2, 2], "category_id": 1, "iscrowd": 1,
             "segmentation": {"size": [8, 10], "counts": [10, 3, 5, 3, 59]}}],  # uncompressed RLE: 6 px
        9: [{"bbox": [0, 0, 2, 2], "category_id": 2, "segmentation":
             {"size": [6, 6], "counts": mask_utils.encode(np.asfortranarray(np.eye(6, dtype=np.uint8)))["counts"]
              .decode()}}],
    }
    return images, annotations


def test_the_table_holds_every_entry_with_compressed_masks(tmp_path: Path) -> None:
    images, annotations = _entries()
    table = AnnotationTable.from_entries(images, annotations, META)
    assert len(table) == 3 and table.num_annotations == 3 and table.counts().tolist() == [2, 0, 1]
    assert table.image(0).file_name == "sub/é.jpg" and (table.image(2).width, table.image(2).height) == (6, 6)
    square, crowd = table.annotations(0)
    assert square.segmentation == [SQUARE, TRIANGLE] and square.category_id == 3 and not square.crowd
    assert crowd.crowd and crowd.category_id == 1 and crowd.bbox.tolist() == [1, 1, 2, 2]
    assert crowd.segmentation["counts"] == to_rle(annotations[5][1]["segmentation"], 8, 10)["counts"]
    assert table.annotations(1) == []
    (diagonal,) = table.annotations(2)
    assert mask_utils.decode(diagonal.segmentation).tolist() == np.eye(6).tolist()

    table.save(tmp_path / "table")
    again = AnnotationTable.load(tmp_path / "table")
    assert again is not None and again.meta == {**META, "category_ids": [1, 2, 3]}
    assert isinstance(again.arrays["coords"], np.memmap)  # mapped, shared by every process that opens it
    assert again.annotations(0)[0].segmentation == [SQUARE, TRIANGLE] and again.image(0) == table.image(0)
    assert len(pickle.dumps(again)) < 500  # a spawned worker gets the folder and maps it too, not a copy
    assert pickle.loads(pickle.dumps(again)).annotations(2)[0].segmentation == diagonal.segmentation


def test_ids_of_any_size_and_names_that_are_not_utf8_round_trip(tmp_path: Path) -> None:
    images = [{"id": 2**64 + 5, "file_name": "caf\udce9.png", "width": 4, "height": 4}]
    annotations = {2**64 + 5: [{"bbox": [0, 0, 2, 2], "category_id": 2**70, "segmentation": [TRIANGLE]}]}
    AnnotationTable.from_entries(images, annotations, META).save(tmp_path / "table")
    table = AnnotationTable.load(tmp_path / "table")
    assert table is not None and table.image(0).id == 2**64 + 5 and table.image(0).file_name == "caf\udce9.png"
    assert table.annotations(0)[0].category_id == 2**70 and table.image_ids() == [2**64 + 5]


@pytest.mark.parametrize("damage", ["missing array", "older version", "meta without categories", "short offsets"])
def test_a_partial_damaged_or_older_table_is_not_used(tmp_path: Path, damage: str) -> None:
    images, annotations = _entries()
    folder = tmp_path / "table"
    AnnotationTable.from_entries(images, annotations, META).save(folder)
    meta = json.loads((folder / "meta.json").read_text())
    if damage == "missing array":
        (folder / "coords.npy").unlink()
    elif damage == "older version":
        (folder / "meta.json").write_text(json.dumps({**meta, "version": -1}))
    elif damage == "meta without categories":
        (folder / "meta.json").write_text(json.dumps({"version": meta["version"]}))
    else:
        np.save(folder / "ann_offsets.npy", np.zeros(2, dtype=np.int64))
    assert AnnotationTable.load(folder) is None
    assert AnnotationTable.load(tmp_path / "absent") is None


def _source(shapes_dataset: Any, *overrides: str) -> CocoDatasetSource:
    settings = load_config(None, [*shapes_dataset.config_overrides(), "model.input_height=64",
                                  "model.input_width=64", *overrides])
    return CocoDatasetSource(settings)


def test_a_second_start_maps_the_stored_table_and_parses_no_json(shapes_dataset: Any, tmp_path: Path,
                                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("APEX_X_CACHE_DIR", str(tmp_path / "cache"))
    first = _source(shapes_dataset)
    assert first.validate(full_decode=False).ok
    batches = [batch.labels.tolist() for batch in first.train_loader(4, seed=0).iter_epoch(0)]
    described = first.describe()
    assert list((tmp_path / "cache" / "annotation_tables").iterdir())

    def no_parsing_of_train(paths: Any, *args: Any, **kwargs: Any) -> Any:
        assert paths.split != "train", "the train annotation JSON was parsed again"
        return read_split(paths, *args, **kwargs)  # val: parsed for its ground truth (COCOeval) anyway

    read_split = coco_source.read_split
    monkeypatch.setattr(coco_source, "read_split", no_parsing_of_train)
    second = _source(shapes_dataset)
    assert second.validate(full_decode=False).summary["check_cached"]
    assert [batch.labels.tolist() for batch in second.train_loader(4, seed=0).iter_epoch(0)] == batches
    assert second.categories.names == ("circle", "rectangle", "triangle")
    assert second.describe() == described


def test_the_loader_reads_the_same_targets_as_the_file_says(shapes_dataset: Any, tmp_path: Path,
                                                            monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("APEX_X_CACHE_DIR", str(tmp_path / "cache"))
    provider = _source(shapes_dataset).train_samples()
    coco = json.loads(Path(shapes_dataset.train_annotations).read_text())
    image = coco["images"][3]
    truth = [a for a in coco["annotations"] if a["image_id"] == image["id"]]
    index = next(i for i in range(len(provider)) if provider.image(i).id == image["id"])
    sample = provider.load(index, augment=False)
    assert sample.file_name == image["file_name"] and len(sample.labels) == len(truth)
    areas = [float(mask_utils.area(to_rle(a["segmentation"], image["height"], image["width"]))) for a in truth]
    order = np.argsort(-np.array(areas), kind="stable")
    expected = np.array([truth[i]["bbox"] for i in order], dtype=np.float32)
    expected[:, 2:] += expected[:, :2]
    assert np.allclose(sample.boxes, expected)  # largest first, xyxy
    assert sample.labels.tolist() == [truth[i]["category_id"] - 1 for i in order]
    classes = provider.image_classes()  # repeat-factor sampling's input, from the table's arrays
    for index in range(len(provider)):
        image_id = provider.image(index).id
        assert classes[index] == {a["category_id"] - 1 for a in coco["annotations"] if a["image_id"] == image_id}


def test_a_file_replaced_after_it_was_parsed_never_gets_the_old_table(shapes_dataset: Any, tmp_path: Path,
                                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("APEX_X_CACHE_DIR", str(tmp_path / "cache"))
    data = tmp_path / "data"
    shutil.copytree(Path(shapes_dataset.train_annotations).parent, data)
    overrides = [f"data.coco_train_images={data / Path(shapes_dataset.train_images).name}",
                 f"data.coco_train_annotations={data / 'instances_train.json'}"]
    first = _source(shapes_dataset, *overrides)
    assert first.validate(full_decode=False).ok  # parsed here...
    coco = json.loads((data / "instances_train.json").read_text())
    first_image = coco["images"][0]["id"]
    coco["annotations"] = [a for a in coco["annotations"] if a["image_id"] != first_image]
    (data / "instances_train.json").write_text(json.dumps(coco))  # ...replaced (a corrected export) ...
    assert len(first.train_samples().load(0, augment=False).labels) > 0  # ...and the old table stored
    for _ in range(2):  # later starts: the table of the bytes the file holds now
        later = _source(shapes_dataset, *overrides)
        later.validate(full_decode=False)
        provider = later.train_samples()
        index = next(i for i in range(len(provider)) if provider.image(i).id == first_image)
        assert len(provider.load(index, augment=False).labels) == 0
