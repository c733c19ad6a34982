"""Which val images the prediction overlays show (a seeded, fixed choice) and what is kept of them: the network
input without its letterbox padding, the confident detections and the ground truth in that image's pixels."""

from __future__ import annotations

import torch

from apex_x.application.engine.previews import (
    PREVIEW_MAX_DETECTIONS,
    choose_preview_ids,
    in_order,
    preview_sample,
)
from apex_x.domain.types import Batch, Detections, ImageMeta


def test_the_choice_is_seeded_sorted_and_the_same_at_every_call() -> None:
    truth = {"images": [{"id": i} for i in range(100, 130)]}
    chosen = choose_preview_ids(truth, 5, seed=0)
    assert chosen == choose_preview_ids(truth, 5, seed=0) and list(chosen) == sorted(chosen) and len(chosen) == 5
    assert set(chosen) <= set(range(100, 130)) and choose_preview_ids(truth, 5, seed=1) != chosen
    assert choose_preview_ids(truth, 64, seed=0) == tuple(range(100, 130))
    assert choose_preview_ids(None, 5, seed=0) == () and choose_preview_ids(truth, 0, seed=0) == ()


def _letterboxed() -> tuple[Batch, Detections]:
    """A 100 x 50 (h x w) image letterboxed into 64 x 64 (scale 0.64, 16 px of padding left and right)."""
    image = torch.zeros((1, 3, 64, 64), dtype=torch.uint8)
    image[0, :, :, 16:48] = 200
    masks = torch.zeros((1, 2, 16, 16), dtype=torch.uint8)  # stride 4
    masks[0, 0, 4:8, 5:9] = 1  # input pixels 16..32 x 20..36
    batch = Batch(images=image, boxes=torch.tensor([[[20.0, 16, 36, 32], [0, 0, 0, 0]]]),
                  labels=torch.tensor([[2, -1]]), masks=masks, valid=torch.tensor([[True, False]]),
                  crowd=torch.zeros((1, 2), dtype=torch.bool),
                  metas=[ImageMeta(7, "seven.png", orig_height=100, orig_width=50, scale=0.64, pad_top=0, pad_left=16)])
    count = PREVIEW_MAX_DETECTIONS + 5
    found_masks = torch.zeros((count, 100, 50), dtype=torch.bool)
    found_masks[:, 25:50, 10:20] = True
    detections = Detections(boxes=torch.tensor([[10.0, 25, 20, 50]]).repeat(count, 1),
                            scores=torch.cat([torch.linspace(0.3, 0.9, count - 1), torch.tensor([0.1])]),
                            labels=torch.ones(count, dtype=torch.long), masks=found_masks)
    return batch, detections


def test_a_sample_is_the_unpadded_input_with_its_detections_and_truth_at_that_scale() -> None:
    batch, detections = _letterboxed()
    sample = preview_sample(batch, 0, detections)
    assert sample.image_id == 7 and sample.file_name == "seven.png"
    assert sample.image.shape == (64, 32, 3) and (sample.image == 200).all()  # padding cut off
    found = sample.detections
    assert len(found) == PREVIEW_MAX_DETECTIONS and sample.confident == PREVIEW_MAX_DETECTIONS + 4  # 0.1 is below
    assert found.scores[0] == detections.scores.max() and (found.scores[:-1] >= found.scores[1:]).all()
    assert torch.allclose(found.boxes[0], torch.tensor([6.4, 16.0, 12.8, 32.0]))
    assert found.masks.shape == (PREVIEW_MAX_DETECTIONS, 64, 32) and found.masks[0, 16:32, 7:12].all()
    truth = sample.truth
    assert truth is not None and len(truth) == 1 and truth.labels.tolist() == [2]
    assert truth.boxes.tolist() == [[4.0, 16.0, 20.0, 32.0]]  # minus the 16 px left padding
    assert truth.masks.shape == (1, 64, 32) and int(truth.masks.sum()) == 16 * 16
    assert truth.masks[0, 16:32, 4:20].all()
    assert [s.image_id for s in in_order([sample, sample], (3, 7))] == [7]


def test_a_large_input_is_kept_at_the_preview_side_and_masks_are_read_at_that_size() -> None:
    from apex_x.application.engine.previews import PREVIEW_SIDE

    image = torch.full((1, 3, 640, 640), 50, dtype=torch.uint8)
    masks = torch.zeros((1, 1, 160, 160), dtype=torch.uint8)
    masks[0, 0, 40:80, 60:80] = 1  # input pixels 160..320 x 240..320
    batch = Batch(images=image, boxes=torch.tensor([[[240.0, 160, 320, 320]]]), labels=torch.tensor([[0]]), masks=masks,
                  valid=torch.ones((1, 1), dtype=torch.bool), crowd=torch.zeros((1, 1), dtype=torch.bool),
                  metas=[ImageMeta(1, "big.jpg", orig_height=1000, orig_width=500, scale=0.64, pad_top=0, pad_left=160)])
    found_masks = torch.zeros((1, 1000, 500), dtype=torch.bool)
    found_masks[0, 250:500, 125:250] = True
    found = Detections(torch.tensor([[125.0, 250, 250, 500]]), torch.tensor([0.9]), torch.tensor([0]), found_masks)
    sample = preview_sample(batch, 0, found)
    assert sample.image.shape == (PREVIEW_SIDE, PREVIEW_SIDE // 2, 3) and (sample.image == 50).all()
    assert torch.allclose(sample.detections.boxes, torch.tensor([[40.0, 80, 80, 160]]))  # x 0.32
    assert sample.detections.masks.shape == (1, 320, 160) and int(sample.detections.masks.sum()) == 80 * 40
    truth = sample.truth
    assert truth is not None and torch.allclose(truth.boxes, torch.tensor([[40.0, 80, 80, 160]]))
    assert int(truth.masks.sum()) == 80 * 40 and truth.masks[0, 80:160, 40:80].all()
