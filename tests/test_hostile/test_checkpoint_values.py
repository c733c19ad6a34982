"""Kind 2 of issue 14: every plain value of a checkpoint is checked before anything is built or copied.

Tampered copies of a real checkpoint: each ends with exit 2 (CheckpointError) naming the key, fast and
without building what the values ask for.
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import pytest
import torch

from .conftest import RSS_BOUND_KB, TinyRun, cli, run_limited


def _nested(levels: int) -> list[Any]:
    """2**levels leaves in a few hundred bytes of pickle (each level shares the one below twice)."""
    value: list[Any] = [0.5]
    for _ in range(levels):
        value = [value, value]
    return value


def _set(payload: dict[str, Any], dotted: str, value: Any) -> None:
    *parents, leaf = dotted.split(".")
    node = payload
    for index, part in enumerate(parents):
        rest = ".".join([*parents[index:], leaf])
        if isinstance(node, dict) and rest in node:  # a state dict's own dotted key
            leaf = rest
            break
        node = node[int(part)] if isinstance(node, list) else node[part]
    slot: Any = int(leaf) if leaf.isdigit() else leaf
    node[slot] = _special(value, node.get(slot) if isinstance(node, dict) else None)


# (dotted key to set, value, the key the message must name)
CASES: dict[str, tuple[str, Any, str]] = {
    "huge_neck": ("config.model.neck_channels", 10**6, "config.model.neck_channels"),
    "config_type": ("config.train.epochs", "ten", "config.train.epochs"),
    "classes": ("categories", {"original_ids": list(range(20_000)), "names": ["c"] * 20_000},
                "categories.original_ids"),
    "input_size_type": ("input_size", "big", "input_size"),
    "input_size_huge": ("input_size", [10**9, 10**9], "input_size.0"),
    "input_size_edited": ("input_size", [4096, 4096], "input_size"),  # in range, but not the stored config's
    "profile_forged": ("config.model.profile", "worldclass", "profile"),  # the stored config asks for another
    "progress_type": ("progress.global_step", "7", "progress.global_step"),
    "progress_negative": ("progress.epoch", -3, "progress.epoch"),
    "rng_state": ("rng.python.state", [1, 2, 3], "rng.python.state"),
    "rng_torch": ("rng.torch", [1, 2], "rng.torch"),
    "optimizer_groups": ("optimizer.param_groups", "x", "optimizer.param_groups"),
    "optimizer_state": ("optimizer.state", {10**6: {"step": 1}}, f"optimizer.state.{10**6}"),
    "best_bomb": ("best", {"name": "bbox_AP", "value": _nested(80), "epoch": 1}, "best.value"),
    "best_extra": ("best", {"name": "bbox_AP", "value": 0.1, "epoch": 1, "x": _nested(80)}, "best.x"),
    "history_bomb": ("train_state.report.history", [_nested(80)], "train_state.report.history"),
    "diagnostics": ("train_state.diagnostics.run.steps", "many", "train_state.diagnostics.run.steps"),
    "architecture": ("architecture", _nested(80), "architecture"),
    "first_bad": ("train_state.first_bad", "x", "train_state.first_bad"),
    "unknown_key_bomb": ("future_key", {"a": _nested(80)}, "future_key"),
    # issue 33, kind 6
    "stages_100k": ("config.train.stages", [{"name": "s", "epochs": 1}] * 100_000, "config.train.stages"),
    "weight_text": ("model.backbone.body.conv_stem.weight", "abc", "model.backbone.body.conv_stem.weight"),
    "ema_nested": ("ema.backbone.body.conv_stem.weight", "NESTED", "ema.backbone.body.conv_stem.weight"),
    "weight_sparse": ("model.backbone.body.conv_stem.weight", "SPARSE", "model.backbone.body.conv_stem.weight"),
    "weight_complex": ("model.backbone.body.conv_stem.weight", "COMPLEX", "model.backbone.body.conv_stem.weight"),
    "optimizer_nested": ("optimizer.state", {0: {"exp_avg": "NESTED"}}, "optimizer.state.0.exp_avg"),
    "rng_odd_key": ("rng.5", "x", "rng.5"),
    "rng_python_key": ("rng.python.extra", 1, "rng.python.extra"),
    "rng_version": ("rng.python.version", 7, "rng.python.version"),
    "rng_torch_size": ("rng.torch", "SHORT_BYTES", "rng.torch"),
}


def _special(value: Any, original: Any) -> Any:
    """Placeholders of CASES for tensors built from the value they replace."""
    if isinstance(value, dict):
        return {key: _special(item, None) for key, item in value.items()}
    if value == "NESTED":
        return torch.nested.nested_tensor([torch.zeros(2), torch.zeros(3)])
    if value == "SPARSE":
        return original.to_sparse()
    if value == "COMPLEX":
        return original.to(torch.complex64)
    if value == "SHORT_BYTES":
        return torch.zeros(16, dtype=torch.uint8)
    return value


@pytest.fixture(scope="module")
def tampered(tiny_run: TinyRun, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    original = torch.load(tiny_run.last, weights_only=True)
    folder = tmp_path_factory.mktemp("tampered")
    files: dict[str, Path] = {}
    for name, (dotted, value, _) in CASES.items():
        payload = copy.deepcopy(original)
        _set(payload, dotted, value)
        files[name] = folder / f"{name}.pt"
        torch.save(payload, files[name])
        assert files[name].stat().st_size < tiny_run.last.stat().st_size + (1 << 20)
    big = copy.deepcopy(original)
    big["config"]["model"]["backbone"] = "convnext_xxlarge"  # valid for the schema, 845 M parameters
    files["huge_backbone"] = folder / "huge_backbone.pt"
    torch.save(big, files["huge_backbone"])
    return files


def test_every_tampered_value_is_refused_by_the_public_loader_naming_its_key(tampered: dict[str, Path]) -> None:
    code = f"""
