"""Notebook driving adapter: load a checkpoint, predict on an image, draw it, plot a run's curves.

    from apex_x.notebook import load_checkpoint, show_training_curves
    model = load_checkpoint("artifacts/quickstart/checkpoints/best.pt")
    result = model.predict("data/shapes/val/000001.png")
    result.show()
    show_training_curves("artifacts/quickstart")
"""

from __future__ import annotations

import functools
import io
import time
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from PIL import Image

from apex_x.domain.errors import UserError
from apex_x.domain.input_size import square_input_size
from apex_x.domain.types import CategoryMap, Detections

if TYPE_CHECKING:
    from matplotlib.figure import Figure

    from apex_x.application.inference import InferenceModel
    from apex_x.container import Container

__all__ = [
    "CheckpointModel",
    "Prediction",
    "load_checkpoint",
    "plot_training_curves",
    "show_training_curves",
    "smoke_run",
]

ImageLike = str | Path | Image.Image | np.ndarray | torch.Tensor


@functools.cache
def _root() -> Container:
    """The composition root (default config): the notebook reaches adapters and use cases only through it."""
    from apex_x.container import create_container

    return create_container()


def plot_training_curves(run_dir: str | Path) -> Figure:
    """The training curves of a run folder (its train_report.json) as a matplotlib figure."""
    return _root().plot_training_curves()(run_dir)


@dataclass
class Prediction:
    """Detections of one image with the image itself: draw it, list it, export it."""

    image: np.ndarray  # (H, W, 3) uint8 RGB
    detections: Detections  # original pixels, contiguous class ids
    class_names: tuple[str, ...]
    category_ids: tuple[int, ...]
    source: str
    input_size: tuple[int, int]
    latency_s: float

    def __len__(self) -> int:
        return len(self.detections)

    def overlay(self, **options: Any) -> Image.Image:
        """The image with masks, boxes, class names and scores drawn over it (PIL image)."""
        return _root().draw_detections()(self.image, self.detections, self.class_names, **options)

    def show(self, **options: Any) -> None:
        """Displays the overlay in the notebook (use `overlay()` to get the image itself)."""
        _display(self.overlay(**options))

    def save(self, path: str | Path) -> str:
        """Writes the overlay as a PNG."""
        return _root().save_png()(self.overlay(), path)

    def records(self) -> list[dict[str, Any]]:
        """One row per detection: class, category id, score, box (x0, y0, x1, y1), mask area."""
        rows = []
        for index in range(len(self)):
            label = int(self.detections.labels[index])
            rows.append(
                {
                    "class": self.class_names[label],
                    "category_id": self.category_ids[label],
                    "score": round(float(self.detections.scores[index]), 4),
                    "box": [round(float(v), 1) for v in self.detections.boxes[index].tolist()],
                    "mask_area": int(self.detections.masks[index].sum()) if self.detections.masks.numel() else 0,
                }
            )
        return rows

    def to_coco(self, image_id: int = 1) -> list[dict[str, Any]]:
        """COCO results entries (RLE masks, original category ids and names)."""
        return _root().coco_results()(image_id, self.detections, CategoryMap(self.category_ids, self.class_names))

    def __repr__(self) -> str:
        counts: dict[str, int] = {}
        for row in self.records():
            counts[row["class"]] = counts.get(row["class"], 0) + 1
        found = ", ".join(f"{count} {name}" for name, count in counts.items()) or "nothing"
        height, width = self.image.shape[:2]
        return f"Prediction({self.source}: {width}x{height}, {len(self)} detections: {found}; {self.latency_s * 1000:.0f} ms)"

    def _repr_png_(self) -> bytes:
        buffer = io.BytesIO()
        self.overlay().save(buffer, format="PNG")
        return buffer.getvalue()


