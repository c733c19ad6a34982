"""The one config schema (sections model, train, data, runtime): types, defaults, ranges and docs."""

from __future__ import annotations

import hashlib
import json
from collections import Counter
from collections.abc import Sequence
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, field_validator, model_validator

from apex_x.domain.model_profiles import DEFAULT_PROFILE, check_profile_name
from apex_x.domain.model_sizes import STUDENT_SIZES, apply_size, check_size
from apex_x.domain.registry import DATASET_FORMATS, LOSS_COMPONENTS, default_loss_components

# A `train.stages[*].losses` key: the name of a registered loss component (domain/registry.py).
LossComponentName = Annotated[str, AfterValidator(LOSS_COMPONENTS.check)]
# A `data.format` value: the name of a registered dataset format.
DatasetFormatName = Annotated[str, AfterValidator(DATASET_FORMATS.check)]
ParamGroup = Literal["backbone", "neck", "head", "mask", "lora", "all"]


class _Strict(BaseModel):
    """Strict base: unknown keys are errors, no silent type coercion, validated on assignment."""

    model_config = ConfigDict(extra="forbid", strict=True, validate_assignment=True, frozen=False)


class ModelConfig(_Strict):
    """Which network to build and at what input size."""

    profile: str = Field(
        DEFAULT_PROFILE,
        description="Model profile (domain.model_profiles): small = timm student (CPU friendly); "
        "worldclass = TeacherModelV3 (DINOv2 + LoRA).",
    )
    num_classes: int | None = Field(
        None, ge=1, le=10000, description="Class count; null = taken from the dataset's categories."
    )
    input_height: int = Field(
        256, ge=32, le=4096, description="Network input height in pixels (letterboxed); a multiple of the profile's "
        "coarsest stride (32 for small and worldclass)."
    )
    input_width: int = Field(
        256, ge=32, le=4096, description="Network input width in pixels (letterboxed); same rule as input_height."
    )
    backbone: str = Field(
        "lcnet_075",
        description="timm model name of the student backbone (features_only, random init; needs strides 8/16/32). "
        "lcnet_075 trains fast on CPU; on a GPU try e.g. cs3darknet_m or resnet50.",
    )
    backbone_weights: str | None = Field(
        None, description="Optional local weights file for the student backbone; never downloaded (the same as "
        "model.backbone_pretrained: PATH; set one of the two)."
    )
    backbone_pretrained: bool | str = Field(
        False, description="Student backbone weights: false = random init; true = the timm model's pretrained "
        "weights through timm's Hugging Face hub loading (the cache first; HF_HUB_OFFLINE=1 reads only the cache; "
        "never a silent fall-back to random init); a path = a local weights file (.safetensors / .pt / .pth / "
        ".bin) or a folder holding model.safetensors or pytorch_model.bin.",
    )
    size: str | None = Field(
        None, description="Named student size (small profile), like the YOLO scales: n, s, m or l picks model.backbone, "
        "neck_channels, width_multiplier, neck_depth and head_depth (domain/model_sizes.py; a key the config sets "
        "itself wins); null = those keys as set (their defaults are size n).",
        json_schema_extra={"word_choices": list(STUDENT_SIZES)},  # `size: n` is the size, not YAML 1.1's "no"
    )
    width_multiplier: float = Field(0.5, gt=0.0, le=4.0, description="Channel multiplier of neck and heads.")
    neck_channels: int = Field(128, ge=8, le=1024, description="Channels of the FPN/PAN neck before the multiplier.")
    neck_depth: int = Field(1, ge=1, le=4, description="Conv blocks per FPN/PAN merge of the student's neck.")
    head_depth: int = Field(2, ge=1, le=6, description="Conv layers per tower of the detection head.")
    num_prototypes: int = Field(32, ge=1, le=256, description="Prototype masks of the mask head.")
    mask_stride: int = Field(4, ge=1, le=8, description="Stride of prototype masks and stored target masks.")
    score_threshold: float = Field(0.05, ge=0.0, le=1.0, description="Post-processing score threshold.")
    nms_iou: float = Field(0.6, gt=0.0, le=1.0, description="IoU threshold of class-aware NMS.")
    max_detections: int = Field(100, ge=1, le=1000, description="Detections kept per image after NMS; also the "
                                "COCO evaluation's detection limit per image (maxDets 1, 10 and this). Raise it for "
                                "val images with more objects (preflight and the evaluation warn).")
    pre_nms_topk: int = Field(1000, ge=1, le=100000, description="Candidates kept per image before NMS.")
    teacher_backbone: str = Field(
        "facebook/dinov2-large", description="DINOv2 hub id or local folder for the worldclass profile."
    )
    lora_rank: int = Field(8, ge=1, le=512, description="LoRA rank.")
    lora_alpha: float = Field(16.0, gt=0.0, description="LoRA alpha (scale = alpha / rank).")
    lora_dropout: float = Field(0.0, ge=0.0, lt=1.0, description="LoRA dropout.")
    lora_target_modules: list[str] | None = Field(
        None, description="Module names for LoRA; null = discovered from the loaded backbone (q/v projections)."
    )
    gradient_checkpointing: bool = Field(False, description="Recompute backbone activations to save memory.")
    teacher_pyramid_channels: int = Field(256, ge=8, le=2048, description="Channels of the teacher's pyramid.")

    @field_validator("profile")
    @classmethod
    def _known_profile(cls, value: str) -> str:
        return check_profile_name(value)

    @model_validator(mode="before")
    @classmethod
    def _apply_size(cls, data: Any) -> Any:
        return apply_size(data)

    @field_validator("size")
    @classmethod
    def _known_size(cls, value: str | None) -> str | None:
        return check_size(value)

    @field_validator("backbone_pretrained")
    @classmethod
    def _pretrained_value(cls, value: bool | str) -> bool | str:
        if isinstance(value, str) and not value.strip():
            raise ValueError("must be true, false or the path of a local weights file or folder, got ''")
        return value

    @model_validator(mode="after")
    def _one_weights_source(self) -> ModelConfig:
        pretrained = self.backbone_pretrained
        if self.backbone_weights and pretrained is not False and pretrained != self.backbone_weights:
            raise ValueError(
                f"model.backbone_weights={self.backbone_weights!r} and model.backbone_pretrained={pretrained!r} "
                "both choose the student backbone's weights; set one of them (model.backbone_pretrained: PATH "
                "is the same as model.backbone_weights: PATH)"
            )
        return self


