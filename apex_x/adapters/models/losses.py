"""The dense model's loss: targets assigned once per step, then every active component of the registry.

The components (apex_x/loss_components/: det, seg, boundary; see their files for the formulas) compute
over `apex_x.kernels` from the LossInputs built here; each value is `min(nan_to_num(value), clip)`, and the
trainer multiplies by the stage weights. Auxiliary components (distill) are the trainer's, not computed here.
"""

from __future__ import annotations

import torch

from apex_x.adapters.models.assigner import (
    Assignment,
    TaskAlignedAssigner,
    crowd_ignore_anchors,
)
from apex_x.adapters.models.heads import assemble_mask_logits
from apex_x.domain.ports import LossComponent
from apex_x.domain.registry import LOSS_COMPONENTS
from apex_x.domain.types import Batch, DetectionTargets, LossSettings, MatchedMasks
from apex_x.kernels import clip_component


class DenseLossInputs:
    """LossInputs of one step: the assignment and the matched masks, each computed on first use, then shared."""

    def __init__(self, loss: DenseLoss, outputs: dict[str, torch.Tensor], batch: Batch) -> None:
        self.loss, self.outputs, self.batch = loss, outputs, batch
        self._assignment: Assignment | None = None
        self._targets: DetectionTargets | None = None
        self._masks: MatchedMasks | None = None

    @property
    def assignment(self) -> Assignment:
        if self._assignment is None:
            self._assignment = self.loss.assign(self.outputs, self.batch)
        return self._assignment

    def detection_targets(self) -> DetectionTargets:
        if self._targets is None:
            assignment, batch = self.assignment, self.batch
            ignored = crowd_ignore_anchors(
                self.outputs["anchor_points"], batch.masks, batch.crowd & batch.valid, self.loss.mask_stride
            )
            anchor_weights = None
            if bool(ignored.any()):
                anchor_weights = (~(ignored & ~assignment.foreground)).float().reshape(-1)
            self._targets = DetectionTargets(
                foreground=assignment.foreground,
                target_scores=assignment.target_scores,
                target_boxes=assignment.target_boxes,
                anchor_weights=anchor_weights,
            )
        return self._targets

    def matched_masks(self) -> MatchedMasks:
        if self._masks is None:
            logits, targets, crop_boxes = self.loss.matched_masks(self.outputs, self.batch, self.assignment)
            zero = logits
            if logits.shape[0] == 0:
                # No positives: a zero that still touches the mask branch (DDP sees every parameter used).
                zero = clip_component((self.outputs["mask_coeffs"].sum() + self.outputs["prototypes"].sum()) * 0.0, 0.0)
            self._masks = MatchedMasks(logits=logits, targets=targets, crop_boxes=crop_boxes, zero=zero)
        return self._masks


def model_components() -> tuple[LossComponent, ...]:
    """The registered components the model computes (not the trainer's auxiliary ones), in registry order."""
    return tuple(component for component in LOSS_COMPONENTS.all() if not component.auxiliary)


class DenseLoss:
    """Assigns targets once per step and computes the active components."""

    def __init__(
        self, *, mask_stride: int, assigner: TaskAlignedAssigner | None = None, masks_per_object: int = 6
    ) -> None:
        self.mask_stride = mask_stride
        self.assigner = assigner or TaskAlignedAssigner()
        self.masks_per_object = masks_per_object  # positives per object that get a mask loss (memory bound)
        self.components = model_components()

    def __call__(
        self, outputs: dict[str, torch.Tensor], batch: Batch, settings: LossSettings
    ) -> dict[str, torch.Tensor]:
        weights = settings.weights
        inputs = DenseLossInputs(self, outputs, batch)
        return {
            component.name: component.compute(inputs, settings)
            for component in self.components
            if weights.get(component.name, 0.0) > 0
        }

    def assign(self, outputs: dict[str, torch.Tensor], batch: Batch) -> Assignment:
        positive_objects = batch.valid & ~batch.crowd & (batch.labels >= 0)
        return self.assigner(
            outputs["cls_logits"].detach().float().sigmoid(),
            outputs["boxes"].detach().float(),
            outputs["anchor_points"],
            batch.labels,
            batch.boxes,
            positive_objects,
        )

    def matched_masks(
        self, outputs: dict[str, torch.Tensor], batch: Batch, assignment: Assignment
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Mask logits (N, h, w), target masks (N, h, w) and crop boxes (N, 4) in mask pixels.

        Up to `masks_per_object` best-aligned positives per object, gathered without a loop over images.
        """
        coeffs, prototypes = outputs["mask_coeffs"], outputs["prototypes"]
        batch_size, num_objects, num_anchors = assignment.positive_mask.shape
        height, width = prototypes.shape[-2:]
        k = min(self.masks_per_object, num_anchors)
        if num_objects == 0 or assignment.num_foreground == 0:
            empty = coeffs.new_zeros(0, height, width)
            return empty, empty, coeffs.new_zeros(0, 4)
        metric = assignment.align_metric + 1e-12 * assignment.positive_mask
        top = metric.topk(k, dim=-1)  # (B, M, k)
        chosen = assignment.positive_mask.gather(-1, top.indices).reshape(batch_size, num_objects * k)
        anchors = top.indices.reshape(batch_size, num_objects * k)
        objects = torch.arange(num_objects, device=coeffs.device).repeat_interleave(k).expand(batch_size, -1)
        # Pack the chosen slots of every image to the front, pad to the busiest image.
        order = torch.argsort((~chosen).to(torch.uint8), dim=1, stable=True)
        slots = int(chosen.sum(1).max())
        order = order[:, :slots]
        chosen = chosen.gather(1, order)  # (B, P)
        anchors = anchors.gather(1, order)
        objects = objects.gather(1, order)
        slot_coeffs = coeffs.gather(1, anchors[..., None].expand(-1, -1, coeffs.shape[-1]))  # (B, P, K)
        logits = assemble_mask_logits(slot_coeffs, prototypes)[chosen]  # (N, h, w)
        image_index = torch.arange(batch_size, device=coeffs.device)[:, None].expand_as(objects)[chosen]
        object_index = objects[chosen]
        target_masks = batch.masks[image_index, object_index]  # (N, h, w)
        if tuple(target_masks.shape[-2:]) != (height, width):
            raise ValueError(
                f"target masks are {tuple(target_masks.shape[-2:])} but prototypes are {(height, width)}: "
                f"the data must store masks at model.mask_stride={self.mask_stride}"
            )
        crop_boxes = batch.boxes[image_index, object_index].float() / self.mask_stride
        return logits, target_masks, crop_boxes

