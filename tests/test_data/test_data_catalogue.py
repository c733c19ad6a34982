"""The bad-input catalogue: each malformed dataset gives its finding (severity, rule, file, ids) through the
real `dataset-preflight` command, with no traceback, and the user's files are never modified."""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from apex_x.cli import main

from .builders import HEIGHT, WIDTH, SmallDataset, png_bytes, rgb_image, small_dataset, snapshot

Mutation = Callable[[SmallDataset], None]


@dataclass
class Case:
    name: str
    mutate: Mutation
    rule: str
    severity: str = "error"
    image_id: int | str | None = None
    annotation_id: int | None = None
    file_endswith: str = "instances.json"
    flags: list[str] = field(default_factory=list)
    with_val: bool = False
    exit_code: int | None = None  # default: 2 for an error, 0 otherwise


def _json(edit: Callable[[dict], object]) -> Mutation:
    def mutate(dataset: SmallDataset) -> None:
        edit(dataset.data)
        dataset.write_json()

    return mutate


def _set(path: str, value: object) -> Mutation:
    """Set data[a][i][key] for a path like 'annotations.0.bbox'."""

    def edit(data: dict) -> None:
        *parents, last = path.split(".")
        node: object = data
        for part in parents:
            node = node[int(part)] if isinstance(node, list) else node[part]  # type: ignore[index]
        node[int(last) if isinstance(node, list) else last] = value  # type: ignore[index]

    return _json(edit)


def _image_file(name: str, content: bytes) -> Mutation:
    def mutate(dataset: SmallDataset) -> None:
        (dataset.images / name).write_bytes(content)

    return mutate


def _pil_image(name: str, image: Image.Image, **save: object) -> Mutation:
    def mutate(dataset: SmallDataset) -> None:
        image.save(dataset.images / name, **save)

    return mutate


def _truncated_png() -> bytes:
    import io

    buffer = io.BytesIO()
    Image.fromarray(rgb_image()).save(buffer, format="PNG")
    return buffer.getvalue()[:-200]


def _rotated_png(json_size: tuple[int, int]) -> Mutation:
    """a.png stored 30 wide x 40 high with EXIF orientation 6 (displayed 40x30); the JSON says json_size."""

    def mutate(dataset: SmallDataset) -> None:
        exif = Image.Exif()
        exif[0x0112] = 6
        Image.fromarray(rgb_image(HEIGHT, WIDTH)).save(dataset.images / "a.png", exif=exif.tobytes())
        dataset.data["images"][0]["width"], dataset.data["images"][0]["height"] = json_size
        dataset.write_json()

    return mutate


def _category_gaps(dataset: SmallDataset) -> None:
    dataset.data["categories"][1]["id"] = 5
    for ann in dataset.data["annotations"]:
        if ann["category_id"] == 2:
            ann["category_id"] = 5
    dataset.write_json()


def _val_with_other_names(dataset: SmallDataset) -> None:
    other = json.loads(json.dumps(dataset.data))
    other["categories"][1]["name"] = "triangle"
    dataset.write_json(other, path=dataset.root / "val.json")


