"""ImageReader for inference: files and folders -> decoded RGB images -> letterboxed network inputs.

Decoding (EXIF, grayscale/RGBA/16-bit) and the letterbox are the dataset pipeline's own functions,
so a picture is seen by `predict` exactly as validation sees it.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from apex_x.domain.errors import UserError
from apex_x.domain.types import ImageMeta

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp")


class PillowImageReader:
    """ImageReader adapter over the dataset pipeline's decoder (Pillow) and letterbox; 16-bit images are scaled
    as in training (`high_bit_depth`: data.high_bit_depth_scaling of the checkpoint's config)."""

    def __init__(self, high_bit_depth: str = "full_range") -> None:
        self.high_bit_depth = high_bit_depth

    def list_images(self, path: str) -> list[str]:
        target = Path(path)
        if target.is_file():
            return [str(target)]
        if target.is_dir():
            found = sorted(
                # not only regular files: a pipe or device named like an image is reported when it is read
                str(item) for item in target.iterdir() if not item.is_dir() and item.suffix.lower() in IMAGE_SUFFIXES
            )
            if not found:
                raise UserError(f"{target}: the folder has no image files ({', '.join(IMAGE_SUFFIXES)})")
            return found
        if target.exists():  # a pipe, device or socket: never opened (it could block or never end)
            from apex_x.adapters.datasets.images import regular_file_problem

            raise UserError(f"{target}: {regular_file_problem(target) or 'not a regular file'}")
        raise UserError(f"{target}: no such file or folder")

    def read(self, path: str) -> torch.Tensor:
        from apex_x.adapters.datasets.images import ImageReadError, load_rgb

        try:
            array = load_rgb(path, high_bit_depth=self.high_bit_depth)  # (H, W, 3) uint8 RGB, EXIF applied
        except ImageReadError as error:
            raise UserError(f"{path}: cannot use the image ({error.rule}): {error}") from None
        except OSError as error:
            raise UserError(f"{path}: cannot read the image: {error.strerror or error}") from None
        return torch.from_numpy(np.require(array, dtype=np.uint8, requirements=["C", "W"]))

    def prepare(
        self, image: torch.Tensor, *, image_id: int, file_name: str, height: int, width: int
    ) -> tuple[torch.Tensor, ImageMeta]:
        from apex_x.adapters.datasets.transforms import TransformSettings, choose_placement, place_image

        array = image.numpy() if isinstance(image, torch.Tensor) else image  # (H, W, 3) uint8
        orig_height, orig_width = int(array.shape[0]), int(array.shape[1])
        settings = TransformSettings(
            input_height=height,
            input_width=width,
            mask_stride=1,
            hflip_prob=0.0,
            scale_jitter=(1.0, 1.0),
            hsv_jitter=(0.0, 0.0, 0.0),
            max_instances=1,
        )
        placement = choose_placement(orig_width, orig_height, settings, None)  # centred letterbox, as validation
        canvas = place_image(array, placement, width, height)  # (height, width, 3)
        meta = ImageMeta(
            image_id=image_id,
            file_name=file_name,
            orig_height=orig_height,
            orig_width=orig_width,
            scale=float(placement.scale),
            pad_top=int(placement.offset_y),
            pad_left=int(placement.offset_x),
        )
        return torch.from_numpy(np.ascontiguousarray(canvas)).permute(2, 0, 1).contiguous(), meta  # (3, height, width)


def write_sample_image(path: str, width: int = 1280, height: int = 720, seed: int = 0) -> str:
    """A JPEG photo stand-in (smooth gradients and filled shapes, quality 90) for timing pre-processing when the
    user gives no image: decoding it costs what a camera frame of that size costs. Returns `path`."""
    from PIL import Image, ImageDraw

    rng = np.random.default_rng(seed)
    ys, xs = np.mgrid[0:height, 0:width].astype(np.float32)
    canvas = np.stack([xs / width * 255, ys / height * 255, (xs + ys) / (width + height) * 255], axis=-1)
    image = Image.fromarray(canvas.astype(np.uint8))
    draw = ImageDraw.Draw(image)
    for _ in range(12):
        x, y = int(rng.integers(0, width - 100)), int(rng.integers(0, height - 100))
        size = int(rng.integers(40, 200))
        draw.ellipse((x, y, x + size, y + size), fill=tuple(int(v) for v in rng.integers(0, 255, 3)))
    image.save(path, format="JPEG", quality=90)
    return path
