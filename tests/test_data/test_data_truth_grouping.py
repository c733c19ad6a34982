"""Issue 13, kind 7: a grouping category (no annotations, the supercategory of all the others, often id 0
and named like the dataset or a real class) is left out of the classes with a warning naming it; an option
keeps it; class-count messages say which categories they counted."""

from __future__ import annotations

from pathlib import Path

from .builders import SmallDataset, small_dataset


def _with_grouping(root: Path, name: str = "shape") -> SmallDataset:
    dataset = small_dataset(root)
    for category in dataset.data["categories"]:
        category["supercategory"] = name
    dataset.data["categories"].insert(0, {"id": 0, "name": name, "supercategory": "none"})
    dataset.write_json()
    return dataset


def test_the_grouping_category_is_left_out_with_a_warning(tmp_path: Path) -> None:
    from apex_x.api import dataset_preflight

    dataset = _with_grouping(tmp_path / "user")
    report = dataset_preflight(dataset.config(), num_classes=2)  # the true count is accepted
    assert report.ok, report.error_summary()
    assert report.summary["num_classes"] == 2
    assert [c["id"] for c in report.summary["categories"]] == [1, 2]
    warnings = [f for f in report.findings if f.rule == "category.grouping_left_out"]
    assert len(warnings) == 1 and "category 0 'shape'" in warnings[0].message
    assert "keep_grouping_categories" in warnings[0].message
    assert "0" not in report.summary["splits"]["train"]["instances_per_class"]


def test_a_wrong_class_count_names_the_counted_and_the_left_out_categories(tmp_path: Path) -> None:
    from apex_x.api import dataset_preflight

    dataset = _with_grouping(tmp_path / "user")
    report = dataset_preflight(dataset.config(), num_classes=3)
    [error] = [f for f in report.errors if f.rule == "dataset.num_classes_mismatch"]
    assert "2: 1 'circle', 2 'square'" in error.message
    assert "left out as grouping categories: 0 'shape'" in error.message


def test_the_option_keeps_it_as_a_class(tmp_path: Path) -> None:
    from apex_x.api import dataset_preflight

    dataset = _with_grouping(tmp_path / "user")
    report = dataset_preflight(dataset.config(), overrides=["data.keep_grouping_categories=true"], num_classes=3)
    assert report.ok and report.summary["num_classes"] == 3
    assert [f.rule for f in report.findings if f.rule.startswith("category.grouping")] == ["category.grouping_kept"]


def test_a_grouping_category_named_like_a_real_class_is_its_own_row(tmp_path: Path) -> None:
    from apex_x.api import dataset_preflight

    dataset = _with_grouping(tmp_path / "user", name="circle")  # id 0 'circle' groups 1 'circle' and 2 'square'
    report = dataset_preflight(dataset.config(), overrides=["data.keep_grouping_categories=true"])
    per_class = report.summary["splits"]["train"]["instances_per_class"]
    assert per_class["0"] == {"name": "circle", "instances": 0, "crowd": 0}
    assert per_class["1"]["name"] == "circle" and per_class["1"]["instances"] >= 1
    report = dataset_preflight(dataset.config())
    assert [c["id"] for c in report.summary["categories"]] == [1, 2]


def test_a_category_without_annotations_that_groups_nothing_stays_a_class(tmp_path: Path) -> None:
    from apex_x.api import dataset_preflight

    dataset = small_dataset(tmp_path / "user")
    dataset.data["categories"].append({"id": 7, "name": "rare", "supercategory": "shape"})
    dataset.write_json()
    report = dataset_preflight(dataset.config())
    assert report.summary["num_classes"] == 3
    assert not [f for f in report.findings if f.rule.startswith("category.grouping")]
