"""data.format: yolo (an Ultralytics data.yaml + labels/*.txt polygons): the same checks, loader and training as
COCO, with findings naming the label file and line; empty or missing label files are negatives."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import pytest

from apex_x.adapters.config_yaml import load_config
from apex_x.container import create_container


def _yolo_from_coco(images: Path, annotations: Path, root: Path, split: str) -> list[str]:
    """The COCO split as YOLO: images/<split>/*.png and labels/<split>/*.txt with normalised polygons."""
    data = json.loads(annotations.read_text())
    order = {category["id"]: index for index, category in enumerate(data["categories"])}
    (root / "images" / split).mkdir(parents=True)
    (root / "labels" / split).mkdir(parents=True)
    for image in data["images"]:
        shutil.copy(images / image["file_name"], root / "images" / split / image["file_name"])
        lines = []
        for annotation in (a for a in data["annotations"] if a["image_id"] == image["id"]):
            for polygon in annotation["segmentation"]:
                coords = [value / (image["width"] if i % 2 == 0 else image["height"]) for i, value in enumerate(polygon)]
                lines.append(" ".join([str(order[annotation["category_id"]]), *(f"{c:.6f}" for c in coords)]))
        (root / "labels" / split / image["file_name"]).with_suffix(".txt").write_text("\n".join(lines) + "\n")
    return [category["name"] for category in data["categories"]]


@pytest.fixture
def yolo_dataset(shapes_dataset: Any, tmp_path: Path) -> Path:
    root = tmp_path / "yolo"
    names = _yolo_from_coco(Path(shapes_dataset.train_images), Path(shapes_dataset.train_annotations), root, "train")
    _yolo_from_coco(Path(shapes_dataset.val_images), Path(shapes_dataset.val_annotations), root, "val")
    (root / "data.yaml").write_text(f"path: .\ntrain: images/train\nval: images/val\nnames: {json.dumps(names)}\n")
    return root


def _preflight(root: Path) -> Any:
    settings = load_config(None, ["data.format=yolo", f"data.yolo_data={root / 'data.yaml'}"])
    return create_container(settings).dataset_preflight().execute(settings)


def test_a_yolo_dataset_passes_the_same_checks_as_its_coco_original(yolo_dataset: Path, shapes_dataset: Any) -> None:
    report = _preflight(yolo_dataset)
    assert report.ok, [finding.message for finding in report.findings]
    coco = json.loads(Path(shapes_dataset.train_annotations).read_text())
    train = report.summary["splits"]["train"]
    polygons = sum(len(annotation["segmentation"]) for annotation in coco["annotations"])  # one line per polygon
    assert (train["images"], train["annotations"]) == (len(coco["images"]), polygons)
    assert report.summary["backend"] == "ultralytics-yolo"


def test_label_problems_are_findings_naming_file_and_line(yolo_dataset: Path) -> None:
    labels = sorted((yolo_dataset / "labels" / "train").glob("*.txt"))
    good = labels[0].read_text().splitlines()[0]
    labels[0].write_text("\n".join([good, "0 0.5 0.5 0.2 0.2", "7 0.1 0.1 0.2 0.1 0.2 0.2", "1 0.1 0.1 1.5 0.1 0.2 0.2",
                                    "2 0.1 0.1 0.2", "x 0.1 0.1 0.2 0.1 0.2 0.2"]) + "\n")
    labels[1].write_text("")  # a negative image: no error
    labels[2].unlink()  # no label file: also a negative
    report = _preflight(yolo_dataset)
    messages = {finding.rule: finding.message for finding in report.findings if finding.severity == "error"}
    where = str(labels[0])
    assert messages["label.box_not_polygon"].startswith(f"{where}:2: 4 coordinates is a detection box")
    assert messages["label.class_out_of_range"] == f"{where}:3: class 7 is not in 0..2 (data.yaml names)"
    assert messages["label.outside_image"] == f"{where}:4: coordinates must be normalised to [0, 1], got 1.5"
    assert messages["label.too_few_points"].startswith(f"{where}:5: a polygon needs an even count of at least 6")
    assert messages["label.not_a_number"].startswith(f"{where}:6: expected 'class x1 y1 x2 y2 ...' numbers")
    assert len(messages) == 5 and not report.ok


def test_a_bad_data_yaml_is_a_clear_finding(tmp_path: Path) -> None:
    (tmp_path / "data.yaml").write_text("train: images/train\nnames: [a, b]\nnc: 3\n")
    findings = [finding.message for finding in _preflight(tmp_path).findings]
    assert any("'train' images folder not found" in message for message in findings)
    assert any("nc is 3 but 'names' has 2 classes" in message for message in findings)


def test_training_and_eval_run_on_yolo_data(yolo_dataset: Path, tmp_path: Path) -> None:
    import apex_x

    overrides = ["data.format=yolo", f"data.yolo_data={yolo_dataset / 'data.yaml'}", "model.input_height=64",
                 "model.input_width=64", "model.backbone=lcnet_050", "train.epochs=1", "train.batch_size=4",
                 f"train.output_dir={tmp_path / 'run'}", "runtime.device=cpu",
                 "train.stages=[{name: all, epochs: 1}]"]
    result = apex_x.train(None, overrides=overrides, steps_per_stage=2)
    assert result.status in ("finished", "finished_with_warnings")
    assert result.report["dataset"]["backend"] == "ultralytics-yolo"
    assert result.report["dataset"]["categories"] == ["circle", "rectangle", "triangle"]
    report = apex_x.evaluate(None, str(tmp_path / "run" / "checkpoints" / "best.pt"), overrides=overrides,
                             write_files=False)
    assert report.result.num_images == len(list((yolo_dataset / "images" / "val").iterdir()))


def test_convert_coco_to_yolo_and_back_keeps_every_mask(shapes_dataset: Any, tmp_path: Path,
                                                        capsys: pytest.CaptureFixture[str]) -> None:
    """COCO -> YOLO -> COCO: the same images and objects (an object drawn in several parts stays one), and each
    image's union of instance masks per class is the same pixels but for the bridges joining parts."""

    from apex_x.adapters.datasets.segmentation import decode_stack, to_rle
    from apex_x.cli import main

    train = [str(shapes_dataset.train_images), str(shapes_dataset.train_annotations)]
    assert main(["convert", "--to", "yolo", "--coco-train", *train, "--output", str(tmp_path / "yolo")]) == 0
    assert "data.yolo_data=" in capsys.readouterr().out
    assert _preflight(tmp_path / "yolo").ok
    # no relative `path:` (Ultralytics would resolve it against the working directory, not the data.yaml)
    assert not any(line.startswith("path:") for line in (tmp_path / "yolo" / "data.yaml").read_text().splitlines())
    assert main(["convert", "--to", "coco", "--yolo-data", str(tmp_path / "yolo" / "data.yaml"),
                 "--output", str(tmp_path / "back")]) == 0
    original = json.loads(Path(shapes_dataset.train_annotations).read_text())
    back = json.loads((tmp_path / "back" / "annotations" / "instances_train.json").read_text())
    assert [i["file_name"] for i in back["images"]] == sorted(i["file_name"] for i in original["images"])
    names = {c["id"]: c["name"] for c in original["categories"]}

    def union(data: dict, file_name: str, by_name: dict) -> dict:
        image = next(i for i in data["images"] if i["file_name"] == file_name)
        masks: dict = {}
        for annotation in (a for a in data["annotations"] if a["image_id"] == image["id"]):
            mask = decode_stack([to_rle(annotation["segmentation"], image["height"], image["width"])],
                                image["height"], image["width"])[:, :, 0]
            name = by_name[annotation["category_id"]]
            masks[name] = masks.get(name, 0) | mask
        return masks

    back_names = {c["id"]: c["name"] for c in back["categories"]}
    for image in original["images"][:6]:
        want, got = union(original, image["file_name"], names), union(back, image["file_name"], back_names)
        assert set(want) == set(got)
        for name in want:  # the same pixels but for the zero-width bridges joining an object's parts
            assert (want[name] != got[name]).sum() <= 0.01 * want[name].sum() + 2, (image["file_name"], name)
    assert len(back["annotations"]) == len(original["annotations"])  # one object stays one object
    assert main(["convert", "--to", "coco", "--coco-train", *train, "--output", str(tmp_path / "x")]) == 2
    assert "--to coco needs --yolo-data" in capsys.readouterr().err


def test_convert_refuses_bad_coco_inputs_before_writing(shapes_dataset: Any, tmp_path: Path,
                                                        capsys: pytest.CaptureFixture[str]) -> None:
    """A missing or broken instances JSON, a missing images folder or missing images: one `error:` line
    naming the flag and the file, exit 2, and nothing written (the output folder can be reused)."""
    from apex_x.cli import main

    images, annotations = str(shapes_dataset.train_images), str(shapes_dataset.train_annotations)
    (tmp_path / "bad.json").write_text("{bad")
    (tmp_path / "empty").mkdir()
    cases = [([images, str(tmp_path / "nope.json")], "cannot read the instances JSON"),
             ([images, str(tmp_path / "bad.json")], "cannot read the instances JSON"),
             ([str(tmp_path / "nodir"), annotations], "does not exist"),
             ([str(tmp_path / "empty"), annotations], "are not in")]
    for pair, message in cases:
        out = tmp_path / "out"
        assert main(["convert", "--to", "yolo", "--coco-train", *pair, "--output", str(out)]) == 2
        err = capsys.readouterr().err
        assert "error: --coco-train:" in err and message in err and "Traceback" not in err
        assert not out.exists() or not any(out.iterdir())
