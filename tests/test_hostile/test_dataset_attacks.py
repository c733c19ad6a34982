"""Issue 33: datasets, texts and configs built to crash, hang or confuse; each is exit 2 with one line naming the
file, key or id and the rule, in bounded time and memory, on the entry points that read it."""

from __future__ import annotations

import json
import os
import re
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from .conftest import REPO, RSS_BOUND_KB, TINY, TinyRun, cli, run_limited


def _write(tmp_path: Path, shapes_dataset: Any, edit: Callable[[dict[str, Any], Path], None] | None = None, *,
           raw: bytes | None = None, split: str = "train") -> Path:
    """A config over a copy of the shapes dataset whose `split` JSON is edited (or replaced by `raw`); the
    images folder of that split is copied, so `edit` may change files in it (given as its second argument)."""
    paths = {"train_images": Path(shapes_dataset.train_images), "val_images": Path(shapes_dataset.val_images),
             "train_annotations": Path(shapes_dataset.train_annotations),
             "val_annotations": Path(shapes_dataset.val_annotations)}
    images = tmp_path / f"{split}_images"
    shutil.copytree(paths[f"{split}_images"], images)
    annotations = tmp_path / f"{split}.json"
    if raw is not None:
        annotations.write_bytes(raw)
    else:
        data = json.loads(paths[f"{split}_annotations"].read_text())
        if edit is not None:
            edit(data, images)
        annotations.write_text(json.dumps(data))
    paths[f"{split}_images"], paths[f"{split}_annotations"] = images, annotations
    config = tmp_path / "config.yaml"
    config.write_text(TINY.format(output_dir=tmp_path / "run", **{key: str(value) for key, value in paths.items()}))
    return config


def _preflight(config: Path) -> tuple[Any, str]:
    outcome = cli("dataset-preflight", str(config))
    return outcome, outcome.stdout + outcome.stderr


def _bounded(outcome: Any, seconds: float = 60.0) -> None:
    assert outcome.seconds < seconds, outcome.seconds
    assert 0 < outcome.peak_rss_kb < RSS_BOUND_KB, outcome.peak_rss_kb
    assert "internal error" not in outcome.stderr and "Traceback" not in outcome.stderr, outcome.stderr[-3000:]


# -- kind 1: coordinates, annotations per image and categories per file ---------------------------------


def _huge_polygons(data: dict[str, Any], images: Path) -> None:
    for annotation, scale in zip(data["annotations"][:3], (1e8, 1e12, 1e15), strict=True):
        annotation["segmentation"] = [[0, 0, scale, 0, scale, scale, 0, scale]]


def test_polygon_coordinates_far_outside_the_image_are_refused_before_any_rasteriser(
    tmp_path: Path, shapes_dataset: Any
) -> None:
    config = _write(tmp_path, shapes_dataset, _huge_polygons)
    outcome, text = _preflight(config)
    assert outcome.code == 2, text[-3000:]
    assert text.count("annotation.polygon_outside") == 3, text[-3000:]
    assert "x coordinates from 0 to 1e+12" in text and "(allowed -128 to 256)" in text
    _bounded(outcome)
    trained = cli("train", str(config))  # used to end in a segmentation fault (exit 139) in rasterisation
    assert trained.code == 2 and "the dataset failed its checks" in trained.error_line, trained.stderr[-3000:]
    _bounded(trained)


def test_convert_refuses_what_training_refuses_before_writing(tmp_path: Path, shapes_dataset: Any) -> None:
    config = _write(tmp_path, shapes_dataset, _huge_polygons)
    out = tmp_path / "yolo"
    outcome = cli("convert", "--to", "yolo", "--coco-train", str(tmp_path / "train_images"),
                  str(tmp_path / "train.json"), "--output", str(out))
    assert outcome.code == 2 and "[annotation.polygon_outside]" in outcome.error_line, outcome.stderr[-3000:]
    assert config.exists() and (not out.exists() or not any(out.iterdir()))
    _bounded(outcome)