def _check_range(value: list[float] | None, low_limit: float, high_limit: float) -> list[float] | None:
    if value is not None and not low_limit < value[0] <= value[1] <= high_limit:
        raise ValueError(f"must satisfy {low_limit} < low <= high <= {high_limit}, got {list(value)}")
    return value


class AugmentOverride(_Strict):
    """A stage's own augmentation (train.stages[*].augment): a key left null keeps the data.* value."""

    mosaic: float | None = Field(None, ge=0.0, le=1.0, description="Stage value of data.mosaic.")
    copy_paste: float | None = Field(None, ge=0.0, le=1.0, description="Stage value of data.copy_paste.")
    mixup: float | None = Field(None, ge=0.0, le=1.0, description="Stage value of data.mixup.")
    affine_degrees: float | None = Field(None, ge=0.0, le=180.0, description="Stage value of data.affine_degrees.")
    affine_translate: float | None = Field(
        None, ge=0.0, le=0.5, description="Stage value of data.affine_translate."
    )
    affine_scale: float | None = Field(None, ge=0.0, lt=1.0, description="Stage value of data.affine_scale.")
    multi_scale: list[float] | None = Field(
        None, min_length=2, max_length=2, description="Stage value of data.multi_scale ([1, 1] = off in this stage)."
    )

    @field_validator("multi_scale")
    @classmethod
    def _multi_scale_range(cls, value: list[float] | None) -> list[float] | None:
        return _check_range(value, 0.0, 4.0)


class StageConfig(_Strict):
    """One named stage of the curriculum."""

    name: str = Field(..., min_length=1, description="Stage name, shown in logs and reports.")
    epochs: int | None = Field(None, ge=0, le=100000, description="Epochs of this stage; null = train.epochs.")
    losses: dict[LossComponentName, float] = Field(
        default_factory=lambda: default_loss_components(1.0),
        description="Active loss components and their weights (a component not listed is off); default: every "
        "registered model component (det, seg, boundary) at 1.",
    )
    trainable: list[ParamGroup] = Field(
        default_factory=lambda: ["all"], description="Parameter groups that train in this stage."
    )
    lr_scale: float = Field(1.0, gt=0.0, le=100.0, description="Multiplier of train.lr in this stage.")
    augment: AugmentOverride | None = Field(
        None, description="This stage's mosaic / copy_paste / mixup / affine_* / multi_scale (null keys and a null "
        "augment keep the data.* values); data.close_mosaic_epochs still switches them off at the end of the run."
    )

    @field_validator("losses")
    @classmethod
    def _weights_non_negative(cls, value: dict[str, float]) -> dict[str, float]:
        for name, weight in value.items():
            if not weight >= 0.0:
                raise ValueError(f"weight of loss component {name!r} must be >= 0, got {weight}")
        return value


