"""`apex-x export --checkpoint PATH --format {onnx,torchscript} [--output FILE] [--input-size HxW] [--dynamic-batch]`."""

from __future__ import annotations

import argparse
import re

EXPORT_FORMATS = ("onnx", "torchscript")  # apex_x.api.EXPORT_FORMATS (argparse lists them without importing torch)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--checkpoint", required=True, metavar="PATH",
                        help="Apex-X training checkpoint (EMA weights are exported when it has them).")
    parser.add_argument("--format", choices=EXPORT_FORMATS, default="onnx",
                        help="onnx (for onnxruntime; needs the 'export' extra) or torchscript (default: onnx).")
    parser.add_argument("--output", metavar="FILE", default=None,
                        help="Where to write it (default: beside the checkpoint, best.pt -> best.onnx / "
                        "best.torchscript); the metadata JSON goes to FILE.json.")
    parser.add_argument("--input-size", type=_size, default=None, metavar="HxW",
                        help="Network input height x width in pixels, multiples of the profile's stride "
                        "(default: the checkpoint's).")
    parser.add_argument("--dynamic-batch", action="store_true",
                        help="Free batch dimension (ONNX; default batch 1). A TorchScript file accepts any batch.")


def run(args: argparse.Namespace) -> int:
    from apex_x.api import export

    result = export(args.checkpoint, args.format, output=args.output, input_size=args.input_size,
                    dynamic_batch=args.dynamic_batch)
    height, width = result.input_size
    batch = "dynamic batch" if result.dynamic_batch else "batch 1"
    print(f"exported {result.format}: {result.path} (input images uint8 (B, 3, {height}, {width}), {batch}; "
          f"outputs boxes, scores, mask_coeffs, prototypes) in {result.seconds:.1f} s")
    print(f"metadata (classes, post-processing): {result.metadata_path}")
    return 0


def _size(text: str) -> tuple[int, int]:
    match = re.fullmatch(r"\s*(\d{1,5})\s*[xX]\s*(\d{1,5})\s*", text)
    if not match:
        raise argparse.ArgumentTypeError(f"expected HEIGHTxWIDTH in pixels, e.g. 320x320, got {text!r}")
    return int(match.group(1)), int(match.group(2))
