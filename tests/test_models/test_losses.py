"""DenseLoss components: hand-computed values, clipping, NaN, gradients, crowd, empty targets."""

from __future__ import annotations

import math

import torch

from apex_x.adapters.models.losses import DenseLoss
from apex_x.domain.types import Batch, ImageMeta, LossSettings

ALL = {"det": 1.0, "seg": 1.0, "boundary": 1.0}


def _bce(logit: float, target: float) -> float:
    p = 1.0 / (1.0 + math.exp(-logit))
    return -(target * math.log(p) + (1.0 - target) * math.log(1.0 - p))


def _sigmoid(x: float) -> float:
    return 1.0 / (1.0 + math.exp(-x))


def _case(cls_logits=((0.3, -0.2), (-1.0, 0.5)), quality=(0.4, -0.3), crowd: bool = False, objects: bool = True):
    """64 px image, mask stride 4 (16 x 16 masks), 2 anchors: (32, 32) inside the object, (4, 60) outside.

    The object is class 1, box [16, 16, 48, 48], mask = its box (an 8 x 8 square at stride 4); the first
    anchor predicts [20, 16, 48, 48] (IoU = GIoU = 0.875). Prototypes are zero: mask logits are 0.
    With `crowd`, a crowd region covers the second anchor.
    """
    anchors = torch.tensor([[32.0, 32.0], [4.0, 60.0]])
    boxes = torch.tensor([[[20.0, 16.0, 48.0, 48.0], [0.0, 56.0, 8.0, 64.0]]])
    outputs = {
        "cls_logits": torch.tensor([cls_logits], requires_grad=True),
        "boxes": boxes.clone().requires_grad_(True),
        "quality": torch.tensor([quality], requires_grad=True),
        "mask_coeffs": torch.ones(1, 2, 3, requires_grad=True),
        "prototypes": torch.zeros(1, 3, 16, 16, requires_grad=True),
        "anchor_points": anchors,
        "strides": torch.tensor([8.0, 8.0]),
    }
    masks = torch.zeros(1, 2, 16, 16, dtype=torch.uint8)
    masks[0, 0, 4:12, 4:12] = 1
    masks[0, 1, 13:16, 0:3] = 1
    batch = Batch(
        images=torch.zeros(1, 3, 64, 64, dtype=torch.uint8),
        boxes=torch.tensor([[[16.0, 16.0, 48.0, 48.0], [0.0, 52.0, 12.0, 64.0]]]),
        labels=torch.tensor([[1, 0]]),
        masks=masks,
        valid=torch.tensor([[objects, crowd]]),
        crowd=torch.tensor([[False, crowd]]),
        metas=[ImageMeta(1, "1.png", 64, 64, 1.0, 0, 0)],
    )
    return outputs, batch


def test_det_component_matches_the_hand_computed_value() -> None:
    outputs, batch = _case()
    settings = LossSettings(weights={"det": 1.0}, params={"det": {"box_scale": 0.5, "box_weight": 2.5, "quality_weight": 1.0}})
    losses = DenseLoss(mask_stride=4)(outputs, batch, settings)
    t = 0.875  # soft target of the single positive = its IoU
    normalizer = max(t, 1.0)  # sum of the soft targets, at least 1
    cls_terms = [(0.3, 0.0), (-0.2, t), (-1.0, 0.0), (0.5, 0.0)]
    cls = sum(_bce(x, y) * abs(y - _sigmoid(x)) ** 2 for x, y in cls_terms) / normalizer
    giou = t * (1.0 - 0.875) / normalizer
    quality = _bce(0.4, 0.875)
    expected = cls + 0.5 * 2.5 * giou + 1.0 * quality
    assert set(losses) == {"det"}
    assert abs(losses["det"].item() - expected) < 1e-5


def test_seg_and_boundary_match_the_hand_computed_values() -> None:
    outputs, batch = _case()
    losses = DenseLoss(mask_stride=4)(outputs, batch, LossSettings(weights={"seg": 1.0, "boundary": 2.0}))
    assert set(losses) == {"seg", "boundary"}
    # Zero logits inside the 8 x 8 crop, target all ones there: BCE = ln 2, Dice = 1 - (2*0.5*64+1)/(0.5*64+64+1).
    assert abs(losses["seg"].item() - (math.log(2.0) + 1.0 - 65.0 / 97.0)) < 1e-5
    # Constant prediction -> no predicted edge (clamped to eps); target edges in the crop: 8x8 minus 6x6 = 28.
    eps = 1e-6
    bce = (28 * -math.log(eps) + 36 * -math.log(1 - eps)) / 64
    dice = 1.0 - (2 * eps * 28 + 1) / (eps * 64 + 28 + 1)
    assert abs(losses["boundary"].item() - (bce + dice)) < 1e-3