class CheckpointModel:
    """A checkpoint's model ready to predict: profile, classes and input size come from the checkpoint."""

    def __init__(self, inference: InferenceModel) -> None:
        self.inference = inference
        from apex_x.container import create_container

        container = create_container(inference.config)
        self._reader = container.image_reader()
        self._dataset_format = container.dataset_format()

    @property
    def class_names(self) -> tuple[str, ...]:
        return self.inference.categories.names

    @property
    def input_size(self) -> tuple[int, int]:
        return self.inference.input_size

    @property
    def device(self) -> torch.device:
        return self.inference.device

    def predict(
        self, image: ImageLike, *, score_threshold: float | None = None, input_size: tuple[int, int] | None = None
    ) -> Prediction:
        """Detections on one image (a path, PIL image, (H, W, 3) array or tensor); input_size overrides the letterbox."""
        source, pixels = self._load(image)
        height, width = input_size or self.input_size
        started = time.perf_counter()
        tensor, meta = self._reader.prepare(
            torch.from_numpy(pixels), image_id=1, file_name=source, height=height, width=width
        )
        found = self.inference.detect(tensor[None], [meta])[0]  # (1, 3, H, W) in
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
        latency = time.perf_counter() - started
        threshold = self.inference.config.model.score_threshold if score_threshold is None else score_threshold
        return Prediction(
            image=pixels,
            detections=_root().filter_detections()(found, threshold),
            class_names=self.class_names,
            category_ids=self.inference.categories.original_ids,
            source=source,
            input_size=(height, width),
            latency_s=latency,
        )

    def describe(self) -> dict[str, Any]:
        return self.inference.describe()

    def __repr__(self) -> str:
        info = self.describe()
        best = info.get("best") or {}
        best_text = f", best {best.get('name')}={best.get('value'):.4f} @ epoch {best.get('epoch')}" if best.get("name") and isinstance(best.get("value"), (int, float)) else ""
        return (
            f"CheckpointModel({info['checkpoint']}: profile {info['profile']}, {info['weights']} weights, "
            f"input {info['input_size'][0]}x{info['input_size'][1]}, {len(info['classes'])} classes "
            f"{list(info['classes'])}, device {info['device']}{best_text})"
        )

    def check_classes(self, coco_annotations: str | Path) -> None:
        """Refuse (DatasetError listing the differing ids and names of both sides) unless this checkpoint's
        class list equals the COCO file's: call it before predicting on that dataset's images."""
        from apex_x.api import check_classes

        check_classes(self.inference, coco_annotations)

    def val_images(self, limit: int = 8) -> list[str]:
        """Up to `limit` images of the val folder the checkpoint was trained with (when it is on this machine)."""
        config = self.inference.config
        folder = self._dataset_format.image_folder(config, "val") or self._dataset_format.image_folder(config, "train")
        if not folder or not Path(folder).is_dir():
            return []
        return self._reader.list_images(folder)[:limit]

    def _load(self, image: ImageLike) -> tuple[str, np.ndarray]:
        if isinstance(image, (str, Path)):
            return str(image), self._reader.read(str(image)).numpy()
        return f"<{type(image).__name__}>", _root().as_rgb_array()(image)


def load_checkpoint(
    path: str | Path, *, device: str = "auto", score_threshold: float | None = None, log_level: str = "warning",
    coco_annotations: str | Path | None = None,
) -> CheckpointModel:
    """Loads an Apex-X training checkpoint (securely) and builds its model on `device` (auto, cpu, cuda).

    log_level: Apex-X's log lines shown in the notebook (warning keeps the cells quiet; info shows progress).
    coco_annotations: a COCO file of the images you will predict on; its class list (ids and names) must
    equal the checkpoint's, else a DatasetError lists the differences (before any inference).
    """
    from apex_x.api import load_model

    _root().configure_logging()(log_level, None)
    with warnings.catch_warnings():  # tqdm.auto (imported by timm) warns in kernels without ipywidgets
        warnings.filterwarnings("ignore", message="IProgress not found")
        model = CheckpointModel(load_model(str(path), device=device, score_threshold=score_threshold))
    if coco_annotations is not None:
        model.check_classes(coco_annotations)
    return model


def show_training_curves(run_dir: str | Path) -> None:
    """Displays loss components and validation metrics per epoch of a run (its train_report.json).

    `plot_training_curves(run_dir)` returns the matplotlib figure itself, to restyle or save.
    """
    figure = plot_training_curves(run_dir)
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=100)
    try:
        from IPython.display import Image as PngImage
    except ImportError:
        return
    _display(PngImage(data=buffer.getvalue(), format="png"))


