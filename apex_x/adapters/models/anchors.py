"""Anchor points (cell centres) of the dense prediction levels and ltrb box decoding."""

from __future__ import annotations

from collections.abc import Sequence

import torch


def make_anchor_points(
    sizes: Sequence[tuple[int, int]], strides: Sequence[int], device: torch.device | str = "cpu"
) -> tuple[torch.Tensor, torch.Tensor]:
    """Level sizes [(H_i, W_i)] and strides -> anchor points (A, 2) xy in input pixels and strides (A,).

    Order: level-major, then row-major, matching `heads.flatten_levels`.
    """
    points: list[torch.Tensor] = []
    stride_values: list[torch.Tensor] = []
    for (height, width), stride in zip(sizes, strides, strict=True):
        ys = (torch.arange(height, device=device, dtype=torch.float32) + 0.5) * stride
        xs = (torch.arange(width, device=device, dtype=torch.float32) + 0.5) * stride
        grid_y, grid_x = torch.meshgrid(ys, xs, indexing="ij")
        points.append(torch.stack([grid_x.reshape(-1), grid_y.reshape(-1)], dim=1))
        stride_values.append(torch.full((height * width,), float(stride), device=device))
    return torch.cat(points), torch.cat(stride_values)


def decode_ltrb(anchor_points: torch.Tensor, ltrb: torch.Tensor) -> torch.Tensor:
    """anchor points (A, 2) and distances (B, A, 4) -> boxes (B, A, 4) xyxy."""
    left_top = anchor_points - ltrb[..., :2]
    right_bottom = anchor_points + ltrb[..., 2:]
    return torch.cat([left_top, right_bottom], dim=-1)
