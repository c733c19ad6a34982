"""Resume rules: which config keys may change on resume, the run folder of a checkpoint, finished runs."""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import structlog

from apex_x.domain.checkpoint import TrainingCheckpoint
from apex_x.domain.config import ApexConfig, TrainConfig
from apex_x.domain.errors import CheckpointError, ConfigError, UserError
from apex_x.domain.ports import CheckpointStore

# Keys that may differ between the checkpoint's config and the resumed run's (regexes on dotted keys).
SAFE_TO_CHANGE = (
    r"train\.epochs",
    r"train\.stages\.\d+\.epochs",
    r"train\.output_dir",
    r"train\.steps_per_stage",
    r"train\.eval_every_epochs",
    r"train\.val_preview_images",
    r"train\.log_every_steps",
    r"train\.keep_last_epochs",
    r"train\.checkpoint_every_steps",
    r"train\.max_consecutive_bad_steps",
    r"train\.patience",  # early stopping may be switched on, off or changed for the rest of a run
    r"train\.allow_synthetic_fallback",  # the dataset fingerprint must still match
    r"runtime\..+",
    r"data\.num_workers",
    r"data\.pin_memory",
    r"data\.cache",  # the cache holds exactly what a load produces: batches are identical with or without it
    r"data\.cache_dir",
    r"data\.cache_images",
    r"data\.full_image_check",
    r"data\.on_bad_image",
    # Where pretrained weights were read from: a resumed run takes every weight (and a worldclass run its
    # DINOv2 architecture) from the checkpoint, so a moved backbone folder may be named anew or left as is.
    r"model\.teacher_backbone",
    r"model\.backbone_weights",
    r"model\.backbone_pretrained",
)
_SAFE = re.compile("^(" + "|".join(SAFE_TO_CHANGE) + ")$")


def safe_keys_text() -> str:
    """SAFE_TO_CHANGE as people read it: train.stages.<i>.epochs, runtime.*, ..."""
    readable = (pattern.replace("\\d+", "<i>").replace(".+", "*").replace("\\.", ".") for pattern in SAFE_TO_CHANGE)
    return ", ".join(readable)


class RunAlreadyFinished(UserError):
    """Resuming a run that has done all its epochs."""


def flatten(value: Any, prefix: str = "") -> dict[str, Any]:
    """Nested dicts/lists of dicts -> {dotted.key: leaf}; lists of scalars stay leaves."""
    if isinstance(value, Mapping):
        flat: dict[str, Any] = {}
        for key, item in value.items():
            flat.update(flatten(item, f"{prefix}{key}."))
        return flat
    if isinstance(value, list) and value and all(isinstance(item, Mapping) for item in value):
        flat = {f"{prefix}count": len(value)}
        for index, item in enumerate(value):
            flat.update(flatten(item, f"{prefix}{index}."))
        return flat
    return {prefix.rstrip("."): value}


def check_resume_config(
    current: ApexConfig, checkpoint_config: Mapping[str, Any], checkpoint_classes: int, path: str
) -> list[str]:
    """Raise ConfigError naming the first key that changed and is not safe to change; return the safe changes."""
    before = flatten(dict(checkpoint_config))
    after = flatten(current.to_plain())
    defaults = flatten(ApexConfig().to_plain())
    changed: list[str] = []
    for key in sorted(set(before) | set(after)):
        old, new = before.get(key, "<absent>"), after.get(key, "<absent>")
        if old == new:
            continue
        if old == "<absent>" and key in defaults and new == defaults[key]:
            continue  # a key newer than the checkpoint, at its default: the run behaves as it did
        if key == "model.num_classes" and (new is None or new == checkpoint_classes) and (
            old is None or old == checkpoint_classes
        ):
            continue  # null means "from the data", which the checkpoint resolved already
        if key.endswith(".count") and key.startswith("train.stages"):
            key = "train.stages"
        if not _SAFE.match(key):
            raise ConfigError(
                f"cannot resume {path} with a changed value (checkpoint: {old!r}, now: {new!r}). Only these keys "
                f"may change on resume: {safe_keys_text()}. Start a new run (without --resume) to change it",
                key=key,
            )
        changed.append(f"{key}: {old!r} -> {new!r}")
    return changed


