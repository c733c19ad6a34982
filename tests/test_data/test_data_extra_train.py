"""data.extra_train: several train datasets in one run (COCO and YOLO), classes matched by name to the main
dataset's, the mapping in the report; each extra dataset is checked like the main one, findings naming it."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import pytest

from apex_x.adapters.config_yaml import load_config
from apex_x.container import create_container
from apex_x.domain.errors import DatasetError

from .test_data_yolo import _yolo_from_coco


def _relabelled_coco(shapes_dataset: Any, root: Path, names: dict[int, tuple[int, str]]) -> tuple[Path, Path]:
    """The shapes val split as a new COCO train set whose categories get other ids and names (old id -> new)."""
    data = json.loads(Path(shapes_dataset.val_annotations).read_text())
    data["categories"] = [{"id": names[c["id"]][0], "name": names[c["id"]][1], "supercategory": "shape"}
                          for c in data["categories"]]
    for annotation in data["annotations"]:
        annotation["category_id"] = names[annotation["category_id"]][0]
    images = root / "extra_images"
    shutil.copytree(shapes_dataset.val_images, images)
    annotations = root / "extra.json"
    annotations.write_text(json.dumps(data))
    return images, annotations


@pytest.fixture
def extra_sets(shapes_dataset: Any, tmp_path: Path) -> list[str]:
    """Two extra datasets: COCO with other ids, another order and spaces around a name; YOLO (class index ids)."""
    images, annotations = _relabelled_coco(shapes_dataset, tmp_path,
                                           {1: (20, " circle "), 2: (30, "rectangle"), 3: (10, "triangle")})
    yolo = tmp_path / "yolo"
    names = _yolo_from_coco(Path(shapes_dataset.train_images), Path(shapes_dataset.train_annotations), yolo, "train")
    (yolo / "data.yaml").write_text(f"path: .\ntrain: images/train\nnames: {json.dumps(names)}\n")
    return [f"data.extra_train=[{{format: coco, coco_train_images: {images}, coco_train_annotations: {annotations}}}, "
            f"{{format: yolo, yolo_data: {yolo / 'data.yaml'}}}]"]


def _settings(shapes_dataset: Any, *overrides: str) -> Any:
    return load_config(None, [*shapes_dataset.config_overrides(), *overrides])


def test_extra_datasets_are_checked_and_their_classes_matched_by_name(shapes_dataset: Any, extra_sets: list[str]) -> None:
    settings = _settings(shapes_dataset, *extra_sets)
    report = create_container(settings).dataset_preflight().execute(settings)
    assert report.ok, [finding.message for finding in report.findings]
    coco, yolo = report.summary["extra_train"]
    assert [(c["id"], c["name"], c["class_index"], c["class_name"]) for c in coco["classes"]] == [
        (10, "triangle", 2, "triangle"), (20, " circle ", 0, "circle"), (30, "rectangle", 1, "rectangle")]
    assert [(c["id"], c["class_index"]) for c in yolo["classes"]] == [(0, 0), (1, 1), (2, 2)]
    assert coco["dataset"] == "data.extra_train.0" and yolo["format"] == "yolo"
    assert coco["summary"]["splits"]["train"]["images"] == 8 and yolo["summary"]["splits"]["train"]["images"] == 24


def test_training_joins_the_images_with_their_labels_mapped(shapes_dataset: Any, extra_sets: list[str],
                                                            tmp_path: Path) -> None:
    import apex_x

    settings = _settings(shapes_dataset, *extra_sets, "train.batch_size=4")
    source = create_container(settings).train_dataset_source()
    source.validate(full_decode=False)
    assert len(source.train_loader(4, seed=0)) == (24 + 8 + 24) // 4
    coco = json.loads(Path(shapes_dataset.val_annotations).read_text())
    first = coco["images"][0]["id"]
    truth = sorted(a["category_id"] - 1 for a in coco["annotations"] if a["image_id"] == first and not a.get("iscrowd"))
    extra = source.extras[0]
    sample = extra.source.train_samples(extra.mapping).load(0, augment=False)
    assert sorted(sample.labels.tolist()) == truth  # the extra's ids 20/30/10 back at circle 0, rectangle 1, triangle 2

    overrides = [*shapes_dataset.config_overrides(), *extra_sets, "model.input_height=64", "model.input_width=64",
                 "model.backbone=lcnet_050", "train.batch_size=4", f"train.output_dir={tmp_path / 'run'}",
                 "runtime.device=cpu", "train.stages=[{name: all, epochs: 1}]", "train.val_preview_images=2"]
    result = apex_x.train(None, overrides=overrides, steps_per_stage=2)
    assert result.status in ("finished", "finished_with_warnings")
    entries = result.report["dataset"]["extra_train"]
    assert [entry["images"] for entry in entries] == [8, 24]
    assert {c["id"]: c["class_index"] for c in entries[0]["classes"]} == {10: 2, 20: 0, 30: 1}
    markdown = (tmp_path / "run" / "train_report.md").read_text()
    assert "## Train datasets" in markdown and "20 ' circle ' -> 0 'circle'" in markdown


def test_a_class_the_main_dataset_lacks_is_an_error_naming_the_dataset_and_the_names(
        shapes_dataset: Any, tmp_path: Path) -> None:
    images, annotations = _relabelled_coco(shapes_dataset, tmp_path,
                                           {1: (1, "Circle"), 2: (2, "rectangle"), 3: (3, "hexagon")})
    extra = f"data.extra_train=[{{coco_train_images: {images}, coco_train_annotations: {annotations}}}]"
    settings = _settings(shapes_dataset, extra)
    report = create_container(settings).dataset_preflight().execute(settings)
    (finding,) = [finding for finding in report.findings if finding.severity == "error"]
    assert finding.rule == "extra_train.unmatched_classes" and finding.file == str(annotations)
    assert "data.extra_train.0" in finding.message and "['Circle', 'hexagon']" in finding.message
    assert "'circle', 'rectangle', 'triangle'" in finding.message  # the main dataset's classes, to compare


def test_an_extra_dataset_gets_the_same_checks_and_its_findings_name_it(shapes_dataset: Any, tmp_path: Path) -> None:
    images, annotations = _relabelled_coco(shapes_dataset, tmp_path,
                                           {1: (1, "circle"), 2: (2, "rectangle"), 3: (3, "triangle")})
    data = json.loads(annotations.read_text())
    data["annotations"][0]["category_id"] = 99
    annotations.write_text(json.dumps(data))
    settings = _settings(shapes_dataset, f"data.extra_train=[{{coco_train_images: {images}, "
                                         f"coco_train_annotations: {annotations}}}]")
    report = create_container(settings).dataset_preflight().execute(settings)
    errors = [finding for finding in report.findings if finding.severity == "error"]
    assert errors and all(finding.message.startswith("data.extra_train.0: ") for finding in errors)
    assert all(finding.file == str(annotations) for finding in errors)
    missing = _settings(shapes_dataset, f"data.extra_train=[{{coco_train_images: {images}, "
                                        f"coco_train_annotations: {tmp_path / 'nope.json'}}}]")
    with pytest.raises(DatasetError, match=r"^data\.extra_train\.0\.coco_train_annotations: annotations file "
                                           r"not found"):
        create_container(missing).dataset_preflight().execute(missing)


def test_a_yolo_extra_with_bad_labels_is_reported_as_findings_naming_it(shapes_dataset: Any, tmp_path: Path) -> None:
    """Its label errors are findings of data.extra_train.0 (the fingerprint of an unusable run is not computed,
    which would raise 'data.yolo_data ...', a key the main COCO dataset does not even set)."""
    yolo = tmp_path / "yolo"
    names = _yolo_from_coco(Path(shapes_dataset.train_images), Path(shapes_dataset.train_annotations), yolo, "train")
    (yolo / "data.yaml").write_text(f"path: .\ntrain: images/train\nnames: {json.dumps(names)}\n")
    label = sorted((yolo / "labels" / "train").glob("*.txt"))[0]
    label.write_text(label.read_text() + "7 0.1 0.1 0.2 0.1 0.2 0.2\n")
    settings = _settings(shapes_dataset, f"data.extra_train=[{{format: yolo, yolo_data: {yolo / 'data.yaml'}}}]")
    report = create_container(settings).dataset_preflight().execute(settings)
    errors = [finding for finding in report.findings if finding.severity == "error"]
    assert errors and all(finding.message.startswith("data.extra_train.0: ") for finding in errors)
    assert report.summary["fingerprint"] is None


def test_a_dataset_listed_twice_is_a_warning_naming_both(shapes_dataset: Any, extra_sets: list[str]) -> None:
    main = (f"{{coco_train_images: {shapes_dataset.train_images}, "
            f"coco_train_annotations: {shapes_dataset.train_annotations}}}")
    again = extra_sets[0].replace("data.extra_train=[", f"data.extra_train=[{main}, ").rstrip("]")
    yolo = again[again.index("{format: yolo"):]
    settings = _settings(shapes_dataset, f"{again}, {yolo}]")
    report = create_container(settings).dataset_preflight().execute(settings)
    duplicates = [finding for finding in report.findings if finding.rule == "extra_train.duplicate"]
    assert report.ok and [finding.severity for finding in duplicates] == ["warning", "warning"]
    assert "data.extra_train.0" in duplicates[0].message and "the main dataset" in duplicates[0].message
    assert "data.extra_train.3" in duplicates[1].message and "as data.extra_train.2" in duplicates[1].message
    assert len(report.summary["extra_train"]) == 4