class TrainConfig(_Strict):
    """How to train: curriculum, optimisation, stability knobs, checkpoints and outputs."""

    epochs: int = Field(10, ge=1, le=100000, description="Epochs per stage unless the stage sets its own.")
    batch_size: int = Field(
        8, ge=1, le=4096, description="Images per loader batch (per process); an optimizer step sees "
        "batch_size x processes images, or about train.nominal_batch_size with gradient accumulation."
    )
    nominal_batch_size: int | None = Field(
        None, ge=1, le=65536, description="Accumulate gradients over round(nominal / (batch_size x processes)) "
        "batches per optimizer step (Ultralytics' nbs); train.lr and train.weight_decay are the values at this "
        "batch size and scale by effective / nominal. null = no accumulation (one batch per step)."
    )
    patience: int | None = Field(
        None, ge=1, le=100000, description="Early stopping: a stage ends after this many epochs without a new "
        "best checkpoint metric (counted from the stage's start or its best epoch; checked after validations); "
        "the last stage ending so ends the run (status finished, the reason in the report). null = off."
    )
    output_dir: str = Field("artifacts/train_output", min_length=1, description="Where reports and checkpoints go.")
    allow_synthetic_fallback: bool = Field(
        False, description="Use synthetic data when no real dataset is configured (smoke runs only)."
    )
    seed: int = Field(0, ge=0, le=2**32 - 1, description="Seed of python, numpy, torch and data workers.")
    deterministic: bool = Field(True, description="Deterministic algorithms (exact resume on CPU).")
    stages: list[StageConfig] = Field(
        default_factory=list, max_length=100,
        description="Curriculum (at most 100 stages); empty = the profile's default stages.",
    )
    steps_per_stage: int | None = Field(
        None, ge=1, description="Cap on optimizer steps of every epoch of every stage (smoke runs)."
    )
    optimizer: Literal["adamw"] = Field("adamw", description="Optimizer.")
    lr: float = Field(2e-3, gt=0.0, le=10.0, description="Peak learning rate.")
    weight_decay: float = Field(0.05, ge=0.0, le=1.0, description="AdamW weight decay (not on norms/biases).")
    warmup_steps: int = Field(100, ge=0, description="Linear warmup steps before the cosine schedule.")
    min_lr_ratio: float = Field(0.05, ge=0.0, le=1.0, description="Final lr as a fraction of the peak.")
    grad_clip_norm: float | None = Field(10.0, gt=0.0, description="Max global grad norm; null = no clipping.")
    ema: bool = Field(True, description="Keep an EMA of the weights (evaluated and checkpointed).")
    val_loss: bool = Field(
        True, description="Compute the loss on the val split at each validation (in the same forward as the "
        "predictions; breaks checkpoint-metric ties). false skips it (validation then costs the forward, "
        "post-processing and COCOeval only); it is still computed when val_loss selects best.pt."
    )
    ema_decay: float = Field(0.999, gt=0.0, lt=1.0, description="EMA decay (with warmup).")
    amp: Literal["auto", "bf16", "off"] = Field("auto", description="auto = bf16 autocast on CUDA, off on CPU.")
    max_consecutive_bad_steps: int = Field(
        20, ge=1, description="Non-finite steps in a row that stop the run."
    )
    checkpoint_metric: str = Field(
        "segm_AP", description="Metric that selects best.pt (e.g. segm_AP, bbox_AP, segm_AP50, val_loss)."
    )
    keep_last_epochs: int | None = Field(
        None, ge=1, description="Keep only the last K epoch_XXXX.pt files; null = keep all."
    )
    checkpoint_every_steps: int | None = Field(
        None, ge=1, description="Also refresh last.pt every N steps inside an epoch (mid-epoch resume); null = epoch ends only."
    )
    eval_every_epochs: int = Field(1, ge=1, description="Validate every N epochs (and always at the end).")
    val_preview_images: int = Field(
        12, ge=0, le=64, description="Val images drawn with their predictions after each validation (a fixed "
        "choice seeded by train.seed): plots/val_predictions.png (ground truth beside the predictions) and the "
        "trackers' images; `apex-x eval` writes eval_val_predictions.png. 0 = none."
    )
    log_every_steps: int = Field(10, ge=1, description="Plain log line every N steps when not on a terminal.")
    loggers: Annotated[list[Literal["tensorboard", "mlflow"]], AfterValidator(_unique_loggers)] = Field(
        default_factory=list, description="Experiment trackers (rank 0): tensorboard = event files in "
        "<output_dir>/tensorboard; mlflow = a run in MLFLOW_TRACKING_URI or <output_dir>/mlruns. Per-step losses, "
        "lr and grad norm, per-epoch validation metrics, the config as hyper-parameters. [] = none."
    )
    loss_box_weight: float = Field(2.5, ge=0.0, description="Weight of GIoU inside the det component.")
    loss_quality_weight: float = Field(1.0, ge=0.0, description="Weight of the quality term inside det.")
    loss_boundary_warmup_epochs: int = Field(
        1, ge=0, description="Epochs before the boundary weight starts ramping up."
    )
    loss_boundary_max_scale: float = Field(1.0, ge=0.0, le=100.0, description="Final boundary weight scale.")
    loss_box_warmup_epochs: int = Field(1, ge=0, description="Epochs over which the box weight ramps.")
    loss_box_scale_start: float = Field(0.5, ge=0.0, le=100.0, description="Box weight scale at the start.")
    loss_box_scale_end: float = Field(1.0, ge=0.0, le=100.0, description="Box weight scale after warmup.")
    loss_det_component_clip: float = Field(50.0, gt=0.0, description="Clip of the det component.")
    loss_seg_component_clip: float = Field(20.0, gt=0.0, description="Clip of the seg component.")
    loss_boundary_component_clip: float = Field(20.0, gt=0.0, description="Clip of the boundary component.")
    enable_lora_finetune: bool = Field(True, description="worldclass: add the LoRA fine-tuning stage.")
    distill_weight: float = Field(0.0, ge=0.0, le=100.0, description="Weight of teacher distillation (> 0 = on).")
    teacher_checkpoint: str | None = Field(None, description="Teacher checkpoint for distillation.")
    distill_temperature: float = Field(2.0, gt=0.0, le=100.0, description="Temperature of logit distillation.")
    init_from: str | None = Field(
        None, min_length=1, description="Fine-tune: start this new run from the weights of a file (an Apex-X "
        "checkpoint, its EMA weights when present; any payload layout of the user guide; or a run's "
        "model.safetensors). Tensors matching by name and shape are loaded, the others (e.g. the class logits "
        "after a class-count change) keep their fresh init; optimizer, schedule and progress start fresh. "
        "--resume continues a run instead (and never re-applies this).",
    )
    init_from_force: bool = Field(
        False, description="Load train.init_from even when it fits under 50% of the model's weights (by element "
        "count); without it such a file (probably another model) is refused."
    )
    backbone_lr_mult: float | None = Field(
        None, gt=0.0, le=10.0, description="Multiplier of the lr for the backbone's parameters (the neck and heads "
        "take train.lr); null = the fine-tuning recipe's (domain/fine_tune.py): 1.0 from scratch, 0.5 with "
        "pretrained backbone weights.",
    )
    backbone_norm_eval: bool | None = Field(
        None, description="Keep the backbone's BatchNorm running statistics as loaded (mmdetection's norm_eval; "
        "their scale and shift still train); null = the recipe's: false (from scratch and pretrained: with AdamW at "
        "the student's lr frozen statistics diverged in our measurement).",
    )
    freeze_backbone_epochs: int | None = Field(
        None, ge=0, le=100000, description="The backbone's parameters are frozen for the first N epochs of the run "
        "(the first stage is split: '<stage>_backbone_frozen' then '<stage>'); null = the recipe's (0).",
    )


