"""FPN + PAN neck: fuses stride 8/16/32 backbone maps top-down then bottom-up into equal-width maps."""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn


class ConvBnAct(nn.Sequential):
    """Conv2d (no bias) + BatchNorm + SiLU; `act=False` drops the activation."""

    def __init__(
        self, in_channels: int, out_channels: int, kernel_size: int = 3, stride: int = 1, *, act: bool = True
    ) -> None:
        super().__init__(
            nn.Conv2d(in_channels, out_channels, kernel_size, stride, kernel_size // 2, bias=False),
            nn.BatchNorm2d(out_channels),
            nn.SiLU(inplace=True) if act else nn.Identity(),
        )


def upsample_to(x: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    """Nearest upsampling of x to the spatial size of `like`."""
    return F.interpolate(x, size=like.shape[-2:], mode="nearest")


def _merge_block(channels: int, depth: int) -> nn.Module:
    """One ConvBnAct (depth 1: the state-dict keys of earlier checkpoints) or `depth` of them in a row."""
    if depth == 1:
        return ConvBnAct(channels, channels, 3)
    return nn.Sequential(*(ConvBnAct(channels, channels, 3) for _ in range(depth)))


class FpnPanNeck(nn.Module):
    """Three input levels -> three output levels of `out_channels` (strides unchanged).

    Top-down (FPN): P5 = L5, P4 = conv(L4 + up(P5)), P3 = conv(L3 + up(P4)).
    Bottom-up (PAN): N3 = P3, N4 = conv(P4 + down(N3)), N5 = conv(P5 + down(N4)).
    Additions instead of concatenations keep it cheap on CPU.
    """

    def __init__(self, in_channels: Sequence[int], out_channels: int, depth: int = 1) -> None:
        """depth: 3x3 conv blocks per merge (model.neck_depth; 1 keeps one ConvBnAct per merge, as before)."""
        super().__init__()
        if len(in_channels) != 3:
            raise ValueError(f"FpnPanNeck needs 3 input levels, got {len(in_channels)}")
        self.out_channels = int(out_channels)
        self.lateral = nn.ModuleList(ConvBnAct(c, out_channels, 1) for c in in_channels)
        self.top_down = nn.ModuleList(_merge_block(out_channels, depth) for _ in range(2))
        self.downsample = nn.ModuleList(ConvBnAct(out_channels, out_channels, 3, stride=2) for _ in range(2))
        self.bottom_up = nn.ModuleList(_merge_block(out_channels, depth) for _ in range(2))

    def forward(self, features: Sequence[torch.Tensor]) -> list[torch.Tensor]:
        l3, l4, l5 = (lateral(feature) for lateral, feature in zip(self.lateral, features, strict=True))
        p5 = l5  # (B, C, H/32, W/32)
        p4 = self.top_down[0](l4 + upsample_to(p5, l4))  # (B, C, H/16, W/16)
        p3 = self.top_down[1](l3 + upsample_to(p4, l3))  # (B, C, H/8, W/8)
        n4 = self.bottom_up[0](p4 + self.downsample[0](p3))
        n5 = self.bottom_up[1](p5 + self.downsample[1](n4))
        return [p3, n4, n5]
