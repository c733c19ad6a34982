"""TaskAlignedAssigner: candidates, top-k, conflicts, soft targets, crowd, empty targets, batch vectorisation."""

from __future__ import annotations

import torch

from apex_x.adapters.models.anchors import make_anchor_points
from apex_x.adapters.models.assigner import TaskAlignedAssigner, crowd_ignore_anchors, pairwise_box_iou

NUM_CLASSES = 3


def _grid(size: int = 64, stride: int = 8) -> torch.Tensor:
    points, _ = make_anchor_points([(size // stride, size // stride)], [stride])
    return points  # (A, 2) centres at 4, 12, 20, ...


def _predictions(points: torch.Tensor, half: float = 6.0, score: float = 0.5) -> tuple[torch.Tensor, torch.Tensor]:
    boxes = torch.cat([points - half, points + half], dim=1)[None]  # (1, A, 4)
    scores = torch.full((1, points.shape[0], NUM_CLASSES), score)
    return scores, boxes


def test_positives_are_topk_anchors_inside_the_box_with_iou_normalised_targets() -> None:
    points = _grid()
    scores, boxes = _predictions(points)
    gt_box = torch.tensor([[[8.0, 8.0, 40.0, 32.0]]])  # centres 12..36 x 12..28 inside: 4 x 3 = 12 anchors
    assigner = TaskAlignedAssigner(topk=5)
    result = assigner(scores, boxes, points, torch.tensor([[2]]), gt_box, torch.tensor([[True]]))
    fg = result.foreground[0]
    assert int(fg.sum()) == 5
    inside = (points[:, 0] > 8) & (points[:, 0] < 40) & (points[:, 1] > 8) & (points[:, 1] < 32)
    assert bool((fg <= inside).all())
    assert result.target_labels[0, fg].eq(2).all() and result.target_labels[0, ~fg].eq(-1).all()
    assert torch.equal(result.target_boxes[0, fg], gt_box[0].expand(5, 4))
    ious = pairwise_box_iou(boxes[0], gt_box[0, 0])
    # Equal scores: the top-k by metric are the top-k by IoU; the best anchor's target is its IoU.
    assert torch.allclose(ious[fg].sort(descending=True).values, ious[inside].sort(descending=True).values[:5])
    targets = result.target_scores[0, fg]
    assert torch.allclose(targets[:, :2], torch.zeros(5, 2))
    assert abs(float(targets[:, 2].max()) - float(ious[fg].max())) < 1e-6
    expected = ious[fg].pow(6) / ious[fg].pow(6).max() * ious[fg].max()  # alpha term cancels (equal scores)
    assert torch.allclose(targets[:, 2], expected, atol=1e-6)
    assert result.target_scores[0, ~fg].abs().sum() == 0


def test_anchor_claimed_by_two_objects_keeps_the_higher_iou() -> None:
    points = torch.tensor([[20.0, 20.0]])
    scores = torch.full((1, 1, NUM_CLASSES), 0.5)
    boxes = torch.tensor([[[10.0, 10.0, 30.0, 30.0]]])
    gt = torch.tensor([[[0.0, 0.0, 40.0, 40.0], [12.0, 12.0, 30.0, 30.0]]])
    result = TaskAlignedAssigner(topk=3)(scores, boxes, points, torch.tensor([[0, 1]]), gt, torch.tensor([[True, True]]))
    assert result.foreground.all()
    assert result.gt_index[0, 0] == 1 and result.target_labels[0, 0] == 1
    assert result.positive_mask[0, :, 0].tolist() == [False, True]


def test_padding_crowd_and_empty_targets_give_no_positives() -> None:
    points = _grid()
    scores, boxes = _predictions(points)
    gt = torch.tensor([[[8.0, 8.0, 40.0, 32.0], [0.0, 0.0, 0.0, 0.0]]])
    labels = torch.tensor([[1, -1]])
    assigner = TaskAlignedAssigner()
    none_valid = assigner(scores, boxes, points, labels, gt, torch.tensor([[False, False]]))
    assert not none_valid.foreground.any() and none_valid.target_scores.sum() == 0
    no_objects = assigner(scores, boxes, points, torch.zeros(1, 0, dtype=torch.long), torch.zeros(1, 0, 4),
                          torch.zeros(1, 0, dtype=torch.bool))
    assert not no_objects.foreground.any() and no_objects.target_labels.eq(-1).all()
    only_first = assigner(scores, boxes, points, labels, gt, torch.tensor([[True, False]]))
    assert only_first.gt_index[only_first.foreground].eq(0).all()


def test_crowd_masks_mark_ignored_anchors() -> None:
    points = _grid()
    masks = torch.zeros(1, 2, 16, 16, dtype=torch.uint8)  # stride 4 masks of a 64 px image
    masks[0, 0, 0:4, 0:4] = 1  # crowd region over pixels 0..16 -> anchors at (4, 4), (12, 4), (4, 12), (12, 12)
    masks[0, 1, 8:16, 8:16] = 1  # an ordinary object: never ignored
    ignored = crowd_ignore_anchors(points, masks, torch.tensor([[True, False]]), mask_stride=4)
    expected = (points[:, 0] < 16) & (points[:, 1] < 16)
    assert torch.equal(ignored[0], expected)
    assert not crowd_ignore_anchors(points, masks, torch.tensor([[False, False]]), 4).any()


def test_tiny_object_without_an_inside_anchor_gets_the_nearest_one() -> None:
    points = _grid()
    scores, boxes = _predictions(points)
    gt = torch.tensor([[[13.0, 13.0, 15.0, 15.0]]])  # between anchor centres 12 and 20
    result = TaskAlignedAssigner()(scores, boxes, points, torch.tensor([[0]]), gt, torch.tensor([[True]]))
    assert int(result.foreground.sum()) == 1
    assert points[result.foreground[0]].tolist() == [[12.0, 12.0]]


def test_batch_assignment_equals_assigning_each_image_alone() -> None:
    generator = torch.Generator().manual_seed(0)
    points = _grid()
    batch = 3
    scores = torch.rand(batch, points.shape[0], NUM_CLASSES, generator=generator)
    centres = points[None] + torch.randn(batch, points.shape[0], 2, generator=generator)
    sizes = 4 + 10 * torch.rand(batch, points.shape[0], 2, generator=generator)
    boxes = torch.cat([centres - sizes, centres + sizes], -1)
    corner = 40 * torch.rand(batch, 4, 2, generator=generator)
    gt = torch.cat([corner, corner + 8 + 16 * torch.rand(batch, 4, 2, generator=generator)], -1)
    labels = torch.randint(0, NUM_CLASSES, (batch, 4), generator=generator)
    valid = torch.tensor([[True, True, True, False], [True, False, False, False], [False] * 4])
    assigner = TaskAlignedAssigner(topk=4)
    together = assigner(scores, boxes, points, labels, gt, valid)
    for b in range(batch):
        alone = assigner(scores[b : b + 1], boxes[b : b + 1], points, labels[b : b + 1], gt[b : b + 1],
                         valid[b : b + 1])
        assert torch.equal(together.foreground[b], alone.foreground[0])
        assert torch.equal(together.target_labels[b], alone.target_labels[0])
        assert torch.allclose(together.target_scores[b], alone.target_scores[0])
    assert together.foreground[0].any() and not together.foreground[2].any()
