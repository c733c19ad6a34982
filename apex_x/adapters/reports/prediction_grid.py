"""PillowPreviewRenderer (PreviewRenderer port): val images with their predictions, ground truth beside them, as
panels (for the trackers) and one grid picture (plots/val_predictions.png, eval_val_predictions.png).

Each image is resized so that its longer side is CELL pixels (small val images are enlarged, so labels stay
readable), then drawn by visualization.draw_detections: masks blended at alpha 0.45 with outlines, boxes, and at
most PREVIEW_LABELS text tags per image (the highest scores; the other detections keep mask and box)."""

from __future__ import annotations

import io
import math
from collections.abc import Callable, Sequence

import numpy as np
import torch
import torch.nn.functional as functional
from PIL import Image, ImageDraw

from apex_x.adapters.atomic_files import write_run_file
from apex_x.adapters.visualization import draw_detections, font
from apex_x.domain.types import Detections, PreviewSample

PREDICTIONS_PLOT = "val_predictions.png"
CELL = 320  # pixels: the longer side of each drawn image
PREVIEW_LABELS = 10  # text tags per image in the grid
_CAPTION_FONT = 13
_BACKGROUND = (255, 255, 255)


def _resized(sample: PreviewSample) -> tuple[np.ndarray, Detections, Detections | None]:
    """The sample's image and detections at CELL pixels on the longer side."""
    height, width = (int(v) for v in sample.image.shape[:2])
    factor = CELL / max(height, width)
    size = (max(1, round(height * factor)), max(1, round(width * factor)))
    mode = "nearest" if factor >= 2 else "bilinear"  # small images enlarged show their true pixels
    image = functional.interpolate(sample.image.permute(2, 0, 1)[None].float(), size=size, mode=mode)[0].round().clamp(0, 255).byte().permute(1, 2, 0).numpy()

    rows = ((torch.arange(size[0]) + 0.5) * height / size[0]).long().clamp(0, height - 1)  # nearest, by index
    columns = ((torch.arange(size[1]) + 0.5) * width / size[1]).long().clamp(0, width - 1)

    def scale(found: Detections) -> Detections:
        masks = found.masks
        masks = (masks[:, rows][:, :, columns].bool() if masks.shape[0] and tuple(masks.shape[-2:]) == (height, width)
                 else torch.zeros((len(found), *size), dtype=torch.bool))
        return Detections(found.boxes.float() * torch.tensor([size[1] / width, size[0] / height] * 2),
                          found.scores, found.labels, masks)

    return image, scale(sample.detections), scale(sample.truth) if sample.truth is not None else None


def fitted_caption(name: str, counts: str, room: float, measure: Callable[[str], float]) -> str:
    """"name: counts" within `room` (pixels, as `measure` gives them): a long name loses its middle ("..."),
    the counts are always kept whole."""
    text = f"{name}: {counts}"
    if measure(text) <= room:
        return text
    head, tail = name[: len(name) // 2], name[len(name) // 2:]
    while (head or tail) and measure(f"{head}...{tail}: {counts}") > room:
        head, tail = (head[:-1], tail) if len(head) >= len(tail) else (head, tail[1:])
    return f"{head}...{tail}: {counts}"


def _captioned(picture: Image.Image, name: str, counts: str) -> Image.Image:
    """The picture under a one-line caption strip "name: counts"."""
    typeface = font(_CAPTION_FONT)
    strip = _CAPTION_FONT + 8
    out = Image.new("RGB", (picture.width, picture.height + strip), _BACKGROUND)
    draw = ImageDraw.Draw(out)
    text = fitted_caption(name, counts, picture.width - 6, lambda text: draw.textlength(text, font=typeface))
    draw.text((3, 3), text, fill=(0, 0, 0), font=typeface)
    out.paste(picture, (0, strip))
    return out


class PillowPreviewRenderer:
    """PreviewRenderer adapter: Pillow drawing (visualization.py), grid written atomically as PNG."""

    def panel(self, sample: PreviewSample, class_names: Sequence[str]) -> Image.Image:
        """Ground truth (when known) left, predictions right, each with a caption naming the file and counts."""
        image, found, truth = _resized(sample)
        total = sample.confident if sample.confident is not None else len(found)
        shown = f"{total} predicted" + (f", best {len(found)} drawn" if total > len(found) else "")
        predicted = _captioned(draw_detections(image, found, class_names, max_labels=PREVIEW_LABELS),
                               sample.file_name, shown)
        if truth is None:
            return predicted
        true = _captioned(draw_detections(image, truth, class_names, max_labels=PREVIEW_LABELS, show_scores=False),
                          sample.file_name, f"{len(truth)} true")
        out = Image.new("RGB", (true.width + predicted.width + 4, max(true.height, predicted.height)), _BACKGROUND)
        out.paste(true, (0, 0))
        out.paste(predicted, (true.width + 4, 0))
        return out

    def panels(self, samples: Sequence[PreviewSample], class_names: Sequence[str]) -> list[torch.Tensor]:
        return [torch.from_numpy(np.asarray(self.panel(sample, class_names)).copy()) for sample in samples]

    def grid(self, panels: Sequence[torch.Tensor], title: str) -> Image.Image:
        """The panels in rows (about as many rows as the grid is wide in images), under a title strip."""
        pictures = [Image.fromarray(panel.numpy()) for panel in panels]
        gap = 8
        typeface = font(16)
        if not pictures:
            out = Image.new("RGB", (640, 80), _BACKGROUND)
            ImageDraw.Draw(out).text((8, 8), f"{title}\nno val image with ground truth to show", fill=(0, 0, 0),
                                     font=typeface)
            return out
        cell_w = max(picture.width for picture in pictures)
        cell_h = max(picture.height for picture in pictures)
        columns = max(1, math.ceil(math.sqrt(len(pictures) * cell_h / cell_w)))
        rows = math.ceil(len(pictures) / columns)
        header = 30
        out = Image.new("RGB", (columns * (cell_w + gap) + gap, header + rows * (cell_h + gap) + gap), _BACKGROUND)
        ImageDraw.Draw(out).text((gap, 6), f"{title}; labels: the {PREVIEW_LABELS} highest scores per image",
                                 fill=(0, 0, 0), font=typeface)
        for position, picture in enumerate(pictures):
            row, column = divmod(position, columns)
            out.paste(picture, (gap + column * (cell_w + gap), header + row * (cell_h + gap)))
        return out

    def write_grid(self, panels: Sequence[torch.Tensor], path: str, title: str) -> str:
        buffer = io.BytesIO()
        self.grid(panels, title).save(buffer, format="PNG")
        data = buffer.getvalue()
        write_run_file(path, lambda handle: handle.write(data), what="plot")
        return str(path)
