"""Kind 1, 4 and 8 of issue 14: compressed bombs, broken safetensors, corrupt files, on every entry point.

Each run is a subprocess under RLIMIT_AS (conftest.AS_LIMIT) whose peak RSS is measured: a refused 2 GiB
bomb must cost well under 1.2 GB, end with exit 2 and name the tensor and its claimed size.
"""

from __future__ import annotations

import json
import os
import pickle
import zipfile
from pathlib import Path

import pytest

from .builders import write_legacy_bomb, write_safetensors, write_torch_bomb
from .conftest import RSS_BOUND_KB, SMOKE, TinyRun, cli, run_limited

BOMB_FACTS = ("'backbone.weight'", "2.0 GiB")


def assert_refused(outcome, *facts: str, code: int = 2) -> None:  # noqa: ANN001
    assert outcome.code == code, outcome.stderr[-3000:]
    assert "internal error" not in outcome.stderr and "Traceback" not in outcome.stderr, outcome.stderr[-3000:]
    for fact in facts:
        assert fact in outcome.stderr + outcome.stdout, (fact, outcome.stderr[-3000:])
    assert 0 < outcome.peak_rss_kb < RSS_BOUND_KB, outcome.peak_rss_kb


def test_default_limits_refuse_a_2_gib_tensor_in_a_2_mb_file_with_predict(bomb: Path, tiny_run: TinyRun,
                                                                         tmp_path: Path) -> None:
    assert bomb.stat().st_size < 4 << 20
    outcome = cli("predict", "--checkpoint", str(bomb), "--image", str(tiny_run.image), "--output",
                  str(tmp_path / "pred"), "--device", "cpu")
    assert_refused(outcome, *BOMB_FACTS, str(bomb), "APEX_X_MAX_TENSOR_BYTES")
    assert not (tmp_path / "pred").exists()


@pytest.mark.slow
def test_eval_and_every_train_checkpoint_entry_refuse_the_bomb(bomb: Path, tiny_run: TinyRun, tmp_path: Path) -> None:
    config = str(tiny_run.config)
    out = f"train.output_dir={tmp_path / 'out'}"
    runs = {
        "eval": cli("eval", config, "--checkpoint", str(bomb), "--output-json", str(tmp_path / "e.json")),
        "resume": cli("train", config, "--resume", str(bomb), "--set", out),
        "teacher": cli("train", config, "--set", out, "--set", "train.distill_weight=1.0",
                       "--set", f"train.teacher_checkpoint={bomb}"),
        "backbone_weights": cli("train", config, "--set", out, "--set", f"model.backbone_weights={bomb}"),
    }
    for name, outcome in runs.items():
        assert_refused(outcome, *BOMB_FACTS, str(bomb)), name
    assert "model.backbone_weights" in runs["backbone_weights"].stderr
    assert "what the model" in runs["backbone_weights"].stderr  # the backbone is known first: what it holds


def test_python_helpers_notebook_and_smoke_script_refuse_the_bomb(bomb: Path, tiny_run: TinyRun,
                                                                 tmp_path: Path) -> None:
    code = f"""
import torch
from apex_x.domain.errors import CheckpointError
from apex_x.train import checkpoint as ck
from apex_x import notebook
model = torch.nn.Linear(4, 4)
calls = {{
    "load_checkpoint": lambda: ck.load_checkpoint({str(bomb)!r}),
    "load_state_dict": lambda: ck.load_state_dict({str(bomb)!r}),
    "load_model_weights": lambda: ck.load_model_weights(model, {str(bomb)!r}),
    "notebook.load_checkpoint": lambda: notebook.load_checkpoint({str(bomb)!r}, device="cpu"),
}}
for name, call in calls.items():
    try:
        call()
        print(name, "LOADED")
    except CheckpointError as error:
        print(name, "REFUSED", error)
"""
    outcome = run_limited(["-c", code])
    lines = outcome.stdout.splitlines()
    assert len(lines) == 4, outcome.stderr[-3000:]
    for line in lines:
        assert " REFUSED " in line and "'backbone.weight'" in line and "2.0 GiB" in line, line
    assert "over 64.0 MiB" in lines[2]  # a 4x4 Linear can hold no more than the 64 MiB floor
    assert 0 < outcome.peak_rss_kb < RSS_BOUND_KB
    report = tmp_path / "smoke.json"
    smoke = run_limited([str(SMOKE), "--checkpoint", str(bomb),
                         "--image", str(tiny_run.image), "--devices", "cpu", "--output-json", str(report)])
    assert smoke.code == 2, smoke.stderr[-2000:]
    entry = json.loads(report.read_text())["devices"]["cpu"]
    assert entry["status"] == "fail" and entry["user_error"] is True
    assert "'backbone.weight'" in entry["error"] and "2.0 GiB" in entry["error"]
    assert 0 < smoke.peak_rss_kb < RSS_BOUND_KB


