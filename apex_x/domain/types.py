"""Value types shared by the layers: batches, image metadata, categories, detections, findings, metrics."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

import torch

Severity = Literal["error", "warning", "info"]


@dataclass(frozen=True)
class CategoryMap:
    """Contiguous training ids (list index) <-> original dataset category ids and names."""

    original_ids: tuple[int, ...]
    names: tuple[str, ...]

    def __post_init__(self) -> None:
        if len(self.original_ids) != len(self.names):
            raise ValueError("original_ids and names must have the same length")

    @property
    def num_classes(self) -> int:
        return len(self.original_ids)

    def to_original(self, contiguous_id: int) -> int:
        return self.original_ids[contiguous_id]

    def to_contiguous(self) -> dict[int, int]:
        return {original: index for index, original in enumerate(self.original_ids)}

    def to_plain(self) -> dict[str, list[Any]]:
        return {"original_ids": list(self.original_ids), "names": list(self.names)}

    @classmethod
    def from_plain(cls, plain: dict[str, list[Any]]) -> CategoryMap:
        return cls(tuple(int(i) for i in plain["original_ids"]), tuple(str(n) for n in plain["names"]))


@dataclass(frozen=True)
class ImageMeta:
    """Where a network input came from: original size and the letterbox that maps back to it.

    input = original * scale, placed at (pad_left, pad_top) in the (input_height, input_width) canvas.
    """

    image_id: int
    file_name: str
    orig_height: int
    orig_width: int
    scale: float
    pad_top: int
    pad_left: int
    flipped: bool = False


@dataclass
class Batch:
    """A collated training/eval batch; instances are padded to M per image (valid marks real ones)."""

    images: torch.Tensor  # (B, 3, H, W) uint8 RGB
    boxes: torch.Tensor  # (B, M, 4) float32 xyxy in input pixels
    labels: torch.Tensor  # (B, M) int64 contiguous class ids, -1 for padding
    masks: torch.Tensor  # (B, M, H // mask_stride, W // mask_stride) uint8 {0, 1}
    valid: torch.Tensor  # (B, M) bool: a real instance (object or crowd region)
    crowd: torch.Tensor  # (B, M) bool: crowd/ignore region (never a positive)
    metas: list[ImageMeta] = field(default_factory=list)
    # images of this batch that failed to decode and were left out: {"image_id", "file", "reason"}
    bad_images: list[dict[str, Any]] = field(default_factory=list)

    @property
    def batch_size(self) -> int:
        return int(self.images.shape[0])

    def to(self, device: torch.device | str, non_blocking: bool = False) -> Batch:
        return Batch(
            images=self.images.to(device, non_blocking=non_blocking),
            boxes=self.boxes.to(device, non_blocking=non_blocking),
            labels=self.labels.to(device, non_blocking=non_blocking),
            masks=self.masks.to(device, non_blocking=non_blocking),
            valid=self.valid.to(device, non_blocking=non_blocking),
            crowd=self.crowd.to(device, non_blocking=non_blocking),
            metas=list(self.metas),
            bad_images=list(self.bad_images),
        )

    def pin_memory(self) -> Batch:
        return Batch(
            images=self.images.pin_memory(),
            boxes=self.boxes.pin_memory(),
            labels=self.labels.pin_memory(),
            masks=self.masks.pin_memory(),
            valid=self.valid.pin_memory(),
            crowd=self.crowd.pin_memory(),
            metas=list(self.metas),
            bad_images=list(self.bad_images),
        )


@dataclass
class Detections:
    """Post-processed detections of one image, in original image pixels and contiguous class ids."""

    boxes: torch.Tensor  # (K, 4) float32 xyxy in original pixels
    scores: torch.Tensor  # (K,) float32
    labels: torch.Tensor  # (K,) int64 contiguous ids
    masks: torch.Tensor  # (K, orig_H, orig_W) bool

    def __len__(self) -> int:
        return int(self.scores.shape[0])


@dataclass
class PreviewSample:
    """One val image for the prediction overlays (plots/val_predictions.png, the trackers' images): the
    network input without its letterbox padding (the original image at the letterbox scale) with the model's
    confident detections and, when the split has them, the ground-truth objects, both in that image's pixels."""

    image_id: int
    file_name: str
    image: torch.Tensor  # (h, w, 3) uint8 RGB, h = round(orig_height * scale)
    detections: Detections  # in the (h, w) image's pixels; masks (K, h, w) bool
    truth: Detections | None = None  # non-crowd objects (scores 1), same pixels; None: not known
    confident: int | None = None  # detections at or above the drawing score before the per-image cap (None: all kept)


@dataclass(frozen=True)
class Finding:
    """One dataset-check result: severity, rule, file and ids."""

    severity: Severity
    rule: str
    message: str
    file: str | None = None
    image_id: int | str | None = None
    annotation_id: int | str | None = None
    unlisted: int = 0  # > 0: a note standing for this many more findings of the rule (the listing is capped)

    @property
    def weight(self) -> int:
        """How many findings this entry counts for: 1, or the unlisted ones a cap note stands for."""
        return self.unlisted if self.unlisted else 1

    def to_plain(self) -> dict[str, Any]:
        plain = {
            "severity": self.severity,
            "rule": self.rule,
            "message": self.message,
            "file": self.file,
            "image_id": self.image_id,
            "annotation_id": self.annotation_id,
        }
        if self.unlisted:
            plain["unlisted"] = self.unlisted
        return plain

    def describe(self) -> str:
        where = ", ".join(
            part
            for part in (
                f"file {self.file}" if self.file else "",
                f"image {self.image_id}" if self.image_id is not None else "",
                f"annotation {self.annotation_id}" if self.annotation_id is not None else "",
            )
            if part
        )
        return f"[{self.severity}] {self.rule}: {self.message}" + (f" ({where})" if where else "")


@dataclass
class DatasetReport:
    """Outcome of a dataset check: a summary per split and the findings."""

    summary: dict[str, Any]
    findings: list[Finding]
    fix: str | None = None  # what to do about missing data (the dataset format's hint); not in to_plain()

    @property
    def errors(self) -> list[Finding]:
        return [finding for finding in self.findings if finding.severity == "error"]

    @property
    def ok(self) -> bool:
        return not self.errors

    def count(self, severity: Severity) -> int:
        """The true number of findings of a severity (cap notes count for the findings they stand for)."""
        return sum(finding.weight for finding in self.findings if finding.severity == severity)

    def error_summary(self, limit: int = 5) -> str:
        """One paragraph for a DatasetError: the true error count and the first `limit` errors."""
        errors = [finding for finding in self.errors if not finding.unlisted]
        total = self.count("error")
        shown = "; ".join(finding.describe() for finding in errors[:limit])
        more = f"; ... and {total - min(limit, len(errors))} more" if total > min(limit, len(errors)) else ""
        return f"{total} dataset error(s): {shown}{more}"

    def to_plain(self) -> dict[str, Any]:
        return {
            "ok": self.ok,
            "summary": self.summary,
            "counts": {
                "errors": self.count("error"),
                "warnings": self.count("warning"),
                "info": self.count("info"),
            },
            "findings": [finding.to_plain() for finding in self.findings],
        }


@dataclass
class EvalResult:
    """COCO metrics of one evaluation: flat metrics (e.g. segm_AP, bbox_AP50) and per-class AP.

    A metric is None (n/a, `null` in JSON) where COCO has no ground truth for it (pycocotools' -1): it is
    never a score. `per_class` is keyed by the dataset's category id (as text), each row with its `name`.
    """

    metrics: dict[str, float | None]
    per_class: dict[str, dict[str, Any]] = field(default_factory=dict)  # "7" -> {name, bbox_AP, segm_AP, ...}
    num_images: int = 0
    num_detections: int = 0
    # What the plots need: {"pr_curves": {...}, "confusion": {...}} (adapters/evaluation/curves.py); large, so
    # kept out of the per-epoch history (the report holds the latest).
    curves: dict[str, Any] = field(default_factory=dict)
    max_detections: int = 100  # COCOeval's detection limit per image (maxDets), the model's max_detections
    # Evaluated images holding more ground truth than that limit (AP capped there), or None.
    over_limit: dict[str, Any] | None = None

    def to_plain(self) -> dict[str, Any]:
        return {
            "metrics": dict(self.metrics),
            "per_class": {key: dict(values) for key, values in self.per_class.items()},
            "num_images": self.num_images,
            "num_detections": self.num_detections,
            "max_detections": self.max_detections,
            "over_limit": dict(self.over_limit) if self.over_limit else None,
            "curves": dict(self.curves),
        }


@dataclass(frozen=True)
class LossSettings:
    """Everything the loss components need from the config for one step: weights, clips and knobs.

    Keyed by component name (see apex_x.domain.registry.LOSS_COMPONENTS); a component missing from `clips`
    or `params` uses its config defaults. Built by application/engine/schedules.py from the components.
    """

    weights: dict[str, float]  # active components -> weight (already ramped), e.g. {"det": 1.0}
    clips: dict[str, float] = field(default_factory=dict)  # component -> clip of its value
    params: dict[str, dict[str, float]] = field(default_factory=dict)  # component -> its knobs for this step


@dataclass(frozen=True)
class DetectionTargets:
    """Dense targets of one step, assigned once and shared by the components that read them.

    B images, A anchors, C classes.
    """

    foreground: torch.Tensor  # (B, A) bool: anchors with a target object
    target_scores: torch.Tensor  # (B, A, C) float soft (task-aligned) class targets
    target_boxes: torch.Tensor  # (B, A, 4) float xyxy in input pixels
    anchor_weights: torch.Tensor | None  # (B * A,) float: 0 on anchors ignored (crowd regions); None = all 1


@dataclass(frozen=True)
class MatchedMasks:
    """Predicted and target masks of the matched positives (N of them), at the mask stride."""

    logits: torch.Tensor  # (N, h, w) float mask logits
    targets: torch.Tensor  # (N, h, w) uint8 {0, 1}
    crop_boxes: torch.Tensor  # (N, 4) float xyxy in mask pixels
    zero: torch.Tensor  # scalar 0 touching the whole mask branch (DDP sees every parameter used)

    @property
    def empty(self) -> bool:
        return int(self.logits.shape[0]) == 0