def run_folder_of(checkpoint_path: str) -> str | None:
    """`<run>/checkpoints/last.pt` -> `<run>`: where a resumed run keeps writing (None if not that layout)."""
    path = Path(checkpoint_path)
    if path.parent.name == "checkpoints":
        return str(path.parent.parent)
    return None


def finished_message(path: str, epochs_done: int, best: Mapping[str, Any] | None,
                     train: TrainConfig | None = None, ended: Sequence[str] = ()) -> str:
    """Resuming a finished run: say so (with the stages train.patience stopped early, which a resume does not
    run again), and the flags (that --set accepts) that extend it, or that nothing can."""
    best_text = ""
    if best and best.get("value") is not None:
        best_text = f" (best {best.get('name')} {float(best['value']):.4f} at epoch {best.get('epoch')})"
    stopped = ""
    if ended:
        names = ", ".join(repr(name) for name in dict.fromkeys(ended))
        stopped = (f"; train.patience stopped stage(s) {names} early, and a resume does not run a stopped stage "
                   "again")
    hint = extend_hint(train, ended)
    more = (f"To train longer, resume it again with more epochs: {hint}" if hint else
            "No stage is left to extend: start a new run (without --resume) to train further")
    return f"the run of {path} already finished after {epochs_done} epoch(s){best_text}{stopped}; nothing to resume. {more}"


def extend_hint(train: TrainConfig | None, ended: Sequence[str] = ()) -> str:
    """The --set flags that add epochs to this run's curriculum: train.epochs for stages without their own
    epochs (the default curriculum), train.stages.<index>.epochs for each stage that sets its own; stages in
    `ended` (stopped early by train.patience) are left out, as a resume does not run them again."""
    stages = list(train.stages) if train is not None else []
    open_stages = [(index, stage) for index, stage in enumerate(stages) if stage.name not in ended]
    if stages and not open_stages:
        return ""
    inherit = not stages or any(stage.epochs is None for _, stage in open_stages)
    now = f", now {train.epochs}" if train is not None else ""
    hints = [f"--set train.epochs=N (epochs of every stage without its own{now})"] if inherit else []
    own = [(index, stage) for index, stage in open_stages if stage.epochs is not None]
    hints += [f"--set train.stages.{index}.epochs=N (stage {stage.name!r}, now {stage.epochs})"
              for index, stage in own[:6]]
    more = f" (and the other {len(own) - 6} stages the same way)" if len(own) > 6 else ""
    return ", ".join(hints) + more


def resume_settings(
    requested: ApexConfig, resume: str, overrides: Sequence[str], *, store: CheckpointStore,
    load: Callable[[list[str]], ApexConfig],
) -> ApexConfig:
    """The settings of a resumed run: the checkpoint's effective config is the base and only what the user asked
    for now applies on top (`overrides`, the `--set` texts; `load` turns override texts into a config and adds
    the command's flags). Keys where the YAML alone (`requested`) differs from the checkpoint are not applied
    (logged as resume_yaml_ignored). A file that is not a usable training checkpoint: `requested` unchanged
    (the train use case then refuses it with the reason)."""
    try:
        checkpoint = TrainingCheckpoint.from_payload(store.load(resume), resume)
    except CheckpointError:
        return requested
    base = [f"{section}.{key}={json.dumps(value)}" for section, values in checkpoint.config.items()
            if isinstance(values, Mapping) for key, value in values.items()]
    settings = load([*base, *overrides])
    asked = flatten(settings.to_plain())
    yaml_only = [key for key, value in flatten(requested.to_plain()).items() if asked.get(key, value) != value]
    if yaml_only:
        structlog.get_logger(__name__).info(
            "resume_yaml_ignored", checkpoint=resume, keys=yaml_only[:20],
            note="on --resume the checkpoint's config is the base; the YAML's different values are not applied "
            "(pass them with --set KEY=VALUE to change them)",
        )
    return settings
