"""Where the student backbone's weights come from (`model.backbone_pretrained`, `model.backbone_weights`).

- false (and no backbone_weights): random init, nothing read.
- true: the timm model's pretrained weights through timm's own Hugging Face hub loading
  (`timm.create_model(name, pretrained=True)`, hub id `pretrained_cfg.hf_hub_id`, e.g.
  `timm/lcnet_075.ra2_in1k`): the cache first (`HF_HOME` / `HF_HUB_CACHE`), a download when online, only the
  cache with `HF_HUB_OFFLINE=1`. When they cannot be had, `TimmWeightsError` names the model, the hub id,
  the cache folder checked and three fixes; it never falls back to random init.
- a path: a local weights file, or a folder holding one (model.safetensors / pytorch_model.bin, as timm's
  `push_to_hub` / `save_pretrained` or a hub snapshot leave it), read by the secure loaders (backbone.py).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import structlog

from apex_x.adapters.models.dinov2_backbone import hub_cache_dir, is_offline
from apex_x.domain.config import ModelConfig
from apex_x.domain.errors import ConfigError, UserError

log = structlog.get_logger(__name__)

KEY = "model.backbone_pretrained"
# What a folder (or a hub snapshot) may hold, in timm's order of preference (timm/models/_hub.py).
WEIGHT_FILES = ("model.safetensors", "pytorch_model.bin", "pytorch_model.pth", "model.pth")


class TimmWeightsError(UserError):
    """The student backbone's pretrained weights cannot be had (exit 2, with where it looked and the fixes)."""


@dataclass(frozen=True)
class TimmWeightsSource:
    """kind: random (no weights), file / folder (local), hub (timm's pretrained weights by hub id)."""

    kind: Literal["random", "file", "folder", "hub"]
    model: str  # model.backbone
    location: str = ""  # the file or folder; the hub id for kind "hub"
    key: str = KEY  # the config key that chose it (messages)

    def describe(self) -> str:
        """For logs and reports: 'random init', 'hub timm/lcnet_075.ra2_in1k', 'file /w/b.safetensors', ..."""
        return "random init" if self.kind == "random" else f"{self.kind} {self.location}"


def weights_source(config: ModelConfig) -> TimmWeightsSource:
    """What the config asks for (no file or network is touched; the hub id needs timm's model table)."""
    value: bool | str = config.backbone_pretrained
    key = KEY
    if config.backbone_weights and value is False:
        value, key = config.backbone_weights, "model.backbone_weights"
    if value is False:
        return TimmWeightsSource("random", config.backbone)
    if value is True:
        return TimmWeightsSource("hub", config.backbone, hub_id(config.backbone))
    path = Path(str(value)).expanduser()
    return TimmWeightsSource("folder" if path.is_dir() else "file", config.backbone, str(path), key)


def hub_id(model: str) -> str:
    """The Hugging Face hub id timm loads `model`'s pretrained weights from (its default tag, or the tag the
    name carries, e.g. `lcnet_075.ra2_in1k`); ConfigError naming the key when timm has none."""
    import timm
    from timm.models import get_pretrained_cfg

    if not timm.is_model(model):
        raise ConfigError(f"unknown timm model {model!r} (see timm.list_models())", key="model.backbone")
    try:
        cfg = get_pretrained_cfg(model, allow_unregistered=False)
    except RuntimeError as error:  # an unknown tag: "Invalid pretrained tag (x) for resnet50."
        tags = timm.list_pretrained(model.split(".")[0] + ".*")
        raise ConfigError(f"{error} Tags with weights: {', '.join(tags[:8]) or 'none'}", key="model.backbone") from None
    found = getattr(cfg, "hf_hub_id", None) if cfg is not None else None
    if not found:
        tagged = timm.list_pretrained(model.split(".")[0] + ".*")
        hint = f"; models with pretrained weights of this family: {', '.join(tagged[:5])}" if tagged else ""
        raise ConfigError(
            f"timm has no pretrained weights on the Hugging Face hub for model.backbone={model!r}{hint}; choose "
            f"such a backbone, give {KEY} a local weights file, or set {KEY}: false for random init",
            key=KEY,
        )
    return str(found)


