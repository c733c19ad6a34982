"""Exact polygons of a binary mask along pixel edges (pycocotools rasterises them back to the same pixels)."""

from __future__ import annotations

import numpy as np

# Directions in image coordinates (x right, y down); walking a boundary keeps the region on the right.
_RIGHT_TURN = {(1, 0): (0, 1), (0, 1): (-1, 0), (-1, 0): (0, -1), (0, -1): (1, 0)}


def _boundary_edges(mask: np.ndarray) -> dict[tuple[int, int], list[tuple[int, int]]]:
    """Directed unit edges (start corner -> directions) of the region's boundary, region on the right."""
    padded = np.pad(mask.astype(bool), 1)
    inside = padded[1:-1, 1:-1]
    edges: dict[tuple[int, int], list[tuple[int, int]]] = {}
    sides = (
        (padded[:-2, 1:-1], (0, 0), (1, 0)),  # pixel above is outside: top edge, going +x
        (padded[1:-1, 2:], (1, 0), (0, 1)),  # pixel to the right is outside: right edge, going +y
        (padded[2:, 1:-1], (1, 1), (-1, 0)),  # pixel below is outside: bottom edge, going -x
        (padded[1:-1, :-2], (0, 1), (0, -1)),  # pixel to the left is outside: left edge, going -y
    )
    for neighbour, (cx, cy), direction in sides:
        ys, xs = np.nonzero(inside & ~neighbour)
        for x, y in zip((xs + cx).tolist(), (ys + cy).tolist(), strict=True):
            edges.setdefault((x, y), []).append(direction)
    return edges


def _signed_area(points: list[tuple[int, int]]) -> float:
    total = 0
    for (x0, y0), (x1, y1) in zip(points, points[1:] + points[:1], strict=True):
        total += x0 * y1 - x1 * y0
    return total / 2.0


def mask_to_polygons(mask: np.ndarray) -> tuple[list[list[float]], bool]:
    """(H, W) mask -> (polygons as flat [x1, y1, ...] lists along pixel edges, has_holes).

    Diagonally touching pixels give separate polygons (4-connectivity). Holes cannot be written as COCO
    polygons; they are reported through `has_holes` (their loops are left out).
    """
    edges = _boundary_edges(mask)
    polygons: list[list[float]] = []
    has_holes = False
    while edges:
        start = next(iter(edges))
        corner = start
        loop: list[tuple[int, int]] = []
        first: tuple[int, int] | None = None
        previous: tuple[int, int] | None = None
        while True:
            outgoing = edges[corner]
            if len(outgoing) > 1 and previous is not None and _RIGHT_TURN[previous] in outgoing:
                direction = _RIGHT_TURN[previous]  # a saddle: turn towards the region (4-connectivity)
            else:
                direction = outgoing[0]
            outgoing.remove(direction)
            if not outgoing:
                del edges[corner]
            if direction != previous:
                loop.append(corner)
            first = first or direction
            previous = direction
            corner = (corner[0] + direction[0], corner[1] + direction[1])
            if corner == start:
                break
        if previous == first and len(loop) > 1:
            loop = loop[1:]  # the start vertex lies in the middle of a straight run
        if _signed_area(loop) > 0:
            polygons.append([float(value) for point in loop for value in point])
        else:
            has_holes = True
    return polygons, has_holes
