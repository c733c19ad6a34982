"""pytest-benchmark suite of the clipped losses: time and peak memory, forward / backward / both.

Implementations side by side on the same inputs: apex-torch (the fast eager torch path), apex-compiled
(the mask and boundary losses' compiled graphs, CPU; compile time excluded like torch.compile's), apex-triton
(CUDA only), the naive composite (reference.py, torch eager), torch.compile of that composite
(compile time excluded: it happens in the warm-up round), and torchvision's sigmoid_focal_loss /
generalized_box_iou_loss where torchvision has one. Shapes: APEX_X_BENCH_SIZE=small (CI-sized,
the default) or full (COCO-sized: focal 16x8400x80 and 16x21504x80, masks 100x160x160 and
800x256x256, 1k and 10k box pairs). APEX_X_BENCH_THREADS sets torch's CPU threads and
APEX_X_BENCH_ROUNDS the timed rounds per case (default 5 small, 3 full; more on a noisy machine).

Peak memory: on CUDA torch.cuda.max_memory_allocated above the level before the call; on CPU the
largest "Total Allocated" of torch's CPU allocator as torch.profiler(profile_memory=True) reports
it during one extra, untimed call (allocator bytes of tensors created inside the call, so inputs
made before it do not count; the gradient written into .grad does).

Run (see README, Benchmarks):
  mkdir -p benchmarks/results && APEX_X_BENCH_SIZE=small .venv/bin/python -m pytest \
      benchmarks/bench_kernels.py -q --benchmark-json=benchmarks/results/kernels.json && \
  .venv/bin/python benchmarks/summarize_kernels.py benchmarks/results/kernels.json
"""

from __future__ import annotations

import json
import os
import platform
import tempfile
import time

import pytest
import torch

from apex_x import kernels
from apex_x.kernels import reference

SIZE = os.environ.get("APEX_X_BENCH_SIZE", "small")
if SIZE not in ("small", "full"):
    raise ValueError(f"APEX_X_BENCH_SIZE must be 'small' or 'full', got {SIZE!r}")
ROUNDS = int(os.environ.get("APEX_X_BENCH_ROUNDS") or (5 if SIZE == "small" else 3))
if ROUNDS < 1:
    raise ValueError(f"APEX_X_BENCH_ROUNDS must be >= 1, got {ROUNDS}")
SHAPES = {
    "small": {"focal": [(2 * 2100, 80)], "giou": [(1000,), (10000,)], "mask": [(8, 160, 160)]},
    "full": {
        "focal": [(16 * 8400, 80), (16 * 21504, 80)],
        "giou": [(1000,), (10000,)],
        "mask": [(100, 160, 160), (800, 256, 256)],
    },
}[SIZE]
SHAPES["boundary"] = SHAPES["mask"]
PHASES = ("forward", "backward", "forward+backward")
DEVICES = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])
_COMPILED: dict[str, object] = {}

if os.environ.get("APEX_X_BENCH_THREADS"):
    torch.set_num_threads(int(os.environ["APEX_X_BENCH_THREADS"]))


def make_inputs(loss: str, shape: tuple[int, ...], device: str) -> dict:
    """Prediction (the differentiated input), the other arguments, and the bytes they occupy."""
    gen = torch.Generator().manual_seed(0)
    if loss == "focal":
        rows, classes = shape
        logits = torch.randn(rows, classes, generator=gen) - 4.0  # detector-like: mostly background
        ids = torch.randint(0, classes * 20, (rows,), generator=gen)
        ids = torch.where(ids < classes, ids, -1)  # ~5% positives
        one_hot = reference.as_soft_targets(ids, classes)
        return {"pred": logits.to(device), "ids": ids.to(device), "one_hot": one_hot.to(device)}
    if loss == "giou":
        (pairs,) = shape
        corner = torch.rand(pairs, 2, generator=gen) * 500
        target = torch.cat([corner, corner + torch.rand(pairs, 2, generator=gen) * 200 + 1], 1)
        pred = target + torch.randn(pairs, 4, generator=gen) * 10
        return {"pred": pred.to(device), "target": target.to(device)}
    count, height, width = shape
    masks = (torch.rand(count, height, width, generator=gen) > 0.5).float()
    logits = torch.randn(count, height, width, generator=gen) * 3
    corner = torch.rand(count, 2, generator=gen) * torch.tensor([width, height]) * 0.3
    boxes = torch.cat([corner, corner + torch.tensor([width, height]) * 0.6], 1)
    return {"pred": logits.to(device), "target": masks.to(device), "boxes": boxes.to(device)}


