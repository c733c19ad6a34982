"""eval and predict on a checkpoint really trained on the shapes dataset; bad inputs through the CLI."""

from __future__ import annotations

import json
import math
import shutil

import numpy as np
import pytest
import torch
from PIL import Image
from pycocotools.coco import COCO

from apex_x.cli import main
from apex_x.domain import checkpoint_format as fmt


def test_eval_reproduces_the_best_epoch_of_the_train_report(trained_run, tmp_path, capsys) -> None:
    report = trained_run.report()
    best = report["best_metric"]
    recorded = next(entry["val"] for entry in report["history"] if entry["epoch"] == best["epoch"])
    code = main([
        "eval", str(trained_run.config), "--checkpoint", str(trained_run.best),
        "--output-json", str(tmp_path / "eval.json"), "--output-md", str(tmp_path / "eval.md"),
    ])
    assert code == 0
    evaluated = json.loads((tmp_path / "eval.json").read_text())
    assert best["name"] == "bbox_AP"
    assert evaluated["best_metric_check"]["evaluated"] == pytest.approx(best["value"], abs=1e-12)
    for name, value in recorded.items():  # every metric of that epoch, val_loss included (weights-sensitive)
        if value is None or (isinstance(value, float) and math.isnan(value)):
            continue
        assert evaluated["metrics"][name] == pytest.approx(value, rel=1e-6, abs=1e-9), name
    assert {key: row["name"] for key, row in evaluated["per_class"].items()} == {
        "1": "circle", "2": "rectangle", "3": "triangle"}
    assert evaluated["model"]["weights"] == "ema" and evaluated["num_images"] == 6
    markdown = (tmp_path / "eval.md").read_text()
    assert "## Per class" in markdown and "| 3 | triangle |" in markdown
    out = capsys.readouterr().out
    assert "bbox_AP" in out and "trainer's best bbox_AP" in out


