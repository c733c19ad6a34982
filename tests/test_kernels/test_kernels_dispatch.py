"""Backend choice: env beats config, auto picks torch off CUDA, forced backends that cannot run raise."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
import structlog
import torch

from apex_x import kernels
from apex_x.domain.errors import KernelBackendError, UserError
from apex_x.kernels import dispatch

from .cases import needs_interpreter


@pytest.fixture(autouse=True)
def _clean_backend_state(monkeypatch):
    monkeypatch.delenv("APEX_X_KERNELS", raising=False)
    kernels.set_backend_preference("auto")
    yield
    kernels.set_backend_preference("auto")


def test_importing_kernels_does_not_import_triton():
    code = "import sys, apex_x.kernels; print('triton' in sys.modules)"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "False"


def test_auto_compiles_on_cpu_when_a_cxx_compiler_is_on_path(monkeypatch, tmp_path):
    fake_bin = tmp_path / "bin"
    fake_bin.mkdir()
    compiler = fake_bin / "c++"
    compiler.write_text("#!/bin/sh\n")
    compiler.chmod(0o755)
    monkeypatch.setenv("PATH", str(fake_bin))
    assert kernels.resolve_backend(torch.zeros(2)) == "compiled"
    report = kernels.active_backend_report()
    assert report["requested"] == "auto" and report["source"] == "default"
    assert report["resolved"] == {"cpu": "compiled"} and report["compiled_unavailable"] is None
    json.dumps(report)  # plain values for the train report


def test_auto_uses_the_eager_torch_path_without_a_compiler(monkeypatch, tmp_path):
    monkeypatch.setenv("PATH", str(tmp_path))  # no c++, g++, clang++ or cl
    assert kernels.resolve_backend(torch.zeros(2)) == "torch"
    report = kernels.active_backend_report()
    assert report["resolved"] == {"cpu": "torch"} and "no C++ compiler on PATH" in report["compiled_unavailable"]
    monkeypatch.setenv("APEX_X_KERNELS", "compiled")  # asked for, impossible: the eager path, not an error
    assert kernels.resolve_backend(torch.zeros(2)) == "torch"


def test_config_preference_is_used_and_env_wins(monkeypatch):
    kernels.set_backend_preference("torch")
    assert dispatch.requested_backend() == ("torch", "config")
    monkeypatch.setenv("APEX_X_KERNELS", "auto")
    assert dispatch.requested_backend() == ("auto", "env")
    assert kernels.active_backend_report()["source"] == "env"


def test_unknown_names_are_user_errors_naming_their_source(monkeypatch):
    with pytest.raises(KernelBackendError, match="runtime.kernels"):
        kernels.set_backend_preference("cuda")
    monkeypatch.setenv("APEX_X_KERNELS", "fast")
    with pytest.raises(KernelBackendError, match="APEX_X_KERNELS"):
        kernels.resolve_backend(torch.zeros(1))
    assert issubclass(KernelBackendError, UserError) and KernelBackendError.exit_code == 2


def test_forced_triton_without_interpreter_on_cpu_raises(monkeypatch):
    monkeypatch.setenv("APEX_X_KERNELS", "triton")
    # not the env var itself: triton's own jit functions are decorated when triton is first imported
    monkeypatch.setattr(dispatch, "_interpreter_requested", lambda: False)
    with pytest.raises(KernelBackendError, match="TRITON_INTERPRET=1") as error:
        kernels.focal_loss(torch.zeros(2, 3), torch.zeros(2, dtype=torch.long))
    assert "APEX_X_KERNELS=triton" in str(error.value) and "'auto' or 'torch'" in str(error.value)


def test_forced_triton_from_config_when_triton_is_missing_raises(monkeypatch):
    monkeypatch.setitem(dispatch._state, "triton", (False, "the triton package is not installed"))
    kernels.set_backend_preference("triton")
    with pytest.raises(KernelBackendError, match="runtime.kernels=triton .* not installed"):
        kernels.resolve_backend(torch.zeros(1))
    assert kernels.active_backend_report()["triton_error"] == "the triton package is not installed"


def test_forced_triton_on_other_devices_raises(monkeypatch):
    monkeypatch.setenv("APEX_X_KERNELS", "triton")
    with pytest.raises(KernelBackendError, match="need a CUDA tensor"):
        kernels.resolve_backend(torch.empty(1, device="meta"))


def test_forced_torch_and_auto_run_the_fast_torch_path(monkeypatch):
    logits = torch.randn(4, 3, requires_grad=True)
    targets = torch.tensor([0, -1, 2, 1])
    assert type(kernels.focal_loss(logits, targets).grad_fn).__name__ == "StoredGradLossBackward"
    monkeypatch.setenv("APEX_X_KERNELS", "torch")
    pred, target = torch.tensor([[0.0, 0.0, 2.0, 2.0]], requires_grad=True), torch.tensor([[1.0, 1.0, 3.0, 3.0]])
    assert type(kernels.giou_loss(pred, target).grad_fn).__name__ == "StoredGradLossBackward"


@needs_interpreter
def test_forced_triton_runs_the_triton_kernels_under_the_interpreter(monkeypatch):
    monkeypatch.setenv("APEX_X_KERNELS", "triton")
    logits = torch.randn(4, 3, requires_grad=True)
    value = kernels.focal_loss(logits, torch.tensor([0, -1, 2, 1]))
    assert type(value.grad_fn).__name__ == "FocalLossTritonBackward"
    report = kernels.active_backend_report()
    assert report["resolved"] == {"cpu": "triton"} and report["triton_version"] and report["triton_interpret"]


def test_the_chosen_backend_is_logged_once_per_device(monkeypatch):
    monkeypatch.setenv("APEX_X_KERNELS", "torch")
    with structlog.testing.capture_logs() as logs:
        for _ in range(3):
            kernels.resolve_backend(torch.zeros(1))
    chosen = [entry for entry in logs if entry["event"] == "loss kernels backend"]
    assert len(chosen) == 1 and chosen[0]["backend"] == "torch" and chosen[0]["device"] == "cpu"


COMPILE_FAILURE = """
import torch
from apex_x import kernels
from apex_x.kernels import reference
gen = torch.Generator().manual_seed(0)
logits = torch.randn(3, 12, 10, generator=gen, requires_grad=True)
targets = (torch.rand(3, 12, 10, generator=gen) > 0.5).float()
kernels.set_backend_preference("compiled")
assert kernels.resolve_backend(logits) == "compiled"
value = kernels.boundary_loss(logits, targets)
value.backward()
ref_logits = logits.detach().clone().requires_grad_(True)
expected = reference.boundary_loss_reference(ref_logits, targets)
expected.backward()
assert torch.allclose(value, expected, rtol=1e-5) and torch.allclose(logits.grad, ref_logits.grad, atol=1e-7)
report = kernels.active_backend_report()
assert report["resolved"] == {"cpu": "torch"}, report
print("FALLBACK", report["compiled_unavailable"])
"""


@pytest.mark.slow
def test_a_compiler_that_fails_falls_back_to_the_eager_path_with_a_warning(tmp_path):
    """A real failure: Inductor generates the C++ and calls a compiler that exits with an error."""
    import os

    broken = tmp_path / "c++"
    broken.write_text("#!/bin/sh\necho 'broken compiler' >&2\nexit 1\n")
    broken.chmod(0o755)
    env = {key: value for key, value in os.environ.items() if key != "APEX_X_KERNELS"}
    env.update({"CXX": str(broken), "PATH": f"{tmp_path}:{env.get('PATH', '')}",
                "TORCHINDUCTOR_CACHE_DIR": str(tmp_path / "inductor"), "TORCHINDUCTOR_FX_GRAPH_CACHE": "0"})
    result = subprocess.run([sys.executable, "-c", COMPILE_FAILURE], env=env, capture_output=True, text=True,
                            timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "FALLBACK it failed earlier in this process" in result.stdout
    assert "compiled loss kernels failed; using the eager torch path" in result.stdout + result.stderr