def cached_weights(repo_id: str, cache_dir: Path | None = None) -> str | None:
    """The path of `repo_id`'s weights file in the local Hugging Face cache, None when absent. No network."""
    from huggingface_hub import try_to_load_from_cache

    for name in WEIGHT_FILES:
        found = try_to_load_from_cache(repo_id, name, cache_dir=str(cache_dir or hub_cache_dir()))
        if isinstance(found, str):
            return found
    return None


def folder_weights(folder: Path) -> Path | None:
    """The weights file of a local folder (model.safetensors first), None when it holds none."""
    return next((folder / name for name in WEIGHT_FILES if (folder / name).is_file()), None)


def local_weights_file(source: TimmWeightsSource) -> str:
    """The file of a file/folder source; ConfigError naming the key when it does not exist or holds none."""
    path = Path(source.location)
    if source.kind == "folder":
        found = folder_weights(path)
        if found is None:
            raise ConfigError(
                f"the folder {path} holds no weights file ({' or '.join(WEIGHT_FILES)}); point the key to a "
                "weights file or a folder holding one",
                key=source.key,
            )
        return str(found)
    if not path.is_file():
        raise ConfigError(f"backbone weights file {str(path)!r} does not exist", key=source.key)
    return str(path)


def missing_message(source: TimmWeightsSource, cache_dir: Path, reason: str) -> str:
    """Where it looked and the three fixes (the DINOv2 message's shape)."""
    repo_folder = cache_dir / ("models--" + source.location.replace("/", "--"))
    return (
        f"pretrained weights of the student backbone model.backbone={source.model!r} ({KEY}: true, hub id "
        f"{source.location}) are not available: {reason}. Checked the Hugging Face cache folder {cache_dir} "
        f"(looked for {repo_folder}).\n"
        "Fix it in one of three ways:\n"
        "  1. download them once with network access (unset HF_HUB_OFFLINE): "
        f"python -c \"import timm; timm.create_model('{source.model}', pretrained=True)\"\n"
        f"  2. point {KEY} to a local weights file or folder (model.safetensors), e.g. "
        f"--set {KEY}=/path/to/{source.model}/model.safetensors\n"
        f"  3. train from random init with --set {KEY}=false (and check the cache and network with "
        "`python -m apex_x.cli preflight --config CONFIG`)"
    )


def create_pretrained(name: str, source: TimmWeightsSource, **timm_kwargs: Any) -> Any:
    """timm.create_model(name, pretrained=True, features_only=True) through timm's hub loading, reading the
    cache folder of the environment now (HF_HUB_CACHE / HF_HOME). TimmWeightsError when they are not available."""
    import timm

    cache_dir = hub_cache_dir()
    offline = is_offline()
    cached = cached_weights(source.location, cache_dir)
    if cached is None and offline:
        reason = "offline mode (HF_HUB_OFFLINE=1) and they are not in the local cache"
        raise TimmWeightsError(missing_message(source, cache_dir, reason))
    if cached is not None and cached.endswith(".safetensors"):
        from apex_x.adapters.checkpoints.safetensors_check import check_safetensors

        check_safetensors(Path(cached))  # header, spans and size limits, like any weights file, before timm reads it
    where = f"the Hugging Face cache ({cached})" if cached else f"the Hugging Face hub ({source.location}, downloading)"
    log.info("setup", phase=f"loading the backbone's pretrained weights from {where}")
    try:
        body = timm.create_model(name, pretrained=True, features_only=True, cache_dir=str(cache_dir), **timm_kwargs)
    except UserError:
        raise
    except (OSError, RuntimeError, ValueError) as error:  # hub errors are OSErrors; timm raises RuntimeError
        first = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        reason = f"they are not in the local cache and the download failed ({type(error).__name__}: {first})"
        if cached:
            reason = f"the cached file {cached} could not be loaded ({type(error).__name__}: {first})"
        raise TimmWeightsError(missing_message(source, cache_dir, reason)) from None
    log.info("backbone_pretrained_loaded", backbone=name, hub_id=source.location, cached=bool(cached))
    return body


__all__ = [
    "KEY", "TimmWeightsError", "TimmWeightsSource", "cached_weights", "create_pretrained", "folder_weights",
    "hub_id", "local_weights_file", "missing_message", "weights_source",
]
