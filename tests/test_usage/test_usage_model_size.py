"""Parameters and GFLOPs (model.size): in the train report, and printed by `predict` and `eval`."""

from __future__ import annotations

import json
import re
from pathlib import Path

from apex_x.cli import main

LINE = re.compile(r"model: small, backbone \w+, \d+\.\d\dM parameters, \d+\.\d\d GFLOPs at 64x64")


def test_the_train_report_has_parameters_and_gflops(trained_run) -> None:  # noqa: ANN001
    report = json.loads((trained_run.output_dir / "train_report.json").read_text())
    network = report["model"]
    assert network["parameters"] > 10_000 and network["gflops"] > 0 and network["input_size"] == [64, 64]
    assert "- **network**: backbone" in (trained_run.output_dir / "train_report.md").read_text()


def test_predict_and_eval_print_them(trained_run, tmp_path: Path, capsys) -> None:  # noqa: ANN001
    code = main(["predict", "--checkpoint", str(trained_run.best), "--image", str(trained_run.val_images),
                 "--output", str(tmp_path / "out"), "--no-overlays"])
    out = capsys.readouterr().out
    assert code == 0 and LINE.search(out), out
    summary = json.loads((tmp_path / "out" / "summary.json").read_text())
    assert summary["model"]["network"]["gflops"] > 0
    code = main(["eval", str(trained_run.config), "--checkpoint", str(trained_run.best),
                 "--output-json", str(tmp_path / "e.json")])
    out = capsys.readouterr().out
    assert code == 0 and LINE.search(out), out
    assert json.loads((tmp_path / "e.json").read_text())["model"]["network"]["parameters"] > 10_000
