"""Small fakes of the ports (dataset, model, evaluator) so the trainer is tested on its own, fast."""

from __future__ import annotations

import hashlib
import math
import os
import signal
from collections.abc import Iterator, Sequence
from typing import Any, Literal

import torch
import torch.nn.functional as F

from apex_x.adapters.models.profiles.small import SmallProfile
from apex_x.domain.config import ModelConfig
from apex_x.domain.types import (
    Batch,
    CategoryMap,
    DatasetReport,
    Detections,
    EvalResult,
    Finding,
    ImageMeta,
    LossSettings,
)
from apex_x.kernels import clip_component

SIZE = 32  # image side
STRIDE = 4  # mask stride
NAMES = ("square", "bar")


def make_sample(index: int) -> tuple[torch.Tensor, torch.Tensor, int, torch.Tensor]:
    """One image with one filled rectangle whose shape encodes the class: (image, box, label, mask)."""
    generator = torch.Generator().manual_seed(1000 + index)
    label = index % 2
    side = 8 + int(torch.randint(0, 8, (1,), generator=generator))
    width, height = (side, side) if label == 0 else (side + 8, max(4, side // 2))
    x0 = int(torch.randint(0, SIZE - width, (1,), generator=generator))
    y0 = int(torch.randint(0, SIZE - height, (1,), generator=generator))
    image = torch.zeros(3, SIZE, SIZE, dtype=torch.uint8)
    image[:, y0 : y0 + height, x0 : x0 + width] = torch.tensor([200, 80 + 100 * label, 40], dtype=torch.uint8)[:, None, None]
    mask = torch.zeros(SIZE, SIZE, dtype=torch.uint8)
    mask[y0 : y0 + height, x0 : x0 + width] = 1
    box = torch.tensor([x0, y0, x0 + width, y0 + height], dtype=torch.float32)
    return image, box, label, mask


class FakeBatchLoader:
    """Deterministic batches: the order of epoch e depends only on (seed, e); start_batch skips exactly."""

    def __init__(self, indices: Sequence[int], batch_size: int, seed: int, shuffle: bool, rank: int = 0,
                 world_size: int = 1) -> None:
        self.indices = list(indices)[rank::world_size]
        self.batch_size = batch_size
        self.seed = seed
        self.shuffle = shuffle

    def __len__(self) -> int:
        return len(self.indices) // self.batch_size

    def iter_epoch(self, epoch: int, start_batch: int = 0, augment: object = None) -> Iterator[Batch]:
        order = list(self.indices)
        if self.shuffle:
            permutation = torch.randperm(len(order), generator=torch.Generator().manual_seed(self.seed * 1000 + epoch))
            order = [order[i] for i in permutation.tolist()]
        torch.rand(1)  # like a DataLoader drawing its base seed from the global generator
        for batch_index in range(start_batch, len(self)):
            chosen = order[batch_index * self.batch_size : (batch_index + 1) * self.batch_size]
            yield collate(chosen)


def collate(indices: Sequence[int]) -> Batch:
    samples = [make_sample(index) for index in indices]
    return Batch(
        images=torch.stack([sample[0] for sample in samples]),
        boxes=torch.stack([sample[1] for sample in samples])[:, None, :],
        labels=torch.tensor([[sample[2]] for sample in samples], dtype=torch.int64),
        masks=torch.stack([sample[3][:: STRIDE, :: STRIDE] for sample in samples])[:, None],
        valid=torch.ones(len(samples), 1, dtype=torch.bool),
        crowd=torch.zeros(len(samples), 1, dtype=torch.bool),
        metas=[ImageMeta(image_id=index + 1, file_name=f"{index}.png", orig_height=SIZE, orig_width=SIZE,
                         scale=1.0, pad_top=0, pad_left=0) for index in indices],
    )


class FakeDatasetSource:
    """In-memory data of the DatasetSource port; `findings` lets a test inject dataset errors."""

    def __init__(self, *, train_images: int = 16, val_images: int = 8, mode: Literal["real", "synthetic"] = "real",
                 with_ground_truth: bool = True, findings: Sequence[Finding] = (), classes: int = 2) -> None:
        self.mode = mode
        self.backend = "fake"
        self.train_images = train_images
        self.val_images = val_images
        self.with_ground_truth = with_ground_truth
        self.findings = list(findings)
        self._categories = CategoryMap(tuple(range(1, classes + 1)), tuple(NAMES[i % 2] + str(i) for i in range(classes)))

    @property
    def categories(self) -> CategoryMap:
        return self._categories

    def has_val(self) -> bool:
        return self.val_images > 0

    def train_loader(self, batch_size: int, *, seed: int, rank: int = 0, world_size: int = 1) -> FakeBatchLoader:
        return FakeBatchLoader(range(self.train_images), batch_size, seed, True, rank, world_size)

    def val_loader(self, batch_size: int, *, rank: int = 0, world_size: int = 1) -> FakeBatchLoader | None:
        if not self.has_val():
            return None
        indices = range(10_000, 10_000 + self.val_images)
        return FakeBatchLoader(indices, min(batch_size, self.val_images), 0, False, rank, world_size)

    def val_ground_truth(self) -> dict[str, Any] | None:
        if not self.has_val() or not self.with_ground_truth:
            return None
        annotations = []
        for index in range(10_000, 10_000 + self.val_images):
            _, box, label, _ = make_sample(index)
            annotations.append({"id": index, "image_id": index + 1, "category_id": label + 1,
                                "bbox": [float(box[0]), float(box[1]), float(box[2] - box[0]), float(box[3] - box[1])]})
        return {"images": [{"id": i + 1} for i in range(10_000, 10_000 + self.val_images)],
                "annotations": annotations, "categories": []}

    def validate(self, *, full_decode: bool, expected_num_classes: int | None = None) -> DatasetReport:
        return DatasetReport(summary={"train_images": self.train_images}, findings=list(self.findings))

    def fingerprint(self) -> str:
        return hashlib.sha256(f"fake:{self.train_images}:{self.val_images}".encode()).hexdigest()

    def describe(self) -> dict[str, Any]:
        return {"mode": self.mode, "backend": self.backend, "train_images": self.train_images,
                "val_images": self.val_images, "categories": list(self._categories.names)}


class FakeModel(torch.nn.Module):
    """A tiny conv net with the SegmentationModel methods; `nan_at` injects NaN into a component."""

    def __init__(self, num_classes: int, *, nan_at: Sequence[int] = (), nan_component: str = "det",
                 oom_at: Sequence[int] = (), signal_at: Sequence[int] = ()) -> None:
        super().__init__()
        self.num_classes = num_classes
        self.stem = torch.nn.Sequential(torch.nn.Conv2d(3, 8, 3, stride=2, padding=1), torch.nn.BatchNorm2d(8),
                                        torch.nn.ReLU())
        self.neck = torch.nn.Sequential(torch.nn.Conv2d(8, 8, 3, stride=2, padding=1), torch.nn.ReLU(),
                                        torch.nn.Dropout(0.1))
        self.classifier = torch.nn.Linear(8, num_classes)
        self.box = torch.nn.Linear(8, 4)
        self.mask_head = torch.nn.Conv2d(8, 1, 1)
        self.nan_at = set(nan_at)
        self.nan_component = nan_component
        self.oom_at = set(oom_at)  # training forward calls that raise a CUDA out-of-memory error
        self.signal_at = set(signal_at)  # training forward calls during which SIGTERM arrives
        self.loss_calls = 0
        self.forward_calls = 0

    def forward(self, images: torch.Tensor) -> dict[str, torch.Tensor]:
        if self.training:
            self.forward_calls += 1
            if self.forward_calls in self.oom_at:
                raise torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 20.00 GiB (fake)")
            if self.forward_calls in self.signal_at:
                os.kill(os.getpid(), signal.SIGTERM)
        features = self.neck(self.stem(images.float() / 255.0))  # (B, 8, H/4, W/4)
        pooled = features.mean(dim=(2, 3))
        return {"logits": self.classifier(pooled), "boxes": torch.sigmoid(self.box(pooled)) * SIZE,
                "masks": self.mask_head(features)[:, 0]}

    def compute_losses(self, outputs: dict[str, torch.Tensor], batch: Batch, settings: LossSettings) -> dict[str, torch.Tensor]:
        if self.training:
            self.loss_calls += 1
        labels = batch.labels[:, 0]
        target_masks = batch.masks[:, 0].float()
        losses: dict[str, torch.Tensor] = {}
        if "det" in settings.weights:
            det = F.cross_entropy(outputs["logits"], labels) + settings.params["det"]["box_scale"] * settings.params["det"]["box_weight"] * (
                F.smooth_l1_loss(outputs["boxes"], batch.boxes[:, 0]) / SIZE)
            losses["det"] = clip_component(det, settings.clips["det"])
        if "seg" in settings.weights:
            losses["seg"] = clip_component(F.binary_cross_entropy_with_logits(outputs["masks"], target_masks),
                                           settings.clips["seg"])
        if "boundary" in settings.weights:
            predicted = torch.sigmoid(outputs["masks"])
            edges = (predicted[:, 1:, :] - predicted[:, :-1, :]).abs().mean()
            target_edges = (target_masks[:, 1:, :] - target_masks[:, :-1, :]).abs().mean()
            losses["boundary"] = clip_component((edges - target_edges).abs(), settings.clips["boundary"])
        if self.training and self.loss_calls in self.nan_at and self.nan_component in losses:
            losses[self.nan_component] = losses[self.nan_component] * math.nan
        return losses

    def parameter_groups(self) -> dict[str, list[torch.nn.Parameter]]:
        return {"backbone": list(self.stem.parameters()), "neck": list(self.neck.parameters()),
                "head": [*self.classifier.parameters(), *self.box.parameters()],
                "mask": list(self.mask_head.parameters()), "lora": []}

    def architecture(self) -> dict[str, Any]:
        return {}

    def postprocess(self, outputs: dict[str, torch.Tensor], metas: Sequence[ImageMeta]) -> list[Detections]:
        scores, labels = torch.softmax(outputs["logits"].float(), dim=1).max(dim=1)
        masks = F.interpolate(outputs["masks"][:, None].float(), size=(SIZE, SIZE), mode="nearest")[:, 0] > 0
        return [Detections(boxes=outputs["boxes"][i : i + 1].float(), scores=scores[i : i + 1],
                           labels=labels[i : i + 1], masks=masks[i : i + 1]) for i in range(len(metas))]


class FakeModelFactory(SmallProfile):
    """The small profile (its curriculum, weights key, rules) building a FakeModel."""

    def __init__(self, **model_options: Any) -> None:
        self.model_options = model_options
        self.built: list[FakeModel] = []

    def build(self, config: ModelConfig, num_classes: int, *, pretrained: bool = True,
              architecture: Any = None) -> FakeModel:
        model = FakeModel(num_classes, **self.model_options)
        self.built.append(model)
        return model


class FakeEvaluator:
    """'AP' = share of images whose top label matches the ground truth; `nan_calls` returns NaN metrics."""

    def __init__(self, nan_calls: Sequence[int] = ()) -> None:
        self.calls = 0
        self.nan_calls = set(nan_calls)

    max_detections = 100

    def with_limit(self, max_detections: int) -> FakeEvaluator:
        return self  # the fake counts every detection it is given

    def encode(self, image_id: int, detections: Detections, categories: CategoryMap) -> list[int]:
        return [int(label) for label in detections.labels]

    def evaluate_encoded(self, ground_truth: dict[str, Any], encoded: Sequence[tuple[int, list[int]]],
                         categories: CategoryMap) -> EvalResult:
        detections = [(image_id, Detections(torch.zeros(len(labels), 4), torch.ones(len(labels)),
                                            torch.tensor(labels, dtype=torch.long), torch.zeros(len(labels), 1, 1)))
                      for image_id, labels in encoded]
        return self.evaluate(ground_truth, detections, categories)

    def evaluate(self, ground_truth: dict[str, Any], detections: Sequence[tuple[int, Detections]],
                 categories: CategoryMap) -> EvalResult:
        self.calls += 1
        truth = {item["image_id"]: item["category_id"] - 1 for item in ground_truth["annotations"]}
        hits = sum(1 for image_id, found in detections if len(found) and int(found.labels[0]) == truth[image_id])
        value = math.nan if self.calls in self.nan_calls else hits / max(1, len(truth))
        return EvalResult(metrics={"segm_AP": value, "bbox_AP": value, "segm_AP50": value, "bbox_AP50": value},
                          per_class={str(original): {"name": name, "segm_AP": value}
                                     for original, name in zip(categories.original_ids, categories.names, strict=True)},
                          num_images=len(truth), num_detections=len(detections))
