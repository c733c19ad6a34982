"""Letterbox, scale jitter, horizontal flip and HSV jitter with boxes and masks kept consistent.

Randomness comes from one generator per (seed, epoch, index), so a sample is the same whatever the
worker count or process. Masks come out at the model's mask resolution (input // mask_stride), uint8.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
from PIL import Image
from pycocotools import mask as mask_utils

from apex_x.adapters.datasets.mask_resample import resample_crops
from apex_x.adapters.datasets.segmentation import rle_crop
from apex_x.domain.config import ApexConfig
from apex_x.domain.input_size import INPUT_SIZE_MULTIPLE
from apex_x.domain.registry import MODEL_PROFILES
from apex_x.domain.types import ImageMeta

PAD_VALUE = 114
MAX_BASE_REDUCTION = 32  # the most a large image is shrunk when loaded (TransformSettings.base_size)
MIN_BOX_SIDE = 1.0  # instances narrower than this (input pixels) after the transform are dropped


@dataclass
class RawSample:
    """One image in original pixels, before any transform."""

    image: np.ndarray  # (h, w, 3) uint8; may be smaller than the original (JPEG draft decoding)
    orig_width: int
    orig_height: int
    boxes: np.ndarray  # (N, 4) float32 xyxy in original pixels
    labels: np.ndarray  # (N,) int64 contiguous ids
    crowd: np.ndarray  # (N,) bool
    rles: list[dict[str, Any]]  # N compressed RLEs of size mask_size (default (orig_height, orig_width))
    image_id: int
    file_name: str
    mask_size: tuple[int, int] | None = None  # (height, width) of the RLEs when smaller than the original

    @property
    def mask_frame(self) -> tuple[int, int, float, float]:
        """(height, width, fx, fy) of the RLEs: mask pixels = original pixels * (fx, fy)."""
        height, width = self.mask_size if self.mask_size is not None else (self.orig_height, self.orig_width)
        return height, width, width / self.orig_width, height / self.orig_height


@dataclass
class Sample:
    """One network input with its targets."""

    image: np.ndarray  # (3, H, W) uint8
    boxes: np.ndarray  # (N, 4) float32 xyxy in input pixels
    labels: np.ndarray  # (N,) int64
    crowd: np.ndarray  # (N,) bool
    masks: np.ndarray  # (N, H // s, W // s) uint8 {0, 1}
    meta: ImageMeta


@dataclass(frozen=True)
class TransformSettings:
    """What the transforms need from the config."""

    input_height: int
    input_width: int
    mask_stride: int
    hflip_prob: float
    scale_jitter: tuple[float, float]
    hsv_jitter: tuple[float, float, float]
    max_instances: int
    high_bit_depth: str = "full_range"  # data.high_bit_depth_scaling
    max_zoom: float = 1.0  # the most the real-data augmentation enlarges (affine zoom x multi_scale high)
    size_multiple: int = INPUT_SIZE_MULTIPLE  # multi-scale sizes: the profile's rule (ModelProfile.input_size_multiple)

    @classmethod
    def from_config(cls, config: ApexConfig) -> TransformSettings:
        return cls(
            input_height=config.model.input_height,
            input_width=config.model.input_width,
            mask_stride=config.model.mask_stride,
            hflip_prob=config.data.hflip_prob,
            scale_jitter=(float(config.data.scale_jitter[0]), float(config.data.scale_jitter[1])),
            hsv_jitter=(
                float(config.data.hsv_jitter[0]),
                float(config.data.hsv_jitter[1]),
                float(config.data.hsv_jitter[2]),
            ),
            max_instances=config.data.max_instances,
            high_bit_depth=config.data.high_bit_depth_scaling,
            max_zoom=_max_zoom(config),
            size_multiple=MODEL_PROFILES.get(config.model.profile).input_size_multiple,
        )

    def decode_size(self, orig_width: int, orig_height: int, *, augment: bool) -> tuple[int, int]:
        """Smallest decoded (width, height) that loses nothing at the largest scale the transform may use."""
        scale = min(self.input_width / orig_width, self.input_height / orig_height)
        if augment:
            scale *= self.scale_jitter[1] * self.max_zoom
        return int(np.ceil(orig_width * scale)), int(np.ceil(orig_height * scale))

    def base_size(self, orig_width: int, orig_height: int, *, augment: bool) -> tuple[int, int]:
        """(width, height) an image is loaded at, pixels and masks: the original divided by the largest power of
        two (at most MAX_BASE_REDUCTION) that keeps it at least decode_size (Pillow's JPEG draft rule, so a JPEG
        decodes straight to it; other formats are reduced by box averaging). Rounded up, as libjpeg does."""
        want_w, want_h = self.decode_size(orig_width, orig_height, augment=augment)
        ratio = min(orig_width // max(want_w, 1), orig_height // max(want_h, 1))
        factor = 1
        while factor * 2 <= min(ratio, MAX_BASE_REDUCTION):
            factor *= 2
        return -(-orig_width // factor), -(-orig_height // factor)


def _max_zoom(config: ApexConfig) -> float:
    """The largest enlargement any stage's affine zoom and multi-scale may apply (decoders keep that detail)."""
    data, zoom = config.data, 1.0
    for augment in [data, *(stage.augment for stage in config.train.stages if stage.augment is not None)]:
        affine = augment.affine_scale if augment.affine_scale is not None else data.affine_scale
        multi = augment.multi_scale if augment.multi_scale is not None else data.multi_scale
        zoom = max(zoom, (1.0 + affine) * max(1.0, multi[1] if multi else 1.0))
    return zoom


