"""Usage-area fixtures: small fakes of the ports, and one tiny real run trained once per session."""

from __future__ import annotations

import json
import runpy
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import torch

from apex_x.adapters.models.profiles.small import SmallProfile
from apex_x.application.inference import InferenceModel
from apex_x.domain import checkpoint_format as fmt
from apex_x.domain.config import ApexConfig
from apex_x.domain.errors import UserError
from apex_x.domain.types import Batch, CategoryMap, Detections, EvalResult, ImageMeta

CATEGORIES = CategoryMap((3, 7), ("circle", "square"))


class FakeNetwork(torch.nn.Module):
    """A SegmentationModel fake: per image, a 'square' over the left half (0.9) and a 'circle' (0.1) on the right."""

    def __init__(self, num_classes: int = 2) -> None:
        super().__init__()
        self.scale = torch.nn.Parameter(torch.ones(num_classes))
        self.seen_shapes: list[tuple[int, ...]] = []

    def forward(self, images: torch.Tensor) -> dict[str, torch.Tensor]:
        self.seen_shapes.append(tuple(images.shape))
        return {"mean": images.float().mean(dim=(1, 2, 3)) * self.scale[0]}

    def compute_losses(self, outputs: dict[str, torch.Tensor], batch: Batch, settings: Any) -> dict[str, torch.Tensor]:
        return {"det": outputs["mean"].mean() + 0.5}

    def architecture(self) -> dict[str, Any]:
        return {}

    def postprocess(self, outputs: dict[str, torch.Tensor], metas: Sequence[ImageMeta]) -> list[Detections]:
        result = []
        for meta in metas:
            height, width = meta.orig_height, meta.orig_width
            masks = torch.zeros((2, height, width), dtype=torch.bool)
            masks[0, :, : width // 2] = True
            masks[1, : height // 2, width // 2 :] = True
            result.append(
                Detections(
                    boxes=torch.tensor([[0.0, 0.0, width / 2, height], [width / 2, 0.0, width, height / 2]]),
                    scores=torch.tensor([0.9, 0.1]),
                    labels=torch.tensor([1, 0]),
                    masks=masks,
                )
            )
        return result


class FakeFactory(SmallProfile):
    """The small profile building a FakeNetwork, recording what it was asked to build."""

    def __init__(self) -> None:
        self.built: list[tuple[Any, int]] = []

    def build(self, config: Any, num_classes: int, *, pretrained: bool = True, architecture: Any = None) -> FakeNetwork:
        self.pretrained, self.architecture = pretrained, architecture
        self.built.append((config, num_classes))
        return FakeNetwork(num_classes)


class FakeReader:
    """ImageReader fake over in-memory images; 'folders' are keys ending in '/'."""

    def __init__(self, images: dict[str, torch.Tensor], folders: dict[str, list[str]] | None = None) -> None:
        self.images = images
        self.folders = folders or {}

    def list_images(self, path: str) -> list[str]:
        if path in self.folders:
            if not self.folders[path]:
                raise UserError(f"{path}: the folder has no image files")
            return list(self.folders[path])
        if path in self.images or path.endswith(".broken"):
            return [path]
        raise UserError(f"{path}: no such file or folder")

    def read(self, path: str) -> torch.Tensor:
        if path not in self.images:
            raise UserError(f"{path}: cannot use the image (image.unreadable): not an image")
        return self.images[path]

    def prepare(
        self, image: torch.Tensor, *, image_id: int, file_name: str, height: int, width: int
    ) -> tuple[torch.Tensor, ImageMeta]:
        scale = min(height / image.shape[0], width / image.shape[1])
        canvas = torch.zeros((3, height, width), dtype=torch.uint8)
        meta = ImageMeta(image_id, file_name, int(image.shape[0]), int(image.shape[1]), scale, 0, 0)
        return canvas, meta


class RecordingSink:
    """PredictionSink fake that keeps what it received."""

    def __init__(self) -> None:
        self.added: list[tuple[int, str, tuple[int, ...], int]] = []
        self.summary: dict[str, Any] | None = None

    def add(self, image_id: int, path: str, image: torch.Tensor, detections: Detections) -> None:
        self.added.append((image_id, path, tuple(image.shape), len(detections)))

    def close(self, summary: Any) -> list[str]:
        self.summary = dict(summary)
        return ["fake://predictions.json"]


class FakeLoader:
    def __init__(self, batches: list[Batch]) -> None:
        self.batches = batches
        self.epochs: list[int] = []

    def __len__(self) -> int:
        return len(self.batches)

    def iter_epoch(self, epoch: int, start_batch: int = 0, augment: object = None) -> Iterator[Batch]:
        self.epochs.append(epoch)
        yield from self.batches[start_batch:]


class FakeDataset:
    """DatasetSource fake: a val split of `num_images` 32x48 images (or none)."""

    mode = "real"
    backend = "fake"

    def __init__(self, categories: CategoryMap = CATEGORIES, num_images: int = 3, has_val: bool = True,
                 val_categories: CategoryMap | None = None) -> None:
        self._categories = categories
        self.val_categories = val_categories or categories  # what the val file itself lists
        self.num_images = num_images
        self._has_val = has_val
        self.batch_sizes: list[int] = []

    @property
    def categories(self) -> CategoryMap:
        return self._categories

    def has_val(self) -> bool:
        return self._has_val

    def val_loader(self, batch_size: int, *, rank: int = 0, world_size: int = 1) -> FakeLoader | None:
        if not self._has_val:
            return None
        self.batch_sizes.append(batch_size)
        metas = [ImageMeta(index + 1, f"{index + 1}.png", 32, 48, 1.0, 0, 0) for index in range(self.num_images)]
        batches = []
        for start in range(0, len(metas), batch_size):
            chunk = metas[start : start + batch_size]
            batches.append(
                Batch(
                    images=torch.zeros((len(chunk), 3, 32, 48), dtype=torch.uint8),
                    boxes=torch.zeros((len(chunk), 1, 4)),
                    labels=torch.full((len(chunk), 1), -1),
                    masks=torch.zeros((len(chunk), 1, 8, 12), dtype=torch.uint8),
                    valid=torch.zeros((len(chunk), 1), dtype=torch.bool),
                    crowd=torch.zeros((len(chunk), 1), dtype=torch.bool),
                    metas=chunk,
                )
            )
        return FakeLoader(batches)

    def val_ground_truth(self) -> dict[str, Any] | None:
        if not self._has_val:
            return None
        categories = [{"id": cid, "name": name}
                      for cid, name in zip(self.val_categories.original_ids, self.val_categories.names, strict=True)]
        return {"images": [{"id": index + 1} for index in range(self.num_images)], "annotations": [],
                "categories": categories}

    def describe(self) -> dict[str, Any]:
        return {"mode": self.mode, "backend": self.backend, "val_images": self.num_images}


class FakeEvaluator:
    """Evaluator fake: segm_AP = share of images that got a detection of class 'square'."""

    def __init__(self) -> None:
        self.calls: list[list[tuple[int, Detections]]] = []

    max_detections = 100

    def with_limit(self, max_detections: int) -> FakeEvaluator:
        return self  # the fake counts every detection it is given

    def encode(self, image_id: int, detections: Detections, categories: CategoryMap) -> Detections:
        return detections  # the fake keeps them whole, so tests can look at the masks it was given

    def evaluate_encoded(
        self, ground_truth: dict[str, Any], encoded: Sequence[tuple[int, Detections]], categories: CategoryMap
    ) -> EvalResult:
        return self.evaluate(ground_truth, encoded, categories)

    def evaluate(self, ground_truth: dict[str, Any], detections: Sequence[tuple[int, Detections]], categories: CategoryMap) -> EvalResult:
        self.calls.append(list(detections))
        hits = sum(1 for _, found in detections if bool((found.labels == 1).any()))
        share = hits / max(1, len(ground_truth["images"]))
        return EvalResult(
            metrics={"bbox_AP": share / 2, "segm_AP": share},
            per_class={str(original): {"name": name, "bbox_AP": share / 2, "segm_AP": share}
                       for original, name in zip(categories.original_ids, categories.names, strict=True)},
            num_images=len(ground_truth["images"]),
            num_detections=sum(len(found) for _, found in detections),
        )


def fake_payload(*, ema: bool = True, config: ApexConfig | None = None, version: int = fmt.FORMAT_VERSION) -> dict[str, Any]:
    """A full Apex-X checkpoint payload around FakeNetwork weights (EMA weights differ from the model's)."""
    settings = config or ApexConfig.model_validate({"model": {"input_height": 64, "input_width": 96}})
    return {
        fmt.KEY_FORMAT: fmt.FORMAT_TAG,
        fmt.KEY_VERSION: version,
        fmt.KEY_PROFILE: settings.model.profile,
        fmt.KEY_MODEL: {"scale": torch.full((2,), 2.0)},
        fmt.KEY_EMA: {"scale": torch.full((2,), 3.0)} if ema else None,
        fmt.KEY_CONFIG: settings.to_plain(),
        fmt.KEY_CATEGORIES: CATEGORIES.to_plain(),
        fmt.KEY_INPUT_SIZE: [settings.model.input_height, settings.model.input_width],
        fmt.KEY_BEST: {"name": "segm_AP", "value": 1.0, "epoch": 2},
    }


@pytest.fixture
def fake_inference_model() -> InferenceModel:
    config = ApexConfig.model_validate({"model": {"input_height": 64, "input_width": 96, "score_threshold": 0.05}})
    return InferenceModel(
        network=FakeNetwork().eval(),
        config=config,
        categories=CATEGORIES,
        input_size=(64, 96),
        device=torch.device("cpu"),
        checkpoint_path="fake.pt",
        weights="ema",
        best={"name": "segm_AP", "value": 1.0, "epoch": 2},
    )


@pytest.fixture
def fakes() -> Any:
    """The fakes of this folder, as a namespace (tests import nothing from conftest directly)."""
    from types import SimpleNamespace

    return SimpleNamespace(
        CATEGORIES=CATEGORIES,
        FakeNetwork=FakeNetwork,
        FakeFactory=FakeFactory,
        FakeReader=FakeReader,
        RecordingSink=RecordingSink,
        FakeDataset=FakeDataset,
        FakeEvaluator=FakeEvaluator,
        fake_payload=fake_payload,
    )


ROOT = Path(__file__).resolve().parents[2]

TINY_CONFIG = """\
model:
  profile: small
  input_height: 64
  input_width: 64
  backbone: mobilenetv3_small_050
  width_multiplier: 0.25
train:
  epochs: 1
  batch_size: 8
  warmup_steps: 0
  checkpoint_metric: bbox_AP
  output_dir: {output_dir}
data:
  coco_train_images: {train_images}
  coco_train_annotations: {train_annotations}
  coco_val_images: {val_images}
  coco_val_annotations: {val_annotations}
runtime:
  device: cpu
"""


@dataclass(frozen=True)
class TrainedRun:
    """A real run on the shapes dataset (two stages, two steps each): its config, folders and report."""

    config: Path
    output_dir: Path
    val_images: Path
    val_annotations: Path

    @property
    def best(self) -> Path:
        return self.output_dir / "checkpoints" / "best.pt"

    def report(self) -> dict[str, Any]:
        return json.loads((self.output_dir / "train_report.json").read_text())


def run_entrypoint(name: str, argv: list[str]) -> int:
    """Runs `scripts/<name>` in this process (its `main(argv)`), as `python scripts/<name>` would."""
    return int(runpy.run_path(str(ROOT / "scripts" / name), run_name="apex_x_entrypoint")["main"](argv))


@pytest.fixture(scope="session")
def trained_run(tmp_path_factory: pytest.TempPathFactory) -> TrainedRun:
    """Shapes dataset (64 px) + a tiny student trained through scripts/train.py, once per session."""
    from apex_x.adapters.datasets.shapes_writer import write_shapes_dataset

    root = tmp_path_factory.mktemp("usage_run")
    paths = write_shapes_dataset(root / "shapes", train=16, val=6, size=64, seed=0)
    config = root / "tiny.yaml"
    config.write_text(
        TINY_CONFIG.format(
            output_dir=root / "run",
            train_images=paths.train_images,
            train_annotations=paths.train_annotations,
            val_images=paths.val_images,
            val_annotations=paths.val_annotations,
        )
    )
    code = run_entrypoint("train.py", ["--config", str(config), "--steps-per-stage", "2", "--seed", "0"])
    assert code == 0, "the tiny training run failed"
    assert paths.val_images is not None and paths.val_annotations is not None
    return TrainedRun(config, root / "run", paths.val_images, paths.val_annotations)


@pytest.fixture
def entrypoint() -> Any:
    """run_entrypoint(name, argv) -> exit code of a scripts/ entry point run in this process."""
    return run_entrypoint