def test_the_rasteriser_itself_clamps_coordinates_for_every_path() -> None:
    code = """
from pycocotools import mask
from apex_x.adapters.datasets.segmentation import rescaled_rle, to_rle
rle = to_rle([[0, 0, 1e15, 0, 1e15, 1e15, 0, 1e15]], 50, 60)
print(int(mask.area(rle)), [int(v) for v in mask.toBbox(rle)])
small = rescaled_rle([[0, 0, 1e12, 0, 1e12, 1e12]], rle, 50, 60, 25, 30)
print(int(mask.area(small)) > 0)
"""
    outcome = run_limited(["-c", code])
    assert outcome.code == 0, outcome.stderr[-3000:]
    assert outcome.stdout.split() == ["3000", "[0,", "0,", "60,", "50]", "True"]  # the whole image, no crash


def test_an_image_over_the_annotation_limit_is_refused_in_bounded_memory(tmp_path: Path,
                                                                         shapes_dataset: Any) -> None:
    def crowd(data: dict[str, Any], images: Path) -> None:
        first = data["annotations"][0]
        triangle = {"image_id": first["image_id"], "category_id": first["category_id"], "iscrowd": 0,
                    "bbox": [1, 1, 2, 2], "area": 2.0, "segmentation": [[1, 1, 3, 1, 1, 3]]}
        data["annotations"] += [dict(triangle, id=10**6 + index) for index in range(200_000)]

    config = _write(tmp_path, shapes_dataset, crowd)
    outcome, text = _preflight(config)
    assert outcome.code == 2, text[-3000:]
    assert "image.too_many_annotations" in text and "over the limit of 10000 per image" in text
    assert "data.max_annotations_per_image" in text
    _bounded(outcome, 120.0)
    # With little address space left after torch (~3.3 GB mapped), orjson would crash on a failed allocation
    # (exit 139): the parse then goes through the standard library, which raises MemoryError (a finding).
    tight = cli("dataset-preflight", str(config), limit=3_500_000 * 1024)
    text = tight.stdout + tight.stderr
    assert tight.code == 2, text[-3000:]
    assert "image.too_many_annotations" in text or "json.too_large" in text, text[-3000:]


def test_a_file_over_the_category_limit_is_refused_before_anything_is_built(tmp_path: Path,
                                                                            shapes_dataset: Any) -> None:
    def vocabulary(data: dict[str, Any], images: Path) -> None:
        data["categories"] += [{"id": 1000 + index, "name": f"c{index}"} for index in range(1_000_000)]

    config = _write(tmp_path, shapes_dataset, vocabulary)
    outcome, text = _preflight(config)
    assert outcome.code == 2, text[-3000:]
    assert "json.too_many_categories" in text and "1000003 categories, over the limit of 10000" in text
    _bounded(outcome)


def test_the_limits_are_config_keys(tmp_path: Path, shapes_dataset: Any) -> None:
    from apex_x.adapters.datasets.coco_checks import SplitLimits, SplitPaths, read_split
    from apex_x.adapters.datasets.findings import FindingLog

    paths = SplitPaths("train", "data.coco_train_images", "data.coco_train_annotations",
                       Path(shapes_dataset.train_images), Path(shapes_dataset.train_annotations))
    data = json.loads(paths.annotations_path.read_text())
    per_image: dict[int, int] = {}
    for annotation in data["annotations"]:
        per_image[annotation["image_id"]] = per_image.get(annotation["image_id"], 0) + 1
    densest = max(per_image, key=lambda image_id: per_image[image_id])
    log = FindingLog()
    checked = read_split(paths, log, limits=SplitLimits(max_annotations_per_image=per_image[densest] - 1))
    errors = [finding for finding in log.finish() if finding.severity == "error"]
    assert {finding.rule for finding in errors} == {"image.too_many_annotations"}
    over = {finding.image_id for finding in errors}
    assert densest in over and all(per_image[image_id] == per_image[densest] for image_id in over)
    assert all(image["id"] not in over for image in checked.images)  # not kept
    log = FindingLog()
    read_split(paths, log, limits=SplitLimits(max_categories=len(data["categories"]) - 1))
    assert [finding.rule for finding in log.finish()] == ["json.too_many_categories"]


