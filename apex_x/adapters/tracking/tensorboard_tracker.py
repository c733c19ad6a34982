"""`train.loggers: [tensorboard]`: event files under <run>/tensorboard (torch.utils.tensorboard.SummaryWriter).

Scalars by optimizer step, prediction overlays of each validation as images; the effective config as TensorBoard hyper-parameters (hparams plugin) and as a
text summary. Read with `tensorboard --logdir <run>/tensorboard` or tensorboard's EventAccumulator.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from apex_x.domain.errors import DependencyError
from apex_x.installation import install_command

FOLDER = "tensorboard"


class TensorBoardTracker:
    """ExperimentTracker writing TensorBoard event files."""

    name = "tensorboard"

    def __init__(self) -> None:
        self.writer: Any = None

    def start(self, run_dir: str, params: Mapping[str, Any], run_name: str) -> None:
        try:
            from torch.utils.tensorboard import SummaryWriter
        except ImportError:
            raise DependencyError(f"train.loggers tensorboard needs the tensorboard package: "
                                  f"{install_command('tracking')}") from None
        self.writer = SummaryWriter(log_dir=str(Path(run_dir) / FOLDER))
        hparams = {key: value for key, value in params.items() if isinstance(value, (int, float, str, bool))}
        self.writer.add_hparams(hparams, {}, run_name=".")  # into the same event folder
        self.writer.add_text("config", "```\n" + json.dumps(dict(params), indent=1, default=str) + "\n```")

    def log_metrics(self, metrics: Mapping[str, float], step: int) -> None:
        for key, value in metrics.items():
            self.writer.add_scalar(key, value, global_step=step)

    def log_images(self, images: Mapping[str, Any], step: int) -> None:
        """(H, W, 3) uint8 pictures (the Images dashboard; EventAccumulator.Images(tag))."""
        for tag, image in images.items():
            self.writer.add_image(tag, image, global_step=step, dataformats="HWC")

    def close(self, status: str) -> None:
        if self.writer is not None:
            self.writer.add_text("status", status)
            self.writer.close()