def _apex(loss: str, backend: str):
    fn = {"focal": kernels.focal_loss, "giou": kernels.giou_loss, "mask": kernels.mask_loss,
          "boundary": kernels.boundary_loss}[loss]  # fmt: skip

    def run(pred, data, soft=False):
        kernels.set_backend_preference(backend)  # as the trainer does with runtime.kernels
        if loss == "focal":
            return fn(pred, data["one_hot"] if soft else data["ids"])
        if loss == "giou":
            return fn(pred, data["target"])
        return fn(pred, data["target"], data["boxes"])

    return run


def _reference(loss: str, compiled: bool):
    fn = {"focal": reference.focal_loss_reference, "giou": reference.giou_loss_reference,
          "mask": reference.mask_loss_reference, "boundary": reference.boundary_loss_reference}[loss]  # fmt: skip
    if compiled:
        fn = _COMPILED.setdefault(loss, torch.compile(fn))

    def run(pred, data):
        if loss == "focal":
            return fn(pred, data["ids"])
        if loss == "giou":
            return fn(pred, data["target"])
        return fn(pred, data["target"], data["boxes"])

    return run


def _torchvision(loss: str):
    from torchvision.ops import generalized_box_iou_loss, sigmoid_focal_loss

    if loss == "focal":
        return lambda pred, data: sigmoid_focal_loss(pred, data["one_hot"], alpha=0.25, gamma=2.0, reduction="sum")
    return lambda pred, data: generalized_box_iou_loss(pred, data["target"], reduction="sum", eps=1e-7)


def implementations(loss: str, device: str) -> dict:
    impls = {"apex-torch": _apex(loss, "torch"), "reference-eager": _reference(loss, False),
             "reference-compile": _reference(loss, True)}  # fmt: skip
    if loss == "focal":
        apex = _apex(loss, "torch")
        impls["apex-torch-soft"] = lambda pred, data: apex(pred, data, soft=True)
    if loss in ("focal", "giou"):
        impls["torchvision"] = _torchvision(loss)
    if loss in ("mask", "boundary") and device == "cpu":
        impls["apex-compiled"] = _apex(loss, "compiled")  # runtime.kernels=auto on CPU with a C++ compiler
    if device == "cuda":
        impls["apex-triton"] = _apex(loss, "triton")
    return impls


IMPL_NAMES = ["apex-torch", "apex-compiled", "apex-torch-soft", "apex-triton", "torchvision", "reference-eager", "reference-compile"]
CASES = [
    pytest.param(loss, shape, device, impl, phase, id=f"{loss}-{'x'.join(map(str, shape))}-{device}-{impl}-{phase}")
    for loss, shapes in SHAPES.items()
    for shape in shapes
    for device in DEVICES
    for impl in IMPL_NAMES
    for phase in PHASES
]


def _sync(device: str) -> None:
    if device == "cuda":
        torch.cuda.synchronize()


def _phase_callables(fn, data: dict, device: str, phase: str):
    """(setup, target, clear_grad) for benchmark.pedantic: setup prepares untimed state, target is what is
    timed, clear_grad drops the last call's gradient (before a memory measurement)."""
    leaf = data["pred"].detach().clone().requires_grad_(True)

    def no_setup():
        return (), {}

    def forward():
        leaf.grad = None
        fn(leaf, data)
        _sync(device)

    def forward_then_backward():
        leaf.grad = None
        fn(leaf, data).backward()
        _sync(device)

    def setup_backward():
        leaf.grad = None
        value = fn(leaf, data)
        _sync(device)
        return (value,), {}

    def backward(value):
        value.backward()
        _sync(device)

    def clear_grad():
        leaf.grad = None

    if phase == "backward":
        return setup_backward, backward, clear_grad
    return no_setup, (forward if phase == "forward" else forward_then_backward), clear_grad