# -- kind 2: image paths that are not files -------------------------------------------------------------


def _not_files(outside: Path) -> Callable[[dict[str, Any], Path], None]:
    def edit(data: dict[str, Any], images: Path) -> None:
        names = [image["file_name"] for image in data["images"][:4]]
        for name in names:
            (images / name).unlink()
        os.mkfifo(images / names[0])
        os.symlink("/dev/zero", images / names[1])
        os.symlink("/proc/self/status", images / names[2])
        os.symlink(outside, images / names[3])

    return edit


def test_pipes_devices_and_links_out_of_the_images_folder_are_refused_by_name(tmp_path: Path,
                                                                              shapes_dataset: Any) -> None:
    outside = tmp_path / "elsewhere.png"
    shutil.copy(next(Path(shapes_dataset.train_images).iterdir()), outside)
    config = _write(tmp_path / "d", shapes_dataset, _not_files(outside))
    outcome, text = _preflight(config)  # a FIFO used to hang the check
    assert outcome.code == 2, text[-3000:]
    assert "not an image file but a named pipe (FIFO)" in text
    assert text.count("image.link_outside") == 3 and "symbolic link to /dev/zero" in text
    _bounded(outcome, 30.0)
    allowed = cli("dataset-preflight", str(config), "--set", "data.allow_external_links=true")
    text = allowed.stdout + allowed.stderr
    assert allowed.code == 2 and "image.link_outside" not in text, text[-3000:]
    assert "a character device" in text and "the file is empty (0 bytes)" in text
    assert text.count("image.not_a_file") == 3  # the FIFO, the device, /proc's empty-looking file; the PNG is fine
    _bounded(allowed, 30.0)


def test_predict_refuses_a_pipe_instead_of_waiting_on_it(tiny_run: TinyRun, tmp_path: Path) -> None:
    fifo = tmp_path / "camera.png"
    os.mkfifo(fifo)
    outcome = cli("predict", "--checkpoint", str(tiny_run.last), "--image", str(fifo), str(tiny_run.image),
                  "--output", str(tmp_path / "p"), "--device", "cpu")
    assert outcome.code == 2, outcome.stderr[-3000:]
    summary = json.loads((tmp_path / "p" / "summary.json").read_text())
    assert len(summary["images"]) == 1 and "not an image file but a named pipe" in json.dumps(summary["failures"])
    _bounded(outcome)


# -- kind 3: characters that break the output -----------------------------------------------------------


def test_names_with_lone_surrogates_or_escapes_are_findings_naming_their_id(tmp_path: Path,
                                                                            shapes_dataset: Any) -> None:
    def edit(data: dict[str, Any], images: Path) -> None:
        data["categories"][0]["name"] = "bad\udcff"
        data["images"][0]["file_name"] = "x\x1b[31m.png"

    outcome, text = _preflight(_write(tmp_path, shapes_dataset, edit))  # json.dumps writes \u escapes
    assert outcome.code == 2, text[-3000:]
    assert "category.name_invalid" in text and "a lone surrogate U+DCFF (the byte 0xff" in text
    assert "image.file_name_invalid" in text and "an escape character (ESC" in text
    assert "\x1b" not in text  # never echoed raw to the terminal
    assert "annotation.unknown_category" not in text  # one root cause, one finding
    _bounded(outcome)


@pytest.mark.parametrize(("value", "said"), [("o\\0x", "a NUL byte"), ("o\\e[31mred", "an escape character"),
                                             ("o\\udcffx", "a lone surrogate U+DCFF")])
def test_config_text_that_cannot_be_a_path_or_printed_is_a_config_error(tmp_path: Path, tiny_run: TinyRun,
                                                                        value: str, said: str) -> None:
    config = tmp_path / "config.yaml"
    line = f'output_dir: "{tmp_path}/{value}"'
    config.write_text(re.sub(r"output_dir: .*", lambda _: line, tiny_run.config.read_text()))
    outcome = cli("train", str(config))
    assert outcome.code == 2, outcome.stderr[-3000:]
    assert "train.output_dir" in outcome.error_line and said in outcome.error_line and str(config) in outcome.error_line
    assert not (tmp_path / "o").exists()
    _bounded(outcome, 30.0)