def test_the_limit_is_a_setting_and_a_real_checkpoint_still_loads(tiny_run: TinyRun, tmp_path: Path) -> None:
    small_bomb = write_torch_bomb(tmp_path / "b.pt", name="head.cls.weight", numel=1 << 22)  # 16 MiB
    code = f"""
from apex_x.domain.errors import CheckpointError
from apex_x.train.checkpoint import load_checkpoint
print(sorted(load_checkpoint({str(tiny_run.last)!r}))[:3])
try:
    load_checkpoint({str(small_bomb)!r})
except CheckpointError as error:
    print("REFUSED", error)
"""
    outcome = run_limited(["-c", code], env={"APEX_X_MAX_TENSOR_BYTES": str(8 << 20)})
    first, second = outcome.stdout.splitlines()
    assert first.startswith("['apex_x_version'")  # the real checkpoint's tensors are far below 8 MiB
    assert second.startswith("REFUSED") and "'head.cls.weight'" in second and "16.0 MiB" in second
    assert "over 8.0 MiB" in second


def test_a_deflated_record_that_expands_over_20x_is_a_bomb(tmp_path: Path) -> None:
    from apex_x.adapters.checkpoints.archive_limits import check_archive, configured_limits
    from apex_x.domain.errors import CheckpointError

    path = write_torch_bomb(tmp_path / "b.pt", name="w", numel=1 << 22)  # 16 MiB of zeros in ~16 KiB
    with pytest.raises(CheckpointError, match=r"tensor 'w' claims 16.0 MiB compressed into .* a compression bomb"):
        check_archive(path, configured_limits())


# --- kind 4: broken safetensors as model.backbone_weights ----------------------------------------------

def _backbone_key_and_shape() -> tuple[str, list[int]]:
    from apex_x.adapters.models.backbone import TimmBackbone

    name, tensor = next(iter(TimmBackbone("mobilenetv3_small_050").body.state_dict().items()))
    return name, list(tensor.shape)


@pytest.mark.slow
def test_broken_safetensors_backbone_weights_end_in_exit_2_naming_file_and_tensor(tiny_run: TinyRun,
                                                                                   tmp_path: Path) -> None:
    key, shape = _backbone_key_and_shape()
    numel = 1
    for dim in shape:
        numel *= dim
    files = {
        "huge_header": (write_safetensors(tmp_path / "huge_header.safetensors", {}, declared_length=1 << 40),
                        ("header claims 1.0 TiB",)),
        "past_end": (write_safetensors(tmp_path / "past_end.safetensors",
                                       {key: {"dtype": "F32", "shape": shape, "data_offsets": [0, 4 * numel]}},
                                       b"\0" * 16), (f"tensor {key!r}", "past the end")),
        "huge_tensor": (write_safetensors(tmp_path / "huge_tensor.safetensors",
                                          {key: {"dtype": "F32", "shape": [1 << 20, 1 << 20],
                                                 "data_offsets": [0, 4 << 40]}}), (f"tensor {key!r}", "4.0 TiB")),
        "shape": (write_safetensors(tmp_path / "shape.safetensors",
                                    {key: {"dtype": "F32", "shape": [numel + 1], "data_offsets": [0, 4 * numel + 4]}},
                                    b"\0" * (4 * numel + 4)), (key, "shape")),
    }
    for name, (path, facts) in files.items():
        outcome = cli("train", str(tiny_run.config), "--set", f"train.output_dir={tmp_path / name}",
                      "--set", f"model.backbone_weights={path}")
        assert_refused(outcome, str(path), "model.backbone_weights", *facts)


# --- kind 8: the right words for corrupt files ---------------------------------------------------------

class _Evil:
    def __reduce__(self) -> tuple[object, ...]:
        return (os.system, ("echo PWNED",))


