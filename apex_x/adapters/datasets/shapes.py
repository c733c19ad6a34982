"""The built-in shapes dataset: filled circles, rectangles and triangles on textured backgrounds, with exact
polygon annotations (visible parts of occluded shapes traced along pixel edges), written in COCO format."""

from __future__ import annotations

import colorsys
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np
from pycocotools import mask as mask_utils

from apex_x.adapters.datasets.contours import mask_to_polygons

SHAPE_CATEGORIES: tuple[dict[str, Any], ...] = (
    {"id": 1, "name": "circle", "supercategory": "shape"},
    {"id": 2, "name": "rectangle", "supercategory": "shape"},
    {"id": 3, "name": "triangle", "supercategory": "shape"},
)
MIN_VISIBLE_FRACTION = 0.45  # an occluded shape keeps at least this share of its pixels
CIRCLE_VERTICES = 48


@dataclass
class ShapeInstance:
    """One drawn shape: its class (0-based kind), full polygon and, once the scene is done, its visible part."""

    kind: int
    polygon: list[float]  # flat [x1, y1, ...], rounded to 0.01 px
    full: np.ndarray  # (H, W) bool: the rasterised polygon
    visible: np.ndarray  # (H, W) bool: pixels not covered by later shapes
    segmentation: list[list[float]]
    colour: np.ndarray  # (3,) float32


def _rasterise(polygon: list[float], height: int, width: int) -> np.ndarray:
    return mask_utils.decode(mask_utils.frPyObjects([polygon], height, width)[0]).astype(bool)


def _polygon(kind: int, cx: float, cy: float, radius: float, rng: np.random.Generator) -> np.ndarray:
    """(V, 2) vertices of a circle (many-vertex polygon), rotated rectangle or triangle."""
    turn = rng.uniform(0.0, 2.0 * np.pi)
    if kind == 0:
        angles = np.linspace(0.0, 2.0 * np.pi, CIRCLE_VERTICES, endpoint=False) + turn
        radii = np.full(CIRCLE_VERTICES, radius)
    elif kind == 1:
        half_diag_angle = np.arctan(rng.uniform(0.45, 1.0))  # aspect ratio 0.45..1
        angles = (
            np.array([half_diag_angle, np.pi - half_diag_angle, np.pi + half_diag_angle, -half_diag_angle])
            + turn
        )
        radii = np.full(4, radius)
    else:
        angles = np.array([0.0, 2.0 * np.pi / 3, 4.0 * np.pi / 3]) + rng.uniform(-0.35, 0.35, 3) + turn
        radii = radius * rng.uniform(0.8, 1.0, 3)
    points = np.stack([cx + radii * np.cos(angles), cy + radii * np.sin(angles)], axis=1)
    return np.round(points, 2)