def test_command_line_arguments_that_are_not_utf8_are_refused(tiny_run: TinyRun, tmp_path: Path) -> None:
    import subprocess
    import sys

    named = tmp_path / os.fsdecode(b"c\xff.yaml")
    shutil.copy(tiny_run.config, named)
    result = subprocess.run([sys.executable, "-m", "apex_x.cli", "train", os.fsencode(named)], cwd=REPO,
                            capture_output=True, env={**os.environ, "PYTHONPATH": str(REPO)}, timeout=120)
    stderr = result.stderr.decode("utf-8", "replace")
    assert result.returncode == 2, stderr[-3000:]
    assert "argument 2" in stderr and "the byte 0xff, which is not UTF-8" in stderr and "Traceback" not in stderr
    flag = cli("train", str(tiny_run.config), "--set", "train.output_dir=/tmp/x\x1b[2J")
    assert flag.code == 2 and "an escape character" in flag.error_line and "\x1b" not in flag.stderr


# -- kind 4: deep nesting -------------------------------------------------------------------------------


def _deep(shapes_dataset: Any) -> bytes:
    text = Path(shapes_dataset.train_annotations).read_text()
    nest = "[" * 100_000 + "]" * 100_000
    return re.sub(r'"segmentation":\s*', lambda _: f'"segmentation": {nest}, "x": ', text, count=1).encode()


def test_json_nested_100000_levels_deep_is_a_finding(tmp_path: Path, shapes_dataset: Any, tiny_run: TinyRun) -> None:
    raw = _deep(shapes_dataset)
    outcome, text = _preflight(_write(tmp_path, shapes_dataset, raw=raw))
    assert outcome.code == 2, text[-3000:]
    assert "json.too_deep" in text and "nested more than 1024 levels deep" in text
    _bounded(outcome)
    coco = tmp_path / "deep.json"
    coco.write_bytes(raw)
    predicted = cli("predict", "--checkpoint", str(tiny_run.last), "--image", str(tiny_run.image),
                    "--coco-json", str(coco), "--output", str(tmp_path / "p"), "--device", "cpu")
    assert predicted.code == 2 and "nested more than 1024 levels" in predicted.error_line, predicted.stderr[-3000:]
    _bounded(predicted)


# -- kind 5: YAML explicit tags -------------------------------------------------------------------------


@pytest.mark.parametrize(("tagged", "rule"), [
    ("!!int '1:30'", "is not a decimal integer"), ("!!int '0x10'", "is not a decimal integer"),
    ("!!int '0o1_7'", "is not a decimal integer"), ("!!float 'abc'", "is not a decimal number"),
    ("!!bool 'maybe'", "is not a boolean (true or false)"), ("!!timestamp 'abc'", "is not a valid !!timestamp"),
    ("!!map [1]", "a sequence is not a valid !!map"), ("!!int '1_0'", "is not a decimal integer"),
    ("!!int '\u0663'", "is not a decimal integer"), ("!!float '1_0.5'", "is not a decimal number"),
])
def test_explicit_yaml_tags_with_bad_values_are_config_errors_naming_the_line(tmp_path: Path, tagged: str,
                                                                              rule: str) -> None:
    from apex_x.adapters.config_yaml import load_config
    from apex_x.domain.errors import ConfigError

    config = tmp_path / "config.yaml"
    config.write_text(f"train:\n  batch_size: 2\n  epochs: {tagged}\n")
    with pytest.raises(ConfigError) as error:
        load_config(config)
    assert "line 3, column 11" in str(error.value) and rule in str(error.value) and str(config) in str(error.value)


def test_an_explicit_tag_on_the_command_line_is_exit_2(tiny_run: TinyRun) -> None:
    outcome = cli("train", str(tiny_run.config), "--set", "train.epochs=!!int '0x10'")
    assert outcome.code == 2 and "is not a decimal integer" in outcome.error_line, outcome.stderr[-3000:]


# -- kind 7: resource exhaustion ------------------------------------------------------------------------