def _unique_loggers(value: list[str]) -> list[str]:
    repeated = sorted({name for name in value if value.count(name) > 1})
    if repeated:
        raise ValueError(f"lists {repeated} more than once (each tracker would log every value twice)")
    return value


class ExtraTrainData(_Strict):
    """One more train dataset of a run (an item of data.extra_train): its format and that format's train keys
    (the same names as data.*). Its classes are matched by name to the main dataset's; val stays the main one."""

    format: DatasetFormatName = Field("coco", description="Dataset format of this dataset (coco or yolo).")
    coco_train_images: str | None = Field(None, description="format coco: folder of its images.")
    coco_train_annotations: str | None = Field(None, description="format coco: its COCO instances JSON.")
    yolo_data: str | None = Field(None, description="format yolo: its Ultralytics data.yaml (its train split is used).")

    @model_validator(mode="after")
    def _keys_of_its_format(self) -> ExtraTrainData:
        """Keys of another format only (e.g. yolo_data with the default format coco): name the format to set. A
        key's format is the `format NAME:` its description starts with (no format name is spelled here)."""
        owners = {name: field.description.partition(":")[0].removeprefix("format ")
                  for name, field in type(self).model_fields.items()
                  if name != "format" and field.description and getattr(self, name)}
        other = [name for name, owner in owners.items() if owner != self.format]
        if other and len(other) == len(owners):
            wanted = owners[other[0]]
            noun = "is a key" if len(other) == 1 else "are keys"
            raise ValueError(f"{' and '.join(other)} {noun} of format {wanted!r} but this item's format is "
                             f"{self.format!r} (an extra_train item's default is 'coco'); add format: {wanted}")
        return self


