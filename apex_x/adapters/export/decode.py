"""The few steps a deployment runs after an exported file (graph.py): letterbox in, decode out.

    image = np.asarray(PIL.Image.open(path).convert("RGB"))           # (H, W, 3) uint8
    tensor, meta = apex_x.letterbox(image, metadata["input_size"])    # (3, h, w) uint8 + where it went
    outputs = session.run(None, {"images": tensor[None].numpy()})     # onnxruntime, or module(tensor[None])
    detections = apex_x.decode_exported(outputs, [meta], metadata)    # boxes, scores, labels, masks per image

decode_exported is Apex-X's own post-processing (apex_x.adapters.models.postprocess.postprocess_dense): the
same detections as `apex-x predict` on the same image.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import torch

from apex_x.adapters.models.postprocess import PostprocessSettings, postprocess_dense
from apex_x.domain.errors import UserError
from apex_x.domain.types import Detections, ImageMeta


def letterbox(image: Any, input_size: Sequence[int], *, image_id: int = 0, file_name: str = "") -> tuple[
        torch.Tensor, ImageMeta]:
    """(H, W, 3) uint8 RGB array (numpy or torch) -> ((3, h, w) uint8 tensor, ImageMeta): scaled to fit
    (h, w) = input_size, centred, padded with 114, exactly as prediction and validation place images."""
    from apex_x.adapters.image_inputs import PillowImageReader

    array = image.numpy() if isinstance(image, torch.Tensor) else np.asarray(image)
    if array.ndim != 3 or array.shape[2] != 3 or array.dtype != np.uint8:
        raise UserError(f"letterbox needs an (H, W, 3) uint8 RGB image, got {array.dtype} {tuple(array.shape)}")
    height, width = (int(side) for side in input_size)
    return PillowImageReader().prepare(torch.from_numpy(np.require(array, requirements=["C", "W"])), image_id=image_id,
                                       file_name=file_name, height=height, width=width)


def decode_exported(outputs: Sequence[Any], metas: Sequence[ImageMeta], metadata: Mapping[str, Any], *,
                    score_threshold: float | None = None) -> list[Detections]:
    """The exported file's outputs (boxes, scores, mask_coeffs, prototypes: numpy arrays or tensors, in that
    order) for len(metas) letterboxed images -> Detections per image in original pixels. `metadata`: the
    export's JSON (`<file>.json`); `score_threshold` overrides its post-processing threshold."""
    if len(outputs) != 4:
        raise UserError(f"decode_exported needs the 4 outputs (boxes, scores, mask_coeffs, prototypes), got {len(outputs)}")
    boxes, scores, coeffs, prototypes = (torch.as_tensor(np.asarray(item)) if not isinstance(item, torch.Tensor)
                                         else item for item in outputs)
    post = dict(metadata["postprocess"])
    if score_threshold is not None:
        post["score_threshold"] = float(score_threshold)
    settings = PostprocessSettings(**post)
    return postprocess_dense(boxes, scores, coeffs, prototypes, metas, settings, int(metadata["mask_stride"]))