def _background(height: int, width: int, rng: np.random.Generator) -> np.ndarray:
    """(H, W, 3) float32: a two-colour gradient plus one of: nothing, stripes, blotches, checks."""
    ys, xs = np.mgrid[0:height, 0:width].astype(np.float32)
    angle = rng.uniform(0.0, 2.0 * np.pi)
    ramp = xs * np.cos(angle) + ys * np.sin(angle)
    ramp = (ramp - ramp.min()) / max(float(np.ptp(ramp)), 1.0)
    low, high = rng.uniform(30, 225, 3), rng.uniform(30, 225, 3)
    image = low + (high - low) * ramp[..., None]
    texture = int(rng.integers(0, 4))
    amplitude = rng.uniform(8.0, 22.0)
    if texture == 1:
        period, phase = rng.uniform(6.0, 30.0), rng.uniform(0.0, 2.0 * np.pi)
        direction = rng.uniform(0.0, np.pi)
        wave = np.sin((xs * np.cos(direction) + ys * np.sin(direction)) * 2.0 * np.pi / period + phase)
        image += amplitude * wave[..., None]
    elif texture == 2:
        grid = rng.uniform(-1.0, 1.0, (5, 5, 3)).astype(np.float32)
        gy = np.clip(ys / max(height - 1, 1) * 4.0, 0.0, 4.0)
        gx = np.clip(xs / max(width - 1, 1) * 4.0, 0.0, 4.0)
        y0, x0 = np.minimum(gy.astype(int), 3), np.minimum(gx.astype(int), 3)
        fy, fx = (gy - y0)[..., None], (gx - x0)[..., None]
        blot = (
            grid[y0, x0] * (1 - fy) * (1 - fx)
            + grid[y0 + 1, x0] * fy * (1 - fx)
            + grid[y0, x0 + 1] * (1 - fy) * fx
            + grid[y0 + 1, x0 + 1] * fy * fx
        )
        image += 2.0 * amplitude * blot
    elif texture == 3:
        cell = int(rng.integers(8, 33))
        checks = ((xs // cell + ys // cell) % 2) * 2.0 - 1.0
        image += 0.6 * amplitude * checks[..., None]
    return image.astype(np.float32)


def _colour(rng: np.random.Generator) -> np.ndarray:
    hue, saturation, value = rng.uniform(0.0, 1.0), rng.uniform(0.45, 1.0), rng.uniform(0.35, 1.0)
    return np.asarray(colorsys.hsv_to_rgb(hue, saturation, value), dtype=np.float32) * 255.0


def _distinct(
    colour: np.ndarray, region: np.ndarray, background: np.ndarray, shapes: list[ShapeInstance]
) -> bool:
    """The colour stands out from the background and from every shape it overlaps."""
    if np.abs(background[region].mean(axis=0) - colour).sum() < 90.0:
        return False
    return all(
        np.abs(other.colour - colour).sum() >= 90.0 for other in shapes if (other.visible & region).any()
    )


def _try_place(
    kind: int, shapes: list[ShapeInstance], background: np.ndarray, rng: np.random.Generator
) -> ShapeInstance | None:
    height, width = background.shape[:2]
    side = min(height, width)
    radius = float(np.exp(rng.uniform(np.log(0.07 * side), np.log(0.21 * side))))
    cx = rng.uniform(radius + 1.0, width - radius - 1.0)
    cy = rng.uniform(radius + 1.0, height - radius - 1.0)
    polygon = _polygon(kind, cx, cy, radius, rng).reshape(-1).tolist()
    full = _rasterise(polygon, height, width)
    colour = _colour(rng)
    if full.sum() < 16 or not _distinct(colour, full, background, shapes):
        return None
    updates: list[tuple[ShapeInstance, np.ndarray, list[list[float]]]] = []
    for other in shapes:
        if not (other.visible & full).any():
            continue
        visible = other.visible & ~full
        if visible.sum() < MIN_VISIBLE_FRACTION * other.full.sum():
            return None
        polygons, has_holes = mask_to_polygons(visible)
        if has_holes or not polygons:
            return None
        updates.append((other, visible, polygons))
    for other, visible, polygons in updates:
        other.visible, other.segmentation = visible, polygons
    return ShapeInstance(kind, polygon, full, full.copy(), [polygon], colour)


def render_scene(
    height: int, width: int, rng: np.random.Generator, *, num_kinds: int = 3, max_shapes: int = 6
) -> tuple[np.ndarray, list[ShapeInstance]]:
    """One image (H, W, 3) uint8 and its shapes in drawing order (later shapes occlude earlier ones)."""
    background = _background(height, width, rng)
    wanted = int(rng.integers(1, max_shapes + 1))
    shapes: list[ShapeInstance] = []
    for _ in range(wanted):
        kind = int(rng.integers(0, num_kinds))
        for _attempt in range(25):
            placed = _try_place(kind, shapes, background, rng)
            if placed is not None:
                shapes.append(placed)
                break
    image = background.copy()
    ys, xs = np.mgrid[0:height, 0:width].astype(np.float32)
    for shape in shapes:
        centre = np.asarray(shape.polygon, dtype=np.float32).reshape(-1, 2).mean(axis=0)
        angle = rng.uniform(0.0, 2.0 * np.pi)
        along = (xs - centre[0]) * np.cos(angle) + (ys - centre[1]) * np.sin(angle)
        shade = along / max(height, width) * rng.uniform(-40.0, 40.0)
        image[shape.full] = shape.colour + shade[shape.full][:, None]
    noise = rng.uniform(0.0, 4.0)
    if noise > 1.0:
        image += rng.normal(0.0, noise, image.shape).astype(np.float32)
    return np.clip(np.rint(image), 0, 255).astype(np.uint8), shapes


def shape_annotation(
    shape: ShapeInstance, *, annotation_id: int, image_id: int, category_id: int
) -> dict[str, Any]:
    """COCO annotation: polygons of the visible part, exact bbox of those polygons, pixel area."""
    points = np.concatenate([np.asarray(p, dtype=np.float64).reshape(-1, 2) for p in shape.segmentation])
    x0, y0 = points.min(axis=0)
    x1, y1 = points.max(axis=0)
    return {
        "id": annotation_id,
        "image_id": image_id,
        "category_id": category_id,
        "segmentation": [[round(float(v), 2) for v in polygon] for polygon in shape.segmentation],
        "area": int(shape.visible.sum()),
        "bbox": [
            round(float(x0), 2),
            round(float(y0), 2),
            round(float(x1 - x0), 2),
            round(float(y1 - y0), 2),
        ],
        "iscrowd": 0,
    }


SPLIT_CODES = {"train": 0, "val": 1}


def scene_rng(seed: int, split: str, index: int) -> np.random.Generator:
    """The generator of one image: same (seed, split, index), same image, on any machine."""
    return np.random.default_rng([int(seed), SPLIT_CODES[split], int(index)])


def render_split(
    split: str, count: int, height: int, width: int, seed: int, *, num_kinds: int = 3
) -> Iterator[tuple[int, np.ndarray, list[ShapeInstance]]]:
    """(index, image, shapes) for each image of a split, deterministic per (seed, split, index)."""
    for index in range(count):
        image, shapes = render_scene(height, width, scene_rng(seed, split, index), num_kinds=num_kinds)
        yield index, image, shapes
