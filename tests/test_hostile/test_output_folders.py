"""Kind 5 of issue 14: output folders that cannot be written are refused before anything is created.

The tests run as root here, so they use cases root cannot override (a path under a file, a name over
NAME_MAX, /proc and /sys) and a read-only folder only as a plain user (chmod, or dropping to nobody).
"""

from __future__ import annotations

import os
import shutil
import stat
import time
from pathlib import Path

import pytest

from apex_x.cli import main

from .conftest import SMOKE, TinyRun, run_limited


def _entries(folder: Path) -> list[str]:
    return sorted(str(path.relative_to(folder)) for path in folder.rglob("*"))


def _bad_folders(tmp_path: Path) -> dict[str, tuple[Path, str]]:
    a_file = tmp_path / "a_file"
    a_file.write_text("x")
    return {
        "existing_file": (a_file, "is an existing file"),
        "under_a_file": (a_file / "run", f"{a_file} is a file"),
        "long_name": (tmp_path / ("n" * 300) / "run", "over the filesystem's limit of 255"),
        "proc": (Path("/proc/apex-x-run"), "pseudo-filesystem"),
        "sys": (Path("/sys/apex-x-run/x"), "pseudo-filesystem"),
    }


def test_train_refuses_each_unwritable_output_folder_and_creates_nothing(
    tiny_run: TinyRun, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    for name, (folder, reason) in _bad_folders(tmp_path).items():
        before = _entries(tmp_path)
        started = time.perf_counter()
        code = main(["train", str(tiny_run.config), "--set", f"train.output_dir={folder}"])
        err = capsys.readouterr().err
        assert code == 2, (name, err[-2000:])
        line = err.strip().splitlines()[-1]
        assert line.startswith("error: train.output_dir: ") and str(folder) in line and reason in line, (name, line)
        assert time.perf_counter() - started < 10
        assert _entries(tmp_path) == before, name  # no logs/ or checkpoints/ folder was made
    assert not Path("/proc/apex-x-run").exists()


def test_a_logs_entry_that_is_a_file_is_refused_before_training(tiny_run: TinyRun, tmp_path: Path,
                                                               capsys: pytest.CaptureFixture[str]) -> None:
    run = tmp_path / "run"
    run.mkdir()
    (run / "logs").write_text("not a folder")
    code = main(["train", str(tiny_run.config), "--set", f"train.output_dir={run}"])
    line = capsys.readouterr().err.strip().splitlines()[-1]
    assert code == 2 and str(run / "logs") in line and "existing file" in line, line
    assert _entries(run) == ["logs"]


def test_predict_eval_and_preflight_outputs_are_checked_first(tiny_run: TinyRun, tmp_path: Path,
                                                             capsys: pytest.CaptureFixture[str]) -> None:
    bad = _bad_folders(tmp_path)
    under, _ = bad["under_a_file"]
    calls = {
        "predict": (["predict", "--checkpoint", str(tiny_run.last), "--image", str(tiny_run.image),
                     "--output", "/proc/apex-x-pred"], "--output", "pseudo-filesystem"),
        "eval": (["eval", str(tiny_run.config), "--checkpoint", str(tiny_run.last), "--output-json",
                  str(under / "e.json")], "--output-json", "is a file"),
        "eval_md_folder": (["eval", str(tiny_run.config), "--checkpoint", str(tiny_run.last), "--output-json",
                            str(tmp_path / "e.json"), "--output-md", str(tmp_path)], "--output-md", "existing folder"),
        "dataset-preflight": (["dataset-preflight", str(tiny_run.config), "--output-json",
                               str(tmp_path / ("n" * 300) / "r.json")], "--output-json", "limit of 255"),
        "preflight": (["preflight", "--output-json", str(under / "p.json")], "--output-json", "is a file"),
    }
    for name, (argv, key, reason) in calls.items():
        before = _entries(tmp_path)
        started = time.perf_counter()
        code = main(argv)
        err = capsys.readouterr().err
        assert code == 2, (name, err[-2000:])
        line = err.strip().splitlines()[-1]
        assert line.startswith(f"error: {key}: ") and reason in line, (name, line)
        assert time.perf_counter() - started < 10, name
        assert _entries(tmp_path) == before, name


def test_smoke_script_checks_its_report_file_before_running(tiny_run: TinyRun, tmp_path: Path) -> None:
    blocker = tmp_path / "blocker"
    blocker.write_text("x")
    outcome = run_limited([str(SMOKE), "--checkpoint",
                           str(tiny_run.last), "--image", str(tiny_run.image), "--devices", "cpu",
                           "--output-json", str(blocker / "report.json")])
    assert outcome.code == 2, outcome.stderr[-2000:]
    assert str(blocker) in outcome.error_line and "is an existing file" in outcome.error_line
    assert "cpu:" not in outcome.stdout  # refused before any device ran


@pytest.mark.slow
def test_resume_into_a_read_only_run_folder_is_refused_naming_it(tiny_run: TinyRun, tmp_path: Path) -> None:
    """Read-only by file mode: as root, the run continues as user nobody (root ignores modes)."""
    shared = Path("/tmp") / f"apex-x-ro-{os.getpid()}"
    shutil.rmtree(shared, ignore_errors=True)
    shutil.copytree(tiny_run.output_dir / "checkpoints", shared / "run" / "checkpoints")
    config = shared / "tiny.yaml"
    config.write_text(tiny_run.config.read_text())
    for folder in (shared / "run", shared / "run" / "checkpoints"):
        folder.chmod(stat.S_IRUSR | stat.S_IXUSR | stat.S_IRGRP | stat.S_IXGRP | stat.S_IROTH | stat.S_IXOTH)
    shared.chmod(0o755)
    (shared / "run" / "checkpoints" / "last.pt").chmod(0o644)
    drop = "import os; os.setgid(65534); os.setuid(65534)\n" if os.geteuid() == 0 else ""
    warm = f"apex_x.api.load_config({str(config)!r}); import zoneinfo, apex_x.adapters.logging_structlog\n"
    code = (f"import sys, torch, timm, apex_x.api, apex_x.cli\n{warm}{drop}"
            f"sys.exit(apex_x.cli.main(['train', {str(config)!r}, '--resume', "
            f"{str(shared / 'run' / 'checkpoints' / 'last.pt')!r}]))\n")
    before = _entries(shared / "run")
    try:
        outcome = run_limited(["-c", code], timeout=300)
        entries = _entries(shared / "run")
    finally:
        for folder in (shared / "run", shared / "run" / "checkpoints"):
            folder.chmod(0o755)
        shutil.rmtree(shared, ignore_errors=True)
    assert outcome.code == 2, outcome.stderr[-3000:]
    line = outcome.error_line
    assert line.startswith("error: train.output_dir: ") and str(shared / "run") in line, line
    assert "no permission" in line or "read-only" in line, line
    assert entries == before and "logs" not in entries  # no logs/ folder, nothing written


def test_a_run_refused_after_the_folder_check_leaves_no_folder(tiny_run: TinyRun, tmp_path: Path) -> None:
    """Refusals that come later (bad backbone weights, a bad teacher, a bad resume file) remove the run
    folder this call created (logs/, checkpoints/); an existing folder is left as it was."""
    from apex_x.api import train
    from apex_x.domain.errors import UserError

    not_a_checkpoint = tmp_path / "notes.pt"
    not_a_checkpoint.write_text("hello")
    cases = {
        "backbone": ["model.backbone_weights=" + str(not_a_checkpoint)],
        "teacher": ["train.distill_weight=1.0", "train.teacher_checkpoint=" + str(not_a_checkpoint)],
    }
    for name, overrides in cases.items():
        run = tmp_path / name
        with pytest.raises(UserError):
            train(str(tiny_run.config), overrides=[f"train.output_dir={run}", *overrides], log_level="warning")
        assert not run.exists(), name
    with pytest.raises(UserError):
        train(str(tiny_run.config), resume=str(not_a_checkpoint), output_dir=tmp_path / "resumed", log_level="warning")
    assert not (tmp_path / "resumed").exists()
    kept = tmp_path / "existing"
    (kept / "notes").mkdir(parents=True)
    with pytest.raises(UserError):
        train(str(tiny_run.config), overrides=[f"train.output_dir={kept}", *cases["backbone"]], log_level="warning")
    assert (kept / "notes").is_dir()  # not ours to remove