CASES = [
    Case("top level not an object", lambda ds: ds.write_json([ds.data]), "json.top_level"),
    Case("invalid JSON", lambda ds: ds.write_json(raw=b'{"images": [}'), "json.parse"),
    Case("not UTF-8", lambda ds: ds.write_json(raw=b'{"images": "\xff\xfe"}'), "json.parse"),
    Case("missing annotations key", _json(lambda d: d.pop("annotations")), "json.missing_key"),
    Case("string image id", _set("images.2.id", "3"), "image.id_type", image_id="3"),
    Case("duplicate image id", _set("images.2.id", 2), "image.duplicate_id", image_id=2),
    Case(
        "duplicate annotation id",
        _set("annotations.1.id", 10),
        "annotation.duplicate_id",
        image_id=2,
        annotation_id=10,
    ),
    Case("duplicate category id", _set("categories.1.id", 1), "category.duplicate_id"),
    Case(
        "annotation of a missing image",
        _set("annotations.0.image_id", 99),
        "annotation.unknown_image",
        image_id=99,
        annotation_id=10,
    ),
    Case(
        "unknown category",
        _set("annotations.0.category_id", 7),
        "annotation.unknown_category",
        image_id=1,
        annotation_id=10,
    ),
    Case(
        "string image reference",
        _set("annotations.0.image_id", "1"),
        "annotation.reference_type",
        image_id="1",
        annotation_id=10,
    ),
    Case("annotation not an object", _json(lambda d: d["annotations"].append("oops")), "annotation.invalid"),
    Case(
        "empty segmentation",
        _set("annotations.0.segmentation", []),
        "annotation.segmentation_empty",
        image_id=1,
        annotation_id=10,
    ),
    Case(
        "polygon of exactly 4 numbers",
        _set("annotations.0.segmentation", [[5, 5, 20, 20]]),
        "annotation.polygon_too_short",
        image_id=1,
        annotation_id=10,
    ),
    Case(
        "polygon with an odd count",
        _set("annotations.0.segmentation", [[5, 5, 20, 5, 20, 20, 5]]),
        "annotation.polygon_odd",
        image_id=1,
        annotation_id=10,
    ),
    Case(
        "flat polygon list",
        _set("annotations.0.segmentation", [5, 5, 20, 5, 20, 20]),
        "annotation.polygon_invalid",
        image_id=1,
        annotation_id=10,
    ),
    Case(
        "bbox with NaN",
        _set("annotations.0.bbox", [math.nan, 5, 15, 15]),
        "annotation.bbox_invalid",
        image_id=1,
        annotation_id=10,
    ),
    Case(
        "bbox of zero width",
        _set("annotations.0.bbox", [5, 5, 0, 15]),
        "annotation.bbox_degenerate",
        image_id=1,
        annotation_id=10,
    ),
    Case(
        "bbox outside the image",
        _set("annotations.0.bbox", [30, 5, 25, 15]),
        "annotation.bbox_outside",
        image_id=1,
        annotation_id=10,
    ),
    Case(
        "RLE size mismatch",
        _set("annotations.2.segmentation.size", [HEIGHT + 1, WIDTH]),
        "annotation.rle_size_mismatch",
        image_id=2,
        annotation_id=12,
    ),
    Case(
        "RLE counts do not cover the image",
        _set("annotations.2.segmentation.counts", [10, 5]),
        "annotation.rle_invalid",
        image_id=2,
        annotation_id=12,
    ),
    Case(
        "malformed compressed RLE",
        _set("annotations.2.segmentation.counts", "\x7f\x7f"),
        "annotation.rle_invalid",
        image_id=2,
        annotation_id=12,
    ),
    Case(
        "iscrowd not 0/1",
        _set("annotations.0.iscrowd", 2),
        "annotation.iscrowd_invalid",
        image_id=1,
        annotation_id=10,
    ),
    Case(
        "file_name escaping the folder",
        _set("images.2.file_name", "../c.png"),
        "image.path_unsafe",
        image_id=3,
    ),
    Case("zero annotations", _set("annotations", []), "dataset.no_annotations"),
    Case(
        "missing image file",
        lambda ds: (ds.images / "b.png").unlink(),
        "image.file_missing",
        image_id=2,
        file_endswith="b.png",
    ),
    Case(
        "non-image file",
        _image_file("c.png", b"this is not an image\n"),
        "image.unreadable",
        image_id=3,
        file_endswith="c.png",
    ),
    Case(
        "truncated image (full decode)",
        _image_file("c.png", _truncated_png()),
        "image.decode_failed",
        image_id=3,
        file_endswith="c.png",
        flags=["--full-decode"],
    ),
    Case(
        "decompression-bomb header",
        _image_file("c.png", png_bytes(20000, 20000, bit_depth=8, color_type=0)),
        "image.decompression_bomb",
        image_id=3,
        file_endswith="c.png",
    ),
    Case(
        "size differs from the JSON",
        _set("images.0.width", WIDTH + 1),
        "image.size_mismatch",
        image_id=1,
        file_endswith="a.png",
    ),
    Case(
        "EXIF-rotated, JSON after rotation",
        _rotated_png((WIDTH, HEIGHT)),
        "image.exif_orientation",
        severity="info",
        image_id=1,
        file_endswith="images",
    ),
    Case(
        "EXIF-rotated, JSON before rotation",
        _rotated_png((HEIGHT, WIDTH)),
        "image.size_mismatch",
        image_id=1,
        file_endswith="a.png",
    ),
    Case(
        "grayscale image",
        _pil_image("a.png", Image.fromarray(rgb_image()[..., 0])),
        "image.mode_converted",
        severity="info",
        image_id=1,
        file_endswith="images",
    ),
    Case(
        "RGBA image",
        _pil_image("a.png", Image.fromarray(np.dstack([rgb_image(), rgb_image()[..., :1]]))),
        "image.mode_converted",
        severity="info",
        image_id=1,
        file_endswith="images",
    ),
    Case(
        "16-bit image",
        _pil_image("a.png", Image.fromarray(rgb_image()[..., 0].astype(np.uint16) * 257)),
        "image.mode_converted",
        severity="info",
        image_id=1,
        file_endswith="images",
    ),
    Case(
        "palette image",
        _pil_image("a.png", Image.fromarray(rgb_image()).convert("P")),
        "image.mode_converted",
        severity="info",
        image_id=1,
        file_endswith="images",
    ),
    Case("category-id gaps", _category_gaps, "category.id_gaps", severity="info"),
    Case(
        "categories differ between train and val",
        _val_with_other_names,
        "dataset.category_mismatch",
        file_endswith="val.json",
        with_val=True,
    ),
    Case(
        "class count differs from --num-classes",
        lambda ds: None,
        "dataset.num_classes_mismatch",
        flags=["--num-classes", "5"],
    ),
]


