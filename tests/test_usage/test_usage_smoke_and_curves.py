"""Smoke runner logic (skip, retry with a square resize, failures) and training curves from a report."""

from __future__ import annotations

import json

import pytest
import torch

from apex_x.adapters.training_curves import plot_training_curves, read_train_report
from apex_x.domain.errors import UserError
from apex_x.notebook import smoke_device, square_size


class _Result:
    def __init__(self, count: int, latency: float) -> None:
        self.count, self.latency_s = count, latency

    def __len__(self) -> int:
        return self.count

    def records(self) -> list[dict[str, str]]:
        return [{"class": "square"}] * self.count


class _SquareOnlyModel:
    """Fails like DINOv2's token-grid reshape unless the input is square."""

    input_size = (64, 96)

    def __init__(self) -> None:
        self.sizes: list[tuple[int, int]] = []

    def predict(self, image: object, input_size: tuple[int, int] | None = None) -> _Result:
        height, width = input_size or self.input_size
        self.sizes.append((height, width))
        if height != width:
            raise RuntimeError(f"shape '[1, 32, {height // 14}, {width // 14}]' is invalid for input of size 1234")
        return _Result(3, 0.01)


def test_token_grid_failure_is_retried_with_a_square_resize_and_recorded() -> None:
    model = _SquareOnlyModel()
    entry = smoke_device(lambda device: model, "x.png", "cpu")
    assert entry["status"] == "ok" and entry["retried_with_square_resize"] is True
    assert entry["input_size"] == [96, 96] and model.sizes[1:] == [(96, 96), (96, 96)]
    assert "is invalid for input of size" in entry["first_error"]
    assert entry["num_detections"] == 3 and entry["latency_ms"] == pytest.approx(10.0)
    assert entry["error"] is None


def test_other_failures_are_reported_not_retried() -> None:
    def broken(device: str) -> object:
        raise UserError("ckpt.pt: not an Apex-X training checkpoint")

    entry = smoke_device(broken, "x.png", "cpu")
    assert entry["status"] == "fail" and entry["retried_with_square_resize"] is False
    assert entry["error"] == "UserError: ckpt.pt: not an Apex-X training checkpoint"


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the no-CUDA path")
def test_cuda_is_skipped_without_cuda() -> None:
    entry = smoke_device(lambda device: pytest.fail("must not load"), "x.png", "cuda")
    assert entry["status"] == "skip" and "CUDA is not available" in entry["error"]


def test_square_size_is_a_size_the_model_accepts() -> None:
    assert square_size((64, 96)) == (96, 96) and square_size((518, 518)) == (544, 544)
    assert square_size((20, 30)) == (32, 32)


def _report(tmp_path):
    history = [
        {"epoch": 1, "stage": "det_stability", "train": {"det": 2.0, "total": 2.0}, "val": {"segm_AP": 0.1, "bbox_AP": 0.2, "val_loss": 2.5}},
        {"epoch": 2, "stage": "seg_boundary", "train": {"det": 1.0, "seg": 0.5, "total": 1.5}, "val": {"segm_AP": 0.4, "bbox_AP": 0.5, "val_loss": 2.0}},
    ]
    report = {"history": history, "best_metric": {"name": "segm_AP", "value": 0.4, "epoch": 2}}
    (tmp_path / "train_report.json").write_text(json.dumps(report))
    return tmp_path


def test_curves_figure_has_a_loss_panel_and_a_metric_panel(tmp_path) -> None:
    figure = plot_training_curves(_report(tmp_path))
    left, right, val_loss_axis = figure.axes  # val loss on its own scale, to the right of the AP panel
    curves = [line for line in left.get_lines() if line.get_linestyle() != ":"]  # dotted: stage changes
    assert sorted(line.get_label() for line in curves) == ["det", "seg", "total", "val_loss"]
    assert sorted(line.get_label() for line in right.get_lines() if line.get_linestyle() != ":") == ["bbox_AP", "segm_AP"]
    assert [line.get_label() for line in val_loss_axis.get_lines()] == ["val_loss"]
    assert "n/a" not in right.get_title()
    segm = next(line for line in right.get_lines() if line.get_label() == "segm_AP")
    assert list(segm.get_xdata()) == [1, 2] and list(segm.get_ydata()) == [0.1, 0.4]
    assert figure.get_suptitle() == "best segm_AP = 0.4000 at epoch 2"


def test_curves_of_a_val_split_without_ground_truth_show_val_loss_and_say_ap_is_na(tmp_path) -> None:
    history = [{"epoch": epoch, "stage": "a", "train": {"total": 2.0 / epoch},
                "val": {"segm_AP": None, "bbox_AP": None, "val_loss": 1.0 / epoch}} for epoch in (1, 2)]
    (tmp_path / "train_report.json").write_text(json.dumps({"history": history}))
    right = plot_training_curves(tmp_path).axes[1]
    assert [line.get_label() for line in right.get_lines()] == ["val_loss"]
    assert list(right.get_lines()[0].get_ydata()) == [1.0, 0.5]
    assert "AP n/a" in right.get_title() and "no ground truth" in right.get_title()
    assert not any("no validation metrics" in text.get_text() for text in right.texts)


def test_curves_before_any_validation_say_so(tmp_path) -> None:
    history = [{"epoch": 1, "stage": "a", "train": {"total": 2.0}, "val": None}]
    (tmp_path / "train_report.json").write_text(json.dumps({"history": history}))
    right = plot_training_curves(tmp_path).axes[1]
    assert [text.get_text() for text in right.texts] == ["no validation metrics yet"] and not right.get_lines()


def test_missing_report_names_the_path(tmp_path) -> None:
    with pytest.raises(UserError, match=f"{tmp_path / 'train_report.json'}: no train report"):
        read_train_report(tmp_path)
