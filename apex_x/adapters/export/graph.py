"""What an exported file computes: the network and its dense decoding, with no data-dependent control flow.

Input  `images`       (B, 3, H, W) uint8 RGB, letterboxed to the export's input size (apex_x.letterbox).
Outputs (A anchor points over the strides 8/16/32: A = H*W/64 + H*W/256 + H*W/1024; C classes; K prototypes):
  `boxes`        (B, A, 4) float32  xyxy in input (letterboxed) pixels
  `scores`       (B, A, C) float32  detection scores in [0, 1]: sqrt(sigmoid(class logit) * sigmoid(quality))
  `mask_coeffs`  (B, A, K) float32  per-anchor mask coefficients
  `prototypes`   (B, K, H/s, W/s) float32  prototype masks, s = the model's mask stride
What is left for the deployment (apex_x.decode_exported does it): top-k, score threshold, class-aware NMS,
mask logits = coeffs @ prototypes of the kept anchors, paste back to the original image (undo the letterbox).
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn

from apex_x.adapters.models.postprocess import detection_scores
from apex_x.domain.errors import UserError

INPUT_NAME = "images"
OUTPUT_NAMES = ("boxes", "scores", "mask_coeffs", "prototypes")
DENSE_KEYS = ("boxes", "cls_logits", "quality", "mask_coeffs", "prototypes")


class ExportGraph(nn.Module):
    """The network's forward plus its dense decoding, as a tuple in OUTPUT_NAMES order (what the file holds)."""

    def __init__(self, network: nn.Module) -> None:
        super().__init__()
        self.network = network

    def forward(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        outputs = self.network(images)
        return (outputs["boxes"].float(), detection_scores(outputs), outputs["mask_coeffs"].float(),
                outputs["prototypes"].float())


def export_failure(format_name: str, error: Exception, other: str) -> UserError:
    """What an exporter's failure tells the user: the format, the error's first line, the other format to try."""
    text = str(error).strip()
    first = text.splitlines()[0] if text else type(error).__name__
    return UserError(f"cannot export this model to {format_name} ({type(error).__name__}: {first}); try --format {other}")


def export_graph(network: nn.Module, input_size: tuple[int, int], batch: int = 1) -> tuple[ExportGraph, torch.Tensor]:
    """The graph to export (eval mode, on the CPU) and an example input (batch, 3, H, W) uint8 (a dynamic batch
    needs an example of 2: torch.export specialises a dimension of size 1).

    A network whose outputs are not the dense ones (DENSE_KEYS) cannot be exported: UserError saying which
    keys are missing.
    """
    graph = ExportGraph(network).cpu().eval()
    example = torch.full((batch, 3, *input_size), 114, dtype=torch.uint8)
    with torch.no_grad():
        outputs = network.cpu().eval()(example)
    missing = [key for key in DENSE_KEYS if key not in outputs]
    if missing:
        raise UserError(f"this model's outputs lack {missing}: only dense-decoding models (boxes, scores, mask "
                        "coefficients, prototypes) can be exported")
    return graph, example


def eager_runner(network: nn.Module, device: torch.device) -> Callable[[torch.Tensor], list[torch.Tensor]]:
    """The network in eager torch as a runner like an exported file's (ModelExporter.load): (B, 3, H, W) uint8
    -> OUTPUT_NAMES outputs as CPU float32 tensors (inference mode, the model's own autocast-free forward)."""
    graph = ExportGraph(network).to(device).eval()

    def run(images: torch.Tensor) -> list[torch.Tensor]:
        with torch.inference_mode():
            return [output.cpu() for output in graph(images.to(device))]

    return run