@dataclass(frozen=True)
class Placement:
    """input = original * (scale_x, scale_y) + (offset_x, offset_y), then mirrored when flip."""

    scale: float
    resized_width: int
    resized_height: int
    offset_x: int
    offset_y: int
    flip: bool


def sample_rng(seed: int, epoch: int, index: int) -> np.random.Generator:
    return np.random.default_rng([int(seed), int(epoch), int(index)])


def choose_placement(
    orig_width: int, orig_height: int, settings: TransformSettings, rng: np.random.Generator | None
) -> Placement:
    """Letterbox scale (times a jitter when augmenting), a random or centred offset, and a flip."""
    width, height = settings.input_width, settings.input_height
    scale = min(width / orig_width, height / orig_height)
    flip = False
    if rng is not None:
        flip = bool(rng.random() < settings.hflip_prob)
        low, high = settings.scale_jitter
        scale *= float(rng.uniform(low, high)) if high > low else low
    resized_w = max(1, int(round(orig_width * scale)))
    resized_h = max(1, int(round(orig_height * scale)))
    if rng is None:
        offset_x, offset_y = (width - resized_w) // 2, (height - resized_h) // 2
    else:
        offset_x = _random_offset(width, resized_w, rng)
        offset_y = _random_offset(height, resized_h, rng)
    return Placement(scale, resized_w, resized_h, offset_x, offset_y, flip)


def _random_offset(canvas: int, size: int, rng: np.random.Generator) -> int:
    if size <= canvas:
        return int(rng.integers(0, canvas - size + 1))
    return -int(rng.integers(0, size - canvas + 1))


def place_image(image: np.ndarray, placement: Placement, width: int, height: int) -> np.ndarray:
    """Resize (antialiased bilinear) and paste into a grey (height, width) canvas; mirror when flip."""
    return np.ascontiguousarray(place_planes(image, placement, width, height).transpose(1, 2, 0))


def _visible_resize(image: np.ndarray, placement: Placement, width: int, height: int
                    ) -> tuple[np.ndarray, int, int]:
    """The part of the resized image that lands on the canvas, (h, w, 3) uint8, and its canvas (x0, y0).
    (Resizing only that part with PIL's `box` is not bit-identical to resize-then-crop, so the whole is resized.)"""
    ox, oy = placement.offset_x, placement.offset_y
    rw, rh = placement.resized_width, placement.resized_height
    x0, y0 = max(ox, 0), max(oy, 0)
    x1, y1 = min(ox + rw, width), min(oy + rh, height)
    if x1 <= x0 or y1 <= y0:
        return np.zeros((0, 0, 3), np.uint8), 0, 0
    if image.shape[1] != rw or image.shape[0] != rh:
        image = np.asarray(Image.fromarray(image).resize((rw, rh), Image.Resampling.BILINEAR))
    return image[y0 - oy : y1 - oy, x0 - ox : x1 - ox], x0, y0


