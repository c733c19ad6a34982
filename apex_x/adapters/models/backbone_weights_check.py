"""Preflight check of the worldclass profile: are the DINOv2 weights of `model.teacher_backbone` reachable?

Reachable means: a local folder with config.json + weights, or the hub id in the local Hugging Face
cache, or (when not offline) the hub answering for that id, so that the first run can download them.
Run by the worldclass profile's preflight checks (adapters/models/profiles/worldclass.py), which inject `make_result` (the
preflight's CheckResult type), so this adapter does not import the application layer.
"""

from __future__ import annotations

import json
import os
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

from apex_x.adapters.models.dinov2_backbone import (
    KEY,
    SUPPORTED_MODEL_TYPES,
    BackboneWeightsError,
    cached_files,
    folder_files,
    resolve_backbone_source,
)
from apex_x.adapters.slow_notice import notice_if_slow
from apex_x.installation import install_command

CHECK_NAME = "backbone weights"
NETWORK_TIMEOUT_S = 5.0


def _fixes(name: str) -> str:
    return (
        f"download them once with network access (python -c \"from transformers import Dinov2Model; "
        f"Dinov2Model.from_pretrained('{name}')\"), or point {KEY} to a local folder holding config.json "
        "and model.safetensors (preflight --config CONFIG / train --set " + KEY + "=FOLDER)"
    )


def _folder_fixes() -> str:
    """A local folder is not downloaded into: write the model there, or point the key elsewhere."""
    return (
        "write a DINOv2 model into the folder (Dinov2Model.save_pretrained(FOLDER) writes config.json and "
        f"model.safetensors), or point {KEY} to another such folder or to a hub id such as "
        "facebook/dinov2-large (preflight --config CONFIG / train --set " + KEY + "=...)"
    )


def _model_type_problem(config_path: str) -> str | None:
    try:
        model_type = json.loads(Path(config_path).read_text(encoding="utf-8")).get("model_type")
    except (OSError, ValueError) as error:
        return f"{config_path} is not a readable config.json ({error})"
    if model_type not in SUPPORTED_MODEL_TYPES:
        return f"{config_path} describes a {model_type!r} model, not DINOv2"
    return None


def _hub_reachable(name: str, timeout_s: float = NETWORK_TIMEOUT_S) -> tuple[bool, str]:
    """Asks the hub (HEAD of config.json) whether `name` can be downloaded, within `timeout_s` in all.

    The request runs in a daemon thread joined with a deadline, so DNS stalls and the client's own
    retries cannot stretch the check: no answer in time counts as unreachable.
    """
    from huggingface_hub import get_hf_file_metadata, hf_hub_url

    url = hf_hub_url(name, "config.json", endpoint=os.environ.get("HF_ENDPOINT") or None)
    outcome: list[tuple[bool, str]] = []

    def ask() -> None:
        try:
            get_hf_file_metadata(url, timeout=timeout_s)
        except Exception as error:  # noqa: BLE001 - any failure means "cannot download now"
            outcome.append((False, f"{type(error).__name__}: {str(error).splitlines()[0] if str(error) else ''}"))
        else:
            outcome.append((True, url))

    worker = threading.Thread(target=ask, name="apex-x-hub-check", daemon=True)
    with notice_if_slow(f"preflight: asking the Hugging Face hub for {name} (at most {timeout_s:.0f} s)"):
        worker.start()
        worker.join(timeout_s)
    return outcome[0] if outcome else (False, f"no answer from {url} within {timeout_s:.0f} s")


def backbone_weights_status(name: str) -> dict[str, Any]:
    """The check's findings as CheckResult fields: ok, status, detail, fix (required is always True)."""
    try:
        source = resolve_backbone_source(name)
    except BackboneWeightsError as error:
        return {"ok": False, "status": "missing", "detail": str(error), "fix": _folder_fixes()}
    if source.kind == "folder":
        config, weights = folder_files(source.location)
        where = f"{name}: local folder {source.location}"
    else:
        try:
            config, weights = cached_files(name, source.cache_dir)
        except ImportError:
            return {"ok": False, "status": "skipped", "detail": "huggingface_hub is not importable (see the packages)",
                    "fix": install_command("worldclass")}
        where = f"{name}: Hugging Face cache {source.cache_dir}"
    if config and weights:
        problem = _model_type_problem(config)
        if problem:
            return {"ok": False, "status": "not dinov2", "detail": problem, "fix": f"point {KEY} to a DINOv2 model"}
        status = "local folder" if source.kind == "folder" else "cached"
        return {"ok": True, "status": status, "detail": f"{where} ({Path(weights).name})", "fix": None}
    absent = "config.json" if not config else "weights file (model.safetensors / pytorch_model.bin)"
    if source.kind == "folder":
        return {"ok": False, "status": "missing", "detail": f"{where} has no {absent}", "fix": _folder_fixes()}
    if source.offline:
        return {
            "ok": False, "status": "not cached",
            "detail": f"{where}: not in the cache and offline mode is on (HF_HUB_OFFLINE=1)", "fix": _fixes(name),
        }
    reachable, detail = _hub_reachable(name)
    if reachable:
        return {
            "ok": True, "status": "downloadable",
            "detail": f"{where}: not cached yet; {detail} answers, the first run downloads the weights", "fix": None,
        }
    return {
        "ok": False, "status": "unreachable",
        "detail": f"{where}: not in the cache and the hub cannot be reached ({detail})", "fix": _fixes(name),
    }


def check_backbone_weights(context: Any, *, make_result: Callable[..., Any]) -> list[Any]:
    """Preflight check (context: the preflight's PreflightContext): one row for the configured backbone.

    Always required: without --config it checks the default backbone (facebook/dinov2-large), which the
    worldclass profile cannot train without; --config selects another backbone (a folder or hub id).
    """
    name = context.settings.model.teacher_backbone
    status = backbone_weights_status(name)
    if not status["ok"] and not context.config_given:
        status["fix"] = f"{status['fix']}; or check another backbone with --config CONFIG (its {KEY})"
    return [
        make_result(
            name=CHECK_NAME, category="weights", required=True, ok=status["ok"],
            status=status["status"],
            detail=status["detail"], fix=status["fix"], installed=None, minimum=None,
        )
    ]


__all__ = ["CHECK_NAME", "backbone_weights_status", "check_backbone_weights"]
