"""DenseSegmentationModel: backbone + neck + anchor-free head + prototype masks (the SegmentationModel port).

The student (timm backbone + FPN/PAN) and TeacherModelV3 (DINOv2 + simple pyramid) share this class: they
differ only in the `backbone` and `neck` modules they pass in.

Contract of the parts:
- backbone: (B, 3, H, W) normalised float -> list of feature maps (anything the neck understands).
- neck: that list -> 3 maps (B, neck.out_channels, H / s, W / s) for s in (8, 16, 32); it must have an
  `out_channels: int` attribute.

Keys of `forward`'s output (B images, A anchor points over all levels, C classes, K prototypes):
- "cls_logits"   (B, A, C)  class logits (sigmoid, one-vs-all)
- "box_ltrb"     (B, A, 4)  predicted distances left/top/right/bottom from the anchor point, input pixels
- "boxes"        (B, A, 4)  decoded xyxy boxes in input (letterboxed) pixels
- "quality"      (B, A)     logits of the predicted IoU with the matched object
- "mask_coeffs"  (B, A, K)  per-anchor mask coefficients
- "prototypes"   (B, K, H / mask_stride, W / mask_stride)  shared prototype masks
- "anchor_points" (A, 2)    anchor centres xy in input pixels;  "strides" (A,) their level strides
Mask logits of any anchors: `heads.assemble_mask_logits(outputs["mask_coeffs"][:, idx], outputs["prototypes"])`.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from apex_x.adapters.models.anchors import decode_ltrb, make_anchor_points
from apex_x.adapters.models.heads import DecoupledDetectionHead, PrototypeMaskHead
from apex_x.adapters.models.losses import DenseLoss
from apex_x.adapters.models.postprocess import PostprocessSettings, postprocess_detections
from apex_x.domain.config import ModelConfig
from apex_x.domain.input_size import input_size_problem
from apex_x.domain.types import Batch, Detections, ImageMeta, LossSettings

PYRAMID_STRIDES = (8, 16, 32)
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def head_channels(config: ModelConfig) -> int:
    """Width of the head towers and prototypes: neck_channels * width_multiplier, a multiple of 8 (>= 16)."""
    return max(16, int(round(config.neck_channels * config.width_multiplier / 8.0)) * 8)


class DenseSegmentationModel(nn.Module):
    """Anchor-free detector + prototype instance segmentation over a 3-level pyramid."""

    def __init__(
        self,
        backbone: nn.Module,
        neck: nn.Module,
        *,
        num_classes: int,
        config: ModelConfig,
        pixel_mean: Sequence[float] = IMAGENET_MEAN,
        pixel_std: Sequence[float] = IMAGENET_STD,
        channels_last: bool = True,
    ) -> None:
        super().__init__()
        in_channels = int(neck.out_channels)
        width = head_channels(config)
        self.backbone = backbone
        self.neck = neck
        self.head = DecoupledDetectionHead(in_channels, num_classes, channels=width, depth=config.head_depth)
        self.mask_head = PrototypeMaskHead(
            in_channels,
            config.num_prototypes,
            mask_stride=config.mask_stride,
            proto_channels=width,
            coeff_channels=max(16, width // 2),
        )
        self.num_classes = num_classes
        self.strides = PYRAMID_STRIDES
        self.mask_stride = config.mask_stride
        self.channels_last = channels_last
        self.postprocess_settings = PostprocessSettings(
            score_threshold=config.score_threshold,
            nms_iou=config.nms_iou,
            max_detections=config.max_detections,
            pre_nms_topk=config.pre_nms_topk,
        )
        self.loss = DenseLoss(mask_stride=config.mask_stride)
        self.register_buffer("pixel_mean", torch.tensor(pixel_mean).view(1, 3, 1, 1) * 255.0, persistent=False)
        self.register_buffer("pixel_std", torch.tensor(pixel_std).view(1, 3, 1, 1) * 255.0, persistent=False)
        self._anchor_cache: dict[tuple, tuple[torch.Tensor, torch.Tensor]] = {}
        if channels_last:
            self.to(memory_format=torch.channels_last)

    def normalise(self, images: torch.Tensor) -> torch.Tensor:
        """(B, 3, H, W) uint8 RGB (or float in [0, 255]) -> normalised float."""
        if images.dim() != 4 or images.shape[1] != 3:
            raise ValueError(f"images must be (B, 3, H, W), got {tuple(images.shape)}")
        x = (images.float() - self.pixel_mean) / self.pixel_std
        return x.contiguous(memory_format=torch.channels_last) if self.channels_last else x

    def forward(self, images: torch.Tensor) -> dict[str, torch.Tensor]:
        height, width = images.shape[-2:]
        problem = input_size_problem(height, width)
        if problem:
            raise ValueError(problem)
        levels = self.neck(self.backbone(self.normalise(images)))  # [(B, C, H/s, W/s)] s = 8, 16, 32
        cls_logits, box_raw, quality = self.head(levels)
        prototypes, mask_coeffs = self.mask_head(levels)
        anchor_points, strides = self.anchors([tuple(level.shape[-2:]) for level in levels], images.device)
        box_ltrb = F.softplus(box_raw.float()) * strides[None, :, None]
        return {
            "cls_logits": cls_logits,
            "box_ltrb": box_ltrb,
            "boxes": decode_ltrb(anchor_points, box_ltrb),
            "quality": quality,
            "mask_coeffs": mask_coeffs,
            "prototypes": prototypes,
            "anchor_points": anchor_points,
            "strides": strides,
        }

    def anchors(self, sizes: list[tuple[int, int]], device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
        key = (tuple(sizes), str(device))
        if key not in self._anchor_cache:
            self._anchor_cache[key] = make_anchor_points(sizes, self.strides, device)
        return self._anchor_cache[key]

    def compute_losses(
        self, outputs: dict[str, torch.Tensor], batch: Batch, settings: LossSettings
    ) -> dict[str, torch.Tensor]:
        """Clipped, unweighted det/seg/boundary for the components with weight > 0 in `settings.weights`."""
        return self.loss(outputs, batch, settings)

    def parameter_groups(self) -> dict[str, list[nn.Parameter]]:
        return {
            "backbone": list(self.backbone.parameters()),
            "neck": list(self.neck.parameters()),
            "head": list(self.head.parameters()),
            "mask": list(self.mask_head.parameters()),
        }

    def postprocess(self, outputs: dict[str, torch.Tensor], metas: Sequence[ImageMeta]) -> list[Detections]:
        return postprocess_detections(outputs, metas, self.postprocess_settings, self.mask_stride)

    def architecture(self) -> dict[str, Any]:
        """Nothing beyond the config: a timm backbone is rebuilt from its name alone (no download)."""
        return {}