class DataConfig(_Strict):
    """Which dataset format, where its data lives, and how it is loaded and augmented."""

    format: DatasetFormatName = Field(
        "coco", description="Dataset format of the data.* paths: coco (instances JSON + images folder per split), "
        "yolo (an Ultralytics data.yaml, data.yolo_data) or synthetic (generated smoke data, no files)."
    )
    coco_train_images: str | None = Field(None, description="Folder of training images.")
    coco_train_annotations: str | None = Field(None, description="COCO instances JSON of the train split.")
    coco_val_images: str | None = Field(None, description="Folder of validation images (optional split).")
    coco_val_annotations: str | None = Field(None, description="COCO instances JSON of the val split.")
    yolo_data: str | None = Field(
        None, description="data.format yolo: the Ultralytics data.yaml (train/val image folders, names; polygon "
        "labels in the parallel labels/ folders)."
    )
    extra_train: list[ExtraTrainData] = Field(
        default_factory=list, max_length=32, description="More train datasets for the same run, e.g. [{format: "
        "yolo, yolo_data: more/data.yaml}]: their train images join the main train split; each category is matched "
        "by name (exact and case-sensitive, surrounding spaces ignored) to a class of the main dataset, and a name "
        "the main dataset lacks is an error naming the dataset and the names. Each is checked like the main one; "
        "the mapping is in the train report. [] = the main dataset only."
    )
    num_workers: int = Field(0, ge=0, le=64, description="DataLoader worker processes.")
    pin_memory: bool = Field(True, description="Pin host memory when training on CUDA.")
    hflip_prob: float = Field(0.5, ge=0.0, le=1.0, description="Horizontal flip probability.")
    scale_jitter: list[float] = Field(
        default_factory=lambda: [0.75, 1.25],
        min_length=2,
        max_length=2,
        description="[low, high] range of the random scale factor around the letterbox scale.",
    )
    hsv_jitter: list[float] = Field(
        default_factory=lambda: [0.015, 0.5, 0.3],
        min_length=3,
        max_length=3,
        description="Max [hue, saturation, value] jitter.",
    )
    max_instances: int = Field(
        300, ge=1, le=10000, description="Instances kept per image (largest first); the rest are dropped from the "
        "targets (preflight and train say how many). 300 fits dense real photos (COCO has images with 90+)."
    )
    cache_images: bool = Field(
        False, description="Older name of data.cache=ram (kept for existing configs): true caches in RAM."
    )
    # -- image cache (issue 19): decoded images at their training base size, reused from the second epoch --
    cache: Literal["none", "ram", "disk"] = Field(
        "none", description="Cache of decoded images resized once to the training base size (the letterbox size "
        "times the largest zoom the augmentations use, never above the original) with their prepared masks: none; "
        "ram (filled before the workers start and shared with them; refused when the estimate exceeds 2/3 of the "
        "available memory); disk (.npy files under data.cache_dir, keyed by file path, size and mtime, filled "
        "lazily by the workers and reused by later runs). Augmentations run after the cache."
    )
    cache_dir: str | None = Field(
        None, description="Folder of the data.cache=disk files; null = $XDG_CACHE_HOME/apex_x/images (or "
        "~/.cache/apex_x/images)."
    )
    check_cache: bool = Field(
        True, description="Reuse the verdict of a passed dataset check when the annotation files (size, mtime, "
        "sha256), the images folders' listings, the data.* settings and Apex-X's version are unchanged "
        "($APEX_X_CACHE_DIR, else ~/.cache/apex_x): a second start of the same data skips the checks; also keeps "
        "each split's annotation table (flat arrays the loaders read), so it skips parsing the train JSON too."
    )
    full_image_check: bool = Field(
        False, description="Decode every image in the pre-training dataset check (slower; truncated JPEG/PNG files "
        "are caught without it by a structural check of their end)."
    )
    keep_grouping_categories: bool = Field(
        False, description="Keep a category that has no annotations and is the supercategory of all the others "
        "(the grouping category some labelling tools export first) as a class; by default it is left out."
    )
    max_annotations_per_image: int = Field(
        10_000, ge=1, le=10_000_000, description="Annotations one image may list in a COCO file (the densest real "
        "datasets have a few thousand); an image over it is an error naming it, and its annotations are not kept, "
        "so a file with a million on one image is refused in bounded memory. Raise it for denser data."
    )
    max_categories: int = Field(
        10_000, ge=1, le=10_000_000, description="Categories one COCO file may list (LVIS has 1,203); more is an "
        "error before any model is built. Raise it for a larger vocabulary."
    )
    allow_external_links: bool = Field(
        False, description="Follow symbolic links of image files that lead outside the images folder (e.g. into a "
        "shared image store); by default such a link is refused by name. Links inside the folder are always fine."
    )
    high_bit_depth_scaling: Literal["full_range", "used_bits"] = Field(
        "full_range", description="How 16-bit images become 8-bit: full_range maps 0..65535 to 0..255; used_bits "
        "maps 0..2^b-1, b = the bits the image actually uses (at least 8; e.g. 12-bit data in a 16-bit PNG)."
    )
    on_bad_image: Literal["error", "skip"] = Field(
        "error", description="An image that cannot be decoded (found by the checks or during training): error "
        "stops (during training with last.pt saved and the resume command); skip leaves it out and counts it."
    )
    repeat_factor_threshold: float | None = Field(
        None, gt=0.0, le=1.0, description="Repeat-factor sampling for rare classes (LVIS, Gupta et al. 2019): an "
        "image is seen r = max over its classes of max(1, sqrt(t / f)) times per epoch on average, f = the share "
        "of train images holding the class, t = this threshold (LVIS uses 0.001). null = uniform sampling."
    )
    # -- augmentation for real data (adapters/datasets/augment); per stage: train.stages[*].augment --------
    mosaic: float = Field(
        0.0, ge=0.0, le=1.0, description="Probability that a training image is a mosaic of 4 images (itself and "
        "3 random others, around a random centre of a 2x canvas, then the random affine crops the input size)."
    )
    copy_paste: float = Field(
        0.0, ge=0.0, le=1.0, description="Probability that a training image gets instances pasted (by their masks) "
        "from another random image; what they cover is cut from the masks below them."
    )
    mixup: float = Field(
        0.0, ge=0.0, le=1.0, description="Probability that a training image is blended with another augmented one "
        "(ratio ~ Beta(32, 32)); the instances of both are kept."
    )
    affine_degrees: float = Field(0.0, ge=0.0, le=180.0, description="Random rotation in [-d, d] degrees.")
    affine_translate: float = Field(
        0.0, ge=0.0, le=0.5, description="Random translation in [-t, t] of the input width / height."
    )
    affine_scale: float = Field(0.0, ge=0.0, lt=1.0, description="Random zoom in [1 - s, 1 + s].")
    multi_scale: list[float] | None = Field(
        None, min_length=2, max_length=2, description="[low, high] factor of the input size: each training batch "
        "gets one size in that range, both sides multiples of the model's stride (32); null = off. Validation "
        "keeps model.input_height x input_width."
    )
    close_mosaic_epochs: int = Field(
        0, ge=0, le=100000, description="The run's last N epochs train without mosaic, copy_paste, mixup, affine "
        "and multi_scale (flip, scale jitter and HSV stay): the last epochs see images like validation's."
    )
    synthetic_train_images: int = Field(64, ge=1, description="Synthetic smoke data: train images.")
    synthetic_val_images: int = Field(16, ge=0, description="Synthetic smoke data: val images.")

    @field_validator("scale_jitter")
    @classmethod
    def _ordered_range(cls, value: list[float]) -> list[float]:
        low, high = value
        if not 0.0 < low <= high <= 10.0:
            raise ValueError(f"must satisfy 0 < low <= high <= 10, got {list(value)}")
        return value

    @field_validator("multi_scale")
    @classmethod
    def _multi_scale_range(cls, value: list[float] | None) -> list[float] | None:
        return _check_range(value, 0.0, 4.0)

    @model_validator(mode="after")
    def _one_cache_mode(self) -> DataConfig:
        if self.cache_images and self.cache == "disk":
            raise ValueError(
                "data.cache_images=true (the older name of data.cache=ram) and data.cache='disk' choose two image "
                "caches; keep one of them (data.cache: ram, or data.cache: disk without data.cache_images)"
            )
        return self


