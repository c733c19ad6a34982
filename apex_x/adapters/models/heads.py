"""Anchor-free decoupled detection head and prototype mask head (YOLACT / YOLOv8-seg style)."""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from apex_x.adapters.models.neck import ConvBnAct

CLASS_PRIOR = 0.01  # initial foreground probability of the class logits (focal-loss prior)


def flatten_levels(maps: Sequence[torch.Tensor]) -> torch.Tensor:
    """[(B, C, H_i, W_i)] -> (B, sum_i H_i * W_i, C), level-major then row-major (the anchor order)."""
    return torch.cat([m.permute(0, 2, 3, 1).reshape(m.shape[0], -1, m.shape[1]) for m in maps], dim=1)


def _tower(channels_in: int, channels: int, depth: int) -> nn.Sequential:
    layers = [ConvBnAct(channels_in if i == 0 else channels, channels, 3) for i in range(depth)]
    return nn.Sequential(*layers)


class DecoupledDetectionHead(nn.Module):
    """Per level: a classification tower -> class logits, a regression tower -> ltrb distances + quality.

    forward(levels) -> cls_logits (B, A, C), box_raw (B, A, 4) (softplus(raw) * stride = distance in
    pixels), quality (B, A) logits of the predicted IoU with the matched object.
    """

    def __init__(
        self, in_channels: int, num_classes: int, *, num_levels: int = 3, channels: int = 64, depth: int = 2
    ) -> None:
        super().__init__()
        self.num_classes = num_classes
        self.cls_towers = nn.ModuleList(_tower(in_channels, channels, depth) for _ in range(num_levels))
        self.reg_towers = nn.ModuleList(_tower(in_channels, channels, depth) for _ in range(num_levels))
        self.cls_preds = nn.ModuleList(nn.Conv2d(channels, num_classes, 1) for _ in range(num_levels))
        self.reg_preds = nn.ModuleList(nn.Conv2d(channels, 5, 1) for _ in range(num_levels))  # ltrb + quality
        self.reset_bias()

    def reset_bias(self) -> None:
        prior_bias = -math.log((1.0 - CLASS_PRIOR) / CLASS_PRIOR)
        for conv in self.cls_preds:
            nn.init.normal_(conv.weight, std=0.01)
            nn.init.constant_(conv.bias, prior_bias)
        for conv in self.reg_preds:
            nn.init.normal_(conv.weight, std=0.01)
            nn.init.constant_(conv.bias[:4], 1.0)  # softplus(1) * stride ~ 1.3 strides per side
            nn.init.constant_(conv.bias[4:], 0.0)

    def forward(self, levels: Sequence[torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        cls_maps = [pred(tower(x)) for x, tower, pred in zip(levels, self.cls_towers, self.cls_preds, strict=True)]
        reg_maps = [pred(tower(x)) for x, tower, pred in zip(levels, self.reg_towers, self.reg_preds, strict=True)]
        cls_logits = flatten_levels(cls_maps)  # (B, A, C)
        reg = flatten_levels(reg_maps)  # (B, A, 5)
        return cls_logits, reg[..., :4], reg[..., 4]


class PrototypeMaskHead(nn.Module):
    """Shared prototypes at `mask_stride` from the stride-8 level, plus per-anchor mask coefficients.

    An instance's mask logits are coeffs (K,) @ prototypes (K, H / s, W / s).
    """

    def __init__(
        self,
        in_channels: int,
        num_prototypes: int,
        *,
        mask_stride: int = 4,
        num_levels: int = 3,
        proto_channels: int = 64,
        coeff_channels: int = 32,
        input_stride: int = 8,
    ) -> None:
        super().__init__()
        if input_stride % mask_stride != 0:
            raise ValueError(f"mask_stride {mask_stride} must divide the prototype input stride {input_stride}")
        self.mask_stride = mask_stride
        self.num_prototypes = num_prototypes
        self.upsample_factor = input_stride // mask_stride
        fine_channels = max(16, proto_channels // 2)  # the 3x3 conv at mask_stride is the costly one: keep it narrow
        self.proto_in = ConvBnAct(in_channels, proto_channels, 3)
        self.proto_out = nn.Sequential(
            ConvBnAct(proto_channels, fine_channels, 3), ConvBnAct(fine_channels, num_prototypes, 1)
        )
        self.coeff_towers = nn.ModuleList(ConvBnAct(in_channels, coeff_channels, 3) for _ in range(num_levels))
        self.coeff_preds = nn.ModuleList(nn.Conv2d(coeff_channels, num_prototypes, 1) for _ in range(num_levels))

    def forward(self, levels: Sequence[torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
        x = self.proto_in(levels[0])
        if self.upsample_factor > 1:
            x = F.interpolate(x, scale_factor=float(self.upsample_factor), mode="nearest")
        prototypes = self.proto_out(x)  # (B, K, H / s, W / s)
        coeff_maps = [
            pred(tower(x)) for x, tower, pred in zip(levels, self.coeff_towers, self.coeff_preds, strict=True)
        ]
        return prototypes, flatten_levels(coeff_maps)  # (B, K, h, w), (B, A, K)


def assemble_mask_logits(coeffs: torch.Tensor, prototypes: torch.Tensor) -> torch.Tensor:
    """coeffs (B, N, K) @ prototypes (B, K, h, w) -> mask logits (B, N, h, w)."""
    batch, num_prototypes, height, width = prototypes.shape
    flat = torch.bmm(coeffs.float(), prototypes.float().reshape(batch, num_prototypes, height * width))
    return flat.reshape(batch, coeffs.shape[1], height, width)
