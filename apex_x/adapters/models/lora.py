"""LoRA adapters on the DINOv2 attention projections through peft: discover, apply, save alone, merge.

Target modules come from `model.lora_target_modules` or are *discovered* on the loaded model: the
query/value projections of attention, whatever the transformers release calls them (5.x: `q_proj` /
`v_proj`; older: `query` / `value`; timm-style fused `qkv`).
"""

from __future__ import annotations

import warnings
from collections import Counter
from pathlib import Path
from typing import Any

import structlog
import torch
from torch import nn

from apex_x.domain.config import ModelConfig
from apex_x.domain.errors import CheckpointError, ConfigError, DependencyError
from apex_x.installation import worldclass_install_hint

log = structlog.get_logger(__name__)

# Query/value projection spellings, most specific first; the first complete set found wins.
QUERY_VALUE_SPELLINGS: tuple[tuple[str, ...], ...] = (("q_proj", "v_proj"), ("query", "value"), ("q", "v"), ("qkv",))
ADAPTER_WEIGHTS_FILE = "adapter_model.safetensors"
TARGETS_KEY = "model.lora_target_modules"


def linear_module_names(model: nn.Module) -> list[str]:
    """Full names of every nn.Linear inside `model` (what LoRA can wrap)."""
    return [name for name, module in model.named_modules() if isinstance(module, nn.Linear)]


def _matches(module_name: str, target: str) -> bool:
    """peft's rule for a list entry: the whole name, or its last dotted parts."""
    return module_name == target or module_name.endswith("." + target)


def discover_lora_targets(model: nn.Module) -> list[str]:
    """The query/value projection names of the model's attention layers, as this release spells them."""
    leaf_counts = Counter(name.rsplit(".", 1)[-1] for name in linear_module_names(model))
    for spelling in QUERY_VALUE_SPELLINGS:
        if all(leaf_counts[leaf] for leaf in spelling):
            return list(spelling)
    raise ConfigError(
        "cannot discover the attention query/value projections of the backbone (looked for "
        f"{[list(s) for s in QUERY_VALUE_SPELLINGS]}); set the names explicitly. Linear layers found: "
        f"{sorted(leaf_counts)}",
        key=TARGETS_KEY,
    )


def validate_lora_targets(model: nn.Module, targets: list[str]) -> list[str]:
    """Checks that every configured target names at least one nn.Linear of the model."""
    names = linear_module_names(model)
    if not targets:
        raise ConfigError("must list at least one module name (or be null to discover them)", key=TARGETS_KEY)
    unknown = [target for target in targets if not any(_matches(name, target) for name in names)]
    if unknown:
        leaves = sorted({name.rsplit(".", 1)[-1] for name in names})
        raise ConfigError(
            f"{unknown} match no linear layer of the backbone; valid names here are {leaves} "
            f"(discovered default: {discover_lora_targets(model)})",
            key=TARGETS_KEY,
        )
    return list(targets)


def apply_lora(backbone: nn.Module, config: ModelConfig) -> nn.Module:
    """Wraps `backbone` in a peft LoRA model (rank, alpha, dropout, targets from the config)."""
    try:
        from peft import LoraConfig, get_peft_model
    except ImportError as error:
        raise DependencyError(worldclass_install_hint(f"LoRA needs peft ({error})")) from error

    if config.lora_target_modules is None:
        targets = discover_lora_targets(backbone)
    else:
        targets = validate_lora_targets(backbone, list(config.lora_target_modules))
    lora_config = LoraConfig(
        r=config.lora_rank,
        lora_alpha=config.lora_alpha,
        lora_dropout=config.lora_dropout,
        target_modules=targets,
        bias="none",
    )
    with warnings.catch_warnings():  # peft asks transformers a deprecated is_gradient_checkpointing
        warnings.filterwarnings("ignore", category=FutureWarning)
        wrapped = get_peft_model(backbone, lora_config)
    log.info("lora_applied", targets=targets, rank=config.lora_rank, alpha=config.lora_alpha)
    return wrapped


def lora_target_names(peft_model: Any) -> list[str]:
    """The target module names the LoRA adapters of a peft model were applied to ([] for a plain model)."""
    configs = getattr(peft_model, "peft_config", None) or {}
    config = configs.get("default") if isinstance(configs, dict) else None
    targets = getattr(config, "target_modules", None) or []
    return [targets] if isinstance(targets, str) else [str(name) for name in targets]


def is_lora_parameter(name: str) -> bool:
    """peft names every adapter tensor lora_A / lora_B (/ lora_embedding / lora_magnitude)."""
    return "lora_" in name


def lora_parameters(module: nn.Module) -> list[nn.Parameter]:
    """The LoRA adapter parameters inside `module`."""
    return [parameter for name, parameter in module.named_parameters() if is_lora_parameter(name)]


def lora_state_dict(peft_model: nn.Module) -> dict[str, torch.Tensor]:
    """The adapter weights alone (peft's own key layout, as saved in adapter_model.safetensors)."""
    from peft import get_peft_model_state_dict

    return get_peft_model_state_dict(peft_model)


def save_lora_adapters(peft_model: Any, folder: str | Path) -> Path:
    """Writes adapter_model.safetensors + adapter_config.json into `folder`; returns the weights file."""
    target = Path(folder)
    target.mkdir(parents=True, exist_ok=True)
    peft_model.save_pretrained(str(target), safe_serialization=True)
    return target / ADAPTER_WEIGHTS_FILE


def load_lora_adapters(peft_model: Any, path: str | Path) -> None:
    """Loads adapters written by `save_lora_adapters` (the folder or its .safetensors file) in place."""
    from peft import set_peft_model_state_dict

    from apex_x.adapters.checkpoints.safetensors_check import load_safetensors

    source = Path(path)
    file = source / ADAPTER_WEIGHTS_FILE if source.is_dir() else source
    if not file.is_file():
        raise CheckpointError(f"{file}: no LoRA adapter file (expected {ADAPTER_WEIGHTS_FILE} from save_lora_adapters)")
    state = load_safetensors(file)
    try:
        result = set_peft_model_state_dict(peft_model, state)
    except RuntimeError as error:  # shape mismatch: a different rank or backbone
        raise CheckpointError(f"{file}: LoRA adapters do not fit this model: {error}") from error
    unexpected = list(getattr(result, "unexpected_keys", []) or [])
    missing = [key for key in (getattr(result, "missing_keys", []) or []) if is_lora_parameter(key)]
    if unexpected or missing:
        raise CheckpointError(
            f"{file}: LoRA adapters do not fit this model: unexpected keys {unexpected[:5]}, "
            f"missing adapter keys {missing[:5]}"
        )


def merge_lora(peft_model: Any) -> nn.Module:
    """The base model with every adapter merged into its weights (W + B A * alpha / r), for inference."""
    return peft_model.merge_and_unload()
