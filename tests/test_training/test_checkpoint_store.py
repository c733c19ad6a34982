"""TorchCheckpointStore and apex_x.train.checkpoint: atomic writes, secure loads, layouts, mismatch reports."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch

from apex_x.adapters.checkpoints.safetensors_writer import SafetensorsWeightsWriter, read_safetensors
from apex_x.adapters.checkpoints.torch_store import TorchCheckpointStore, apply_model_state
from apex_x.domain.errors import CheckpointError
from apex_x.train import checkpoint as public

REPO = Path(__file__).resolve().parents[2]


def tiny_model() -> torch.nn.Module:
    torch.manual_seed(0)
    return torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.BatchNorm1d(4), torch.nn.Linear(4, 2))


class _CreatesFile:
    """Unpickling this would run io.open(path, "w"), creating the file."""

    def __init__(self, path: str) -> None:
        self.path = path

    def __reduce__(self) -> tuple[object, tuple[str, str]]:
        return (open, (self.path, "w"))


def test_save_load_round_trip_is_atomic_and_leaves_no_temp(tmp_path: Path) -> None:
    store = TorchCheckpointStore()
    payload = {"model": tiny_model().state_dict(), "progress": {"epoch": 3}, "values": [1, 2.5, None, "x"]}
    target = tmp_path / "checkpoints" / "last.pt"
    store.save(payload, str(target))
    loaded = store.load(str(target))
    assert loaded["progress"] == {"epoch": 3} and loaded["values"] == [1, 2.5, None, "x"]
    assert all(torch.equal(loaded["model"][k], v) for k, v in payload["model"].items())
    assert [path.name for path in target.parent.iterdir()] == ["last.pt"]
    assert store.list_checkpoints(str(target.parent)) == [str(target)]


@pytest.mark.parametrize("layout", ["raw", "model_state_dict", "state_dict", "model", "teacher", "ema_model", "ema"])
def test_extract_accepts_every_layout_of_the_seed(layout: str) -> None:
    state = tiny_model().state_dict()
    prefixed = {f"module.{key}": value for key, value in state.items()}
    payload = prefixed if layout == "raw" else {layout: prefixed, "epoch": 1}
    extracted = public.extract_model_state_dict(payload)
    assert sorted(extracted) == sorted(state)
    assert all(torch.equal(extracted[key], state[key]) for key in state)


def test_extract_prefers_ema_when_asked_and_the_profile_key_otherwise() -> None:
    model_state = {"w": torch.zeros(2)}
    ema_state = {"w": torch.ones(2)}
    payload = {"format": "apex-x-checkpoint", "format_version": 1, "profile": "worldclass",
               "teacher": model_state, "ema": ema_state}
    assert torch.equal(public.extract_model_state_dict(payload)["w"], torch.zeros(2))
    assert torch.equal(public.extract_model_state_dict(payload, prefer_ema=True)["w"], torch.ones(2))
    nested = {"model": {"state_dict": {"module.w": torch.ones(1)}, "arch": "x"}}
    assert list(public.extract_model_state_dict(nested)) == ["w"]


def test_extract_without_weights_names_the_keys_it_found() -> None:
    with pytest.raises(CheckpointError, match=r"keys: epoch, optimizer"):
        public.extract_model_state_dict({"optimizer": {}, "epoch": 2})


def test_mismatches_are_reported_not_dropped(tmp_path: Path) -> None:
    model = tiny_model()
    state = dict(model.state_dict())
    state["0.weight"] = torch.zeros(5, 3)  # wrong shape
    state["extra.bias"] = torch.zeros(1)  # unexpected
    del state["2.bias"]  # missing
    with pytest.raises(CheckpointError) as raised:
        apply_model_state(model, state, strict=True)
    message = str(raised.value)
    assert "2.bias" in message and "extra.bias" in message and "0.weight checkpoint [5, 3] vs model [4, 3]" in message
    before = model.state_dict()["0.weight"].clone()
    report = apply_model_state(model, state, strict=False)
    assert report.missing == ["2.bias"] and report.unexpected == ["extra.bias"]
    assert report.shape_mismatches == [("0.weight", (5, 3), (4, 3))]
    assert torch.equal(model.state_dict()["0.weight"], before)  # the mismatched tensor was not loaded
    public.save_checkpoint({"model": tiny_model().state_dict()}, tmp_path / "ok.pt")
    assert public.load_model_weights(tiny_model(), tmp_path / "ok.pt").ok


def test_pickled_object_is_refused_naming_the_global_and_never_runs(tmp_path: Path) -> None:
    victim = tmp_path / "created_by_unpickling.txt"
    evil = tmp_path / "evil.pt"
    torch.save({"model": tiny_model().state_dict(), "note": _CreatesFile(str(victim))}, evil)
    with pytest.raises(CheckpointError) as raised:
        public.load_checkpoint(evil)
    assert "global io.open" in str(raised.value) and str(evil) in str(raised.value)
    assert "weights_only" in str(raised.value)
    assert not victim.exists()


def test_not_a_checkpoint_and_missing_files_are_clear_errors(tmp_path: Path) -> None:
    garbage = tmp_path / "garbage.pt"
    garbage.write_bytes(b"not a zip at all")
    with pytest.raises(CheckpointError, match="garbage.pt"):
        public.load_checkpoint(garbage)
    with pytest.raises(CheckpointError, match="not found"):
        public.load_checkpoint(tmp_path / "absent.pt")
    newer = tmp_path / "newer.pt"
    torch.save({"format": "apex-x-checkpoint", "format_version": 99}, newer)
    with pytest.raises(CheckpointError, match="newer"):
        public.load_checkpoint(newer)


def test_a_failed_write_raises_and_keeps_the_earlier_file(tmp_path: Path) -> None:
    """A real write failure (file size limit -> EFBIG) in a child process: the old last.pt survives intact."""
    target = tmp_path / "last.pt"
    public.save_checkpoint({"model": {"w": torch.ones(4)}}, target)
    script = textwrap.dedent(f"""
        import resource, signal, sys, torch
        from apex_x.train.checkpoint import save_checkpoint
        from apex_x.domain.errors import CheckpointError
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (20000, 20000))
        try:
            save_checkpoint({{"model": {{"w": torch.zeros(100000)}}}}, {str(target)!r})
        except CheckpointError as error:
            print("ERROR", error)
            sys.exit(3)
    """)
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, cwd=REPO, timeout=120)
    assert result.returncode == 3, result.stderr
    assert "cannot write checkpoint" in result.stdout and "last.pt" in result.stdout
    assert torch.equal(public.load_checkpoint(target)["model"]["w"], torch.ones(4))
    assert sorted(path.name for path in tmp_path.iterdir()) == ["last.pt"]


def test_unwritable_folder_raises_checkpoint_error(tmp_path: Path) -> None:
    blocker = tmp_path / "not_a_folder"
    blocker.write_text("a file where the folder should be")
    with pytest.raises(CheckpointError, match="cannot write checkpoint"):
        TorchCheckpointStore().save({"x": torch.ones(1)}, str(blocker / "last.pt"))


def test_safetensors_writer_round_trip_with_metadata(tmp_path: Path) -> None:
    model = tiny_model()
    shared = {"a": model[0].weight, "b": model[0].weight}  # shared storage is copied, not refused
    path = tmp_path / "model.safetensors"
    SafetensorsWeightsWriter().write({**model.state_dict(), **shared}, str(path), {"profile": "small", "epochs": 2})
    tensors, metadata = read_safetensors(str(path))
    assert torch.equal(tensors["0.weight"], model[0].weight) and torch.equal(tensors["a"], tensors["b"])
    assert metadata == {"profile": "small", "epochs": "2"}
    assert os.listdir(tmp_path) == ["model.safetensors"]


def test_written_files_get_the_umask_mode_not_mkstemp_0600(tmp_path: Path) -> None:
    target = tmp_path / "last.pt"
    public.save_checkpoint({"x": torch.ones(1)}, target)
    current = os.umask(0)
    os.umask(current)
    assert target.stat().st_mode & 0o777 == 0o666 & ~current