class RuntimeConfig(_Strict):
    """Where and how the process runs."""

    device: Literal["auto", "cpu", "cuda"] = Field("auto", description="auto = CUDA when available.")
    kernels: Literal["auto", "torch", "compiled", "triton"] = Field(
        "auto",
        description="Loss kernels backend; APEX_X_KERNELS overrides; auto = Triton on CUDA, compiled torch on CPU "
        "when a C++ compiler is found (eager torch otherwise).",
    )
    compile_model: bool = Field(
        False,
        description="torch.compile (Inductor) the network's training forward: a step 1.07-1.18x faster on a 2-core "
        "CPU after a first compile of ~1 minute (cached on disk); compiled for one input size (multi-scale runs "
        "eager after the first size change); eager, with a warning and the reason in the report, when no compiler "
        "is found or compiling fails.",
    )
    log_level: Literal["debug", "info", "warning", "error"] = Field("info", description="Log level.")
    num_threads: int | None = Field(None, ge=1, le=1024, description="torch CPU threads; null = torch default.")
    collective_timeout_s: int = Field(
        600, ge=5, le=86400,
        description="DDP: the longest any collective may wait (e.g. for rank 0's validation) before the run stops "
        "with 'peer failed' (exit 3).",
    )
    peer_timeout_s: int = Field(
        120, ge=2, le=86400,
        description="DDP: a rank whose heartbeat stops for this long is named and the others stop (exit 3).",
    )


