"""`train.init_from`: a new run starts from earlier weights (fine-tuning), unlike `--resume`.

Tensors that match the fresh model by name and shape are loaded; the others keep their fresh init (e.g. the
class logits when the class count changed). The optimizer, schedule and progress start fresh. A file that fits
less than domain.weights_transfer.MIN_SHARE of the model is refused unless `train.init_from_force` is true.
"""

from __future__ import annotations

from typing import Any

import structlog
import torch

from apex_x.domain.errors import CheckpointError
from apex_x.domain.ports import InitWeightsReader
from apex_x.domain.weights_transfer import MIN_SHARE, match_weights, share_text, too_little_message

log = structlog.get_logger(__name__)


def initialise_from(model: torch.nn.Module, path: str, reader: InitWeightsReader, *, force: bool) -> dict[str, Any]:
    """Load what fits of `path` into `model` (in place); returns the plain summary for the report.

    CheckpointError (exit 2) naming train.init_from: an unreadable file, or under MIN_SHARE without `force`."""
    log.info("setup", phase=f"initialising the model from {path} (train.init_from)")
    source, layout = reader(path)
    own = model.state_dict()
    transfer = match_weights({name: tuple(value.shape) for name, value in own.items()}, source)
    if transfer.share < MIN_SHARE and not force:
        raise CheckpointError(too_little_message(transfer, path))
    with torch.no_grad():
        for name, tensor in transfer.state.items():
            own[name].copy_(tensor.to(dtype=own[name].dtype))
    summary = transfer.to_plain(path, layout, force)
    log.info(
        "init_from", path=path, layout=layout, loaded=summary["loaded"], reinitialised=summary["reinitialised"],
        unused=summary["unused"], loaded_share=share_text(transfer.share), forced=force,
        reinitialised_names=summary["reinitialised_names"][:10], unused_names=summary["unused_names"][:10],
    )
    if transfer.share < MIN_SHARE:
        log.warning("init_from_forced", path=path, loaded_share=share_text(transfer.share),
                    reason=f"below the minimum {MIN_SHARE:.0%}; loaded anyway (train.init_from_force: true)")
    return summary


__all__ = ["initialise_from"]
