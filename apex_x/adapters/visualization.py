"""Overlays of detections on images (PIL + numpy): translucent masks, boxes, class names and scores; PNG files."""

from __future__ import annotations

import os
from collections.abc import Sequence
from functools import lru_cache

import numpy as np
import torch
from PIL import Image, ImageDraw, ImageFont

from apex_x.adapters.atomic_files import atomic_write
from apex_x.domain.types import Detections

# Distinct, readable colours (RGB), one per class id modulo the palette length.
PALETTE: tuple[tuple[int, int, int], ...] = (
    (230, 25, 75), (60, 180, 75), (0, 130, 200), (245, 130, 48), (145, 30, 180),
    (70, 240, 240), (240, 50, 230), (210, 245, 60), (250, 190, 212), (0, 128, 128),
    (220, 190, 255), (170, 110, 40), (255, 225, 25), (128, 0, 0), (170, 255, 195),
    (128, 128, 0), (255, 215, 180), (0, 0, 128), (128, 128, 128), (255, 255, 255),
)  # fmt: skip


def class_color(label: int) -> tuple[int, int, int]:
    """The colour of a contiguous class id."""
    return PALETTE[int(label) % len(PALETTE)]


def as_rgb_array(image: Image.Image | np.ndarray | torch.Tensor) -> np.ndarray:
    """Any image (PIL, (H, W, 3|4|1) or (H, W) array/tensor) -> (H, W, 3) uint8 RGB array."""
    if isinstance(image, Image.Image):
        return np.asarray(image.convert("RGB"), dtype=np.uint8).copy()
    array = image.detach().cpu().numpy() if isinstance(image, torch.Tensor) else np.asarray(image)
    if array.ndim == 3 and array.shape[0] in (1, 3) and array.shape[-1] not in (1, 3, 4):
        array = np.transpose(array, (1, 2, 0))  # (C, H, W) -> (H, W, C)
    if array.ndim == 2:
        array = array[:, :, None]
    if array.ndim != 3 or array.shape[-1] not in (1, 3, 4):
        raise ValueError(f"expected an (H, W, 3) image, got shape {tuple(array.shape)}")
    if array.dtype != np.uint8:
        high = float(array.max()) if array.size else 1.0
        array = np.clip(array * (255.0 if high <= 1.0 else 1.0), 0, 255).astype(np.uint8)
    if array.shape[-1] == 1:
        array = np.repeat(array, 3, axis=2)
    return np.ascontiguousarray(array[:, :, :3])


def draw_detections(
    image: Image.Image | np.ndarray | torch.Tensor,
    detections: Detections,
    class_names: Sequence[str],
    *,
    mask_alpha: float = 0.45,
    show_masks: bool = True,
    show_boxes: bool = True,
    show_labels: bool = True,
) -> Image.Image:
    """Draws masks (filled + outline), boxes and `name score` labels; highest scores end on top."""
    canvas = as_rgb_array(image).astype(np.float32)  # (H, W, 3)
    height, width = canvas.shape[:2]
    order = np.argsort(detections.scores.detach().cpu().numpy(), kind="stable")  # low first
    labels = detections.labels.detach().cpu().numpy().astype(np.int64)
    if show_masks and detections.masks.numel() and tuple(detections.masks.shape[-2:]) == (height, width):
        masks = detections.masks.detach().cpu().numpy().astype(bool)  # (K, H, W)
        for index in order:
            mask = masks[index]
            color = np.asarray(class_color(labels[index]), dtype=np.float32)
            canvas[mask] = canvas[mask] * (1.0 - mask_alpha) + color * mask_alpha
            canvas[_outline(mask)] = color
    result = Image.fromarray(np.clip(canvas + 0.5, 0, 255).astype(np.uint8), mode="RGB")
    if not (show_boxes or show_labels) or len(detections) == 0:
        return result
    draw = ImageDraw.Draw(result)
    line = max(1, round(min(height, width) / 250))
    font = _font(max(10, min(32, round(min(height, width) / 32))))
    boxes = detections.boxes.detach().cpu().float().numpy()
    scores = detections.scores.detach().cpu().float().numpy()
    for index in order:
        x0, y0, x1, y1 = (float(v) for v in boxes[index])
        color = class_color(labels[index])
        if show_boxes:
            draw.rectangle((x0, y0, max(x0, x1), max(y0, y1)), outline=color, width=line)
        if show_labels:
            label = int(labels[index])
            name = class_names[label] if 0 <= label < len(class_names) else f"class {label}"
            _label(draw, f"{name} {scores[index]:.2f}", (x0, y0), color, font, width, height)
    return result


def save_png(image: Image.Image, path: str | os.PathLike[str]) -> str:
    """Writes a PNG atomically (adapters/atomic_files.py: parents created, a reader never sees half a file).

    Raises:
        UserError: naming the path and the reason when it cannot be written.
    """
    return atomic_write(path, lambda handle: image.save(handle, format="PNG"), what="image")


def _outline(mask: np.ndarray) -> np.ndarray:
    """Pixels of the mask with a 4-neighbour outside it (a 1-pixel inner contour)."""
    padded = np.pad(mask, 1, mode="constant", constant_values=False)
    interior = padded[:-2, 1:-1] & padded[2:, 1:-1] & padded[1:-1, :-2] & padded[1:-1, 2:]
    return mask & ~interior


@lru_cache(maxsize=8)
def _font(size: int) -> ImageFont.ImageFont | ImageFont.FreeTypeFont:
    try:
        return ImageFont.load_default(size=size)
    except (TypeError, OSError, ImportError):  # Pillow without FreeType: the fixed bitmap font
        return ImageFont.load_default()


def _label(
    draw: ImageDraw.ImageDraw,
    text: str,
    corner: tuple[float, float],
    color: tuple[int, int, int],
    font: ImageFont.ImageFont | ImageFont.FreeTypeFont,
    width: int,
    height: int,
) -> None:
    """Text on a filled tag above the box corner (inside the image), dark or light text for contrast."""
    left, top, right, bottom = draw.textbbox((0, 0), text, font=font)
    text_w, text_h = right - left + 4, bottom - top + 4
    x = min(max(0.0, corner[0]), max(0.0, width - text_w))
    y = corner[1] - text_h if corner[1] - text_h >= 0 else min(corner[1], max(0.0, height - text_h))
    draw.rectangle((x, y, x + text_w, y + text_h), fill=color)
    luminance = 0.299 * color[0] + 0.587 * color[1] + 0.114 * color[2]
    ink = (0, 0, 0) if luminance > 140 else (255, 255, 255)
    draw.text((x + 2 - left, y + 2 - top), text, fill=ink, font=font)