def test_predict_from_the_checkpoint_alone_writes_json_and_overlays(trained_run, tmp_path, capsys) -> None:
    alone = tmp_path / "elsewhere" / "model.pt"
    alone.parent.mkdir()
    shutil.copy(trained_run.best, alone)  # no config, no run folder: the checkpoint is enough
    (tmp_path / "empty").mkdir()
    (tmp_path / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n this is not a PNG")
    output = tmp_path / "predictions"
    code = main([
        "predict", "--checkpoint", str(alone),
        "--image", str(trained_run.val_images), str(tmp_path / "broken.png"),
        "--image", str(tmp_path / "empty"), str(tmp_path / "missing.png"),
        "--output", str(output), "--score-threshold", "0.0",
    ])
    captured = capsys.readouterr()
    assert code == 2  # bad inputs reported; the good images still processed
    for bad in ("broken.png", "empty", "missing.png"):
        assert f"error: {tmp_path / bad}" in captured.err
    val_files = sorted(path.name for path in trained_run.val_images.iterdir())
    assert sorted(path.name for path in output.glob("*.png")) == val_files
    summary = json.loads((output / "summary.json").read_text())
    assert [image["file_name"] for image in summary["images"]] == val_files
    assert {failure["path"] for failure in summary["failures"]} == {str(tmp_path / n) for n in ("broken.png", "empty", "missing.png")}
    results = json.loads((output / "predictions.json").read_text())
    names = {1: "circle", 2: "rectangle", 3: "triangle"}
    assert results and all(names[entry["category_id"]] == entry["category_name"] for entry in results)
    ground_truth = COCO(str(trained_run.val_annotations))  # shapes' image ids are 1..N in file order, as here
    loaded = ground_truth.loadRes(str(output / "predictions.json"))
    assert len(loaded.getAnnIds()) == len(results)
    with Image.open(output / val_files[0]) as overlay, Image.open(trained_run.val_images / val_files[0]) as original:
        assert overlay.size == original.size
        assert not np.array_equal(np.asarray(overlay.convert("RGB")), np.asarray(original.convert("RGB")))


def test_predict_api_returns_detections_without_writing(trained_run) -> None:
    import apex_x

    run = apex_x.predict(str(trained_run.best), str(trained_run.val_images), output_dir=None, score_threshold=0.0, device="cpu")
    assert len(run.predictions) == 6 and run.ok and run.outputs == []
    first = run.predictions[0].detections
    assert first.masks.shape[1:] == (64, 64) and bool((first.scores >= 0.0).all())


@pytest.fixture
def bad_checkpoints(tmp_path, fakes) -> dict[str, str]:
    files = {
        "text": tmp_path / "notes.pt",
        "raw_state_dict": tmp_path / "raw.pt",
        "other_version": tmp_path / "v99.pt",
    }
    files["text"].write_text("not a checkpoint")
    torch.save({"backbone.weight": torch.ones(2)}, files["raw_state_dict"])
    payload = fakes.fake_payload()
    payload[fmt.KEY_VERSION] = 99
    torch.save(payload, files["other_version"])
    return {name: str(path) for name, path in files.items()} | {"missing": str(tmp_path / "missing.pt")}


@pytest.mark.parametrize(
    ("kind", "message"),
    [
        ("missing", "checkpoint not found"),
        ("text", "not a torch checkpoint"),
        ("raw_state_dict", "not an Apex-X training checkpoint"),
        ("other_version", "format version 99"),
    ],
)
@pytest.mark.parametrize("command", ["predict", "eval"])
def test_bad_checkpoints_exit_2_naming_the_file(bad_checkpoints, tmp_path, capsys, kind, message, command) -> None:
    image = tmp_path / "image.png"
    Image.new("RGB", (16, 16)).save(image)
    path = bad_checkpoints[kind]
    if command == "predict":
        argv = ["predict", "--checkpoint", path, "--image", str(image), "--output", str(tmp_path / "out")]
    else:
        config = tmp_path / "config.yaml"
        config.write_text(f"data:\n  coco_val_images: {tmp_path}\n  coco_val_annotations: {tmp_path / 'val.json'}\n")
        argv = ["eval", str(config), "--checkpoint", path]
    assert main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: ") and path in err[0] and message in err[0]
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["predict", "--image", "x.png"], "--checkpoint"),
        (["predict", "--checkpoint", "x.pt"], "--image"),
        (["predict", "--checkpoint", "x.pt", "--image", "x.png", "--score-threshold", "1.5"], "[0, 1]"),
        (["predict", "--checkpoint", "x.pt", "--image", "x.png", "--device", "tpu"], "--device"),
        (["eval", "--checkpoint", "x.pt"], "CONFIG"),
    ],
)
def test_usage_errors_exit_2(argv, message, capsys) -> None:
    assert main(argv) == 2
    assert message in capsys.readouterr().err


def test_eval_without_a_val_split_names_the_keys(trained_run, tmp_path, capsys) -> None:
    config = tmp_path / "no_val.yaml"
    config.write_text(f"train:\n  output_dir: {tmp_path / 'run'}\n")
    assert main(["eval", str(config), "--checkpoint", str(trained_run.best)]) == 2
    err = capsys.readouterr().err
    assert str(config) in err and "data.coco_val_images" in err and "data.coco_val_annotations" in err


def test_eval_needs_only_the_val_split(trained_run, tmp_path) -> None:
    import apex_x

    config = tmp_path / "val_only.yaml"
    config.write_text(
        f"data:\n  coco_val_images: {trained_run.val_images}\n  coco_val_annotations: {trained_run.val_annotations}\n"
    )
    report = apex_x.evaluate(str(config), str(trained_run.best), device="cpu", write_files=False)
    best = trained_run.report()["best_metric"]
    assert report.metric(best["name"]) == pytest.approx(best["value"], abs=1e-12)
    assert report.result.num_images == 6


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the machine without CUDA")
def test_predict_on_cuda_without_cuda_is_a_clear_error(trained_run, tmp_path, capsys) -> None:
    argv = ["predict", "--checkpoint", str(trained_run.best), "--image", str(trained_run.val_images), "--device", "cuda"]
    assert main([*argv, "--output", str(tmp_path / "out")]) == 2
    assert "CUDA was requested but torch sees no CUDA device; use --device cpu" in capsys.readouterr().err