def test_components_are_clipped_with_zero_gradient() -> None:
    outputs, batch = _case()
    settings = LossSettings(weights=ALL, clips={"det": 0.01, "seg": 0.02, "boundary": 0.03})
    losses = DenseLoss(mask_stride=4)(outputs, batch, settings)
    clipped = [losses[k].item() for k in ("det", "seg", "boundary")]
    assert all(abs(value - clip) < 1e-7 for value, clip in zip(clipped, [0.01, 0.02, 0.03], strict=True))
    sum(losses.values()).backward()
    for key in ("cls_logits", "boxes", "quality", "prototypes"):
        assert outputs[key].grad is not None and outputs[key].grad.abs().sum() == 0, key


def test_non_finite_outputs_never_crash_and_give_finite_components() -> None:
    outputs, batch = _case(cls_logits=((float("nan"), 0.0), (0.0, 0.0)))
    outputs["prototypes"] = torch.full((1, 3, 16, 16), float("inf"), requires_grad=True)
    losses = DenseLoss(mask_stride=4)(outputs, batch, LossSettings(weights=ALL))
    assert set(losses) == {"det", "seg", "boundary"}
    for name, value in losses.items():
        assert torch.isfinite(value), name


def test_gradient_steps_reduce_every_component() -> None:
    for component in ("det", "seg", "boundary"):
        outputs, batch = _case()
        outputs["prototypes"] = (0.1 * torch.randn(1, 3, 16, 16, generator=torch.Generator().manual_seed(0)))
        outputs["prototypes"].requires_grad_(True)
        loss_fn = DenseLoss(mask_stride=4)
        settings = LossSettings(weights={component: 1.0})
        before = loss_fn(outputs, batch, settings)[component]
        trainable = [outputs[k] for k in ("cls_logits", "boxes", "quality", "mask_coeffs", "prototypes")]
        grads = torch.autograd.grad(before, trainable, allow_unused=True)
        assert any(g is not None and g.abs().sum() > 0 for g in grads), component
        assert all(g is None or torch.isfinite(g).all() for g in grads), component
        with torch.no_grad():
            for tensor, grad in zip(trainable, grads, strict=True):
                if grad is not None:
                    tensor -= 0.05 * grad / (grad.norm() + 1e-12)
        after = loss_fn(outputs, batch, settings)[component]
        assert after.item() < before.item(), component


def test_crowd_region_anchors_get_no_classification_loss() -> None:
    settings = LossSettings(weights={"det": 1.0})
    values = {}
    for crowd in (False, True):
        for logit in (-3.0, 3.0):
            outputs, batch = _case(cls_logits=((0.3, -0.2), (logit, logit)), crowd=crowd)
            values[crowd, logit] = DenseLoss(mask_stride=4)(outputs, batch, settings)["det"].item()
    assert values[True, -3.0] == values[True, 3.0]  # the anchor on the crowd mask is ignored
    assert values[False, 3.0] > values[False, -3.0]  # elsewhere a confident background anchor costs


def test_images_without_objects_train_the_background_only() -> None:
    outputs, batch = _case(objects=False)
    losses = DenseLoss(mask_stride=4)(outputs, batch, LossSettings(weights=ALL))
    assert losses["det"].item() > 0 and losses["seg"].item() == 0 and losses["boundary"].item() == 0
    sum(losses.values()).backward()
    assert outputs["cls_logits"].grad.abs().sum() > 0
    assert outputs["prototypes"].grad is not None and outputs["prototypes"].grad.abs().sum() == 0


def test_only_components_with_positive_weight_are_computed() -> None:
    outputs, batch = _case()
    loss_fn = DenseLoss(mask_stride=4)
    assert set(loss_fn(outputs, batch, LossSettings(weights={"det": 1.0, "seg": 0.0}))) == {"det"}
    assert loss_fn(outputs, batch, LossSettings(weights={"distill": 1.0})) == {}