def test_running_out_of_file_handles_is_exit_2_with_advice(tiny_run: TinyRun, tmp_path: Path) -> None:
    code = f"""
import os, resource, sys
import apex_x.cli
used = len(os.listdir("/proc/self/fd"))
soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
resource.setrlimit(resource.RLIMIT_NOFILE, (used, hard))  # every further open, pipe or import fails (EMFILE)
try:
    code = apex_x.cli.main(["train", {str(tiny_run.config)!r}, "--set", "train.output_dir={tmp_path / 'run'}"])
finally:
    resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))
sys.exit(code)
"""
    outcome = run_limited(["-c", code])
    assert outcome.code == 2, outcome.stderr[-3000:]
    assert "Too many open files" in outcome.error_line and "internal error" not in outcome.stderr



# -- found by the fresh attack (issue 33 review) --------------------------------------------------------


@pytest.mark.parametrize("digits", [400, 5000])
def test_integers_of_hundreds_of_digits_are_a_finding(tmp_path: Path, shapes_dataset: Any, digits: int) -> None:
    text = Path(shapes_dataset.train_annotations).read_text()
    raw = re.sub(r'"width":\s*\d+', lambda _: '"width": ' + "9" * digits, text, count=1).encode()
    outcome, text = _preflight(_write(tmp_path, shapes_dataset, raw=raw))
    assert outcome.code == 2, text[-3000:]
    assert "json.number_invalid" in text and f"an integer of {digits} digits (at most 30)" in text
    _bounded(outcome)


def test_deeply_nested_extra_fields_of_the_val_file_do_not_reach_pycocotools(tmp_path: Path, shapes_dataset: Any,
                                                                             tiny_run: TinyRun) -> None:
    """A field a labelling tool added (attributes), nested 900 levels (under the parse limit), used to end the
    evaluation in a RecursionError inside pycocotools' deepcopy; only the checked fields are handed over."""
    def edit(data: dict[str, Any], images: Path) -> None:
        nested: Any = 1
        for _ in range(900):
            nested = {"a": nested}
        data["annotations"][0]["attributes"] = nested
        data["categories"][0]["supercategory"] = nested

    config = _write(tmp_path, shapes_dataset, edit, split="val")
    outcome = cli("eval", str(config), "--checkpoint", str(tiny_run.last), "--output-json", str(tmp_path / "e.json"))
    assert outcome.code == 0, outcome.stderr[-3000:]
    assert json.loads((tmp_path / "e.json").read_text())["num_images"] == 8


def test_line_breaks_and_bidirectional_controls_are_escaped_or_refused(tmp_path: Path, shapes_dataset: Any,
                                                                      tiny_run: TinyRun) -> None:
    flag = cli("train", str(tiny_run.config), "--set", "train.output_dir=/tmp/o\nerror: forged")
    assert flag.code == 2 and "a line break" in flag.error_line and "o\\nerror: forged" in flag.error_line
    assert [line for line in flag.stderr.splitlines() if line.startswith("error")] == [flag.error_line]

    def edit(data: dict[str, Any], images: Path) -> None:
        data["categories"][0]["name"] = "circ\u202ele"

    outcome, text = _preflight(_write(tmp_path, shapes_dataset, edit))
    assert outcome.code == 2 and "category.name_invalid" in text and "a bidirectional control U+202E" in text


def test_predict_reports_pipes_named_like_images_in_a_folder(tiny_run: TinyRun, tmp_path: Path) -> None:
    folder = tmp_path / "in"
    folder.mkdir()
    shutil.copy(tiny_run.image, folder / "ok.png")
    os.mkfifo(folder / "f.png")
    os.symlink("/dev/zero", folder / "z.png")
    outcome = cli("predict", "--checkpoint", str(tiny_run.last), "--image", str(folder), "--output",
                  str(tmp_path / "p"), "--device", "cpu")
    assert outcome.code == 2, outcome.stderr[-3000:]
    summary = json.loads((tmp_path / "p" / "summary.json").read_text())
    failures = json.dumps(summary["failures"])
    assert len(summary["images"]) == 1 and "named pipe" in failures and "character device" in failures
    _bounded(outcome)
