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


MAX_LABELS = 20  # text tags per image: the highest scores; the other detections keep their mask and box
MIN_FONT = 10  # pixels; the label size is 1/32 of the image's shorter side, at least this, at most MAX_FONT
MAX_FONT = 32


def label_font_size(height: int, width: int) -> int:
    """The label text size for an image: proportional to its shorter side (1/32), within [MIN_FONT, MAX_FONT]."""
    return max(MIN_FONT, min(MAX_FONT, round(min(height, width) / 32)))


def draw_detections(
    image: Image.Image | np.ndarray | torch.Tensor,
    detections: Detections,
    class_names: Sequence[str],
    *,
    mask_alpha: float = 0.45,
    show_masks: bool = True,
    show_boxes: bool = True,
    show_labels: bool = True,
    show_scores: bool = True,
    max_labels: int | None = MAX_LABELS,
    font_size: int | None = None,
) -> Image.Image:
    """Draws masks (blended at `mask_alpha` in the class colour of the highest-scoring mask over each pixel,
    each outlined in the full colour), boxes and `name score` labels; highest scores end on top.

    Labels stay readable: their size follows the image (label_font_size, or `font_size`), only the `max_labels`
    highest scores get one (None: all), and a tag never covers another: it goes above the box, else inside its top,
    else below it, else it is left out (the box and mask are still drawn)."""
    canvas = as_rgb_array(image).astype(np.float32)  # (H, W, 3)
    height, width = canvas.shape[:2]
    order = np.argsort(detections.scores.detach().cpu().numpy(), kind="stable")  # low first
    labels = detections.labels.detach().cpu().numpy().astype(np.int64)
    if show_masks and detections.masks.numel() and tuple(detections.masks.shape[-2:]) == (height, width):
        masks = detections.masks.detach().cpu().numpy().astype(bool)  # (K, H, W)
        # Each pixel is blended once, with the colour of the highest-scoring mask over it: overlapping masks do
        # not pile up into an opaque colour that hides the image.
        owner = np.full((height, width), -1, dtype=np.int64)
        for index in order:  # low scores first: the highest ends as the owner
            owner[masks[index]] = index
        covered = owner >= 0
        colors = np.asarray([class_color(label) for label in labels], dtype=np.float32).reshape(-1, 3)
        canvas[covered] = canvas[covered] * (1.0 - mask_alpha) + colors[owner[covered]] * mask_alpha
        for index in order:
            canvas[_outline(masks[index])] = colors[index]
    result = Image.fromarray(np.clip(canvas + 0.5, 0, 255).astype(np.uint8), mode="RGB")
    if not (show_boxes or show_labels) or len(detections) == 0:
        return result
    draw = ImageDraw.Draw(result)
    line = max(1, round(min(height, width) / 250))
    boxes = detections.boxes.detach().cpu().float().numpy()
    if show_boxes:
        for index in order:
            x0, y0, x1, y1 = (float(v) for v in boxes[index])
            draw.rectangle((x0, y0, max(x0, x1), max(y0, y1)), outline=class_color(labels[index]), width=line)
    if show_labels:
        typeface = font(font_size or label_font_size(height, width))
        for index, text, rect in label_layout(draw, detections, class_names, typeface, width, height,
                                              max_labels=max_labels, show_scores=show_scores):
            _tag(draw, text, rect, class_color(labels[index]), typeface)
    return result


def label_layout(
    draw: ImageDraw.ImageDraw,
    detections: Detections,
    class_names: Sequence[str],
    font: ImageFont.ImageFont | ImageFont.FreeTypeFont,
    width: int,
    height: int,
    *,
    max_labels: int | None = MAX_LABELS,
    show_scores: bool = True,
) -> list[tuple[int, str, tuple[float, float, float, float]]]:
    """(detection index, text, tag rectangle) of the labels to draw: the `max_labels` highest scores, each tag above
    its box, else inside its top edge, else below it (inside the image), never over an earlier tag."""
    scores = detections.scores.detach().cpu().float().numpy()
    labels = detections.labels.detach().cpu().numpy().astype(np.int64)
    boxes = detections.boxes.detach().cpu().float().numpy()
    ranked = np.argsort(-scores, kind="stable")
    if max_labels is not None:
        ranked = ranked[:max(0, max_labels)]
    placed: list[tuple[int, str, tuple[float, float, float, float]]] = []
    for index in ranked:
        label = int(labels[index])
        name = class_names[label] if 0 <= label < len(class_names) else f"class {label}"
        text = f"{name} {scores[index]:.2f}" if show_scores else name
        left, top, right, bottom = draw.textbbox((0, 0), text, font=font)
        text_w, text_h = right - left + 4, bottom - top + 4
        x0, y0, _, y1 = (float(v) for v in boxes[index])
        x = min(max(0.0, x0), max(0.0, width - text_w))
        for y in (y0 - text_h, y0, y1):
            y = min(max(0.0, y), max(0.0, height - text_h))
            rect = (x, y, x + text_w, y + text_h)
            if not any(_overlap(rect, other) for _, _, other in placed):
                placed.append((int(index), text, rect))
                break
    return placed


def _overlap(a: tuple[float, float, float, float], b: tuple[float, float, float, float]) -> bool:
    return a[0] < b[2] and b[0] < a[2] and a[1] < b[3] and b[1] < a[3]


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
def font(size: int) -> ImageFont.ImageFont | ImageFont.FreeTypeFont:
    try:
        return ImageFont.load_default(size=size)
    except (TypeError, OSError, ImportError):  # Pillow without FreeType: the fixed bitmap font
        return ImageFont.load_default()


def _tag(
    draw: ImageDraw.ImageDraw,
    text: str,
    rect: tuple[float, float, float, float],
    color: tuple[int, int, int],
    font: ImageFont.ImageFont | ImageFont.FreeTypeFont,
) -> None:
    """Text on a filled tag in the class colour, dark or light text for contrast."""
    left, top, _, _ = draw.textbbox((0, 0), text, font=font)
    x, y = rect[0], rect[1]
    draw.rectangle(rect, fill=color)
    luminance = 0.299 * color[0] + 0.587 * color[1] + 0.114 * color[2]
    ink = (0, 0, 0) if luminance > 140 else (255, 255, 255)
    draw.text((x + 2 - left, y + 2 - top), text, fill=ink, font=font)
