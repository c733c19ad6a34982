"""Preflight row `student backbone weights`: where the weights of `model.backbone_pretrained` are.

local file / local folder, cached (the Hugging Face cache holds timm's hub id), downloadable (online, not
cached: the hub answered), or unreachable / not cached (offline) / missing, which fail the preflight (the
run would stop there). `false` is a row that says the backbone starts from random weights. timm is imported
only for `true` (to read the model's hub id); the hub is asked only online, once, within 5 s.
Run by the small profile's preflight checks, which inject `make_result` (the preflight's CheckResult type).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from apex_x.adapters.models.backbone_weights_check import _hub_reachable
from apex_x.adapters.models.dinov2_backbone import hub_cache_dir, is_offline
from apex_x.adapters.models.timm_weights import KEY, cached_weights, folder_weights, weights_source
from apex_x.domain.config import ModelConfig
from apex_x.domain.errors import ConfigError

CHECK_NAME = "student backbone weights"


def _fixes(model: str) -> str:
    return (
        f"download them once with network access (python -c \"import timm; timm.create_model('{model}', "
        f"pretrained=True)\"), or point {KEY} to a local weights file or folder, or set {KEY}: false (random init)"
    )


def student_weights_status(config: ModelConfig) -> dict[str, Any]:
    """The row's findings as CheckResult fields: ok, required, status, detail, fix."""
    try:
        source = weights_source(config)
    except ConfigError as error:
        return {"ok": False, "required": True, "status": "no weights", "detail": str(error), "fix": None}
    if source.kind == "random":
        return {"ok": True, "required": False, "status": "random init", "fix": None,
                "detail": f"{KEY}: false: {config.backbone} starts from random weights (true: timm's pretrained ones)"}
    if source.kind in ("file", "folder"):
        from pathlib import Path

        path = Path(source.location)
        found = folder_weights(path) if source.kind == "folder" else (path if path.is_file() else None)
        if found is None:
            what = "holds no model.safetensors / pytorch_model.bin" if source.kind == "folder" else "does not exist"
            return {"ok": False, "required": True, "status": "missing", "detail": f"{source.key}: {path} {what}",
                    "fix": f"point {source.key} to a weights file or folder"}
        return {"ok": True, "required": True, "status": f"local {source.kind}", "fix": None,
                "detail": f"{source.key}: {found}"}
    cache_dir = hub_cache_dir()
    where = f"{config.backbone}: {source.location}"
    cached = cached_weights(source.location, cache_dir)
    if cached:
        return {"ok": True, "required": True, "status": "cached", "fix": None,
                "detail": f"{where} in the Hugging Face cache {cache_dir} ({cached})"}
    if is_offline():
        return {"ok": False, "required": True, "status": "not cached", "fix": _fixes(config.backbone),
                "detail": f"{where}: not in the Hugging Face cache {cache_dir} and offline mode is on (HF_HUB_OFFLINE=1)"}
    reachable, detail = _hub_reachable(source.location)
    if reachable:
        return {"ok": True, "required": True, "status": "downloadable", "fix": None,
                "detail": f"{where}: not cached yet in {cache_dir}; {detail} answers, the first run downloads them"}
    return {"ok": False, "required": True, "status": "unreachable", "fix": _fixes(config.backbone),
            "detail": f"{where}: not in the Hugging Face cache {cache_dir} and the hub cannot be reached ({detail})"}


def check_student_weights(context: Any, *, make_result: Callable[..., Any]) -> list[Any]:
    """One row for the configured student backbone (context: the preflight's PreflightContext)."""
    status = student_weights_status(context.settings.model)
    return [make_result(name=CHECK_NAME, category="weights", installed=None, minimum=None, **status)]


__all__ = ["CHECK_NAME", "check_student_weights", "student_weights_status"]