def place_planes(
    image: np.ndarray, placement: Placement, width: int, height: int,
    colour: tuple[np.ndarray, float] | None = None,
) -> np.ndarray:
    """(h, w, 3) uint8 -> (3, height, width) uint8: resized, pasted on grey, mirrored when flip; `colour`
    (hsv_gains) applied to the visible pixels only (it is per pixel, so the grey padding gets its one colour)."""
    visible, x0, y0 = _visible_resize(image, placement, width, height)
    grey = np.full((1, 1, 3), PAD_VALUE, dtype=np.uint8)
    pad = (apply_hsv(grey, *colour) if colour is not None else grey.transpose(2, 0, 1)).reshape(3, 1, 1)
    canvas = np.empty((3, height, width), dtype=np.uint8)
    canvas[...] = pad
    if visible.size:
        planes = apply_hsv(visible, *colour) if colour is not None else visible.transpose(2, 0, 1)
        canvas[:, y0 : y0 + visible.shape[0], x0 : x0 + visible.shape[1]] = planes
    if placement.flip:
        canvas = np.ascontiguousarray(canvas[:, :, ::-1])
    return canvas


def _hue_rotation(angle: float) -> np.ndarray:
    """(3, 3) rotation of RGB about the grey axis: a hue shift that keeps greys grey."""
    cos, sin, third, root = np.cos(angle), np.sin(angle), 1.0 / 3.0, np.sqrt(1.0 / 3.0)
    return np.array(
        [
            [cos + (1 - cos) * third, third * (1 - cos) - root * sin, third * (1 - cos) + root * sin],
            [third * (1 - cos) + root * sin, cos + third * (1 - cos), third * (1 - cos) - root * sin],
            [third * (1 - cos) - root * sin, third * (1 - cos) + root * sin, cos + third * (1 - cos)],
        ],
        dtype=np.float32,
    )


def hsv_gains(gains: tuple[float, float, float], rng: np.random.Generator) -> tuple[np.ndarray, float]:
    """Draw Ultralytics-style random HSV gains: ((3, 3) float32 colour matrix, gain of the max channel)."""
    hue_gain, sat_gain, val_gain = (1.0 + rng.uniform(-1.0, 1.0, 3) * np.asarray(gains)).tolist()
    matrix = _hue_rotation((hue_gain - 1.0) * 2.0 * np.pi) * np.float32(val_gain * sat_gain)
    return matrix, float(val_gain * (1.0 - sat_gain))


def apply_hsv(image: np.ndarray, matrix: np.ndarray, max_gain: float) -> np.ndarray:
    """(H, W, 3) uint8 -> (3, H, W) uint8: c' = matrix @ c + max_gain * max(c), clipped and rounded."""
    planes = image.transpose(2, 0, 1).astype(np.float32)  # (3, H, W)
    offset = np.maximum(np.maximum(planes[0], planes[1]), planes[2])
    offset *= np.float32(max_gain)
    out = np.empty_like(planes)
    scratch = np.empty_like(offset)
    for channel in range(3):
        target = out[channel]
        np.multiply(planes[0], matrix[channel, 0], out=target)
        for source in (1, 2):
            np.multiply(planes[source], matrix[channel, source], out=scratch)
            target += scratch
        target += offset
    np.clip(out, 0.0, 255.0, out=out)
    return np.rint(out, out=out).astype(np.uint8)


def hsv_jitter(image: np.ndarray, gains: tuple[float, float, float], rng: np.random.Generator) -> np.ndarray:
    """Ultralytics-style random HSV gains, applied in RGB: (H, W, 3) uint8 -> (3, H, W) uint8.

    Saturation s and value v are exact HSV scalings (c' = v * (V - s * (V - c)) with V = max channel);
    the hue shift is a rotation about the grey axis. Single-threaded numpy on planes (no colour-space
    round trip): about 0.4 ms at 256x256.
    """
    return apply_hsv(image, *hsv_gains(gains, rng))


def _transform_boxes(boxes: np.ndarray, placement: Placement, sx: float, sy: float) -> np.ndarray:
    out = boxes.astype(np.float32).copy()  # (N, 4) xyxy
    out[:, [0, 2]] = out[:, [0, 2]] * sx + placement.offset_x
    out[:, [1, 3]] = out[:, [1, 3]] * sy + placement.offset_y
    return out


