"""train.loggers: TensorBoard event files and an MLflow run, read back with the libraries' own readers; a
tracker that fails is warned about once and training goes on."""

from __future__ import annotations

import io
from pathlib import Path

import pytest
import structlog
from PIL import Image

from apex_x.adapters.config_yaml import load_config
from apex_x.container import create_container

from .helpers import make_use_case

STEPS = ("train.steps_per_stage=2",)  # 2 stages x 1 epoch x 2 steps


def test_tensorboard_and_mlflow_get_steps_epochs_and_the_config(tmp_path: Path,
                                                                monkeypatch: pytest.MonkeyPatch) -> None:
    pytest.importorskip("tensorboard")
    pytest.importorskip("mlflow")
    from mlflow import MlflowClient
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    from apex_x.adapters.tracking.mlflow_tracker import MlflowTracker
    from apex_x.adapters.tracking.tensorboard_tracker import TensorBoardTracker

    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    from apex_x.adapters.reports.prediction_grid import PillowPreviewRenderer

    run = tmp_path / "run"
    result = make_use_case(run, *STEPS, "train.loggers=[tensorboard, mlflow]", "train.val_preview_images=3",
                           trackers=[TensorBoardTracker(), MlflowTracker()],
                           preview_renderer=PillowPreviewRenderer()).execute()
    assert result.status == "finished" and result.report["run"]["trackers"] == {"active": ["tensorboard", "mlflow"],
                                                                             "failed": {}}

    events = EventAccumulator(str(run / "tensorboard"))
    events.Reload()
    losses = events.Scalars("train/loss")
    assert [event.step for event in losses] == [1, 2, 3, 4]  # every applied optimizer step
    assert [event.step for event in events.Scalars("val/segm_AP")] == [2, 4]  # after each epoch
    assert events.Scalars("val/segm_AP")[-1].value == pytest.approx(result.report["history"][-1]["val"]["segm_AP"])
    assert "train/lr" in events.Tags()["scalars"] and "train/det" in events.Tags()["scalars"]
    shown = [image["image_id"] for image in result.report["prediction_overlays"]["images"]]
    assert len(shown) == 3
    image_tags = sorted(events.Tags()["images"])
    assert image_tags == sorted(f"val/predictions/image_{image_id}" for image_id in shown)
    pictures = events.Images(image_tags[0])
    assert [picture.step for picture in pictures] == [2, 4]  # each validation
    grid = Image.open(run / "plots" / "val_predictions.png")
    with Image.open(io.BytesIO(pictures[-1].encoded_image_string)) as first:
        assert first.size[0] > first.size[1] and first.size[0] > 600  # ground truth beside predictions, enlarged
        assert grid.size[0] > first.size[0]

    client = MlflowClient(tracking_uri=(run / "mlruns").resolve().as_uri())
    (mlflow_run,) = client.search_runs([client.get_experiment_by_name("apex-x").experiment_id])
    assert mlflow_run.info.status == "FINISHED" and mlflow_run.info.run_name == "run"
    assert mlflow_run.data.params["train.lr"] == "0.01" and mlflow_run.data.params["train.loggers"] == str(
        ["tensorboard", "mlflow"])
    history = client.get_metric_history(mlflow_run.info.run_id, "train/loss")
    assert [metric.step for metric in history] == [1, 2, 3, 4]
    assert [m.value for m in history] == pytest.approx([e.value for e in losses])
    logged = [item.path for item in client.list_artifacts(mlflow_run.info.run_id, "images")]
    pngs = [path for path in logged if path.endswith(".png")]
    assert len(pngs) == 3 * 2, logged  # 3 images x 2 validations
    local = client.download_artifacts(mlflow_run.info.run_id, pngs[0], str(tmp_path / "dl"))
    with Image.open(local) as picture:
        assert picture.size == first.size


class Broken:
    name = "broken"

    def __init__(self) -> None:
        self.calls = 0

    def start(self, run_dir: str, params: dict, run_name: str) -> None:
        pass

    def log_metrics(self, metrics: dict, step: int) -> None:
        self.calls += 1
        raise OSError("disk full")

    def log_images(self, images: dict, step: int) -> None:
        pass

    def close(self, status: str) -> None:
        pass


def test_a_failing_tracker_is_warned_about_once_and_training_goes_on(tmp_path: Path) -> None:
    broken = Broken()
    with structlog.testing.capture_logs() as logs:
        result = make_use_case(tmp_path / "run", *STEPS, trackers=[broken]).execute()
    assert result.status == "finished" and broken.calls == 1
    assert [entry["tracker"] for entry in logs if entry["event"] == "tracker_failed"] == ["broken"]
    assert result.report["run"]["trackers"]["failed"] == {"broken": "OSError: disk full"}


def test_the_config_picks_the_trackers_and_refuses_unknown_ones() -> None:
    from apex_x.domain.errors import ConfigError

    trackers = create_container(load_config(None, ["train.loggers=[mlflow, tensorboard]"])).trackers()
    assert [tracker.name for tracker in trackers] == ["mlflow", "tensorboard"]
    assert create_container(load_config(None)).trackers() == []
    with pytest.raises(ConfigError, match="train.loggers.0"):
        load_config(None, ["train.loggers=[wandb]"])