import time
from apex_x.domain.errors import CheckpointError
from apex_x.train.checkpoint import load_checkpoint
for name, path in {dict((name, str(path)) for name, path in tampered.items() if name in CASES)!r}.items():
    started = time.perf_counter()
    try:
        load_checkpoint(path)
        print(name, "LOADED")
    except CheckpointError as error:
        print(name, round(time.perf_counter() - started, 3), "|", error)
"""
    outcome = run_limited(["-c", code], timeout=300)
    lines = dict(line.split(" ", 1) for line in outcome.stdout.splitlines())
    assert set(lines) == set(CASES), outcome.stderr[-3000:]
    for name, (_, _, key) in CASES.items():
        seconds, _, message = lines[name].partition(" | ")
        assert f"checkpoint value '{key}" in message, (name, message)
        assert float(seconds) < 5.0, (name, seconds)
    assert 0 < outcome.peak_rss_kb < RSS_BOUND_KB


def test_predict_refuses_a_best_bomb_before_summary_json(tampered: dict[str, Path], tiny_run: TinyRun,
                                                        tmp_path: Path) -> None:
    outcome = cli("predict", "--checkpoint", str(tampered["best_bomb"]), "--image", str(tiny_run.image),
                  "--output", str(tmp_path / "p"), "--device", "cpu")
    assert outcome.code == 2, outcome.stderr[-3000:]
    assert "checkpoint value 'best.value" in outcome.error_line and str(tampered["best_bomb"]) in outcome.error_line
    assert not (tmp_path / "p").exists() and outcome.peak_rss_kb < RSS_BOUND_KB


def test_a_stored_config_asking_for_a_huge_backbone_is_refused_before_it_is_built(
    tampered: dict[str, Path], tiny_run: TinyRun, tmp_path: Path
) -> None:
    outcome = cli("predict", "--checkpoint", str(tampered["huge_backbone"]), "--image", str(tiny_run.image),
                  "--output", str(tmp_path / "p"), "--device", "cpu")
    assert outcome.code == 2, outcome.stderr[-3000:]
    assert "builds 8" in outcome.error_line and "refusing to build it" in outcome.error_line
    assert outcome.peak_rss_kb < RSS_BOUND_KB  # built for real, 845 M fp32 parameters would take 3.4 GB


@pytest.mark.slow
def test_resume_eval_and_teacher_refuse_bad_values_with_exit_2(tampered: dict[str, Path], tiny_run: TinyRun,
                                                              tmp_path: Path) -> None:
    config = str(tiny_run.config)
    out = f"train.output_dir={tmp_path / 'out'}"
    runs = {
        "progress_type": cli("train", config, "--resume", str(tampered["progress_type"]), "--set", out),
        "rng_state": cli("train", config, "--resume", str(tampered["rng_state"]), "--set", out),
        "input_size_type": cli("eval", config, "--checkpoint", str(tampered["input_size_type"]),
                               "--output-json", str(tmp_path / "e.json")),
        "classes": cli("train", config, "--set", out, "--set", "train.distill_weight=1.0",
                       "--set", f"train.teacher_checkpoint={tampered['classes']}"),
        "huge_backbone": cli("train", config, "--set", out, "--set", "train.distill_weight=1.0",
                             "--set", f"train.teacher_checkpoint={tampered['huge_backbone']}"),
    }
    for name, outcome in runs.items():
        assert outcome.code == 2, (name, outcome.stderr[-3000:])
        key = CASES[name][2] if name in CASES else "builds 8"
        assert key in outcome.error_line, (name, outcome.error_line)
        assert outcome.peak_rss_kb < RSS_BOUND_KB, name
    assert not (tmp_path / "e.json").exists()


def test_budgets_cover_the_whole_payload_not_each_key(tiny_run: TinyRun) -> None:
    """Two shapes the per-key budget let through: many keys sharing one big list (a 7-minute check), and a
    history repeating one 10,000-character text 600,000 times (6 GB of text once copied into a report)."""
    import time

    from apex_x.domain.checkpoint_values import validate_payload
    from apex_x.domain.errors import CheckpointError

    payload = torch.load(tiny_run.last, map_location="cpu", weights_only=True)
    shared = [[0] * 1000] * 1900  # 1.9 M values, under the per-key limit alone
    many_keys = {**payload, **{f"extra_{index}": shared for index in range(120)}}
    started = time.perf_counter()
    with pytest.raises(CheckpointError, match=r"checkpoint value 'extra_1\..*' holds more than 2000000 values"):
        validate_payload(many_keys, "many_keys.pt")
    assert time.perf_counter() - started < 30  # the first keys use the budget up: no 120 full walks
    fanout = copy.deepcopy(payload)
    fanout["train_state"]["report"]["history"] = [{"epoch": 1, "note": "x" * 10_000}] * 600_000
    with pytest.raises(CheckpointError, match=r"'train_state\.report\.history\.\d+\.note' brings the checkpoint's "
                                              r"texts over 20000000 characters"):
        validate_payload(fanout, "fanout.pt")
    validate_payload(payload, "last.pt")  # the run's own checkpoint passes, and the budget is per payload
    validate_payload(payload, "last.pt")


def _first_state(payload: dict[str, Any]) -> dict[str, Any]:
    return next(iter(payload["optimizer"]["state"].values()))


@pytest.mark.parametrize(
    ("tamper", "facts"),
    [
        (lambda p: _first_state(p).update(exp_avg=torch.zeros(3)), ("optimizer.state.", "exp_avg", "(3,)")),
        (lambda p: _first_state(p).update(step=torch.tensor([1.0, 2.0])), ("optimizer.state.", "step", "one number")),
        (lambda p: p["rng"].update(torch=torch.zeros(5, dtype=torch.uint8)), ("'rng.torch'", "must hold")),
        (lambda p: p["progress"].update(stage_name="nonexistent"), ("'nonexistent'", "not in this run's curriculum")),
        (lambda p: p["progress"].update(stage_index=10**11), ("stage 100000000000", "not in this run's curriculum")),
    ],
    ids=["exp_avg_shape", "step_shape", "rng_size", "stage_name", "stage_index"],
)
def test_values_that_pass_the_loader_but_not_the_run_are_refused_on_resume(
    tamper: Any, facts: tuple[str, ...], tiny_run: TinyRun, tmp_path: Path
) -> None:
    from apex_x.api import train
    from apex_x.domain.errors import CheckpointError

    payload = torch.load(tiny_run.last, map_location="cpu", weights_only=True)
    tamper(payload)
    path = tmp_path / "tampered.pt"
    torch.save(payload, path)
    with pytest.raises(CheckpointError) as caught:
        train(str(tiny_run.config), resume=str(path), overrides=[f"train.output_dir={tmp_path / 'out'}"],
              log_level="warning")
    assert str(path) in str(caught.value) and all(fact in str(caught.value) for fact in facts), str(caught.value)


def test_an_ordered_dict_whose_methods_are_shadowed_is_read_as_its_items(tiny_run: TinyRun, tmp_path: Path) -> None:
    """Issue 33, kind 6: the unpickler may set `items`/`keys`/`get` attributes on an OrderedDict; the loader reads
    every mapping through dict.items, so the payload's values load as written and nothing calls the attributes."""
    from apex_x.train.checkpoint import load_checkpoint

    from .builders import save_shadowed, shadowed

    original = torch.load(tiny_run.last, weights_only=True)
    payload = dict(original)
    payload["model"] = shadowed(original["model"])
    payload["config"] = shadowed(original["config"])
    path = save_shadowed(shadowed(payload), tmp_path / "shadowed.pt")
    raw = torch.load(path, weights_only=True)
    assert raw.items == "x" and raw["model"].keys == 3  # what any caller of .items() / .keys() would meet
    loaded = load_checkpoint(str(path))
    assert type(loaded) is dict and type(loaded["model"]) is dict and loaded["config"] == original["config"]
    assert list(loaded["model"]) == list(original["model"])  # same keys, same order
    assert all(torch.equal(loaded["model"][key], original["model"][key]) for key in original["model"])
    outcome = cli("predict", "--checkpoint", str(path), "--image", str(tiny_run.image), "--output",
                  str(tmp_path / "p"), "--device", "cpu")
    assert outcome.code == 0, outcome.stderr[-3000:]
