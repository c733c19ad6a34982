"""The notebook runs headless (nbclient + ipykernel) against a checkpoint trained in this session; the smoke runner."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import nbformat
import pytest
import torch
from nbclient import NotebookClient

ROOT = Path(__file__).resolve().parents[2]
NOTEBOOK = ROOT / "notebooks" / "checkpoint_image_inference.ipynb"


@pytest.fixture
def kernel_of_this_interpreter(tmp_path, monkeypatch) -> str:
    """A `python3` kernelspec that runs this interpreter (this venv), found first on JUPYTER_PATH."""
    spec = tmp_path / "jupyter" / "kernels" / "python3"
    spec.mkdir(parents=True)
    (spec / "kernel.json").write_text(json.dumps({
        "argv": [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"],
        "display_name": "Python 3 (apex-x tests)",
        "language": "python",
    }))
    monkeypatch.setenv("JUPYTER_PATH", str(tmp_path / "jupyter"))
    monkeypatch.setenv("JUPYTER_PLATFORM_DIRS", "1")
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])))
    return "python3"


def test_notebook_executes_on_a_trained_checkpoint(trained_run, tmp_path, monkeypatch, kernel_of_this_interpreter) -> None:
    image = sorted(trained_run.val_images.iterdir())[0]  # the default: the first image of the run's val folder
    monkeypatch.setenv("APEX_X_CHECKPOINT", str(trained_run.best))
    monkeypatch.setenv("APEX_X_IMAGE", "")
    monkeypatch.setenv("APEX_X_RUN_DIR", "")  # the default: the run folder above checkpoints/
    monkeypatch.setenv("APEX_X_DEVICE", "cpu")
    monkeypatch.setenv("APEX_X_OUTPUT_DIR", str(tmp_path / "notebook_out"))
    notebook = nbformat.read(NOTEBOOK, as_version=4)
    assert notebook.metadata["kernelspec"]["name"] == "python3"
    NotebookClient(
        notebook, timeout=300, kernel_name=kernel_of_this_interpreter, resources={"metadata": {"path": str(tmp_path)}}
    ).execute()  # raises CellExecutionError on any failing cell

    outputs = [output for cell in notebook.cells if cell.cell_type == "code" for output in cell.outputs]
    text = "".join(output.get("text", "") + output.get("data", {}).get("text/plain", "") for output in outputs)
    assert "CheckpointModel(" in text and "ema weights" in text and "input 64x64" in text
    assert f"Prediction({image}: 64x64" in text
    pngs = [output for output in outputs if "image/png" in output.get("data", {})]
    assert len(pngs) == 2  # the overlay and the training curves
    assert (tmp_path / "notebook_out" / "overlay.png").is_file()
    assert not any(output.output_type == "error" for output in outputs)


def test_smoke_runner_writes_its_json_with_cuda_skipped_here(trained_run, tmp_path, entrypoint, capsys) -> None:
    image = sorted(trained_run.val_images.iterdir())[0]
    report_path = tmp_path / "smoke" / "report.json"
    code = entrypoint("notebook_checkpoint_smoke.py", [
        "--checkpoint", str(trained_run.best), "--image", str(image),
        "--devices", "cpu,cuda", "--output-json", str(report_path),
    ])
    report = json.loads(report_path.read_text())
    cpu, cuda = report["devices"]["cpu"], report["devices"]["cuda"]
    assert code == 0 and report["status"] == "ok"
    assert cpu["status"] == "ok" and cpu["error"] is None and cpu["latency_ms"] > 0
    assert isinstance(cpu["num_detections"], int) and cpu["retried_with_square_resize"] is False
    assert cpu["input_size"] == [64, 64]
    if torch.cuda.is_available():
        assert cuda["status"] == "ok"
    else:
        assert cuda["status"] == "skip" and "CUDA is not available" in cuda["error"]
    assert "cpu: ok" in capsys.readouterr().out


def test_smoke_runner_records_a_failing_device(tmp_path, entrypoint) -> None:
    (tmp_path / "x.png").write_bytes(b"")
    report_path = tmp_path / "report.json"
    code = entrypoint("notebook_checkpoint_smoke.py", [
        "--checkpoint", str(tmp_path / "missing.pt"), "--image", str(tmp_path / "x.png"),
        "--devices", "cpu", "--output-json", str(report_path),
    ])
    report = json.loads(report_path.read_text())
    assert code == 2 and report["status"] == "fail"
    assert report["devices"]["cpu"]["status"] == "fail" and "missing.pt" in report["devices"]["cpu"]["error"]
    assert report["devices"]["cpu"]["user_error"] is True and report["exit_code"] == 2  # a missing file: bad input


def test_train_wrapper_needs_config(entrypoint, capsys) -> None:
    with pytest.raises(SystemExit) as exited:
        entrypoint("train.py", ["--steps-per-stage", "1"])
    assert exited.value.code == 2 and "--config" in capsys.readouterr().err
