"""The train use case with fake ports: artifacts, report fields, diagnostics, faults, checks and fallbacks."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch

from apex_x.adapters.checkpoints.safetensors_writer import read_safetensors
from apex_x.adapters.checkpoints.torch_store import TorchCheckpointStore
from apex_x.domain import checkpoint_format as fmt
from apex_x.domain.errors import ConfigError, DatasetError, TrainingStopped
from apex_x.domain.types import Batch, Finding

from .fakes import FakeDatasetSource, FakeEvaluator, FakeModelFactory
from .helpers import make_use_case

STEPS = "train.steps_per_stage=3"


def test_a_run_writes_checkpoints_reports_plots_and_final_weights(tmp_path: Path) -> None:
    run = tmp_path / "run"
    result = make_use_case(run, STEPS).execute()
    assert result.status == "finished"
    names = sorted(path.name for path in (run / "checkpoints").iterdir())
    assert names == ["best.pt", "epoch_0001.pt", "epoch_0002.pt", "last.pt"]
    report = json.loads((run / "train_report.json").read_text())
    assert report["schema"] == "apex-x-train-report" and report["schema_version"] == 1
    assert report["status"] == "finished" and report["selected_checkpoint_metric"] == "segm_AP"
    assert report["best_metric_value"] == report["best_metric"]["value"] == result.best["value"]
    assert report["dataset_mode"] == "real" and report["dataset_backend"] == "fake"
    assert [entry["epoch"] for entry in report["history"]] == [1, 2]
    assert [entry["stage"] for entry in report["history"]] == ["det_stability", "seg_boundary"]
    first, second = report["history"]
    assert set(first["train"]) == {"total_loss", "det"} and {"det", "seg", "boundary"} <= set(second["train"])
    assert first["val"]["segm_AP"] is not None and math.isfinite(first["val"]["val_loss"])
    for scope in (report["loss_diagnostics"]["run"], *report["loss_diagnostics"]["per_stage"].values(),
                  first["diagnostics"]):
        assert {"component_means", "grad_norm_last", "grad_norm_max", "nan_loss", "inf_loss", "nan_grad",
                "inf_grad", "skipped_steps", "oom_skipped_steps"} <= set(scope)
    assert report["loss_diagnostics"]["run"]["applied_steps"] == 6
    assert set(report["stage_metrics"]) == {"det_stability", "seg_boundary"}
    assert report["stage_metrics"]["seg_boundary"]["last_metrics"]["segm_AP"] == second["val"]["segm_AP"]
    assert report["kernels"]["backend"] and report["run"]["device"] == "cpu"
    assert report["timing"]["train_seconds_total"] > 0
    assert json.loads((run / "config.json").read_text())["train"]["steps_per_stage"] == 3
    markdown = (run / "train_report.md").read_text()
    for linked in ("plots/loss_components.png", "plots/val_metrics.png"):
        assert f"]({linked})" in markdown
        assert (run / linked).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "| epoch | stage |" in markdown and "NaN loss" in markdown

    payload = TorchCheckpointStore().load(str(run / "checkpoints" / "last.pt"))  # weights_only=True
    assert payload[fmt.KEY_FORMAT] == fmt.FORMAT_TAG and payload[fmt.KEY_VERSION] == fmt.FORMAT_VERSION
    for key in (fmt.KEY_MODEL, fmt.KEY_EMA, fmt.KEY_OPTIMIZER, fmt.KEY_SCHEDULER, fmt.KEY_RNG, fmt.KEY_PROGRESS,
                fmt.KEY_BEST, fmt.KEY_CONFIG, fmt.KEY_CATEGORIES, fmt.KEY_DATASET_FINGERPRINT, fmt.KEY_INPUT_SIZE):
        assert payload.get(key) is not None, key
    assert payload[fmt.KEY_PROGRESS]["finished"] and payload[fmt.KEY_CATEGORIES]["names"] == ["square0", "bar1"]
    tensors, metadata = read_safetensors(str(run / "model.safetensors"))
    assert all(torch.equal(tensors[key], value) for key, value in payload[fmt.KEY_EMA].items())
    assert json.loads(metadata["categories"])["names"] == ["square0", "bar1"]


def test_nan_component_is_counted_and_the_step_skipped(tmp_path: Path) -> None:
    factory = FakeModelFactory(nan_at=[2], nan_component="det")
    make_use_case(tmp_path / "run", STEPS, factory=factory, reports=False).execute()
    report = json.loads((tmp_path / "run" / "train_report.json").read_text())
    epoch = report["history"][0]["diagnostics"]
    assert epoch["nan_loss"] == 1 and epoch["skipped_steps"] == 1 and epoch["applied_steps"] == 2
    assert epoch["bad_components"] == {"det": 1} and epoch["first_bad_step"] == 1
    assert report["loss_diagnostics"]["run"]["skipped_steps"] == 1
    payload = TorchCheckpointStore().load(str(tmp_path / "run" / "checkpoints" / "last.pt"))
    steps_taken = {float(state["step"]) for state in payload[fmt.KEY_OPTIMIZER]["state"].values()}
    assert steps_taken == {5.0, 3.0}  # 6 batches, the NaN one never applied (the mask head trains 3)


def test_too_many_bad_steps_stop_with_the_component_and_first_step(tmp_path: Path) -> None:
    run = tmp_path / "run"
    factory = FakeModelFactory(nan_at=[4, 5, 6], nan_component="seg")
    with pytest.raises(TrainingStopped) as stopped:
        make_use_case(run, STEPS, "train.max_consecutive_bad_steps=3", factory=factory, reports=False).execute()
    message = str(stopped.value)
    assert "3 non-finite steps in a row" in message and "first bad step 3" in message and "seg" in message
    payload = TorchCheckpointStore().load(str(run / "checkpoints" / "last.pt"))  # intact: end of epoch 1
    assert payload[fmt.KEY_PROGRESS]["epoch"] == 0 and payload[fmt.KEY_PROGRESS]["epoch_complete"]
    report = json.loads((run / "train_report.json").read_text())
    assert report["status"] == "stopped" and "seg" in report["message"]


def test_a_nan_metric_is_never_best(tmp_path: Path) -> None:
    make_use_case(tmp_path / "a", STEPS, evaluator=FakeEvaluator(nan_calls=[1]), reports=False).execute()
    report = json.loads((tmp_path / "a" / "train_report.json").read_text())
    assert [entry["is_best"] for entry in report["history"]] == [False, True]
    assert report["best_metric"]["epoch"] == 2
    make_use_case(tmp_path / "b", STEPS, evaluator=FakeEvaluator(nan_calls=[1, 2]), reports=False).execute()
    report = json.loads((tmp_path / "b" / "train_report.json").read_text())
    assert report["best_metric"] is None and not (tmp_path / "b" / "checkpoints" / "best.pt").exists()


def test_metric_falls_back_to_val_loss_then_train_loss(tmp_path: Path) -> None:
    no_truth = make_use_case(tmp_path / "a", STEPS, source=FakeDatasetSource(with_ground_truth=False),
                             reports=False).execute()
    assert no_truth.selected_metric == "val_loss" and no_truth.best["name"] == "val_loss"
    no_val = make_use_case(tmp_path / "b", STEPS, source=FakeDatasetSource(val_images=0), reports=False).execute()
    assert no_val.selected_metric == "train_loss" and math.isfinite(no_val.best["value"])
    report = json.loads((tmp_path / "b" / "train_report.json").read_text())
    assert "no val split" in report["checkpoint_metric_reason"] and report["history"][0]["val"] is None


def test_val_loss_off_leaves_it_out_unless_it_selects_the_checkpoint(tmp_path: Path) -> None:
    make_use_case(tmp_path / "a", STEPS, "train.val_loss=false").execute()
    report = json.loads((tmp_path / "a" / "train_report.json").read_text())
    for entry in report["history"]:
        assert "val_loss" not in entry["val"] and entry["val"]["segm_AP"] is not None  # left out, not a stand-in
    assert "val_loss" not in (report["best_metric"] or {}) or report["best_metric"]["val_loss"] is None
    needed = make_use_case(tmp_path / "b", STEPS, "train.val_loss=false",
                           source=FakeDatasetSource(with_ground_truth=False), reports=False).execute()
    assert needed.selected_metric == "val_loss" and math.isfinite(needed.best["value"])


def test_bad_data_is_refused_before_training(tmp_path: Path) -> None:
    finding = Finding("error", "bbox_inside_image", "box outside the image", file="train.json", image_id=7,
                      annotation_id=70)
    with pytest.raises(DatasetError) as refused:
        make_use_case(tmp_path / "run", source=FakeDatasetSource(findings=[finding])).execute()
    assert "bbox_inside_image" in str(refused.value) and "image 7" in str(refused.value)
    assert not list((tmp_path / "run" / "checkpoints").glob("*.pt"))


def test_class_count_and_metric_name_are_checked(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as mismatch:
        make_use_case(tmp_path / "a", "model.num_classes=5").execute()
    assert mismatch.value.key == "model.num_classes" and "2 categories" in str(mismatch.value)
    with pytest.raises(ConfigError) as unknown:
        make_use_case(tmp_path / "b", "train.checkpoint_metric=mAP").execute()
    assert unknown.value.key == "train.checkpoint_metric"


def test_keep_last_epochs_prunes_old_epoch_files(tmp_path: Path) -> None:
    make_use_case(tmp_path / "run", STEPS, "train.keep_last_epochs=1", "train.eval_every_epochs=2",
                  reports=False).execute()
    names = sorted(path.name for path in (tmp_path / "run" / "checkpoints").iterdir())
    assert names == ["best.pt", "epoch_0002.pt", "last.pt"]


class ConstantDistill:
    """An auxiliary loss with a gradient: pulls the logits towards zero."""

    name = "distill"

    def __call__(self, batch: Batch, student_outputs: dict[str, torch.Tensor]) -> torch.Tensor:
        return student_outputs["logits"].float().pow(2).mean()


def test_auxiliary_losses_are_weighted_and_reported(tmp_path: Path) -> None:
    result = make_use_case(tmp_path / "run", STEPS, "train.distill_weight=2.0",
                           auxiliary_losses=[ConstantDistill()], reports=False).execute()
    history = result.report["history"]
    assert all("distill" in entry["train"] for entry in history)
    first = history[0]["train"]
    assert first["total_loss"] == pytest.approx(first["det"] + 2.0 * first["distill"], rel=1e-5)
    assert result.report["auxiliary_losses"] == ["distill"]


def test_out_of_memory_step_is_skipped_and_counted(tmp_path: Path) -> None:
    result = make_use_case(tmp_path / "run", STEPS, factory=FakeModelFactory(oom_at=[2]), reports=False).execute()
    diagnostics = result.report["history"][0]["diagnostics"]
    assert diagnostics["oom_skipped_steps"] == 1 and diagnostics["applied_steps"] == 2
    assert result.report["loss_diagnostics"]["run"]["oom_skipped_steps"] == 1 and result.status == "finished"


def test_sigterm_saves_last_pt_mid_epoch_and_resumes_exactly(tmp_path: Path) -> None:
    straight = make_use_case(tmp_path / "straight", STEPS, reports=False)
    straight.execute()
    run = tmp_path / "run"
    stopped = make_use_case(run, STEPS, factory=FakeModelFactory(signal_at=[2]), reports=False).execute()
    assert stopped.status == "interrupted" and "--resume" in stopped.report["message"]
    last = run / "checkpoints" / "last.pt"
    assert TorchCheckpointStore().load(str(last))[fmt.KEY_PROGRESS]["global_step"] == 2
    make_use_case(run, STEPS, reports=False).execute(resume_from=str(last))
    resumed = TorchCheckpointStore().load(str(last))
    reference = TorchCheckpointStore().load(str(tmp_path / "straight" / "checkpoints" / "last.pt"))
    assert all(torch.equal(resumed[fmt.KEY_MODEL][key], value) for key, value in reference[fmt.KEY_MODEL].items())


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_cuda_run_uses_bf16_autocast_and_saves_cpu_loadable_checkpoints(tmp_path: Path) -> None:
    result = make_use_case(tmp_path / "run", STEPS, "runtime.device=cuda", reports=False).execute()
    assert result.status == "finished" and result.report["run"]["amp"] == "bfloat16"
    assert result.report["run"]["device"].startswith("cuda")
    payload = TorchCheckpointStore().load(str(tmp_path / "run" / "checkpoints" / "last.pt"))
    assert all(value.device.type == "cpu" for value in payload[fmt.KEY_MODEL].values())