def _tight_boxes(
    crops: list[np.ndarray], origins: np.ndarray, indices: np.ndarray, window: tuple[int, int, int, int]
) -> dict[int, np.ndarray]:
    """Tight xyxy boxes (mask pixels) of the mask pixels inside a window, for cut instances."""
    x0, y0, x1, y1 = window
    tight: dict[int, np.ndarray] = {}
    for index in indices.tolist():
        (cx0, cy0), crop = origins[index].tolist(), crops[index]
        part = crop[max(y0 - cy0, 0) : max(y1 - cy0, 0), max(x0 - cx0, 0) : max(x1 - cx0, 0)]
        rows, cols = np.flatnonzero(part.any(axis=1)), np.flatnonzero(part.any(axis=0))
        if rows.size:
            left, top = max(x0, cx0), max(y0, cy0)
            tight[index] = np.array(
                [left + cols[0], top + rows[0], left + cols[-1] + 1, top + rows[-1] + 1], np.float32
            )
    return tight


def mask_crops(rles: list[dict[str, Any]]) -> tuple[list[np.ndarray], np.ndarray]:
    """Each RLE's pixels inside its tight box (bool crops) and the boxes' (x0, y0) (N, 2) int64."""
    if not rles:
        return [], np.zeros((0, 2), np.int64)
    bounds = np.rint(mask_utils.toBbox(list(rles))).astype(np.int64).reshape(-1, 4)  # (N, 4) xywh, whole pixels
    crops = [rle_crop(rle, x, y, x + w, y + h) for rle, (x, y, w, h) in zip(rles, bounds.tolist(), strict=True)]
    return crops, np.ascontiguousarray(bounds[:, :2])


def transform_sample(raw: RawSample, settings: TransformSettings, rng: np.random.Generator | None) -> Sample:
    """Apply one placement (and, with rng, the augmentations) to image, boxes and masks together."""
    width, height, stride = settings.input_width, settings.input_height, settings.mask_stride
    placement = choose_placement(raw.orig_width, raw.orig_height, settings, rng)
    sx = placement.resized_width / raw.orig_width
    sy = placement.resized_height / raw.orig_height

    boxes = _transform_boxes(raw.boxes, placement, sx, sy)  # (N, 4) before clipping and flipping
    mask_h, mask_w, fx, fy = raw.mask_frame
    msx, msy = sx / fx, sy / fy  # mask pixels -> input pixels
    crops, origins = mask_crops(raw.rles)  # each mask inside its tight box, in mask pixels
    cut = (boxes[:, 0] < 0) | (boxes[:, 1] < 0) | (boxes[:, 2] > width) | (boxes[:, 3] > height)
    if cut.any():
        window = (
            max(0, int(np.floor(-placement.offset_x / msx))),
            max(0, int(np.floor(-placement.offset_y / msy))),
            min(mask_w, int(np.ceil((width - placement.offset_x) / msx))),
            min(mask_h, int(np.ceil((height - placement.offset_y) / msy))),
        )
        for index, tight in _tight_boxes(crops, origins, np.flatnonzero(cut), window).items():
            boxes[index] = _transform_boxes(tight[None], placement, msx, msy)[0]
    boxes[:, [0, 2]] = boxes[:, [0, 2]].clip(0, width)
    boxes[:, [1, 3]] = boxes[:, [1, 3]].clip(0, height)
    if placement.flip:
        boxes[:, [0, 2]] = width - boxes[:, [2, 0]]

    masks = resample_crops(  # (N, H // s, W // s): coverage >= 1/2 of each mask pixel
        crops,
        origins,
        (mask_h, mask_w),
        scale_x=msx,
        scale_y=msy,
        offset_x=placement.offset_x,
        offset_y=placement.offset_y,
        flip=placement.flip,
        width=width,
        height=height,
        stride=stride,
    )

    keep = ((boxes[:, 2] - boxes[:, 0]) >= MIN_BOX_SIDE) & ((boxes[:, 3] - boxes[:, 1]) >= MIN_BOX_SIDE)
    colour = hsv_gains(settings.hsv_jitter, rng) if rng is not None and any(settings.hsv_jitter) else None
    chw = place_planes(raw.image, placement, width, height, colour)  # (3, H, W); HSV on the visible pixels
    meta = ImageMeta(
        image_id=raw.image_id,
        file_name=raw.file_name,
        orig_height=raw.orig_height,
        orig_width=raw.orig_width,
        scale=float(placement.scale),
        pad_top=placement.offset_y,
        pad_left=placement.offset_x,
        flipped=placement.flip,
    )
    return Sample(
        image=chw,
        boxes=boxes[keep],
        labels=raw.labels[keep].astype(np.int64),
        crowd=raw.crowd[keep].astype(bool),
        masks=masks[keep],
        meta=meta,
    )
