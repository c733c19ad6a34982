"""Report writers (strict JSON, markdown with plots) and the progress adapters (bar on a TTY, log lines off)."""

from __future__ import annotations

import io
import json
import math
from pathlib import Path

import pytest

from apex_x.adapters.progress import LogProgress, TqdmProgress, make_progress
from apex_x.adapters.reports.json_writer import JsonReportWriter
from apex_x.adapters.reports.markdown_writer import MarkdownReportWriter


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def sample_report() -> dict:
    history = [
        {"epoch": 1, "stage": "det_stability", "steps": 4, "lr": 0.001, "train": {"total_loss": 2.0, "det": 2.0},
         "diagnostics": {"grad_norm_max": 3.0, "skipped_steps": 1, "oom_skipped_steps": 0},
         "val": {"segm_AP": math.nan, "bbox_AP": 0.1, "val_loss": 1.5}, "metric": {"name": "segm_AP", "value": math.nan},
         "is_best": False, "seconds": 1.0},
        {"epoch": 2, "stage": "seg_boundary", "steps": 4, "lr": 0.0005,
         "train": {"total_loss": 1.0, "det": 0.5, "seg": 0.3, "boundary": 0.2},
         "diagnostics": {"grad_norm_max": 2.0, "skipped_steps": 0, "oom_skipped_steps": 0},
         "val": {"segm_AP": 0.4, "bbox_AP": 0.5, "val_loss": 1.0}, "metric": {"name": "segm_AP", "value": 0.4},
         "is_best": True, "seconds": 1.0, "evaluation": {"per_class": {"4": {"name": "circle", "segm_AP": 0.4}}}},
    ]
    return {"status": "finished", "selected_checkpoint_metric": "segm_AP", "best_metric": {"name": "segm_AP",
            "value": 0.4, "epoch": 2}, "history": history, "config": {"train": {"epochs": 1}},
            "loss_diagnostics": {"run": {"nan_loss": 1, "bad_components": {"det": 1}}, "per_stage": {}},
            "stage_metrics": {}, "artifacts": {}}


def test_json_writer_is_strict_and_writes_config(tmp_path: Path) -> None:
    written = JsonReportWriter().write(sample_report(), str(tmp_path))
    assert sorted(Path(path).name for path in written) == ["config.json", "train_report.json"]
    text = (tmp_path / "train_report.json").read_text()
    assert "NaN" not in text
    report = json.loads(text)
    assert report["history"][0]["val"]["segm_AP"] is None and report["history"][1]["val"]["segm_AP"] == 0.4
    assert json.loads((tmp_path / "config.json").read_text()) == {"train": {"epochs": 1}}


def test_markdown_links_the_plots_it_writes(tmp_path: Path) -> None:
    written = MarkdownReportWriter().write(sample_report(), str(tmp_path))
    markdown = (tmp_path / "train_report.md").read_text()
    assert "![loss components per epoch](plots/loss_components.png)" in markdown
    assert "![validation AP and val loss per epoch](plots/val_metrics.png)" in markdown
    assert "AP n/a" not in markdown  # epoch 2 has AP; epoch 1's NaN segm_AP has bbox_AP beside it
    assert "| 2 | seg_boundary | 4 |" in markdown and "**yes**" in markdown and "| 4 | circle | 0.4000 |" in markdown
    for name in ("loss_components.png", "val_metrics.png"):
        assert str(tmp_path / "plots" / name) in written
        assert (tmp_path / "plots" / name).stat().st_size > 1000


