"""`train.loggers: [mlflow]`: one MLflow run per training run, through MlflowClient.

Where: MLFLOW_TRACKING_URI when set (a server or database), else a local file store in <run>/mlruns. MLflow 3
keeps the file store in maintenance mode behind MLFLOW_ALLOW_FILE_STORE; for this local default Apex-X opts in
(set MLFLOW_TRACKING_URI, e.g. sqlite:///mlflow.db with the full mlflow package, to use another store). The
experiment is "apex-x" (MLFLOW_EXPERIMENT_NAME overrides); parameters are the effective config's dotted keys.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from apex_x.domain.errors import DependencyError
from apex_x.installation import install_command

EXPERIMENT = "apex-x"
MAX_PARAM_LENGTH = 6000  # MLflow's limit on a parameter value
BATCH = 100  # MLflow's limit on parameters per log_batch call
STATUS = {"finished": "FINISHED", "finished_with_warnings": "FINISHED", "paused": "KILLED", "interrupted": "KILLED",
          "stopped": "FAILED", "failed": "FAILED"}


def tracking_uri(run_dir: str) -> str:
    return os.environ.get("MLFLOW_TRACKING_URI") or (Path(run_dir).resolve() / "mlruns").as_uri()


class MlflowTracker:
    """ExperimentTracker logging to an MLflow run."""

    name = "mlflow"

    def __init__(self) -> None:
        self.client: Any = None
        self.run_id: str | None = None

    def start(self, run_dir: str, params: Mapping[str, Any], run_name: str) -> None:
        try:
            from mlflow import MlflowClient
            from mlflow.entities import Param
        except ImportError:
            raise DependencyError(f"train.loggers mlflow needs the mlflow package: {install_command('tracking')}") from None
        uri = tracking_uri(run_dir)
        # A server that is away must not hold training for minutes (MLflow's default: 7 retries with backoff,
        # 120 s timeouts): a few seconds, then the tracker is left out (the user's own settings win).
        os.environ.setdefault("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "1")
        os.environ.setdefault("MLFLOW_HTTP_REQUEST_TIMEOUT", "10")
        if uri.startswith("file:"):
            os.environ.setdefault("MLFLOW_ALLOW_FILE_STORE", "true")  # see the module docstring
        self.client = MlflowClient(tracking_uri=uri)
        experiment_name = os.environ.get("MLFLOW_EXPERIMENT_NAME", EXPERIMENT)
        experiment = self.client.get_experiment_by_name(experiment_name)
        experiment_id = experiment.experiment_id if experiment else self.client.create_experiment(experiment_name)
        self.run_id = self.client.create_run(experiment_id, run_name=run_name).info.run_id
        entries = [Param(key, str(value)[:MAX_PARAM_LENGTH]) for key, value in params.items()]
        for start in range(0, len(entries), BATCH):
            self.client.log_batch(self.run_id, params=entries[start:start + BATCH])

    def log_metrics(self, metrics: Mapping[str, float], step: int) -> None:
        import time

        from mlflow.entities import Metric

        now = int(time.time() * 1000)
        self.client.log_batch(self.run_id, metrics=[Metric(key.replace("@", "_"), value, now, step)
                                                    for key, value in metrics.items()])

    def log_images(self, images: Mapping[str, Any], step: int) -> None:
        """Time-stepped images of the run (MLflow's image key + step: the UI's images tab; artifacts under images/)."""
        import numpy as np

        for tag, image in images.items():
            self.client.log_image(self.run_id, np.asarray(image), key=tag, step=step)

    def close(self, status: str) -> None:
        if self.client is not None and self.run_id is not None:
            self.client.set_terminated(self.run_id, status=STATUS.get(status, "FINISHED"))