def _display(item: Any) -> None:
    """IPython's display when running in a kernel; nothing otherwise (scripts save or return instead)."""
    try:
        from IPython import get_ipython
        from IPython.display import display
    except ImportError:
        return
    if get_ipython() is not None:
        display(item)


# --- the notebook smoke runner (scripts/notebook_checkpoint_smoke.py) ---------------------------

SMOKE_SCHEMA = "apex-x-notebook-smoke/1"
_TOKEN_GRID_PATTERNS = ("is invalid for input of size", "token grid", "token-grid", "patch grid")


def is_token_grid_error(error: BaseException) -> bool:
    """The DINOv2 failure of reshaping patch tokens into a (H/14, W/14) grid that does not fit."""
    text = str(error).lower()
    return isinstance(error, (RuntimeError, ValueError)) and any(pattern in text for pattern in _TOKEN_GRID_PATTERNS)


def square_size(input_size: tuple[int, int]) -> tuple[int, int]:
    """A square input covering `input_size` that the model accepts (apex_x.domain.input_size's one rule)."""
    return square_input_size(input_size)


def smoke_device(load: Any, image: ImageLike, device: str) -> dict[str, Any]:
    """Load + predict on one device: status (ok/fail/skip), latency, detections, error text, retry record.

    load(device) -> an object with `predict(image, input_size=...)` and `input_size` (a CheckpointModel).
    """
    entry: dict[str, Any] = {
        "device": device,
        "status": "fail",
        "latency_ms": None,
        "num_detections": None,
        "error": None,
        "retried_with_square_resize": False,
    }
    if device.startswith("cuda") and not torch.cuda.is_available():
        return {**entry, "status": "skip", "error": "CUDA is not available (torch.cuda.is_available() is False)"}
    try:
        started = time.perf_counter()
        model = load(device)
        entry["load_seconds"] = round(time.perf_counter() - started, 3)
        entry["input_size"] = list(model.input_size)
        try:
            result = model.predict(image)
        except Exception as error:  # noqa: BLE001 - recorded, then retried once when it is the known failure
            if not is_token_grid_error(error):
                raise
            size = square_size(tuple(model.input_size))
            entry.update(retried_with_square_resize=True, first_error=_error_text(error), input_size=list(size))
            result = model.predict(image, input_size=size)
        first_latency = result.latency_s
        result = model.predict(image, input_size=tuple(entry["input_size"]))  # warm: the steady-state latency
        entry.update(
            status="ok",
            first_latency_ms=round(first_latency * 1000.0, 2),
            latency_ms=round(result.latency_s * 1000.0, 2),
            num_detections=len(result),
            classes_found=sorted({row["class"] for row in result.records()}),
        )
    except Exception as error:  # noqa: BLE001 - the runner reports every failure instead of crashing
        entry["error"] = _error_text(error)
        entry["user_error"] = isinstance(error, UserError)  # a bad checkpoint or image, not a bug
    return entry


def check_smoke_output(path: str | Path) -> None:
    """The smoke report's file must be writable (ConfigError naming it and why) before any device runs."""
    _root().check_output_file()(path, key="--output-json")


def smoke_run(checkpoint: str | Path, image: str | Path, devices: list[str]) -> dict[str, Any]:
    """The notebook's path (load_checkpoint + predict) on each device; a JSON-able report."""
    runs = [
        smoke_device(lambda device: load_checkpoint(checkpoint, device=device), str(image), device.strip())
        for device in devices
        if device.strip()
    ]
    statuses = {run["status"] for run in runs}
    failed = [run for run in runs if run["status"] == "fail"]
    exit_code = 0 if runs and not failed else 2 if failed and all(run.get("user_error") for run in failed) else 1
    return {
        "schema": SMOKE_SCHEMA,
        "checkpoint": str(checkpoint),
        "image": str(image),
        "torch": torch.__version__,
        "cuda_available": torch.cuda.is_available(),
        "status": "fail" if "fail" in statuses or not runs else "ok",
        "exit_code": exit_code,  # 0 ok, 2 every failure is a bad input (checkpoint, image), 1 otherwise
        "devices": {run["device"]: run for run in runs},
    }


def _error_text(error: BaseException) -> str:
    message = str(error).strip().splitlines()
    return f"{type(error).__name__}: {message[0] if message else ''}".strip()
