"""Teacher -> student distillation (the AuxiliaryLoss port): class, box and mask logits of a frozen teacher.

On each batch the frozen teacher (eval mode, no gradients) runs on the student's input images; both are
dense models over the same anchor grid (strides 8/16/32, ceil sizes), so their outputs align anchor by
anchor. The loss, unweighted and clipped (`min(nan_to_num(x), clip)`), is

- cls:  binary KL between sigmoid(student / T) and sigmoid(teacher / T) for every anchor and class,
        times T^2, normalised by the teacher's soft foreground mass (sum of its max class probability);
- box:  L1 between the student's and the teacher's ltrb distances (in strides) on the teacher's top-k
        anchors per image, weighted by the teacher's score;
- mask: binary KL between the student's and the teacher's assembled mask logits (at temperature T) on
        those anchors, inside the teacher's boxes, weighted by the teacher's score.

`train.distill_weight > 0` with `train.teacher_checkpoint` turns it on; the trainer multiplies the
value by the weight and reports it as the component `distill` (apex_x/loss_components/distill.py).
"""

from __future__ import annotations

import structlog
import torch
import torch.nn.functional as F
from torch import nn

from apex_x.adapters.models.heads import assemble_mask_logits
from apex_x.domain.checkpoint import TrainingCheckpoint
from apex_x.domain.config import ApexConfig, ModelConfig
from apex_x.domain.errors import CheckpointError, ConfigError
from apex_x.domain.ports import CheckpointStore
from apex_x.domain.registry import LOSS_COMPONENTS
from apex_x.domain.types import Batch, CategoryMap
from apex_x.kernels import clip_component
from apex_x.loss_components.distill import Distillation

log = structlog.get_logger(__name__)


def binary_kl(student_logits: torch.Tensor, teacher_logits: torch.Tensor, temperature: float) -> torch.Tensor:
    """Element-wise KL(Bernoulli(teacher) || Bernoulli(student)) at temperature T, times T^2 (>= 0)."""
    student = student_logits.float() / temperature
    teacher = teacher_logits.float() / temperature
    target = torch.sigmoid(teacher)
    cross = F.binary_cross_entropy_with_logits(student, target, reduction="none")
    entropy = F.binary_cross_entropy_with_logits(teacher, target, reduction="none")
    return (cross - entropy).clamp_min(0.0) * temperature**2


def box_weights(boxes: torch.Tensor, height: int, width: int, stride: float) -> torch.Tensor:
    """(B, K, 4) xyxy boxes in input pixels -> (B, K, h, w) {0, 1}: mask-grid cells whose centre is inside."""
    ys = (torch.arange(height, device=boxes.device, dtype=torch.float32) + 0.5) * stride
    xs = (torch.arange(width, device=boxes.device, dtype=torch.float32) + 0.5) * stride
    x1, y1, x2, y2 = (boxes[..., i, None, None] for i in range(4))
    inside_y = (ys[:, None] >= y1) & (ys[:, None] <= y2)
    inside_x = (xs[None, :] >= x1) & (xs[None, :] <= x2)
    return (inside_y & inside_x).float()


