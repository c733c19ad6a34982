"""TorchScript export (torch.jit.trace of the export graph), with the metadata as an extra file in the archive."""

from __future__ import annotations

import warnings
from collections.abc import Callable, Mapping

import torch

from apex_x.adapters.export.graph import export_failure, export_graph

# Each metadata entry KEY is an extra file KEY.json in the archive: torch.jit.load(path, _extra_files={KEY.json: ""}).


class TorchScriptModelExporter:
    """ModelExporter: `.torchscript` files for torch.jit.load (C++ libtorch or Python, no Apex-X needed)."""

    format = "torchscript"
    suffix = ".torchscript"
    runtime = "torch.jit"

    def export(self, network: torch.nn.Module, input_size: tuple[int, int], path: str, *, dynamic_batch: bool,
               metadata: Mapping[str, str]) -> None:
        graph, example = export_graph(network, input_size)
        try:
            with warnings.catch_warnings(), torch.no_grad():
                warnings.simplefilter("ignore")  # TracerWarnings of the input-size checks: sizes are fixed here
                traced = torch.jit.trace(graph, (example,), check_trace=False)
        except Exception as error:  # noqa: BLE001 - any tracer failure is reported as what could not be exported
            raise export_failure("TorchScript", error, "onnx") from None
        extra = {f"{key}.json": value for key, value in metadata.items()}  # e.g. apex_x_export.json

        from apex_x.adapters.atomic_files import atomic_write

        atomic_write(path, lambda handle: torch.jit.save(traced, handle, _extra_files=extra), what="TorchScript file")

    def load(self, path: str, device: torch.device) -> Callable[[torch.Tensor], list[torch.Tensor]]:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", FutureWarning)  # torch.jit is deprecated in favour of torch.export
            module = torch.jit.load(path, map_location=device)

        def run(images: torch.Tensor) -> list[torch.Tensor]:
            with torch.no_grad():
                return [output.float().cpu() for output in module(images.to(device))]

        return run
