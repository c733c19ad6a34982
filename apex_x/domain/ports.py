"""Ports (typing.Protocol) the application talks to; adapters implement them, tests fake them."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any, Literal, Protocol, runtime_checkable

import torch

from apex_x.domain.augment import AugmentPlan
from apex_x.domain.checkpoint import TrainingCheckpoint
from apex_x.domain.config import ApexConfig, ModelConfig, StageConfig, TrainConfig
from apex_x.domain.environment import PreflightCheck, Requirement
from apex_x.domain.types import (
    Batch,
    CategoryMap,
    DatasetReport,
    Detections,
    DetectionTargets,
    EvalResult,
    Finding,
    ImageMeta,
    LossSettings,
    MatchedMasks,
    PreviewSample,
)


class BatchLoader(Protocol):
    """Deterministic batches of one split: epoch e, batch k is the same whatever the worker count."""

    def __len__(self) -> int:
        """Batches per epoch (per process)."""
        ...

    def iter_epoch(self, epoch: int, start_batch: int = 0, augment: AugmentPlan | None = None) -> Iterator[Batch]:
        """Batches of `epoch` (reshuffled per epoch), skipping the first `start_batch` (exact resume); augment:
        the epoch's augmentation (domain.augment.augment_plan; None = the loader's default from data.*)."""
        ...


class DatasetSource(Protocol):
    """Describes the data, hands out loaders and ground truth, and validates itself."""

    mode: Literal["real", "synthetic"]
    backend: str  # e.g. "pycocotools", "synthetic"

    @property
    def categories(self) -> CategoryMap: ...

    def has_val(self) -> bool: ...

    def train_loader(self, batch_size: int, *, seed: int, rank: int = 0, world_size: int = 1) -> BatchLoader: ...

    def val_loader(self, batch_size: int, *, rank: int = 0, world_size: int = 1) -> BatchLoader | None: ...

    def val_ground_truth(self) -> dict[str, Any] | None:
        """The val split as a COCO dataset dict (original category ids), for the evaluator."""
        ...

    def validate(self, *, full_decode: bool, expected_num_classes: int | None = None) -> DatasetReport: ...

    def fingerprint(self) -> str:
        """Stable hash of what defines the data (annotation files' content, image list)."""
        ...

    def describe(self) -> dict[str, Any]:
        """mode, backend, paths, image/instance counts, categories: for reports and logs."""
        ...


class DatasetFormat(Protocol):
    """One dataset format (`data.format`): checks a config's data keys (preflight), describes them, and loads
    the splits as a DatasetSource. Variants: one file each in adapters/datasets/formats/, registered in
    domain/registry.py's DATASET_FORMATS; nothing else reads a format's own data.* keys."""

    name: str  # the data.format value, e.g. "coco"
    mode: Literal["real", "synthetic"]
    backend: str  # what reads it, e.g. "pycocotools"

    def config_keys(self, settings: ApexConfig) -> dict[str, Any]:
        """Its data.* keys as written in the config, without the `data.` prefix (reports, fix hints)."""
        ...

    def config_problems(self, settings: ApexConfig, cwd: str | None = None) -> list[Finding]:
        """Keys not set and paths that do not exist, each finding naming the key and the resolved path."""
        ...

    def how_to_fix(self, keys: Mapping[str, Any]) -> str:
        """What to do about missing data, for the config whose keys are `keys` (see config_keys)."""
        ...

    def open(self, settings: ApexConfig) -> DatasetSource:
        """Its splits as a DatasetSource (train, val when configured)."""
        ...

    def split_keys(self, split: Literal["train", "val"]) -> tuple[str, ...]:
        """The dotted config keys that configure `split` (e.g. ("data.coco_val_images", "data.coco_val_annotations")),
        for messages that tell the user what to set."""
        ...

    def evaluation_settings(self, settings: ApexConfig) -> ApexConfig | None:
        """`settings` changed so that opening them yields the val split to evaluate (a config with only a val split
        gets it as the train split too, which the dataset policy requires); None when no val split is configured."""
        ...

    def image_folder(self, settings: ApexConfig, split: Literal["train", "val"]) -> str | None:
        """The folder of `split`'s images as configured (None when the split has none, e.g. synthetic data)."""
        ...


@runtime_checkable
class SegmentationModel(Protocol):
    """A detection + instance-segmentation network (an nn.Module) with its loss and post-processing."""

    def forward(self, images: torch.Tensor) -> dict[str, torch.Tensor]:
        """images (B, 3, H, W) uint8 RGB -> raw head outputs."""
        ...

    def compute_losses(
        self, outputs: dict[str, torch.Tensor], batch: Batch, settings: LossSettings
    ) -> dict[str, torch.Tensor]:
        """Clipped, *unweighted* component losses for the active components (det, seg, boundary, ...)."""
        ...

    def parameter_groups(self) -> dict[str, list[torch.nn.Parameter]]:
        """Named groups (backbone, neck, head, mask, lora) that stages freeze or train."""
        ...

    def postprocess(
        self, outputs: dict[str, torch.Tensor], metas: Sequence[ImageMeta]
    ) -> list[Detections]:
        """Detections per image in original pixels (letterbox undone)."""
        ...

    def architecture(self) -> dict[str, Any]:
        """Plain values that rebuild this architecture with no file, cache or network beyond the config
        (e.g. the DINOv2 backbone's config); stored in checkpoints, handed back to ModelProfile.build."""
        ...


class ModelProfile(Protocol):
    """One model family (`model.profile`), registered by name: builds its model, names its default curriculum,
    its checkpoint weights key, its extra dependencies (preflight) and its input-size rule, and rebuilds its
    model from a checkpoint. Variants live in adapters/models/profiles/<name>.py; nothing else branches on a name.
    """

    name: str  # the `model.profile` value (domain.registry.MODEL_PROFILES)
    weights_key: str  # where a training checkpoint keeps the weights (one of checkpoint_format.MODEL_WEIGHT_KEYS)
    input_size_multiple: int  # every input side must be a positive multiple of it (its coarsest stride), pixels
    requirements: tuple[Requirement, ...]  # packages beyond the base ones (preflight `--profile <name>`)
    preflight_checks: tuple[PreflightCheck, ...]  # extra preflight checks (e.g. backbone weights reachable)
    base_preflight_checks: tuple[PreflightCheck, ...]  # checks it adds to every preflight (base's): its own weights

    def build(
        self,
        config: ModelConfig,
        num_classes: int,
        *,
        pretrained: bool = True,
        architecture: Mapping[str, Any] | None = None,
    ) -> SegmentationModel:
        """The model of this profile. pretrained=False: the architecture only (a checkpoint's weights go in
        next), built from `architecture` (a checkpoint's stored values) where given, so that nothing is
        downloaded or read besides the checkpoint. Bad config values: ConfigError naming the key."""
        ...

    def default_stages(self, config: ApexConfig) -> list[StageConfig]:
        """The curriculum used when train.stages is empty."""
        ...

    def input_size_problem(self, height: int, width: int) -> str | None:
        """None when (height, width) pixels suit the model, else the sentence saying why (nearest valid sizes)."""
        ...

    def from_checkpoint(
        self, checkpoint: TrainingCheckpoint, config: ModelConfig, *, prefer_ema: bool = False, source: str
    ) -> SegmentationModel:
        """The model of a training checkpoint (architecture from `config` and the checkpoint, weights from the
        checkpoint, EMA ones when `prefer_ema` and present), checked against the weights before it is
        allocated. A misfit: CheckpointError naming `source` and the keys."""
        ...


class CheckpointStore(Protocol):
    """Atomic saves and secure (weights_only) loads of checkpoint payloads."""

    def save(self, payload: Mapping[str, Any], path: str) -> None: ...

    def load(self, path: str, *, expected_sizes: tuple[int, int] | None = None) -> dict[str, Any]:
        """Secure load; expected_sizes = (largest tensor, all tensors) in bytes of the model it goes into,
        when known: declared sizes beyond what that model can hold are refused before reading them."""
        ...

    def extract_model_state(self, payload: Any, *, prefer_ema: bool = False) -> dict[str, torch.Tensor]: ...

    def list_checkpoints(self, directory: str) -> list[str]:
        """The checkpoint files (*.pt) of a folder, sorted by name; [] when the folder does not exist."""
        ...

    def delete(self, path: str) -> None:
        """Remove a checkpoint file (an old epoch file); raises OSError when it cannot be removed."""
        ...

    def copy(self, source: str, target: str) -> None:
        """Atomically make `target` hold the same checkpoint as `source` (a hard link where possible)."""
        ...


class ReportWriter(Protocol):
    """Writes a train report (a plain dict) to the run's output folder."""

    def write(self, report: Mapping[str, Any], output_dir: str) -> list[str]:
        """Writes its files; returns their paths."""
        ...


class Evaluator(Protocol):
    """COCO bbox/segm AP of detections against ground truth, counting at most `max_detections` per image."""

    max_detections: int

    def with_limit(self, max_detections: int) -> Evaluator:
        """The same evaluator counting `max_detections` detections per image (the evaluated model's own)."""
        ...

    def evaluate(
        self,
        ground_truth: dict[str, Any],
        detections: Sequence[tuple[int, Detections]],
        categories: CategoryMap,
    ) -> EvalResult:
        """ground_truth: COCO dataset dict; detections: (image_id, Detections) with contiguous labels."""
        ...

    def encode(self, image_id: int, detections: Detections, categories: CategoryMap) -> Any:
        """One image's detections in a compact, picklable form (e.g. COCO records with RLE masks), so
        validation never holds full-resolution masks of the whole val split in memory."""
        ...

    def evaluate_encoded(
        self, ground_truth: dict[str, Any], encoded: Sequence[tuple[int, Any]], categories: CategoryMap
    ) -> EvalResult:
        """The same metrics as `evaluate`, from (image_id, encode(...)) pairs."""
        ...


class ConfigLoader(Protocol):
    """Turns a config file plus overrides into a validated config."""

    def __call__(
        self, path: str | None, overrides: Sequence[str] = (), extra: Mapping[str, Any] | None = None
    ) -> ApexConfig: ...


class AuxiliaryLoss(Protocol):
    """An extra loss term the trainer adds (e.g. teacher distillation), computed on the same batch."""

    name: str  # component name in reports, e.g. "distill"

    def __call__(self, batch: Batch, student_outputs: dict[str, torch.Tensor]) -> torch.Tensor:
        """Clipped, unweighted scalar; the trainer multiplies it by the stage/config weight."""
        ...


class LossInputs(Protocol):
    """What the loss components of one step read: the model's outputs, the batch, and targets that are
    computed at most once per step (on the first component that asks) and shared."""

    outputs: dict[str, torch.Tensor]  # the dense model's raw outputs (cls_logits, boxes, quality, masks...)
    batch: Batch

    def detection_targets(self) -> DetectionTargets: ...

    def matched_masks(self) -> MatchedMasks: ...


class LossComponent(Protocol):
    """One loss term of a stage (`train.stages[*].losses` key): its config knobs and its compute function.

    Variants live in apex_x/loss_components/, one file each, registered in domain/registry.py's
    LOSS_COMPONENTS; nothing else branches on a component's name.
    """

    name: str  # e.g. "det"
    auxiliary: bool  # True: computed by the trainer's AuxiliaryLoss of the same name (distill), not the model
    in_first_stage: bool  # part of the detection-only first stage of the small profile's default curriculum
    clip_key: str  # the dotted config key of its clip, for messages, e.g. "train.loss_det_component_clip"

    def clip(self, train: TrainConfig) -> float:
        """Its clip: the value is `min(nan_to_num(value), clip)`."""
        ...

    def default_weight(self, train: TrainConfig) -> float:
        """Its weight in a stage that does not list it (0 = off; distill: train.distill_weight)."""
        ...

    def weight_scale(self, epoch_progress: float, train: TrainConfig) -> float:
        """Warm-up ramp of its stage weight at `epoch_progress` (fractional epochs of the run); 1 = none."""
        ...

    def params(self, epoch_progress: float | None, train: TrainConfig) -> dict[str, float]:
        """Its own knobs for one step (e.g. det's box weight ramp); None = evaluation (ramps at their end)."""
        ...

    def compute(self, inputs: LossInputs, settings: LossSettings) -> torch.Tensor:
        """Clipped, unweighted scalar over apex_x.kernels."""
        ...


class ImageReader(Protocol):
    """Finds and decodes image files for inference, and letterboxes them to the network input."""

    def list_images(self, path: str) -> list[str]:
        """A file -> [file]; a folder -> its image files, sorted. Missing path or empty folder: UserError."""
        ...

    def read(self, path: str) -> torch.Tensor:
        """(H, W, 3) uint8 RGB, EXIF orientation applied; a file that does not decode: UserError naming it."""
        ...

    def prepare(
        self, image: torch.Tensor, *, image_id: int, file_name: str, height: int, width: int
    ) -> tuple[torch.Tensor, ImageMeta]:
        """(H, W, 3) uint8 -> the (3, height, width) uint8 letterboxed network input and its metadata."""
        ...


class PredictionSink(Protocol):
    """Receives predictions image by image (e.g. draws overlays) and writes the results when closed."""

    def add(self, image_id: int, path: str, image: torch.Tensor, detections: Detections) -> None:
        """image: (H, W, 3) uint8 RGB original; detections in its pixels, contiguous class ids."""
        ...

    def close(self, summary: Mapping[str, Any]) -> list[str]:
        """Writes what is pending (results JSON, summary); returns the paths written."""
        ...


class InitWeightsReader(Protocol):
    """Reads the weights a new run starts from (`train.init_from`): any payload layout of the user guide, an
    Apex-X checkpoint (its EMA weights when present) or a model.safetensors, through the secure loaders."""

    def __call__(self, path: str) -> tuple[dict[str, torch.Tensor], str]:
        """(weights by name, `module.` prefixes removed; the layout they came from, for the report).
        CheckpointError naming train.init_from and the file when it cannot be read or holds no weights."""
        ...


class WeightsWriter(Protocol):
    """The final weights file of a run (model.safetensors)."""

    def write(self, state: Mapping[str, torch.Tensor], path: str, metadata: Mapping[str, Any] | None = None) -> None:
        ...


class ExperimentTracker(Protocol):
    """An experiment tracker (`train.loggers`): TensorBoard event files, an MLflow run. Called on rank 0 only; a
    failure never stops training (the engine warns once and leaves the tracker out)."""

    name: str  # the train.loggers value, e.g. "tensorboard"

    def start(self, run_dir: str, params: Mapping[str, Any], run_name: str) -> None:
        """Open the run: `params` = the effective config flattened to dotted keys (hyper-parameters)."""
        ...

    def log_metrics(self, metrics: Mapping[str, float], step: int) -> None:
        """Scalars at optimizer step `step` (e.g. train/loss, train/lr, val/segm_AP)."""
        ...

    def log_images(self, images: Mapping[str, torch.Tensor], step: int) -> None:
        """Images at optimizer step `step` by tag (e.g. val/predictions/image_12): (H, W, 3) uint8 RGB each."""
        ...

    def close(self, status: str) -> None:
        """Flush and end the run with the train report's status (finished, paused, stopped, failed, ...)."""
        ...


class PreviewRenderer(Protocol):
    """Draws val images with their predictions (and ground truth) and writes their grid as a picture."""

    def panels(self, samples: Sequence[PreviewSample], class_names: Sequence[str]) -> list[torch.Tensor]:
        """One (H, W, 3) uint8 RGB picture per sample: its ground truth (when known) beside its predictions."""
        ...

    def write_grid(self, panels: Sequence[torch.Tensor], path: str, title: str) -> str:
        """The panels tiled in a grid under `title`, written atomically as a PNG at `path`; returns the path.
        UserError naming the path when it cannot be written."""
        ...


class ModelExporter(Protocol):
    """One export format of a trained network (`apex-x export --format NAME`): writes a deployable file holding
    the network and its dense decoding (boxes, scores, mask coefficients, prototypes; adapters/export/graph.py).
    Raises UserError naming the format and what could not be exported."""

    format: str  # e.g. "onnx"
    suffix: str  # file suffix of its files, e.g. ".onnx"
    runtime: str  # what runs the file, e.g. "onnxruntime"

    def export(self, network: torch.nn.Module, input_size: tuple[int, int], path: str, *, dynamic_batch: bool,
               metadata: Mapping[str, str]) -> None:
        """Write `network` for (B, 3, height, width) uint8 inputs (B fixed at 1 unless `dynamic_batch`) to `path`."""
        ...

    def load(self, path: str, device: torch.device) -> Callable[[torch.Tensor], list[torch.Tensor]]:
        """The exported file ready to run on `device`: (B, 3, H, W) uint8 images -> its raw outputs (OUTPUT_NAMES
        order) as CPU float32 tensors."""
        ...


class RunFolder(Protocol):
    """The output folder of a run (`train.output_dir`): checked before anything is created, then prepared.

    The application does no file I/O of its own: it asks this port (and CheckpointStore) instead.
    """

    def check_run_folder(self, output_dir: str) -> None:
        """Refuse (ConfigError naming train.output_dir, the path and the reason) a folder that cannot be
        created or written; nothing is created by the check."""
        ...

    def prepare(self, output_dir: str) -> None:
        """Create the folder and its checkpoints/, prove it writable, remove half-written temporary files
        of a killed run. Raises ConfigError naming train.output_dir when it cannot."""
        ...

    def exists(self, path: str) -> bool:
        """Whether a file of the run (e.g. model.safetensors, last.pt) or the folder itself exists."""
        ...

    def holds_checkpoints(self, output_dir: str) -> bool:
        """Whether any checkpoint (*.pt) was written anywhere under the run folder."""
        ...

    def remove(self, output_dir: str) -> None:
        """Delete a run folder this process created for a run refused before it saved anything."""
        ...

    def contains(self, output_dir: str, path: str) -> bool:
        """Whether `path` lies inside the run folder (both made absolute against the working directory)."""
        ...
