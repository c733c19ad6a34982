"""The student overfits a tiny batch: the loss falls and the post-processed predictions match the targets."""

from __future__ import annotations

import torch
from torchvision.ops import box_iou

from apex_x.adapters.models.student import StudentModelFactory
from apex_x.domain.config import ModelConfig
from apex_x.domain.types import LossSettings

from .shape_batches import make_shapes_batch

STEPS = 120


def test_student_overfits_a_tiny_batch() -> None:
    torch.manual_seed(0)
    batch = make_shapes_batch(batch_size=2, size=64, objects=(1, 2), seed=3)
    config = ModelConfig(backbone="lcnet_050", input_height=64, input_width=64, neck_channels=32,
                         width_multiplier=1.0, num_prototypes=8, score_threshold=0.3)
    model = StudentModelFactory().build(config, num_classes=3)
    optimizer = torch.optim.AdamW(model.parameters(), lr=4e-3, weight_decay=0.0)
    settings = LossSettings(weights={"det": 1.0, "seg": 1.0, "boundary": 1.0})
    totals = []
    for _ in range(STEPS):
        losses = model.compute_losses(model(batch.images), batch, settings)
        total = sum(losses.values())
        optimizer.zero_grad()
        total.backward()
        optimizer.step()
        totals.append(float(total.detach()))
    assert all(torch.isfinite(torch.tensor(totals)))
    assert sum(totals[-5:]) / 5 < 0.35 * sum(totals[:5]) / 5, totals[::10]

    model.eval()
    with torch.no_grad():
        detections = model.postprocess(model(batch.images), batch.metas)
    for b, found in enumerate(detections):
        for i in torch.nonzero(batch.valid[b]).flatten().tolist():
            target_box = batch.boxes[b, i][None]
            overlaps = box_iou(found.boxes, target_box)[:, 0]
            best = int(overlaps.argmax())
            assert float(overlaps[best]) > 0.6, (b, i, found.boxes, target_box)
            assert int(found.labels[best]) == int(batch.labels[b, i])
            target_mask = batch.masks[b, i].bool().repeat_interleave(4, 0).repeat_interleave(4, 1)
            mask = found.masks[best]
            mask_iou = (mask & target_mask).sum() / (mask | target_mask).sum()
            assert float(mask_iou) > 0.6, (b, i, float(mask_iou))
