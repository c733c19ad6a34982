"""DINOv2 from transformers, loaded offline-safely from a local folder or the Hugging Face cache.

`model.teacher_backbone` is either a local folder (config.json + model.safetensors / pytorch_model.bin,
as written by `save_pretrained`) or a hub id such as `facebook/dinov2-large`. With `HF_HUB_OFFLINE=1`
(or `TRANSFORMERS_OFFLINE=1`) only the local cache is read (`local_files_only=True`); otherwise the first
use downloads the weights into the cache. When they cannot be found, `BackboneWeightsError` names the
id, the cache folder checked and the three fixes.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, NamedTuple

import structlog
import torch
import torch.nn.functional as F
from torch import nn

from apex_x.domain.errors import DependencyError, UserError
from apex_x.installation import worldclass_install_hint

log = structlog.get_logger(__name__)

CONFIG_FILE = "config.json"
WEIGHT_FILES = ("model.safetensors", "model.safetensors.index.json", "pytorch_model.bin", "pytorch_model.bin.index.json")
SUPPORTED_MODEL_TYPES = ("dinov2",)
_HUB_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*(/[A-Za-z0-9][A-Za-z0-9._-]*)?$")
_TRUE = {"1", "on", "yes", "true"}
KEY = "model.teacher_backbone"


class BackboneWeightsError(UserError):
    """The configured DINOv2 weights cannot be found (or are not a DINOv2 model)."""


def is_offline() -> bool:
    """True when HF_HUB_OFFLINE or TRANSFORMERS_OFFLINE asks for no network access (read at call time)."""
    return any(os.environ.get(name, "").strip().lower() in _TRUE for name in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE"))


def hub_cache_dir() -> Path:
    """The Hugging Face hub cache folder, resolved from the environment the way huggingface_hub does."""
    for name in ("HF_HUB_CACHE", "HUGGINGFACE_HUB_CACHE"):
        if os.environ.get(name):
            return Path(os.environ[name]).expanduser()
    hf_home = os.environ.get("HF_HOME") or os.path.join(os.environ.get("XDG_CACHE_HOME", "~/.cache"), "huggingface")
    return Path(hf_home).expanduser() / "hub"


@dataclass(frozen=True)
class BackboneSource:
    """Where the backbone comes from: a local folder, or a hub id (cached or to be downloaded)."""

    name: str  # what the config says
    kind: Literal["folder", "hub"]
    location: str  # the folder, or the hub id
    cache_dir: Path
    offline: bool


def resolve_backbone_source(name: str) -> BackboneSource:
    """Classify `model.teacher_backbone`: an existing folder, a hub id, or an error (a missing folder)."""
    path = Path(name).expanduser()
    cache_dir = hub_cache_dir()
    if path.is_dir():
        return BackboneSource(name, "folder", str(path.resolve()), cache_dir, is_offline())
    looks_like_path = name.startswith((".", "/", "~")) or "\\" in name or name.count("/") > 1
    if looks_like_path or not _HUB_ID.match(name):
        raise BackboneWeightsError(
            f"{KEY}={name!r}: no such folder (and not a hub id like 'facebook/dinov2-large'). "
            "Point it to a folder written by save_pretrained (config.json + model.safetensors) or to a hub id."
        )
    return BackboneSource(name, "hub", name, cache_dir, is_offline())


def missing_weights_message(name: str, cache_dir: Path, reason: str) -> str:
    """The error text when weights are absent: the id, the cache folder checked and the three fixes."""
    repo_folder = cache_dir / ("models--" + name.replace("/", "--"))
    return (
        f"DINOv2 backbone weights for {KEY}={name!r} are not available: {reason}. "
        f"Checked the Hugging Face cache folder {cache_dir} (looked for {repo_folder}).\n"
        "Fix it in one of three ways:\n"
        f"  1. download the weights once with network access (unset HF_HUB_OFFLINE): "
        f"python -c \"from transformers import Dinov2Model; Dinov2Model.from_pretrained('{name}')\"\n"
        f"  2. point {KEY} to a local folder holding config.json and model.safetensors "
        f"(e.g. --set {KEY}=/path/to/dinov2-large)\n"
        "  3. run `python -m apex_x.cli preflight --profile worldclass` to check the dependencies, "
        "the cache and the network access"
    )


def cached_files(name: str, cache_dir: Path) -> tuple[str | None, str | None]:
    """(config path, weights path) of a hub id in the local cache, None where absent. No network."""
    from huggingface_hub import try_to_load_from_cache

    def lookup(filename: str) -> str | None:
        found = try_to_load_from_cache(name, filename, cache_dir=str(cache_dir))
        return found if isinstance(found, str) else None

    weights = next((found for found in map(lookup, WEIGHT_FILES) if found), None)
    return lookup(CONFIG_FILE), weights


def folder_files(folder: str) -> tuple[str | None, str | None]:
    """(config path, weights path) of a local folder, None where absent."""
    root = Path(folder)
    config = root / CONFIG_FILE
    weights = next((root / file for file in WEIGHT_FILES if (root / file).is_file()), None)
    return (str(config) if config.is_file() else None), (str(weights) if weights else None)


def _check_folder(source: BackboneSource, *, need_weights: bool) -> None:
    config, weights = folder_files(source.location)
    missing = [CONFIG_FILE] if config is None else []
    if need_weights and weights is None:
        missing.append(" or ".join(WEIGHT_FILES[::2]))
    if missing:
        raise BackboneWeightsError(
            f"{KEY}={source.name!r}: the folder {source.location} has no {' and no '.join(missing)}; "
            "write it with Dinov2Model.save_pretrained(folder) or point the key to another folder or a hub id."
        )


def _load_kwargs(source: BackboneSource) -> dict[str, Any]:
    if source.kind == "folder":
        return {"local_files_only": True}
    return {"local_files_only": source.offline, "cache_dir": str(source.cache_dir)}


def _reason(source: BackboneSource, error: OSError) -> str:
    if source.offline:
        return "offline mode (HF_HUB_OFFLINE=1) and they are not in the local cache"
    first_line = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
    return f"they are not in the local cache and the download failed ({first_line})"


@contextmanager
def _quiet_progress() -> Iterator[None]:
    """No per-tensor "Loading weights" bar from transformers (restored afterwards)."""
    from transformers.utils import logging as hf_logging

    enabled = hf_logging.is_progress_bar_enabled()
    hf_logging.disable_progress_bar()
    try:
        yield
    finally:
        if enabled:
            hf_logging.enable_progress_bar()


def load_dinov2_config(name: str, *, local_only: bool = False) -> Any:
    """The Dinov2Config of `name` (folder or hub id), checked to be a DINOv2 model.

    local_only: read the folder or the Hugging Face cache only, never the network (a rebuild from a
    checkpoint: its stored values must not make a load contact a repository they name)."""
    from transformers import Dinov2Config

    source = resolve_backbone_source(name)
    if source.kind == "folder":
        _check_folder(source, need_weights=False)
    options = _load_kwargs(source)
    if local_only:
        options["local_files_only"] = True
    try:
        config_dict, _ = Dinov2Config.get_config_dict(source.location, **options)
    except OSError as error:
        raise BackboneWeightsError(missing_weights_message(name, source.cache_dir, _reason(source, error))) from error
    model_type = config_dict.get("model_type")
    if model_type not in SUPPORTED_MODEL_TYPES:
        raise BackboneWeightsError(
            f"{KEY}={name!r} is a {model_type!r} model, not DINOv2 (model_type must be one of {SUPPORTED_MODEL_TYPES})."
        )
    return Dinov2Config.from_dict(config_dict)


def dinov2_config_plain(config: Any) -> dict[str, Any]:
    """A Dinov2Config as plain JSON values (what a checkpoint stores to rebuild the architecture offline)."""
    return json.loads(config.to_json_string(use_diff=False))


def dinov2_from_plain_config(plain: Mapping[str, Any], *, source: str) -> nn.Module:
    """A randomly initialised Dinov2Model from a checkpoint's stored config: no file, cache or network.

    source names the checkpoint in errors (a config that is not DINOv2's or that transformers refuses).
    """
    try:
        from transformers import Dinov2Config, Dinov2Model
    except ImportError as error:  # pragma: no cover - depends on the installation
        raise DependencyError(worldclass_install_hint("The worldclass profile needs transformers and peft")) from error
    if plain.get("model_type") not in SUPPORTED_MODEL_TYPES:
        raise BackboneWeightsError(
            f"{source}: the stored backbone config is a {plain.get('model_type')!r} model, not DINOv2"
        )
    try:
        config = Dinov2Config.from_dict(dict(plain))
        return Dinov2Model(config)
    except (TypeError, ValueError) as error:
        raise BackboneWeightsError(f"{source}: the stored DINOv2 backbone config is unusable: {error}") from None


def _check_local_weights(source: BackboneSource) -> None:
    """A local model.safetensors (folder or cache) is checked like any weights file before transformers reads
    it: header size, tensors inside the file, size limits (a broken or hostile file is exit 2 naming it)."""
    from apex_x.adapters.checkpoints.safetensors_check import check_safetensors

    if source.kind == "folder":
        weights = folder_files(source.location)[1]
    else:
        try:
            weights = cached_files(source.location, source.cache_dir)[1]
        except ImportError:  # huggingface_hub missing: transformers' own error follows
            return
    if weights is not None and weights.endswith(".safetensors"):
        check_safetensors(Path(weights))


def load_dinov2(name: str, *, pretrained: bool = True) -> nn.Module:
    """A transformers Dinov2Model: pretrained weights from the folder/cache (or downloaded when online).

    pretrained=False builds the architecture from config.json alone (random init), e.g. before a
    checkpoint's weights are loaded over it.
    """
    try:
        from transformers import Dinov2Model
    except ImportError as error:  # pragma: no cover - depends on the installation
        raise DependencyError(worldclass_install_hint("The worldclass profile needs transformers and peft")) from error
    if not pretrained:  # the architecture of a rebuild from a checkpoint: local files only, no network
        return Dinov2Model(load_dinov2_config(name, local_only=True))
    config = load_dinov2_config(name)
    source = resolve_backbone_source(name)
    if source.kind == "folder":
        _check_folder(source, need_weights=True)
    _check_local_weights(source)
    where = source.location if source.kind == "folder" else f"{name} (Hugging Face cache; the first run downloads it)"
    log.info("setup", phase=f"loading the DINOv2 weights from {where}")
    try:
        with _quiet_progress():
            model = Dinov2Model.from_pretrained(source.location, config=config, **_load_kwargs(source))
    except OSError as error:
        raise BackboneWeightsError(missing_weights_message(name, source.cache_dir, _reason(source, error))) from error
    log.info("dinov2_loaded", backbone=name, kind=source.kind, hidden_size=config.hidden_size)
    return model


class PatchTokens(NamedTuple):
    """What Dinov2PatchGrid hands the pyramid: the token grid and the (unpadded) input size."""

    grid: torch.Tensor  # (B, D, Ht, Wt) patch tokens, Ht = ceil(H / patch), Wt = ceil(W / patch)
    image_size: tuple[int, int]  # (H, W) of the input before padding


class Dinov2PatchGrid(nn.Module):
    """DINOv2 as a dense feature extractor: normalised images -> last-layer patch tokens as a grid.

    Any input size works: the (already normalised) image is zero-padded at the bottom and right up to
    the next multiple of the patch size. Padding, not resizing: pixel coordinates stay unchanged, so
    the pyramid places its cells exactly; DINOv2 interpolates its position embeddings to the grid.
    """

    def __init__(self, dinov2: nn.Module, patch_size: int, hidden_size: int) -> None:
        super().__init__()
        self.dinov2 = dinov2  # a Dinov2Model, wrapped by peft when LoRA is on
        self.patch_size = patch_size
        self.hidden_size = hidden_size

    def forward(self, pixels: torch.Tensor) -> PatchTokens:
        """pixels (B, 3, H, W) ImageNet-normalised float -> PatchTokens((B, D, ceil(H/p), ceil(W/p)), (H, W))."""
        height, width = int(pixels.shape[-2]), int(pixels.shape[-1])
        grid_h, grid_w = -(-height // self.patch_size), -(-width // self.patch_size)
        pad_bottom, pad_right = grid_h * self.patch_size - height, grid_w * self.patch_size - width
        if pad_bottom or pad_right:
            pixels = F.pad(pixels, (0, pad_right, 0, pad_bottom))  # zeros = the mean colour after normalising
        hidden = self.dinov2(pixel_values=pixels).last_hidden_state  # (B, 1 [+ registers] + Ht*Wt, D)
        tokens = hidden[:, -grid_h * grid_w :]  # patch tokens only (drop CLS and any register tokens)
        grid = tokens.transpose(1, 2).reshape(tokens.shape[0], self.hidden_size, grid_h, grid_w)
        return PatchTokens(grid, (height, width))