class DistillationLoss:
    """AuxiliaryLoss `distill`: a frozen teacher's class, box and mask logits as soft targets."""

    name = Distillation.name

    def __init__(
        self,
        teacher: nn.Module,
        *,
        temperature: float = 2.0,
        clip: float = 20.0,
        top_k: int = 32,
        cls_weight: float = 1.0,
        box_weight: float = 1.0,
        mask_weight: float = 1.0,
    ) -> None:
        self.teacher = teacher.eval()
        for parameter in self.teacher.parameters():
            parameter.requires_grad_(False)
        self.temperature = float(temperature)
        self.clip = float(clip)
        self.top_k = int(top_k)
        self.cls_weight, self.box_weight, self.mask_weight = float(cls_weight), float(box_weight), float(mask_weight)
        self.last_terms: dict[str, float] = {}

    @torch.no_grad()
    def teacher_outputs(self, images: torch.Tensor) -> dict[str, torch.Tensor]:
        """The teacher's raw outputs on `images` (moved to their device on first use; always eval mode)."""
        parameter = next(self.teacher.parameters(), None)
        if parameter is not None and parameter.device != images.device:
            self.teacher.to(images.device)
        if self.teacher.training:
            self.teacher.eval()
        return self.teacher(images)

    def __call__(self, batch: Batch, student_outputs: dict[str, torch.Tensor]) -> torch.Tensor:
        student = student_outputs
        teacher = self.teacher_outputs(batch.images.to(student["cls_logits"].device))
        if teacher["cls_logits"].shape != student["cls_logits"].shape:
            raise ConfigError(
                f"the teacher's class logits {tuple(teacher['cls_logits'].shape)} do not align with the student's "
                f"{tuple(student['cls_logits'].shape)} (same classes and strides 8/16/32 are needed)",
                key="train.teacher_checkpoint",
            )
        cls_term = self.classification_term(student, teacher)
        index, weight = self.select_anchors(teacher)
        box_term = self.box_term(student, teacher, index, weight)
        mask_term = self.mask_term(student, teacher, index, weight, int(batch.images.shape[-1]))
        total = self.cls_weight * cls_term + self.box_weight * box_term + self.mask_weight * mask_term
        self.last_terms = {"cls": float(cls_term.detach()), "box": float(box_term.detach()),
                           "mask": float(mask_term.detach())}
        return clip_component(total, self.clip)

    def classification_term(self, student: dict[str, torch.Tensor], teacher: dict[str, torch.Tensor]) -> torch.Tensor:
        teacher_logits = teacher["cls_logits"].float()  # (B, A, C)
        foreground = torch.sigmoid(teacher_logits).amax(dim=-1).sum().clamp_min(1.0)
        return binary_kl(student["cls_logits"], teacher_logits, self.temperature).sum() / foreground

    def select_anchors(self, teacher: dict[str, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
        """Top-k anchors per image by the teacher's score: index (B, k) and weight = that score (B, k)."""
        scores = torch.sigmoid(teacher["cls_logits"].float()).amax(dim=-1)  # (B, A)
        k = min(self.top_k, scores.shape[1])
        weight, index = scores.topk(k, dim=1)
        return index, weight

    def box_term(
        self, student: dict[str, torch.Tensor], teacher: dict[str, torch.Tensor], index: torch.Tensor,
        weight: torch.Tensor,
    ) -> torch.Tensor:
        strides = teacher["strides"].float()[index]  # (B, k)
        gather = index.unsqueeze(-1).expand(-1, -1, 4)
        student_ltrb = student["box_ltrb"].float().gather(1, gather) / strides.unsqueeze(-1)
        teacher_ltrb = teacher["box_ltrb"].float().gather(1, gather) / strides.unsqueeze(-1)
        per_anchor = (student_ltrb - teacher_ltrb).abs().mean(dim=-1)  # (B, k)
        return (per_anchor * weight).sum() / weight.sum().clamp_min(1e-6)

    def mask_term(
        self, student: dict[str, torch.Tensor], teacher: dict[str, torch.Tensor], index: torch.Tensor,
        weight: torch.Tensor, image_width: int,
    ) -> torch.Tensor:
        def coefficients(outputs: dict[str, torch.Tensor]) -> torch.Tensor:
            coeffs = outputs["mask_coeffs"]
            return coeffs.gather(1, index.unsqueeze(-1).expand(-1, -1, coeffs.shape[-1]))

        student_masks = assemble_mask_logits(coefficients(student), student["prototypes"])  # (B, k, h, w)
        teacher_masks = assemble_mask_logits(coefficients(teacher), teacher["prototypes"])  # (B, k, h', w')
        height, width = student_masks.shape[-2:]
        if teacher_masks.shape[-2:] != (height, width):
            teacher_masks = F.interpolate(teacher_masks, size=(height, width), mode="bilinear", align_corners=False)
        boxes = teacher["boxes"].float().gather(1, index.unsqueeze(-1).expand(-1, -1, 4))  # (B, k, 4)
        inside = box_weights(boxes, height, width, image_width / width)  # (B, k, h, w)
        per_pixel = binary_kl(student_masks, teacher_masks, self.temperature) * inside
        per_anchor = per_pixel.sum(dim=(-2, -1)) / inside.sum(dim=(-2, -1)).clamp_min(1.0)  # (B, k)
        return (per_anchor * weight).sum() / weight.sum().clamp_min(1e-6)



def load_teacher(path: str, store: CheckpointStore, categories: CategoryMap) -> nn.Module:
    """The frozen teacher of an Apex-X training checkpoint (EMA weights when present), through the secure store.

    The checkpoint's profile rebuilds its model (ModelProfile.from_checkpoint: the architecture from the stored
    config, every weight from the file); a model that can merge adapters (TeacherModelV3's LoRA) is merged.
    """
    from apex_x.adapters.models.profiles import get_profile

    checkpoint = TrainingCheckpoint.from_payload(
        store.load(path), path,
        why="train.teacher_checkpoint must be an Apex-X training checkpoint (e.g. the best.pt of a worldclass run) "
        "holding its config and classes",
    )
    stored = checkpoint.category_map(path)
    if stored != categories:
        raise ConfigError(
            f"the teacher {path} was trained on classes {list(stored.names)}, the student's data has "
            f"{list(categories.names)}; distillation needs the same classes in the same order",
            key="train.teacher_checkpoint",
        )
    try:
        model_config = ModelConfig.model_validate(dict(checkpoint.config)["model"])
    except (KeyError, ValueError) as error:
        raise CheckpointError(f"{path}: its stored model config is unreadable: {error}") from error
    teacher = get_profile(model_config.profile).from_checkpoint(
        checkpoint, model_config, prefer_ema=True, source=f"{path} (train.teacher_checkpoint)"
    )
    merge = getattr(teacher, "merge_lora_", None)
    if callable(merge):
        merge()  # frozen: merged adapters cost nothing at run time
    log.info("distillation_teacher_loaded", checkpoint=path, profile=model_config.profile, classes=stored.num_classes)
    return teacher  # type: ignore[return-value]


class DistillationLossBuilder:
    """What the container injects into the train use case: (categories, device) -> [DistillationLoss] or []."""

    def __init__(self, settings: ApexConfig, store: CheckpointStore) -> None:
        self.settings = settings
        self.store = store

    def __call__(self, *, categories: CategoryMap, device: torch.device) -> list[DistillationLoss]:
        train = self.settings.train
        if train.distill_weight <= 0:
            return []
        if not train.teacher_checkpoint:
            raise ConfigError(
                f"train.distill_weight={train.distill_weight} turns distillation on but no teacher is set: point "
                "train.teacher_checkpoint to a trained checkpoint (e.g. artifacts/worldclass/checkpoints/best.pt) "
                "or set train.distill_weight=0",
                key="train.teacher_checkpoint",
            )
        teacher = load_teacher(train.teacher_checkpoint, self.store, categories).to(device)
        clip = LOSS_COMPONENTS.get(Distillation.name).clip(train)
        return [DistillationLoss(teacher, temperature=train.distill_temperature, clip=clip)]