@pytest.mark.parametrize("case", CASES, ids=[case.name for case in CASES])
def test_catalogue_case_gives_its_finding(
    case: Case, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    dataset = small_dataset(tmp_path / "user")
    case.mutate(dataset)
    config = dataset.config(
        val_annotations=dataset.root / "val.json" if case.with_val else None, with_val=case.with_val
    )
    before = snapshot(dataset.root)
    report_path = tmp_path / "out" / "report.json"

    code = main(["dataset-preflight", str(config), "--output-json", str(report_path), *case.flags])

    captured = capsys.readouterr()
    assert "Traceback" not in captured.err + captured.out
    expected_code = case.exit_code if case.exit_code is not None else (2 if case.severity == "error" else 0)
    assert code == expected_code, captured.out + captured.err
    report = json.loads(report_path.read_text())
    matching = [f for f in report["findings"] if f["rule"] == case.rule]
    assert matching, f"no {case.rule} finding in {[f['rule'] for f in report['findings']]}"
    finding = matching[0]
    assert finding["severity"] == case.severity
    assert finding["image_id"] == case.image_id
    assert finding["annotation_id"] == case.annotation_id
    assert finding["file"] is not None and finding["file"].endswith(case.file_endswith), finding
    assert case.rule in captured.out  # the text report lists it too
    assert report["ok"] is (expected_code == 0)
    assert snapshot(dataset.root) == before  # the user's files are untouched


def test_catalogue_has_at_least_twenty_cases() -> None:
    assert len({case.rule for case in CASES}) >= 20


def test_missing_annotations_file_names_the_key_and_path(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = tmp_path / "config.yaml"
    config.write_text(
        f"data:\n  coco_train_images: {tmp_path}\n  coco_train_annotations: nowhere/instances.json\n"
    )
    code = main(["dataset-preflight", str(config)])
    out = capsys.readouterr().out
    assert code == 2
    assert "data.coco_train_annotations" in out and str(Path.cwd() / "nowhere" / "instances.json") in out


def test_finding_flood_is_capped_per_rule(tmp_path: Path) -> None:
    from apex_x.api import dataset_preflight

    dataset = small_dataset(tmp_path / "user")
    dataset.data["annotations"] = [
        {
            "id": 100 + i,
            "image_id": 1,
            "category_id": 1,
            "segmentation": [],
            "bbox": [1, 1, 2, 2],
            "iscrowd": 0,
        }
        for i in range(200)
    ]
    dataset.write_json()
    report = dataset_preflight(dataset.config())
    rules = [f.rule for f in report.findings]
    assert rules.count("annotation.segmentation_empty") == 26  # 25 listed + one "N more" note
    assert any("175 more" in f.message for f in report.findings)
    assert report.count("error") == 200 and report.to_plain()["counts"]["errors"] == 200  # true numbers
    from apex_x.application.dataset_preflight import format_dataset_report

    assert "findings: 200 error(s)" in format_dataset_report(report)


def test_truncated_image_is_caught_without_the_full_decode(tmp_path: Path) -> None:
    from apex_x.api import dataset_preflight

    dataset = small_dataset(tmp_path / "user")
    (dataset.images / "c.png").write_bytes(_truncated_png())  # the header is intact, the end is cut off
    report = dataset_preflight(dataset.config())
    assert [(f.rule, f.image_id) for f in report.errors] == [("image.truncated", 3)]
    assert "IEND" in report.errors[0].message
    report = dataset_preflight(dataset.config(), overrides=["data.full_image_check=true"])
    assert [f.rule for f in report.errors] == ["image.decode_failed"]
