"""train_report.md lines about the network: its size (parameters, GFLOPs) and what it was initialised from."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from apex_x.domain.weights_transfer import share_text

NAMES_SHOWN = 20


def model_lines(report: Mapping[str, Any]) -> list[str]:
    """The `model size` bullet (report["model"]) and, for a fine-tuned run, the `Initialised from` section."""
    lines: list[str] = []
    model = report.get("model") or {}
    if model:
        lines.append(f"- **network**: {describe_model(model)}")
    init = report.get("init_from") or {}
    if init:
        lines += [
            "", "## Initialised from (train.init_from)", "",
            f"`{init.get('path')}` ({init.get('layout')}): **{init.get('loaded')}** tensors loaded "
            f"({share_text(float(init.get('loaded_share') or 0.0))} of the model's weights), **{init.get('reinitialised')}** "
            f"re-initialised, **{init.get('unused')}** of the file unused"
            + (" (forced below the minimum share)" if init.get("forced") and
               float(init.get("loaded_share") or 0.0) < float(init.get("min_share") or 0.0) else "") + ".",
        ]
        for title, key in (("re-initialised", "reinitialised_names"), ("unused", "unused_names")):
            names = list(init.get(key) or [])
            if names:
                more = int(init.get(key.replace("_names", "")) or 0) - min(len(names), NAMES_SHOWN)
                shown = ", ".join(_code(name) for name in names[:NAMES_SHOWN]) + (f" and {more} more" if more > 0 else "")
                lines.append(f"- {title}: {shown}")
    return lines


def describe_model(model: Mapping[str, Any]) -> str:
    """'size s: backbone cs3darknet_focus_s (pretrained: hub timm/...), 7.81M parameters, 21.3 GFLOPs at 640x640'."""
    size = model.get("size")
    head = f"size {size}: " if size else ""
    parameters = model.get("parameters")
    params = f"{parameters / 1e6:.2f}M parameters" if isinstance(parameters, (int, float)) else "parameters n/a"
    gflops = model.get("gflops")
    flops = f"{gflops:.2f} GFLOPs" if isinstance(gflops, (int, float)) else "GFLOPs n/a"
    at = model.get("input_size") or []
    weights = f" (weights: {describe_weights(model['backbone_weights'])})" if model.get("backbone_weights") else ""
    return f"{head}backbone {model.get('backbone')}{weights}, {params}, {flops} at {'x'.join(map(str, at))}"


def describe_weights(record: Any) -> str:
    """'file /w/lite0.pth, in order (shapes and kinds agree): 288 loaded, 0 missing, 8 of the file unused'."""
    if not isinstance(record, Mapping):
        return str(record)
    text = str(record.get("source"))
    if "loaded" in record:
        text += (f", {record.get('mapping')}: {record.get('loaded')} loaded, {record.get('missing')} missing, "
                 f"{record.get('unused')} of the file unused")
    return text


def _code(item: str) -> str:
    """'head.cls_preds.0.weight (file [80, 64, 1, 1] vs model [3, 64, 1, 1])' -> the name as code, then the why."""
    name, _, why = str(item).partition(" (")
    return f"`{name}`" + (f" ({why}" if why else "")
