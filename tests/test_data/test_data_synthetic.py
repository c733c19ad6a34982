"""Synthetic smoke data: in-memory shapes with exact masks, COCO ground truth, always reported as synthetic."""

from __future__ import annotations

import torch
from pycocotools import mask as mask_utils
from pycocotools.coco import COCO

from apex_x.adapters.config_yaml import load_config
from apex_x.adapters.datasets.synthetic_source import SyntheticDatasetSource


def _source(*overrides: str) -> SyntheticDatasetSource:
    return SyntheticDatasetSource(
        load_config(
            None,
            [
                "model.input_height=64",
                "model.input_width=96",
                "model.mask_stride=1",
                "data.synthetic_train_images=6",
                "data.synthetic_val_images=3",
                *overrides,
            ],
        )
    )


def test_mode_categories_and_report() -> None:
    source = _source()
    assert (source.mode, source.backend) == ("synthetic", "synthetic")
    assert source.categories.names == ("circle", "rectangle", "triangle")
    report = source.validate(full_decode=False, expected_num_classes=None)
    assert report.ok and report.findings[0].rule == "dataset.synthetic"
    assert not source.validate(full_decode=False, expected_num_classes=5).ok
    assert _source("model.num_classes=5").categories.num_classes == 5
    assert source.describe()["mode"] == "synthetic" and source.fingerprint() == _source().fingerprint()


def test_val_masks_equal_the_generated_ground_truth() -> None:
    source = _source()
    truth = source.val_ground_truth()
    coco = COCO()
    coco.dataset = truth
    coco.createIndex()
    assert len(coco.getImgIds()) == 3 and coco.getAnnIds()
    for batch in source.val_loader(3).iter_epoch(0):
        for row, meta in enumerate(batch.metas):
            anns = sorted(coco.loadAnns(coco.getAnnIds(imgIds=[meta.image_id])), key=lambda a: -a["area"])
            assert int(batch.valid[row].sum()) == len(anns)
            for k, ann in enumerate(anns):
                expected = torch.from_numpy(mask_utils.decode(coco.annToRLE(ann)))
                assert torch.equal(batch.masks[row, k], expected)
                assert int(batch.labels[row, k]) == source.categories.to_contiguous()[ann["category_id"]]


def test_train_batches_are_deterministic_and_augmented() -> None:
    first = list(_source().train_loader(2, seed=3).iter_epoch(0))
    second = list(_source().train_loader(2, seed=3).iter_epoch(0))
    assert len(first) == 3
    assert all(
        torch.equal(a.images, b.images) and torch.equal(a.masks, b.masks)
        for a, b in zip(first, second, strict=True)
    )
    assert first[0].images.shape == (2, 3, 64, 96) and first[0].valid.any()