class ApexConfig(_Strict):
    """The whole effective configuration of a run."""

    model: ModelConfig = Field(default_factory=ModelConfig)
    train: TrainConfig = Field(default_factory=TrainConfig)
    data: DataConfig = Field(default_factory=DataConfig)
    runtime: RuntimeConfig = Field(default_factory=RuntimeConfig)

    @model_validator(mode="after")
    def _cross_checks(self) -> ApexConfig:
        if self.train.loss_box_scale_start > 0 and self.train.loss_box_scale_end < 0:
            raise ValueError("train.loss_box_scale_end must be >= 0")
        names = [stage.name for stage in self.train.stages]
        duplicates = sorted(name for name, count in Counter(names).items() if count > 1)
        if duplicates:
            raise ValueError(f"train.stages has duplicate stage names: {duplicates}")
        return self

    def to_plain(self) -> dict[str, Any]:
        """Plain JSON-able dict (what config.json holds)."""
        return json.loads(self.model_dump_json())

    def stable_hash(self) -> str:
        """sha256 of the canonical JSON: same config, same hash, across processes and machines."""
        canonical = json.dumps(self.to_plain(), sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(canonical.encode("utf-8")).hexdigest()


def effective_stages(config: ApexConfig, default_stages: Sequence[StageConfig]) -> list[StageConfig]:
    """The stages of the run with every epochs count resolved; `default_stages` (the model profile's
    curriculum, ModelProfile.default_stages) when train.stages is empty."""
    stages = config.train.stages or list(default_stages)
    return [
        stage.model_copy(update={"epochs": stage.epochs if stage.epochs is not None else config.train.epochs})
        for stage in stages
    ]