def test_corrupt_0x80_file_is_not_called_pickled_code_but_real_globals_are(tiny_run: TinyRun, tmp_path: Path) -> None:
    corrupt = tmp_path / "corrupt.pt"
    corrupt.write_bytes(b"\x80\x02garbage" + bytes(range(256)) * 4)
    evil = tmp_path / "evil.pt"
    evil.write_bytes(pickle.dumps(_Evil(), protocol=2))
    truncated = tmp_path / "truncated.pt"
    truncated.write_bytes(tiny_run.last.read_bytes()[:5000])
    code = f"""
from apex_x.domain.errors import CheckpointError
from apex_x.train.checkpoint import load_checkpoint
for path in ({str(corrupt)!r}, {str(evil)!r}, {str(truncated)!r}):
    try:
        load_checkpoint(path)
    except CheckpointError as error:
        print(error)
"""
    outcome = run_limited(["-c", code])
    corrupt_line, evil_line, truncated_line = outcome.stdout.splitlines()
    assert "not a valid torch checkpoint" in corrupt_line and "pickled" not in corrupt_line
    assert "pickled Python objects" in evil_line and "system" in evil_line and "PWNED" not in outcome.stdout
    assert "truncated or corrupt torch checkpoint" in truncated_line and "pickled" not in truncated_line
    assert "starts like a torch.save zip archive" in truncated_line and "5000 bytes" in truncated_line
    predict = cli("predict", "--checkpoint", str(corrupt), "--image", str(tiny_run.image), "--output",
                  str(tmp_path / "p"))
    assert_refused(predict, str(corrupt), "not a valid torch checkpoint")
    assert "pickled" not in predict.stderr


def test_many_small_deflated_records_are_refused_together(tmp_path: Path) -> None:
    """3072 records of 32 KiB of zeros each (none over the 1 MiB single-record floor): 96 MiB in ~300 KB."""
    import zipfile

    from apex_x.adapters.checkpoints.archive_limits import check_archive
    from apex_x.domain.errors import CheckpointError

    bomb = tmp_path / "many_small.pt"
    with zipfile.ZipFile(bomb, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("archive/data.pkl", b"\x80\x02}q\x00.")
        for index in range(3072):
            archive.writestr(f"archive/data/{index}", bytes(32 << 10))
    with pytest.raises(CheckpointError, match=r"compressed tensors \(up to 'storage \d+'\) claim 64\.0 MiB in .* \(over 20x\)"):
        check_archive(bomb)


def test_a_safetensors_header_with_a_5000_digit_integer_is_a_checkpoint_error(tmp_path: Path) -> None:
    import struct

    from apex_x.adapters.checkpoints.safetensors_check import check_safetensors
    from apex_x.domain.errors import CheckpointError

    header = ('{"w": {"dtype": "F32", "shape": [' + "9" * 5000 + '], "data_offsets": [0, 4]}}').encode()
    path = tmp_path / "bigint.safetensors"
    path.write_bytes(struct.pack("<Q", len(header)) + header + b"\0" * 4)
    with pytest.raises(CheckpointError, match="bigint.safetensors: not a valid safetensors file: its header is not JSON"):
        check_safetensors(path)


def test_other_kinds_of_files_are_named_for_what_they_are(tmp_path: Path) -> None:
    """A legacy file declaring 1 TiB, a zip that is not torch's, protocol-0 and -5 pickles with globals, a
    folder and a safetensors file: each refused before anything is allocated, with what it is."""
    legacy = tmp_path / "legacy.pt"
    write_legacy_bomb(legacy)
    plain_zip = tmp_path / "plain.pt"
    with zipfile.ZipFile(plain_zip, "w") as archive:
        archive.writestr("notes.txt", "hello")
    evil0, evil5 = tmp_path / "evil0.pt", tmp_path / "evil5.pt"
    evil0.write_bytes(pickle.dumps(_Evil(), protocol=0))
    evil5.write_bytes(pickle.dumps(_Evil(), protocol=5))
    run = tmp_path / "run"
    (run / "checkpoints").mkdir(parents=True)
    (run / "checkpoints" / "best.pt").write_bytes(b"")
    weights = run / "model.safetensors"
    write_safetensors(weights, {"a": {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]}}, bytes(8))
    paths = (legacy, plain_zip, evil0, evil5, run, weights)
    code = f"""
from apex_x.domain.errors import CheckpointError
from apex_x.train.checkpoint import load_checkpoint
for path in {tuple(str(path) for path in paths)!r}:
    try:
        load_checkpoint(path)
    except CheckpointError as error:
        print(error)
"""
    outcome = run_limited(["-c", code])
    lines = outcome.stdout.splitlines()
    assert len(lines) == len(paths), outcome.stdout + outcome.stderr
    legacy_line, zip_line, evil0_line, evil5_line, folder_line, weights_line = lines
    assert "tensor 'backbone.weight'" in legacy_line and "1.0 TiB" in legacy_line, legacy_line
    assert "enforce fail" not in outcome.stdout and "PWNED" not in outcome.stdout
    assert "zip archive but not a torch checkpoint" in zip_line and "notes.txt" in zip_line
    for line in (evil0_line, evil5_line):
        assert "pickled Python objects" in line and "system" in line
    assert "is a folder, not a checkpoint file" in folder_line and str(run / "checkpoints" / "best.pt") in folder_line
    assert "safetensors weights file" in weights_line and "best.pt" in weights_line
    assert outcome.peak_rss_kb < RSS_BOUND_KB
