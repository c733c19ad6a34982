"""ONNX export (torch.onnx's dynamo exporter, opset 18), checked with onnx.checker, run with onnxruntime (CPU).

The class names and the rest of the export metadata go into the model's metadata_props as well as the JSON
beside the file, so either is enough for a deployment.
"""

from __future__ import annotations

import contextlib
import io
import logging
import warnings
from collections.abc import Callable, Mapping

import torch

from apex_x.adapters.export.graph import INPUT_NAME, OUTPUT_NAMES, export_failure, export_graph
from apex_x.domain.errors import DependencyError
from apex_x.installation import install_command

OPSET = 18
MAX_BATCH = 1024  # the largest batch a --dynamic-batch file is declared for


def _require(module: str) -> None:
    import importlib.util

    if importlib.util.find_spec(module) is None:
        raise DependencyError(f"ONNX export needs the {module!r} package (onnx, onnxscript, onnxruntime): "
                              f"{install_command('export')}")


class OnnxModelExporter:
    """ModelExporter: `.onnx` files for onnxruntime (and any ONNX runtime of opset >= 18)."""

    format = "onnx"
    suffix = ".onnx"
    runtime = "onnxruntime"

    def export(self, network: torch.nn.Module, input_size: tuple[int, int], path: str, *, dynamic_batch: bool,
               metadata: Mapping[str, str]) -> None:
        for module in ("onnx", "onnxscript"):
            _require(module)
        import onnx

        graph, example = export_graph(network, input_size, batch=2 if dynamic_batch else 1)
        dynamic = {INPUT_NAME: {0: torch.export.Dim("batch", min=1, max=MAX_BATCH)}} if dynamic_batch else None
        try:
            with _quiet():
                program = torch.onnx.export(graph, (example,), None, input_names=[INPUT_NAME],
                                            output_names=list(OUTPUT_NAMES), opset_version=OPSET, dynamo=True,
                                            dynamic_shapes=dynamic, verbose=False)
        except Exception as error:  # noqa: BLE001 - any exporter failure is reported as what could not be exported
            raise export_failure("ONNX", error, "torchscript") from None
        model = program.model_proto
        for key, value in metadata.items():
            entry = model.metadata_props.add()
            entry.key, entry.value = key, value
        onnx.checker.check_model(model)
        _write_bytes(path, model.SerializeToString())

    def load(self, path: str, device: torch.device) -> Callable[[torch.Tensor], list[torch.Tensor]]:
        """An onnxruntime session (the CUDA execution provider on a CUDA device when onnxruntime has it)."""
        _require("onnxruntime")
        import onnxruntime

        providers = ["CPUExecutionProvider"]
        if device.type == "cuda" and "CUDAExecutionProvider" in onnxruntime.get_available_providers():
            providers.insert(0, "CUDAExecutionProvider")
        session = onnxruntime.InferenceSession(path, providers=providers)

        def run(images: torch.Tensor) -> list[torch.Tensor]:
            outputs = session.run(list(OUTPUT_NAMES), {INPUT_NAME: images.cpu().numpy()})
            return [torch.from_numpy(output) for output in outputs]

        return run


def _write_bytes(path: str, data: bytes) -> None:
    from apex_x.adapters.atomic_files import atomic_write_bytes

    atomic_write_bytes(path, data)


@contextlib.contextmanager
def _quiet():  # type: ignore[no-untyped-def]
    """The exporter's progress lines and warnings (e.g. TracerWarning) are not the user's business."""
    with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
        warnings.simplefilter("ignore")
        level = logging.getLogger("torch.onnx").level
        logging.getLogger("torch.onnx").setLevel(logging.ERROR)
        try:
            yield
        finally:
            logging.getLogger("torch.onnx").setLevel(level)
