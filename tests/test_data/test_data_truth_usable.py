"""Issue 13, kind 2 and the preflight counts: "usable" means there is something to learn; per-class counts
are keyed by category id; counts are the true numbers even when the listing is capped."""

from __future__ import annotations

from pathlib import Path

from apex_x.application.dataset_preflight import format_dataset_report

from .builders import small_dataset


def test_a_train_split_of_crowd_regions_only_is_an_error(tmp_path: Path) -> None:
    from apex_x.api import dataset_preflight

    dataset = small_dataset(tmp_path / "user")
    for annotation in dataset.data["annotations"]:
        annotation["iscrowd"] = 1
    dataset.write_json()
    report = dataset_preflight(dataset.config())
    assert not report.ok
    errors = [f for f in report.errors if f.rule == "dataset.no_trainable_instances"]
    assert len(errors) == 1 and "zero trainable instances" in errors[0].message
    assert f"all {len(dataset.data['annotations'])} are crowd regions" in errors[0].message
    assert report.summary["splits"]["train"]["instances"] == 0
    assert "NOT USABLE" in format_dataset_report(report)


def test_a_category_without_trainable_instances_is_a_warning_naming_it(tmp_path: Path) -> None:
    from apex_x.api import dataset_preflight

    dataset = small_dataset(tmp_path / "user")
    dataset.data["categories"].append({"id": 5, "name": "ghost"})
    for annotation in dataset.data["annotations"]:
        if annotation["category_id"] == 2:
            annotation["iscrowd"] = 1
            annotation["segmentation"] = {"counts": [dataset.data["images"][0]["width"] * 30], "size": [30, 40]}
    dataset.write_json()
    report = dataset_preflight(dataset.config())
    warnings = {f.message for f in report.findings if f.rule == "dataset.category_without_instances"}
    names = {dataset.data["categories"][i]["name"] for i in range(len(dataset.data["categories"]))}
    assert any("5 'ghost'" in message for message in warnings), warnings
    second = next(c["name"] for c in dataset.data["categories"] if c["id"] == 2)
    assert any(f"2 {second!r}" in message and "crowd only" in message for message in warnings), warnings
    assert len(warnings) == 1 and "2 of 3 categories have zero trainable instances in train" in next(iter(warnings))
    assert "ghost" in names
    per_class = report.summary["splits"]["train"]["instances_per_class"]
    assert per_class["5"] == {"name": "ghost", "instances": 0, "crowd": 0}
    assert per_class["1"]["instances"] >= 1


def test_two_categories_with_one_name_are_two_rows(tmp_path: Path) -> None:
    from apex_x.api import dataset_preflight

    dataset = small_dataset(tmp_path / "user")
    first = dataset.data["categories"][0]
    dataset.data["categories"].append({"id": 9, "name": first["name"]})
    dataset.write_json()
    report = dataset_preflight(dataset.config())
    per_class = report.summary["splits"]["train"]["instances_per_class"]
    assert per_class["9"] == {"name": first["name"], "instances": 0, "crowd": 0}
    assert per_class[str(first["id"])]["name"] == first["name"] and per_class[str(first["id"])]["instances"] >= 1
    text = format_dataset_report(report)
    assert f"9 {first['name']} 0" in text and f"{first['id']} {first['name']} " in text
