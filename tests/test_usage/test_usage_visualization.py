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


def _many_detections(count: int, size: int = 400) -> Detections:
    """`count` small boxes on a grid over a size x size image, scores rising with the index."""
    boxes = [[(i % 6) * 60 + 10.0, (i // 6) * 60 + 30.0, (i % 6) * 60 + 50.0, (i // 6) * 60 + 70.0] for i in range(count)]
    return Detections(boxes=torch.tensor(boxes), scores=torch.linspace(0.3, 0.9, count), labels=torch.zeros(count, dtype=torch.long),
                      masks=torch.zeros((count, size, size), dtype=torch.bool))


def test_labels_are_capped_to_the_highest_scores_and_never_overlap() -> None:
    from PIL import ImageDraw

    from apex_x.adapters.visualization import MAX_LABELS, font, label_font_size, label_layout

    found = _many_detections(30)
    draw = ImageDraw.Draw(Image.new("RGB", (400, 400)))
    placed = label_layout(draw, found, ["thing"], font(label_font_size(400, 400)), 400, 400, max_labels=5)
    assert sorted(index for index, _, _ in placed) == [25, 26, 27, 28, 29]  # the 5 highest scores
    assert placed[0][1] == "thing 0.90"
    everything = label_layout(draw, found, ["thing"], font(12), 400, 400, max_labels=None)
    assert len(label_layout(draw, found, ["thing"], font(12), 400, 400)) == min(MAX_LABELS, len(everything)) == 20
    rects = [rect for _, _, rect in everything]
    assert not any(a[0] < b[2] and b[0] < a[2] and a[1] < b[3] and b[1] < a[3]
                   for i, a in enumerate(rects) for b in rects[i + 1:])  # no tag covers another
    # Two detections on the same spot: the second tag moves inside the box instead of covering the first.
    same = Detections(torch.tensor([[100.0, 100, 200, 200]] * 2), torch.tensor([0.9, 0.8]), torch.zeros(2, dtype=torch.long),
                      torch.zeros((2, 400, 400), dtype=torch.bool))
    (_, _, first), (_, _, second) = label_layout(draw, same, ["thing"], font(12), 400, 400)
    assert first[3] <= 100 and second[1] == 100  # above the box, then inside its top edge


def test_the_label_size_follows_the_image_with_a_minimum() -> None:
    from apex_x.adapters.visualization import MAX_FONT, MIN_FONT, label_font_size

    assert label_font_size(64, 80) == MIN_FONT == 10
    assert label_font_size(640, 480) == 15 and label_font_size(1280, 960) == 30
    assert label_font_size(8000, 6000) == MAX_FONT


def test_labels_beyond_the_cap_are_not_drawn() -> None:
    image = np.zeros((400, 400, 3), dtype=np.uint8)
    found = _many_detections(30)
    capped = np.asarray(draw_detections(image, found, ["thing"], max_labels=2, show_boxes=False))
    uncapped = np.asarray(draw_detections(image, found, ["thing"], max_labels=None, show_boxes=False))
    color = np.asarray(class_color(0))
    tags = lambda picture: int((picture == color).all(axis=-1).sum())  # noqa: E731 - tag fill pixels
    assert 0 < tags(capped) < tags(uncapped) / 5


def test_the_prediction_grid_blends_masks_and_puts_truth_beside_predictions(tmp_path) -> None:
    from apex_x.adapters.reports.prediction_grid import CELL, PillowPreviewRenderer
    from apex_x.domain.types import PreviewSample

    image = torch.full((32, 48, 3), 100, dtype=torch.uint8)
    found = Detections(torch.tensor([[8.0, 8, 24, 24]]), torch.tensor([0.8]), torch.tensor([1]),
                       torch.zeros((1, 32, 48), dtype=torch.bool))
    found.masks[0, 8:24, 8:24] = True
    truth = Detections(found.boxes.clone(), torch.ones(1), torch.tensor([1]), found.masks.clone())
    samples = [PreviewSample(i, f"{i}.png", image, found, truth) for i in range(3)]
    renderer = PillowPreviewRenderer()
    panels = renderer.panels(samples, ["a", "b"])
    height = round(32 * CELL / 48)  # the longer side enlarged to CELL
    caption = panels[0].shape[0] - height
    assert panels[0].shape == (height + caption, 2 * CELL + 4, 3) and 15 <= caption <= 30
    predicted = panels[0][caption:, CELL + 4:].numpy()
    expected = np.rint(100 * 0.55 + np.asarray(class_color(1)) * 0.45)
    assert np.allclose(predicted[16 * 20 // 3, 16 * 20 // 3], expected, atol=1)  # inside the mask, alpha blend
    assert (predicted[height - 5, CELL - 5] == 100).all()  # outside: the image itself
    path = renderer.write_grid(panels, str(tmp_path / "plots" / "val_predictions.png"), "title")
    with Image.open(path) as grid:  # 3 panels: 2 columns, 2 rows, 8 px gaps, 30 px title
        assert grid.size == (2 * (2 * CELL + 4 + 8) + 8, 30 + 2 * (panels[0].shape[0] + 8) + 8)


def test_overlapping_masks_blend_once_with_the_highest_score() -> None:
    image = np.full((40, 40, 3), 100, dtype=np.uint8)
    masks = torch.zeros((3, 40, 40), dtype=torch.bool)
    masks[:, 10:30, 10:30] = True  # three detections on one spot
    found = Detections(torch.tensor([[10.0, 10, 30, 30]] * 3), torch.tensor([0.5, 0.9, 0.7]), torch.tensor([0, 1, 2]), masks)
    overlay = np.asarray(draw_detections(image, found, ["a", "b", "c"], show_boxes=False, show_labels=False))
    expected = np.rint(100 * 0.55 + np.asarray(class_color(1)) * 0.45)  # once, in the 0.9 detection's colour
    assert np.allclose(overlay[20, 20], expected, atol=1)


def test_a_long_file_name_is_shortened_in_the_middle_and_the_counts_kept() -> None:
    from apex_x.adapters.reports.prediction_grid import _CAPTION_FONT, _captioned, fitted_caption

    name = "camera_07/" + "x" * 120 + "_frame_000123.jpg"
    counts = "12 predicted, best 8 drawn"
    text = fitted_caption(name, counts, 60, len)  # one unit per character
    assert len(text) <= 60 and text.endswith(": " + counts) and "..." in text
    assert text.startswith("camera_07/") and text.split(":")[0].endswith("000123.jpg")
    assert fitted_caption("a.png", counts, 60, len) == "a.png: " + counts  # short names untouched

    out = _captioned(Image.new("RGB", (200, 100), (255, 255, 255)), name, counts)
    assert out.size == (200, 100 + _CAPTION_FONT + 8)
    strip = np.asarray(out)[: _CAPTION_FONT + 8]
    text_columns = np.flatnonzero((strip < 100).all(axis=2).any(axis=0))
    assert text_columns.size and text_columns.max() < 200 - 2  # the caption is drawn and fits the panel
