"""The minimal training loop of benchmarks/learn_shapes.py: AdamW, warmup + cosine over the budget (time or
images), EMA, then COCO evaluation of the EMA weights. For tuning the model without the rest of the pipeline."""

from __future__ import annotations

import argparse
import copy
import json
import math
import time
from typing import Any

import torch

from apex_x.adapters.datasets.coco_source import CocoDatasetSource
from apex_x.adapters.evaluation.coco_evaluator import PycocotoolsEvaluator
from apex_x.adapters.models.profiles import get_profile
from apex_x.adapters.models.student import StudentModelFactory
from apex_x.domain.config import ApexConfig, effective_stages
from apex_x.domain.types import LossSettings


def _param_groups(model: torch.nn.Module, weight_decay: float) -> list[dict[str, Any]]:
    decay, no_decay = [], []
    for parameter in model.parameters():
        (no_decay if parameter.ndim <= 1 else decay).append(parameter)
    return [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]


class Ema:
    """Exponential moving average of the weights with the usual warmup of the decay."""

    def __init__(self, model: torch.nn.Module, decay: float) -> None:
        self.model = copy.deepcopy(model).eval()
        self.decay = decay
        self.updates = 0
        for parameter in self.model.parameters():
            parameter.requires_grad_(False)

    @torch.no_grad()
    def update(self, model: torch.nn.Module) -> None:
        self.updates += 1
        decay = self.decay * (1.0 - math.exp(-self.updates / 200.0))
        source = model.state_dict()
        for name, value in self.model.state_dict().items():
            if value.dtype.is_floating_point:
                value.mul_(decay).add_(source[name].detach(), alpha=1.0 - decay)
            else:
                value.copy_(source[name])


def train_minimal(config: ApexConfig, args: argparse.Namespace) -> dict[str, Any]:
    source = CocoDatasetSource(config)
    categories = source.categories
    model = StudentModelFactory().build(config.model, categories.num_classes)
    model.train()
    train = config.train
    optimizer = torch.optim.AdamW(_param_groups(model, train.weight_decay), lr=train.lr, betas=(0.9, 0.999))
    ema = Ema(model, train.ema_decay)
    loader = source.train_loader(train.batch_size, seed=train.seed)
    stages = effective_stages(config, get_profile(config.model.profile).default_stages(config))
    images_seen, step, epoch = 0, 0, 0
    history: list[dict[str, float]] = []
    start = time.perf_counter()
    cpu_start = time.process_time()
    budget = args.budget_s
    done = False
    while not done:
        for batch in loader.iter_epoch(epoch):
            elapsed = time.perf_counter() - start
            progress = images_seen / args.budget_images if args.budget_images else elapsed / budget
            if progress >= 1.0:
                done = True
                break
            warm = min(1.0, (step + 1) / max(train.warmup_steps, 1))
            lr = train.lr * warm * (train.min_lr_ratio + (1 - train.min_lr_ratio) * 0.5 * (1 + math.cos(math.pi * progress)))
            for group in optimizer.param_groups:
                group["lr"] = lr
            stage = stages[min(int(progress * len(stages)), len(stages) - 1)]
            box_scale = train.loss_box_scale_start + (train.loss_box_scale_end - train.loss_box_scale_start) * min(
                1.0, progress * len(stages) * 2
            )
            settings = LossSettings(
                weights=dict(stage.losses),
                clips={"det": train.loss_det_component_clip, "seg": train.loss_seg_component_clip,
                       "boundary": train.loss_boundary_component_clip},
                params={"det": {"box_scale": box_scale, "box_weight": train.loss_box_weight,
                                "quality_weight": train.loss_quality_weight}},
            )
            with torch.autocast("cpu", dtype=torch.bfloat16, enabled=args.amp == "bf16"):
                outputs = model(batch.images)
            losses = model.compute_losses(outputs, batch, settings)
            total = sum(settings.weights[name] * value for name, value in losses.items())
            optimizer.zero_grad(set_to_none=True)
            total.backward()
            if train.grad_clip_norm:
                torch.nn.utils.clip_grad_norm_(model.parameters(), train.grad_clip_norm)
            optimizer.step()
            ema.update(model)
            step += 1
            images_seen += batch.batch_size
            if step % 20 == 0:
                entry = {"step": step, "elapsed_s": round(time.perf_counter() - start, 1), "lr": round(lr, 6),
                         **{k: round(float(v), 4) for k, v in losses.items()}}
                history.append(entry)
                print(json.dumps(entry), flush=True)
        epoch += 1
    train_seconds = time.perf_counter() - start
    cpu_seconds = time.process_time() - cpu_start
    evaluation = evaluate_model(ema.model, source)
    return {"images_seen": images_seen, "steps": step, "epochs": images_seen / len(loader) / train.batch_size,
            "train_seconds": train_seconds, "images_per_s": images_seen / train_seconds,
            "cpu_seconds": cpu_seconds, "images_per_cpu_s": images_seen / cpu_seconds,
            "metrics": evaluation, "history": history}


@torch.no_grad()
def evaluate_model(model: torch.nn.Module, source: CocoDatasetSource) -> dict[str, Any]:
    model.eval()
    detections = []
    start = time.perf_counter()
    for batch in source.val_loader(16).iter_epoch(0):
        outputs = model(batch.images)
        for meta, found in zip(batch.metas, model.postprocess(outputs, batch.metas), strict=True):
            detections.append((meta.image_id, found))
    result = PycocotoolsEvaluator().evaluate(source.val_ground_truth(), detections, source.categories)
    return {**result.to_plain(), "eval_seconds": time.perf_counter() - start}
