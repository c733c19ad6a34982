"""Patch grid + simple pyramid: any input size, exact cell geometry, padding semantics."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from apex_x.adapters.models.dinov2_backbone import Dinov2PatchGrid, load_dinov2
from apex_x.adapters.models.simple_pyramid import SimpleFeaturePyramid, interpolation_matrix, resample


@pytest.fixture(scope="module")
def patch_grid(tiny_dinov2_dir: Path) -> Dinov2PatchGrid:
    dinov2 = load_dinov2(str(tiny_dinov2_dir)).eval()
    return Dinov2PatchGrid(dinov2, patch_size=14, hidden_size=32)


@pytest.mark.parametrize("size", [(64, 80), (70, 70), (56, 56), (33, 100), (96, 160)])
def test_any_input_size_gives_ceil_sized_levels(patch_grid: Dinov2PatchGrid, size: tuple[int, int]) -> None:
    torch.manual_seed(0)
    pyramid = SimpleFeaturePyramid(32, 16, patch_size=14)
    pixels = torch.randn(2, 3, *size)
    tokens = patch_grid(pixels)
    assert tokens.grid.shape == (2, 32, math.ceil(size[0] / 14), math.ceil(size[1] / 14))
    assert tokens.image_size == size
    levels = pyramid(tokens)
    assert [tuple(level.shape) for level in levels] == [
        (2, 16, math.ceil(size[0] / stride), math.ceil(size[1] / stride)) for stride in (8, 16, 32)
    ]
    assert all(torch.isfinite(level).all() for level in levels)


def test_unaligned_input_is_zero_padded_bottom_right(patch_grid: Dinov2PatchGrid) -> None:
    torch.manual_seed(1)
    pixels = torch.randn(1, 3, 60, 50)  # -> padded to 70 x 56 (5 x 4 patches)
    padded = F.pad(pixels, (0, 6, 0, 10))
    with torch.no_grad():
        assert torch.equal(patch_grid(pixels).grid, patch_grid(padded).grid)


def test_interpolation_places_cells_by_their_pixel_centres() -> None:
    # A source whose value is the pixel x of each cell centre: resampling must return the target centres.
    source_stride, target_stride, cells = 14.0, 8.0, 10
    centres = (torch.arange(cells, dtype=torch.float64) + 0.5) * source_stride  # 7, 21, ..., 133
    matrix = interpolation_matrix(cells, source_stride, 16, target_stride, centres)
    resampled = matrix @ centres
    expected = (torch.arange(16, dtype=torch.float64) + 0.5) * target_stride  # 4, 12, ..., 124
    inside = (expected >= centres[0]) & (expected <= centres[-1])  # outside: border replicate
    assert torch.allclose(resampled[inside], expected[inside])
    assert torch.allclose(resampled[~inside], centres[0].expand(int((~inside).sum())))
    assert torch.allclose(matrix.sum(dim=1), torch.ones(16, dtype=torch.float64))


def test_resample_to_the_same_grid_is_the_identity() -> None:
    features = torch.randn(2, 4, 5, 7)
    assert resample(features, 16, (5, 7), 16) is features
    matrix = interpolation_matrix(5, 16.0, 5, 16.0, features)
    assert torch.equal(matrix, torch.eye(5))


def test_pyramid_backward_reaches_the_tokens_and_is_deterministic() -> None:
    torch.manual_seed(2)
    pyramid = SimpleFeaturePyramid(32, 16, patch_size=14)
    grid = torch.randn(2, 32, 5, 6, requires_grad=True)
    grads = []
    for _ in range(2):
        grid.grad = None
        sum(level.square().mean() for level in pyramid((grid, (64, 80)))).backward()
        grads.append(grid.grad.clone())
    assert grads[0].abs().sum() > 0 and torch.equal(grads[0], grads[1])