def _schedule(setup, target, phase: str) -> dict:
    """Rounds and iterations so that short calls are repeated enough to time them (>= ~0.2 s per case)."""
    args, kwargs = setup()
    start = time.perf_counter()
    target(*args, **kwargs)
    once = max(time.perf_counter() - start, 1e-6)
    if phase == "backward":  # needs a fresh forward per call: one iteration per round, more rounds
        return {"setup": setup, "rounds": max(ROUNDS, min(200, int(0.2 / once))), "iterations": 1}
    return {"rounds": ROUNDS, "iterations": max(1, min(1000, int(0.04 / once)))}


def peak_bytes(setup, target, device: str, clear_grad=None) -> int:
    """Peak memory of one call of target (see the module docstring for how). `clear_grad` runs first, so
    that freeing the previous call's gradient (made before the profiler started, so of unknown size to
    it) never falls inside the measured call: every implementation is measured with its gradient."""
    if clear_grad is not None:
        clear_grad()
    args, kwargs = setup()
    if device == "cuda":
        torch.cuda.synchronize()
        start = torch.cuda.memory_allocated()
        torch.cuda.reset_peak_memory_stats()
        target(*args, **kwargs)
        return int(torch.cuda.max_memory_allocated() - start)
    from torch.profiler import ProfilerActivity, profile

    with profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof:
        target(*args, **kwargs)
    with tempfile.TemporaryDirectory() as folder:
        path = os.path.join(folder, "trace.json")
        prof.export_chrome_trace(path)
        with open(path) as handle:
            events = json.load(handle)["traceEvents"]
    memory = [e["args"] for e in sorted(events, key=lambda e: e.get("ts", 0)) if e.get("name") == "[memory]"]
    if not memory:
        return 0
    baseline = memory[0]["Total Allocated"] - memory[0]["Bytes"]  # the allocator's count before the call
    return int(max(args["Total Allocated"] for args in memory) - baseline)


def bytes_must_move(data: dict, phase: str) -> int:
    """Bytes a loss must read/write: inputs per pass (the backward recomputes), plus the gradient."""
    pred = data["pred"]
    others = sum(v.numel() * v.element_size() for k, v in data.items() if k not in ("pred", "one_hot"))
    inputs = pred.numel() * pred.element_size() + others
    grad = pred.numel() * pred.element_size()
    return {"forward": inputs, "backward": inputs + grad, "forward+backward": 2 * inputs + grad}[phase]


def device_description(device: str) -> dict:
    if device == "cuda":
        props = torch.cuda.get_device_properties(0)
        peak = 2 * props.memory_clock_rate * 1e3 * props.memory_bus_width / 8  # DDR: two transfers per clock
        return {"device_name": props.name, "peak_bandwidth_gbps": peak / 1e9}
    return {"device_name": platform.processor() or platform.machine(), "threads": torch.get_num_threads()}


@pytest.mark.parametrize("loss,shape,device,impl,phase", CASES)
def test_kernel_benchmark(benchmark, loss, shape, device, impl, phase):
    impls = implementations(loss, device)
    if impl not in impls:
        pytest.skip(f"{impl} does not apply to {loss} on {device}")
    data = make_inputs(loss, shape, device)
    setup, target, clear_grad = _phase_callables(impls[impl], data, device, phase)
    benchmark.group = f"{loss} {'x'.join(map(str, shape))} {device} {phase}"
    info = {"loss": loss, "shape": list(shape), "device": device, "impl": impl, "phase": phase, "size": SIZE}
    info.update(device_description(device))
    benchmark.extra_info.update(info)
    try:  # warm-up outside the timing: torch.compile compiles here
        args, kwargs = setup()
        target(*args, **kwargs)
    except Exception as error:  # record why (e.g. no C++ compiler for torch.compile) instead of failing
        benchmark.extra_info["unavailable"] = f"{type(error).__name__}: {str(error).splitlines()[0][:300]}"
        benchmark.pedantic(lambda: None, rounds=1, iterations=1)
        return
    benchmark.pedantic(target, warmup_rounds=1, **_schedule(setup, target, phase))
    benchmark.extra_info["peak_bytes"] = peak_bytes(setup, target, device, clear_grad)
    benchmark.extra_info["grad_bytes"] = data["pred"].numel() * data["pred"].element_size()
    benchmark.extra_info["bytes_must_move"] = bytes_must_move(data, phase)
