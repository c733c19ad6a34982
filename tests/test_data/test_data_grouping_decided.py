"""Which categories are grouping ones is decided once, from the train split, and applied to val, eval and
predict; the id-gap note counts only the classes left after a grouping category is left out."""

from __future__ import annotations

import copy
from pathlib import Path
from types import SimpleNamespace

import pytest

from apex_x.domain.errors import DatasetError

from .builders import SmallDataset, small_dataset


def _grouped(root: Path) -> SmallDataset:
    """Categories 0 'shape' (the supercategory of 1 'circle' and 2 'square'); train annotates category 0 once."""
    dataset = small_dataset(root)
    for category in dataset.data["categories"]:
        category["supercategory"] = "shape"
    dataset.data["categories"].insert(0, {"id": 0, "name": "shape", "supercategory": "none"})
    val = copy.deepcopy(dataset.data)  # val: no annotation of category 0 (it would be 'grouping' on its own)
    dataset.write_json(val, path=root / "val.json")
    dataset.data["annotations"][0]["category_id"] = 0
    dataset.write_json()
    return dataset


def test_a_class_of_train_stays_a_class_in_val(tmp_path: Path) -> None:
    from apex_x.adapters.datasets.coco_source import CocoDatasetSource
    from apex_x.api import dataset_preflight, load_config

    dataset = _grouped(tmp_path / "user")
    config = dataset.config(val_annotations=dataset.root / "val.json")
    report = dataset_preflight(config)
    assert report.ok, report.error_summary()
    assert report.summary["num_classes"] == 3
    assert not [f for f in report.findings if f.rule.startswith("category.grouping")]
    truth = CocoDatasetSource(load_config(config)).val_ground_truth()  # what eval compares with the checkpoint
    assert truth is not None and [c["id"] for c in truth["categories"]] == [0, 1, 2]


def test_a_grouping_category_of_train_is_left_out_of_val_too(tmp_path: Path) -> None:
    from apex_x.api import dataset_preflight

    dataset = _grouped(tmp_path / "user")
    dataset.data["annotations"][0]["category_id"] = 1  # train: category 0 unannotated -> grouping
    dataset.write_json()
    val = dataset.root / "val.json"
    report = dataset_preflight(dataset.config(val_annotations=val))
    assert report.ok, report.error_summary()
    assert [c["id"] for c in report.summary["categories"]] == [1, 2]
    rules = [(f.rule, f.severity, Path(f.file or "").name) for f in report.findings if f.rule.startswith("category.")]
    assert ("category.grouping_left_out", "warning", "instances.json") in rules
    assert ("category.grouping_left_out", "info", "val.json") in rules


def test_val_annotations_of_a_category_train_left_out_are_an_error(tmp_path: Path) -> None:
    from apex_x.api import dataset_preflight

    dataset = _grouped(tmp_path / "user")
    val = dataset.root / "val.json"
    train = copy.deepcopy(dataset.data)
    train["annotations"][0]["category_id"] = 1  # train: grouping; val: annotates category 0
    dataset.write_json(train)
    dataset.data["annotations"][0]["category_id"] = 0
    dataset.write_json(dataset.data, path=val)
    report = dataset_preflight(dataset.config(val_annotations=val))
    [error] = [f for f in report.errors if f.rule == "category.grouping_annotated"]
    assert "category 0 'shape' has annotations here" in error.message and Path(error.file or "").name == "val.json"


def test_predict_compares_with_the_model_not_the_files_own_decision(tmp_path: Path) -> None:
    from apex_x.api import check_classes, load_config
    from apex_x.domain.types import CategoryMap

    dataset = _grouped(tmp_path / "user")  # val.json: category 0 unannotated
    model = SimpleNamespace(config=load_config(None), checkpoint_path="run/best.pt",
                            categories=CategoryMap((0, 1, 2), ("shape", "circle", "square")))
    ids = check_classes(model, dataset.root / "val.json")  # a class of the model: kept, so the lists agree
    assert ids["a.png"] == 1
    model.categories = CategoryMap((1, 2), ("circle", "square"))  # trained with 0 left out as grouping
    check_classes(model, dataset.root / "val.json")
    model.categories = CategoryMap((0, 1), ("shape", "circle"))
    with pytest.raises(DatasetError, match=r"1 difference\(s\)\): id 2 \('square'\) only in the COCO file"):
        check_classes(model, dataset.root / "val.json")


def test_the_id_gap_note_counts_only_the_classes(tmp_path: Path) -> None:
    from apex_x.api import dataset_preflight

    dataset = small_dataset(tmp_path / "user")
    for category in dataset.data["categories"]:
        category["supercategory"] = "shape"
    dataset.data["categories"][1]["id"] = 5  # classes 1, 5: a gap
    for annotation in dataset.data["annotations"]:
        annotation["category_id"] = 5 if annotation["category_id"] == 2 else annotation["category_id"]
    dataset.data["categories"].insert(0, {"id": 0, "name": "shape", "supercategory": "none"})
    dataset.write_json()
    report = dataset_preflight(dataset.config())
    [gaps] = [f for f in report.findings if f.rule == "category.id_gaps"]
    assert "category ids 1..5 are not contiguous (2 categories)" in gaps.message
    assert "training ids 0..1" in gaps.message
    report = dataset_preflight(dataset.config(), overrides=["data.keep_grouping_categories=true"])
    [gaps] = [f for f in report.findings if f.rule == "category.id_gaps"]
    assert "category ids 0..5 are not contiguous (3 categories)" in gaps.message


def test_a_grouping_category_only_val_lists_is_left_out_there(tmp_path: Path) -> None:
    from apex_x.api import dataset_preflight

    dataset = small_dataset(tmp_path / "user")  # train: 1 'circle', 2 'square', no grouping category
    val = copy.deepcopy(dataset.data)
    for category in val["categories"]:
        category["supercategory"] = "shape"
    val["categories"].insert(0, {"id": 0, "name": "shape", "supercategory": "none"})
    dataset.write_json(val, path=dataset.root / "val.json")
    report = dataset_preflight(dataset.config(val_annotations=dataset.root / "val.json"))
    assert report.ok, report.error_summary()
    [note] = [f for f in report.findings if f.rule == "category.grouping_left_out"]
    assert note.severity == "info" and "category 0 'shape'" in note.message and "not in the train split" in note.message


def test_names_that_differ_only_in_case_or_spaces_are_warned_naming_both_ids(tmp_path: Path) -> None:
    from apex_x.api import dataset_preflight

    dataset = small_dataset(tmp_path / "user")  # 1 'circle', 2 'square'
    dataset.data["categories"].append({"id": 3, "name": "Circle ", "supercategory": "shape"})
    dataset.data["categories"].append({"id": 4, "name": " SQUARE", "supercategory": "shape"})
    dataset.write_json()
    report = dataset_preflight(dataset.config())
    found = sorted(f.message for f in report.findings if f.rule == "category.similar_names")
    assert len(found) == 2
    assert found[0].startswith("categories 1 'circle' and 3 'Circle ' differ only in case or surrounding spaces")
    assert found[1].startswith("categories 2 'square' and 4 ' SQUARE' differ only in case or surrounding spaces")
    assert all(f.severity == "warning" for f in report.findings if f.rule == "category.similar_names")
    dataset.data["categories"] = dataset.data["categories"][:2]
    dataset.write_json()
    assert not [f for f in dataset_preflight(dataset.config()).findings if f.rule == "category.similar_names"]
