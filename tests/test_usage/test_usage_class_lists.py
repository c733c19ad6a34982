"""Issue 13, kind 5: the checkpoint's class list (ids and names) is compared with the data's before any
inference, in eval (against the val file itself), predict with a COCO file, and the notebook helper."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from apex_x.cli import main
from apex_x.domain.errors import DatasetError


def _swapped(trained_run, tmp_path: Path) -> Path:  # noqa: ANN001
    data = json.loads(Path(trained_run.val_annotations).read_text())
    names = {c["id"]: c["name"] for c in data["categories"]}
    first, second = sorted(names)[:2]
    for category in data["categories"]:
        if category["id"] in (first, second):
            category["name"] = names[second if category["id"] == first else first]
    path = tmp_path / "swapped.json"
    path.write_text(json.dumps(data))
    return path


def test_eval_refuses_a_val_file_with_swapped_names(trained_run, tmp_path: Path, capsys) -> None:  # noqa: ANN001
    swapped = _swapped(trained_run, tmp_path)
    code = main(["eval", str(trained_run.config), "--checkpoint", str(trained_run.best),
                 "--set", f"data.coco_val_annotations={swapped}", "--output-json", str(tmp_path / "e.json")])
    err = capsys.readouterr().err
    assert code == 2 and not (tmp_path / "e.json").exists()
    assert "id 1: 'circle' in the checkpoint, 'rectangle' in the val file" in err
    assert "id 2: 'rectangle' in the checkpoint, 'circle' in the val file" in err


def test_predict_with_a_coco_file_refuses_other_classes_before_inference(trained_run, tmp_path: Path) -> None:  # noqa: ANN001
    from apex_x.api import predict

    swapped = _swapped(trained_run, tmp_path)
    out = tmp_path / "out"
    with pytest.raises(DatasetError, match="differs from the COCO file") as info:
        predict(str(trained_run.best), [str(trained_run.val_images)], output_dir=str(out), coco_annotations=swapped)
    assert "'circle' in the checkpoint, 'rectangle' in the COCO file" in str(info.value)
    assert not out.exists()
    code = main(["predict", "--checkpoint", str(trained_run.best), "--image", str(trained_run.val_images),
                 "--output", str(out), "--coco-json", str(swapped)])
    assert code == 2 and not out.exists()


def test_predict_with_the_right_coco_file_uses_its_image_ids(trained_run, tmp_path: Path) -> None:  # noqa: ANN001
    from apex_x.api import predict

    data = json.loads(Path(trained_run.val_annotations).read_text())
    for offset, image in enumerate(data["images"]):
        image["id"] = 500 + offset
    coco = tmp_path / "renumbered.json"
    coco.write_text(json.dumps({**data, "annotations": []}))
    run = predict(str(trained_run.best), [str(trained_run.val_images)], output_dir=None, coco_annotations=coco,
                  score_threshold=0.0)
    expected = {image["file_name"]: image["id"] for image in data["images"]}
    assert {Path(item.path).name: item.image_id for item in run.predictions} == expected


def test_notebook_refuses_a_coco_file_with_other_classes(trained_run, tmp_path: Path) -> None:  # noqa: ANN001
    from apex_x.notebook import load_checkpoint

    with pytest.raises(DatasetError, match="id 2: 'rectangle' in the checkpoint, 'circle' in the COCO file"):
        load_checkpoint(trained_run.best, device="cpu", coco_annotations=_swapped(trained_run, tmp_path))
    model = load_checkpoint(trained_run.best, device="cpu", coco_annotations=trained_run.val_annotations)
    assert model.class_names == ("circle", "rectangle", "triangle")


def test_a_coco_file_with_a_grouping_category_matches_the_checkpoint(trained_run, tmp_path: Path) -> None:  # noqa: ANN001
    from apex_x.api import predict

    data = json.loads(Path(trained_run.val_annotations).read_text())
    for category in data["categories"]:
        category["supercategory"] = "shapes"
    data["categories"].insert(0, {"id": 0, "name": "shapes", "supercategory": "none"})  # an export's grouping entry
    coco = tmp_path / "grouped.json"
    coco.write_text(json.dumps(data))
    run = predict(str(trained_run.best), [str(trained_run.val_images)], output_dir=None, coco_annotations=coco)
    assert len(run.predictions) == len(data["images"])
    code = main(["eval", str(trained_run.config), "--checkpoint", str(trained_run.best),
                 "--set", f"data.coco_val_annotations={coco}", "--output-json", str(tmp_path / "e.json")])
    assert code == 0
    evaluated = json.loads((tmp_path / "e.json").read_text())
    assert sorted(evaluated["per_class"]) == ["1", "2", "3"]


def test_a_class_count_on_top_of_a_checkpoint_names_the_checkpoint_s_classes(trained_run, tmp_path: Path,  # noqa: ANN001
                                                                             capsys) -> None:
    """eval --set model.num_classes=5 on a 3-class checkpoint: the checkpoint's count and classes are named
    (not "the dataset's categories"), exit 2, before any inference; load_model says the same."""
    from apex_x.api import load_model
    from apex_x.domain.errors import ConfigError

    code = main(["eval", str(trained_run.config), "--checkpoint", str(trained_run.best),
                 "--set", "model.num_classes=5", "--output-json", str(tmp_path / "e.json")])
    err = capsys.readouterr().err
    assert code == 2 and not (tmp_path / "e.json").exists()
    assert (f"model.num_classes is 5 but the checkpoint {trained_run.best} was trained for 3 classes "
            "(1 'circle', 2 'rectangle', 3 'triangle')") in err
    assert "dataset's categories" not in err and "Traceback" not in err
    with pytest.raises(ConfigError, match="trained for 3 classes") as info:
        load_model(str(trained_run.best), device="cpu", model_overrides={"num_classes": 2})
    assert info.value.key == "model.num_classes"
    assert load_model(str(trained_run.best), device="cpu", model_overrides={"num_classes": 3}).categories.num_classes == 3
