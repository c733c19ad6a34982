"""ViTDet-style simple feature pyramid: one stride-14 patch-token grid -> feature maps at strides 8/16/32.

ViTDet (Li et al., 2022) builds its pyramid from the last ViT feature map alone: a deconvolution for the
finer level, the map itself for the middle one, a pooling for the coarser one, each followed by a 1x1 and
a 3x3 conv with LayerNorm. DINOv2's patches are 14 px, so every level is also *resampled* onto the exact
grid of its stride: cell j of stride s is centred at pixel s * (j + 0.5), the sizes are ceil(H / s) and
ceil(W / s) (the sizes a strided CNN gives), whatever the input size. The resampling is bilinear, written
as two small interpolation matrices (matmuls), so it is deterministic on CUDA too.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

PYRAMID_STRIDES = (8, 16, 32)


def output_sizes(height: int, width: int, strides: tuple[int, ...] = PYRAMID_STRIDES) -> list[tuple[int, int]]:
    """Feature-map sizes of each stride for an input of (height, width): (ceil(H / s), ceil(W / s))."""
    return [(math.ceil(height / stride), math.ceil(width / stride)) for stride in strides]


def interpolation_matrix(
    source_cells: int, source_stride: float, target_cells: int, target_stride: float, like: torch.Tensor
) -> torch.Tensor:
    """(target_cells, source_cells) bilinear weights mapping cell centres by their pixel positions.

    Target cell j is centred at pixel target_stride * (j + 0.5); it reads the source at fractional cell
    u = target_stride * (j + 0.5) / source_stride - 0.5, clamped to the source (border replicate).
    """
    centres = (torch.arange(target_cells, device=like.device, dtype=torch.float64) + 0.5) * target_stride
    position = (centres / source_stride - 0.5).clamp(0.0, source_cells - 1)
    lower = position.floor().long()
    upper = (lower + 1).clamp(max=source_cells - 1)
    fraction = (position - lower.double()).unsqueeze(1)
    weights = F.one_hot(lower, source_cells) * (1.0 - fraction) + F.one_hot(upper, source_cells) * fraction
    return weights.to(like.dtype)


def resample(
    features: torch.Tensor, source_stride: float, target_size: tuple[int, int], target_stride: float
) -> torch.Tensor:
    """(B, C, h, w) at source_stride -> (B, C, target_h, target_w) at target_stride, bilinear."""
    height, width = features.shape[-2:]
    if (height, width) == target_size and source_stride == target_stride:
        return features
    rows = interpolation_matrix(height, source_stride, target_size[0], target_stride, features)  # (th, h)
    cols = interpolation_matrix(width, source_stride, target_size[1], target_stride, features)  # (tw, w)
    return rows @ features @ cols.transpose(0, 1)  # (B, C, th, tw)


class LayerNorm2d(nn.Module):
    """LayerNorm over the channels of a (B, C, H, W) map (ViTDet / ConvNeXt style)."""

    def __init__(self, channels: int, eps: float = 1e-6) -> None:
        super().__init__()
        self.norm = nn.LayerNorm(channels, eps=eps)

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        return self.norm(features.permute(0, 2, 3, 1)).permute(0, 3, 1, 2)


def _projection(in_channels: int, out_channels: int) -> nn.Sequential:
    """ViTDet's per-level output block: 1x1 conv + LN, 3x3 conv + LN."""
    return nn.Sequential(
        nn.Conv2d(in_channels, out_channels, 1, bias=False),
        LayerNorm2d(out_channels),
        nn.Conv2d(out_channels, out_channels, 3, padding=1, bias=False),
        LayerNorm2d(out_channels),
    )


class SimpleFeaturePyramid(nn.Module):
    """Patch-token grid (B, D, H/14, W/14) -> [(B, C, ceil(H/8), ceil(W/8)), (.. /16), (.. /32)] (the neck)."""

    def __init__(self, in_channels: int, out_channels: int, patch_size: int = 14) -> None:
        super().__init__()
        self.patch_size = patch_size
        self.strides = PYRAMID_STRIDES
        self.out_channels = out_channels
        half = max(in_channels // 2, 1)
        self.upsample = nn.Sequential(  # stride patch -> patch / 2
            nn.ConvTranspose2d(in_channels, half, kernel_size=2, stride=2),
            LayerNorm2d(half),
            nn.GELU(),
        )
        self.fine = _projection(half, out_channels)  # stride 8
        self.middle = _projection(in_channels, out_channels)  # stride 16
        self.coarse = _projection(in_channels, out_channels)  # stride 32

    def forward(self, tokens: tuple[torch.Tensor, tuple[int, int]]) -> list[torch.Tensor]:
        """tokens: (grid (B, D, Ht, Wt) of the padded image, (H, W) of the unpadded input), e.g. PatchTokens."""
        grid, image_size = tokens
        fine_size, middle_size, _ = output_sizes(*image_size, self.strides)
        upsampled = self.upsample(grid)  # (B, D/2, 2Ht, 2Wt) at stride patch/2
        fine = resample(upsampled, self.patch_size / 2, fine_size, 8)
        middle = resample(grid, self.patch_size, middle_size, 16)
        # ceil(ceil(H / 16) / 2) == ceil(H / 32): pooling the stride-16 grid lands on the stride-32 grid.
        coarse = F.max_pool2d(middle, kernel_size=2, stride=2, ceil_mode=True)
        return [self.fine(fine), self.middle(middle), self.coarse(coarse)]
