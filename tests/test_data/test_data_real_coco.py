"""Real COCO photos (shared tiny_coco, read-only): preflight counts, class remap, crowd regions, loading."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch
from pycocotools.coco import COCO

from apex_x.adapters.config_yaml import load_config
from apex_x.adapters.datasets.coco_source import CocoDatasetSource

from .builders import snapshot

TINY_COCO = Path(
    os.environ.get(
        "APEX_X_TINY_COCO", Path(__file__).resolve().parents[2].parent / "shared" / "datasets" / "tiny_coco"
    )
)
pytestmark = pytest.mark.skipif(not TINY_COCO.is_dir(), reason="shared tiny_coco dataset not present")


def _overrides(**changes: str) -> list[str]:
    values = {
        "data.coco_train_images": f"{TINY_COCO}/train2017",
        "data.coco_train_annotations": f"{TINY_COCO}/annotations/instances_train2017.json",
        "data.coco_val_images": f"{TINY_COCO}/val2017",
        "data.coco_val_annotations": f"{TINY_COCO}/annotations/instances_val2017.json",
        "model.input_height": "160",
        "model.input_width": "160",
        **changes,
    }
    return [f"{key}={value}" for key, value in values.items()]


@pytest.fixture(scope="module")
def tiny_source() -> CocoDatasetSource:
    return CocoDatasetSource(load_config(None, _overrides()))


def test_preflight_counts_with_full_decode(tiny_source: CocoDatasetSource) -> None:
    before = snapshot(TINY_COCO)
    report = tiny_source.validate(full_decode=True, expected_num_classes=80)
    assert report.ok, report.error_summary()
    splits = report.summary["splits"]
    assert (splits["train"]["images"], splits["val"]["images"]) == (50, 50)
    assert (splits["train"]["annotations"], splits["val"]["annotations"]) == (470, 382)
    assert (splits["train"]["crowd"], splits["val"]["crowd"]) == (5, 5)
    assert splits["train"]["instances"] == 465 and sum(
        row["instances"] for row in splits["val"]["instances_per_class"].values()) == 377
    assert splits["train"]["files"]["decoded"] == 50
    assert report.summary["num_classes"] == 80
    unlearnable = [key for key, row in splits["train"]["instances_per_class"].items() if row["instances"] == 0]
    assert unlearnable  # 80 COCO categories, 50 photos: some classes have no example in train
    assert {f.rule for f in report.findings if f.severity == "warning"} == {"dataset.category_without_instances"}
    [warning] = [f for f in report.findings if f.severity == "warning"]  # one line naming all of them
    assert f"{len(unlearnable)} of 80 categories have zero trainable instances in train" in warning.message
    rows = splits["train"]["instances_per_class"]
    assert all(f"{key} {rows[key]['name']!r}" in warning.message for key in unlearnable)
    assert snapshot(TINY_COCO) == before


def test_categories_are_remapped_by_original_id(tiny_source: CocoDatasetSource) -> None:
    categories = tiny_source.categories
    assert categories.num_classes == 80
    assert list(categories.original_ids) == sorted(categories.original_ids)
    assert (categories.original_ids[0], categories.names[0]) == (1, "person")
    assert (categories.original_ids[-1], categories.names[-1]) == (90, "toothbrush")
    assert categories.to_contiguous()[90] == 79


def test_val_ground_truth_keeps_original_ids_and_loads_in_pycocotools(tiny_source: CocoDatasetSource) -> None:
    truth = tiny_source.val_ground_truth()
    coco = COCO()
    coco.dataset = truth
    coco.createIndex()
    assert len(coco.getImgIds()) == 50 and len(coco.getAnnIds()) == 382
    assert len(coco.getAnnIds(iscrowd=True)) == 5
    assert max(coco.getCatIds()) == 90


def test_val_split_loads_with_crowd_regions_and_real_labels(tiny_source: CocoDatasetSource) -> None:
    loader = tiny_source.val_loader(10)
    crowd = instances = 0
    for batch in loader.iter_epoch(0):
        assert batch.images.shape[1:] == (3, 160, 160)
        crowd += int(batch.crowd.sum())
        instances += int(batch.valid.sum())
        assert (batch.labels[batch.valid] < 80).all()
        assert (batch.masks[batch.valid].flatten(1).sum(1) >= 0).all()
        for row, meta in enumerate(batch.metas):  # boxes map back inside the original image
            boxes = batch.boxes[row][batch.valid[row]]
            back = (boxes - torch.tensor([meta.pad_left, meta.pad_top] * 2)) / meta.scale
            assert (back[:, [0, 2]] >= -1).all() and (back[:, [0, 2]] <= meta.orig_width + 1).all()
    assert crowd == 5 and instances > 350  # tiny boxes under one input pixel are dropped


def test_one_augmented_train_batch(tiny_source: CocoDatasetSource) -> None:
    batch = next(iter(tiny_source.train_loader(4, seed=0).iter_epoch(0)))
    assert batch.images.shape == (4, 3, 160, 160) and batch.valid.any()
    assert tiny_source.fingerprint() == CocoDatasetSource(load_config(None, _overrides())).fingerprint()
    assert tiny_source.describe()["splits"]["train"]["annotations"] == 470


def test_dataset_preflight_command_on_tiny_coco(tmp_path: Path) -> None:
    import json
    import subprocess
    import sys

    repo = Path(__file__).resolve().parents[2]
    config = tmp_path / "tiny.yaml"
    config.write_text(
        "data:\n"
        f"  coco_train_images: {TINY_COCO}/train2017\n"
        f"  coco_train_annotations: {TINY_COCO}/annotations/instances_train2017.json\n"
        f"  coco_val_images: {TINY_COCO}/val2017\n"
        f"  coco_val_annotations: {TINY_COCO}/annotations/instances_val2017.json\n"
    )
    out = tmp_path / "artifacts" / "dataset_preflight.json"
    result = subprocess.run(
        [sys.executable, "-m", "apex_x.cli", "dataset-preflight", str(config), "--output-json", str(out)],
        cwd=tmp_path,
        env={**os.environ, "PYTHONPATH": str(repo)},
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    lines = result.stdout.splitlines()
    assert any(line.split()[:6] == ["train", "50", "470", "465", "5", "1"] for line in lines), result.stdout
    assert any(line.split()[:6] == ["val", "50", "382", "377", "5", "2"] for line in lines), result.stdout
    assert "categories: 80" in result.stdout and "result: OK" in result.stdout
    report = json.loads(out.read_text())
    assert report["ok"] is True and report["summary"]["num_classes"] == 80
    assert report["summary"]["splits"]["val"]["annotations"] == 382
