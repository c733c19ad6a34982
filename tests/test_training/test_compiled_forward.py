"""runtime.compile_model: the training forward through torch.compile, eager (and said why) when it cannot run."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
import torch

from apex_x.application.engine.compiled_forward import CompiledForward

from .helpers import make_use_case


def _small_network(conv_bias: bool = True) -> torch.nn.Module:
    torch.manual_seed(0)
    return torch.nn.Sequential(torch.nn.Conv2d(3, 8, 3, padding=1, bias=conv_bias), torch.nn.BatchNorm2d(8),
                               torch.nn.SiLU(),
                               torch.nn.Conv2d(8, 4, 1))


def test_without_a_cxx_compiler_the_network_runs_eager_and_the_reason_is_kept(monkeypatch, tmp_path):
    monkeypatch.setenv("PATH", str(tmp_path))  # no c++, g++, clang++ or cl
    forward = CompiledForward(True, torch.device("cpu"))
    network, images = _small_network(), torch.randn(2, 3, 8, 8)
    expected = _small_network()(images)
    assert torch.equal(forward(network, images), expected)
    plain = forward.to_plain()
    assert plain["requested"] is True and plain["active"] is False
    assert "no C++ compiler on PATH" in plain["reason"]
    assert CompiledForward(False, torch.device("cpu")).to_plain() == {"requested": False, "active": False,
                                                                      "reason": None}


def test_a_run_asking_for_compile_without_a_compiler_trains_eager_and_the_report_says_why(monkeypatch, tmp_path):
    monkeypatch.setenv("PATH", str(tmp_path / "bin"))
    result = make_use_case(tmp_path / "run", "runtime.compile_model=true").execute()
    report = json.loads(open(result.report_path).read())
    assert report["status"] == "finished"
    assert report["run"]["compile_model"]["active"] is False
    assert "no C++ compiler" in report["run"]["compile_model"]["reason"]
    markdown = (tmp_path / "run" / "train_report.md").read_text()
    assert "network eager (no C++ compiler on PATH" in markdown


@pytest.mark.slow
def test_the_compiled_forward_matches_eager_and_keeps_the_module_s_own_weights(tmp_path):
    """A real compile (Inductor, C++ on CPU): same outputs and gradients, the state-dict keys unchanged."""
    if CompiledForward(True, torch.device("cpu")).reason is not None:
        pytest.skip("no C++ compiler on PATH")
    eager, compiled = _small_network(), _small_network()
    keys = list(compiled.state_dict())
    forward = CompiledForward(True, torch.device("cpu"))
    images = torch.randn(2, 3, 8, 8)
    out_eager, out_compiled = eager(images), forward(compiled, images)
    torch.testing.assert_close(out_compiled, out_eager, atol=1e-5, rtol=1e-5)
    out_eager.square().sum().backward()
    out_compiled.square().sum().backward()
    for (name, a), b in zip(eager.named_parameters(), compiled.parameters(), strict=True):
        torch.testing.assert_close(b.grad, a.grad, atol=1e-4, rtol=1e-4, msg=name)
    torch.testing.assert_close(compiled[1].running_mean, eager[1].running_mean)  # BN statistics updated once
    assert list(compiled.state_dict()) == keys and forward.to_plain()["active"] is True


BROKEN_COMPILE = """
import torch
from apex_x.application.engine.compiled_forward import CompiledForward
torch.manual_seed(0)
network = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3), torch.nn.SiLU())
forward = CompiledForward(True, torch.device("cpu"))
images = torch.randn(1, 3, 6, 6)
assert torch.equal(forward(network, images), network(images))
assert torch.equal(forward(network, images), network(images))  # eager from now on, no second attempt
print("REPORT", forward.to_plain())
"""


@pytest.mark.slow
def test_a_compiler_that_fails_leaves_the_network_eager_with_the_reason(tmp_path):
    """A real failure: Inductor writes the C++ and calls a compiler that exits with an error."""
    broken = tmp_path / "c++"
    broken.write_text("#!/bin/sh\necho 'broken compiler' >&2\nexit 1\n")
    broken.chmod(0o755)
    env = {**os.environ, "CXX": str(broken), "PATH": f"{tmp_path}:{os.environ.get('PATH', '')}",
           "TORCHINDUCTOR_CACHE_DIR": str(tmp_path / "inductor"), "TORCHINDUCTOR_FX_GRAPH_CACHE": "0"}
    result = subprocess.run([sys.executable, "-c", BROKEN_COMPILE], env=env, capture_output=True, text=True,
                            timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "'active': False" in result.stdout and "compiling failed: " in result.stdout, result.stdout
    assert "compiling the network failed; it runs eager" in result.stdout + result.stderr


def _loop_adamw(network: torch.nn.Module) -> torch.optim.AdamW:
    """torch's per-tensor AdamW with build_optimizer's groups (weight decay on ndim >= 2 only)."""
    return torch.optim.AdamW([{"params": [p for p in network.parameters() if p.ndim >= 2], "weight_decay": 0.05},
                              {"params": [p for p in network.parameters() if p.ndim < 2], "weight_decay": 0.0}],
                             lr=0.01, foreach=False)


def test_adamw_is_fused_for_float32_parameters_and_takes_the_same_step_as_the_loop():
    """Fused AdamW (build_optimizer) and torch's per-tensor loop take the same steps, checked in three parts so a
    failure says which: the two networks start equal; fed the same gradients, the two optimizers agree (the
    optimizer alone); three whole steps of a network agree (forward, backward and optimizer).

    The whole-step network has no bias right before its BatchNorm: such a bias has a true gradient of 0, its
    computed one is rounding noise (~1e-9), and Adam's m / (sqrt(v) + eps) turns that noise into a step of about
    lr, so parameters 1e-8 apart after the first step give it steps of opposite signs (10% apart after 3 steps
    on torch 2.14.1's CPU build, 2026-12-07; the test shows that too).
    """
    from apex_x.application.engine.trainer import build_optimizer
    from apex_x.domain.config import TrainConfig

    train = TrainConfig(lr=0.01, weight_decay=0.05)
    images = torch.randn(2, 3, 8, 8, generator=torch.Generator().manual_seed(1))
    # 1. the optimizer alone: the same gradients into both
    fused_net, loop_net = _small_network(), _small_network()
    assert all(torch.equal(a, b) for a, b in zip(fused_net.parameters(), loop_net.parameters(), strict=True))
    fused, loop = build_optimizer(fused_net, train), _loop_adamw(loop_net)
    assert fused.defaults["fused"] is True and loop.defaults["fused"] is None
    for _ in range(3):
        fused_net(images).square().mean().backward()
        for a, b in zip(fused_net.parameters(), loop_net.parameters(), strict=True):
            b.grad = a.grad.clone()
        fused.step(), loop.step(), fused.zero_grad(), loop.zero_grad()
    for a, b in zip(fused_net.parameters(), loop_net.parameters(), strict=True):
        torch.testing.assert_close(a, b, atol=1e-6, rtol=1e-5, msg="fused and per-tensor AdamW differ on equal grads")
    # the bias before BatchNorm: its gradient is noise, the reason the whole-step check below has none
    noisy = _small_network()
    noisy(images).square().mean().backward()
    assert noisy[0].bias.grad.abs().max() < 1e-6 < noisy[0].weight.grad.abs().max()
    # 2. whole steps (each network its own forward and backward), on a network without that bias
    fused_net, loop_net = _small_network(conv_bias=False), _small_network(conv_bias=False)
    fused, loop = build_optimizer(fused_net, train), _loop_adamw(loop_net)
    for _ in range(3):
        for net, optimizer in ((fused_net, fused), (loop_net, loop)):
            net(images).square().mean().backward()
            optimizer.step()
            optimizer.zero_grad()
    for a, b in zip(fused_net.parameters(), loop_net.parameters(), strict=True):
        torch.testing.assert_close(a, b, atol=1e-6, rtol=1e-5, msg="three whole steps differ")
    assert build_optimizer(_small_network().double(), train).defaults["fused"] is None  # float64: the loop


@pytest.mark.slow
def test_a_second_input_size_runs_eager_and_the_report_says_so_instead_of_recompiling():
    """Multi-scale: compiled for the first size only; the next size runs eager (no recompile), said in to_plain."""
    if CompiledForward(True, torch.device("cpu")).reason is not None:
        pytest.skip("no C++ compiler on PATH")
    network, forward = _small_network(), CompiledForward(True, torch.device("cpu"))
    forward(network, torch.randn(2, 3, 8, 8))
    assert forward.to_plain()["active"] is True
    images = torch.randn(2, 3, 12, 12)
    torch.testing.assert_close(forward(network, images), network(images))
    plain = forward.to_plain()
    assert plain["active"] is False and "input size changed (8x8 -> 12x12" in plain["reason"]