def test_a_terminal_gets_a_bar_with_stage_loss_and_lr(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("APEX_X_PROGRESS", raising=False)
    terminal = Terminal()
    progress = make_progress(5, stream=terminal)
    assert isinstance(progress, TqdmProgress)
    progress.start_epoch(stage="det_stability", epoch=1, total_epochs=2, total_steps=4, initial_step=1)
    for step in (2, 3, 4):
        progress.update(step=step, loss=0.5, lr=1e-3)
    progress.end_epoch({"loss": 0.5, "segm_AP": 0.25, "seconds": 1.0})
    shown = terminal.getvalue()
    assert "epoch 1/2 [det_stability]" in shown and "4/4" in shown and "lr=1.00e-03" in shown
    assert "it/s" in shown or "s/it" in shown


class Lines:
    """A logger that keeps what it is given."""

    def __init__(self) -> None:
        self.entries: list[dict] = []

    def info(self, event: str, **fields: object) -> None:
        self.entries.append({"event": event, **fields})


def test_without_a_terminal_plain_log_lines_every_n_steps(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("APEX_X_PROGRESS", raising=False)
    assert isinstance(make_progress(2, stream=io.StringIO()), LogProgress)
    logger = Lines()
    progress = LogProgress(2, logger=logger)
    progress.start_epoch(stage="seg_boundary", epoch=2, total_epochs=2, total_steps=5, initial_step=0)
    for step in range(1, 6):
        progress.update(step=step, loss=float(step), lr=1e-3)
    lines = [entry for entry in logger.entries if entry["event"] == "train_progress"]
    assert [entry["step"] for entry in lines] == ["1/5", "2/5", "4/5", "5/5"]  # the first step of the epoch too
    assert "first_step_s" in lines[0] and all("first_step_s" not in entry for entry in lines[1:])
    assert lines[0]["loss"] == 1.0 and lines[1]["loss"] == 2.0 and all({"eta", "it_s", "lr"} <= set(entry) for entry in lines)
    assert all(entry["stage"] == "seg_boundary" for entry in lines)


def test_slow_steps_still_log_a_line_at_least_every_30_seconds() -> None:
    now = [0.0]
    logger = Lines()
    progress = LogProgress(100, logger=logger, clock=lambda: now[0])
    progress.start_epoch(stage="joint", epoch=1, total_epochs=1, total_steps=50, initial_step=10)  # resumed at 10
    for step in range(11, 21):
        now[0] += 12.0  # 12 s a step: 100 steps between lines would be 20 minutes of silence
        progress.update(step=step, loss=1.0, lr=1e-3)
    steps = [entry["step"] for entry in logger.entries if entry["event"] == "train_progress"]
    assert steps == ["11/50", "14/50", "17/50", "20/50"]  # first step, then every 36 s (>= 30 s apart)
    first = next(entry for entry in logger.entries if entry["event"] == "train_progress")
    assert first["first_step_s"] == 12.0


def test_a_step_longer_than_the_silence_bound_still_gets_lines() -> None:
    """Wall clock: one step that runs for a while (here 0.5 s against a 0.1 s bound) is announced while it runs."""
    import time

    logger = Lines()
    progress = LogProgress(100, logger=logger, max_silence_s=0.1)
    progress.start_epoch(stage="joint", epoch=1, total_epochs=1, total_steps=3, initial_step=0)
    progress.update(step=1, loss=1.0, lr=1e-3)
    time.sleep(0.5)  # step 2 is slow
    during = [entry for entry in logger.entries if entry["event"] == "still_working"]
    assert during and all(entry["on"] == "step 2/3" and entry["silent_s"] >= 0.1 for entry in during)
    progress.update(step=2, loss=1.0, lr=1e-3)
    progress.update(step=3, loss=1.0, lr=1e-3)
    time.sleep(0.3)  # validation after the last step
    assert logger.entries[-1]["event"] == "still_working" and logger.entries[-1]["on"] == "validation and checkpoint"
    progress.end_epoch({"loss": 1.0})
    progress.close()
    count = len(logger.entries)
    time.sleep(0.3)
    assert len(logger.entries) == count  # closed: the watchdog is gone


def test_a_val_split_without_ground_truth_plots_val_loss_and_says_ap_is_na(tmp_path: Path) -> None:
    """A real run on the fakes whose val split has no ground truth: validation ran, AP is n/a."""
    from matplotlib.figure import Figure

    from apex_x.adapters.reports.plots import draw_validation

    from .fakes import FakeDatasetSource
    from .helpers import make_use_case

    run = tmp_path / "run"
    result = make_use_case(run, "train.steps_per_stage=1", source=FakeDatasetSource(with_ground_truth=False)).execute()
    history = result.report["history"]
    assert all(entry["val"]["val_loss"] is not None for entry in history)
    axis = Figure().subplots()
    draw_validation(axis, history, "validation")  # what plots/val_metrics.png draws
    curves = [line for line in axis.get_lines() if line.get_linestyle() != ":"]  # dotted: the stage change
    assert [line.get_label() for line in curves] == ["val_loss"]
    assert list(curves[0].get_ydata()) == [entry["val"]["val_loss"] for entry in history]
    assert "AP n/a: no ground truth in the val split" in axis.get_title()
    assert not any("no validation metrics" in text.get_text() for text in axis.texts)
    markdown = (run / "train_report.md").read_text()
    assert "_AP n/a: no ground truth in the val split" in markdown and "val loss shown (last" in markdown
    assert (run / "plots" / "val_metrics.png").stat().st_size > 1000


def test_loss_plots_mark_stage_changes_and_components_switching_on() -> None:
    """A component a stage switches on is labelled (a step up of the total is not divergence), the stage
    change is a dotted line between its epochs, and one epoch gets a readable axis."""
    from matplotlib.figure import Figure

    from apex_x.adapters.reports.plots import draw_losses, stage_starts

    history = [
        {"epoch": 1, "stage": "det_stability", "train": {"total_loss": 2.0, "det": 2.0}},
        {"epoch": 2, "stage": "det_stability", "train": {"total_loss": 1.5, "det": 1.5}},
        {"epoch": 3, "stage": "seg_boundary", "train": {"total_loss": 3.0, "det": 1.2, "seg": 1.0, "boundary": 0.8}},
    ]
    assert stage_starts(history) == [(3, "seg_boundary")]
    axis = Figure().subplots()
    draw_losses(axis, history, "t")
    dotted = [line for line in axis.lines if line.get_linestyle() == ":"]
    assert [list(line.get_xdata()) for line in dotted] == [[2.5, 2.5]]
    labels = sorted(text.get_text() for text in axis.texts)
    assert labels == [" seg_boundary", "boundary on", "seg on"]
    single = Figure().subplots()
    draw_losses(single, history[:1], "t")
    assert single.get_xlim() == (0.0, 2.0) and not [t for t in single.texts]
