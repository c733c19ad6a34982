"""Overlay drawing: masks blended in the class colour, boxes outlined, labels drawn, PNG written."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from apex_x.adapters.visualization import as_rgb_array, class_color, draw_detections, save_png
from apex_x.domain.types import Detections


def _one_detection(height: int = 60, width: int = 80) -> Detections:
    masks = torch.zeros((1, height, width), dtype=torch.bool)
    masks[0, 20:40, 30:60] = True
    return Detections(
        boxes=torch.tensor([[30.0, 20.0, 60.0, 40.0]]),
        scores=torch.tensor([0.87]),
        labels=torch.tensor([1]),
        masks=masks,
    )


def test_mask_is_blended_in_the_class_colour_and_background_is_untouched() -> None:
    image = np.full((60, 80, 3), 100, dtype=np.uint8)
    overlay = np.asarray(draw_detections(image, _one_detection(), ["circle", "square"], show_boxes=False, show_labels=False))
    color = np.asarray(class_color(1), dtype=np.float32)
    expected = np.rint(100 * 0.55 + color * 0.45)
    assert np.allclose(overlay[30, 45], expected, atol=1)  # inside the mask
    assert (overlay[22:38, 32:58] == overlay[30, 45]).all()  # the whole interior, uniformly
    assert (overlay[20, 30:60] == class_color(1)).all()  # outline in the full colour
    assert (overlay[:15] == 100).all() and (overlay[45:] == 100).all()  # far from the detection


def test_box_and_label_are_drawn_in_the_class_colour() -> None:
    image = np.zeros((60, 80, 3), dtype=np.uint8)
    overlay = np.asarray(draw_detections(image, _one_detection(), ["circle", "square"], show_masks=False))
    color = np.asarray(class_color(1))
    assert (overlay[40, 30:61] == color).all()  # bottom edge of the box
    assert (overlay[20:41, 60] == color).all()  # right edge
    tag = overlay[:20, 30:80]  # the label tag sits above the box
    assert (tag == color).all(axis=-1).sum() > 50
    assert ((tag != color).any(axis=-1) & (tag != 0).any(axis=-1)).sum() > 5  # text pixels of another ink


def test_no_detections_returns_the_image_unchanged() -> None:
    image = np.random.default_rng(0).integers(0, 255, (20, 30, 3), dtype=np.uint8)
    empty = Detections(torch.zeros((0, 4)), torch.zeros(0), torch.zeros(0, dtype=torch.long), torch.zeros((0, 20, 30), dtype=torch.bool))
    assert np.array_equal(np.asarray(draw_detections(image, empty, ["a"])), image)


@pytest.mark.parametrize(
    "image",
    [
        np.full((4, 5), 7, dtype=np.uint8),
        np.full((4, 5, 4), 7, dtype=np.uint8),
        torch.full((3, 4, 5), 7, dtype=torch.uint8),
        Image.new("L", (5, 4), 7),
    ],
)
def test_as_rgb_array_accepts_gray_rgba_chw_and_pil(image: object) -> None:
    array = as_rgb_array(image)  # type: ignore[arg-type]
    assert array.shape == (4, 5, 3) and array.dtype == np.uint8 and (array == 7).all()


def test_save_png_writes_a_decodable_file(tmp_path) -> None:
    picture = Image.new("RGB", (8, 6), (1, 2, 3))
    path = save_png(picture, tmp_path / "nested" / "out.png")
    with Image.open(path) as loaded:
        assert loaded.format == "PNG" and loaded.size == (8, 6) and loaded.getpixel((0, 0)) == (1, 2, 3)
    assert sorted(p.name for p in (tmp_path / "nested").iterdir()) == ["out.png"]
