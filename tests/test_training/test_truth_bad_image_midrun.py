"""Issue 13, kind 1 (during training): an image that fails to decode mid-run (changed on disk after the
checks) stops the run with last.pt at the last completed step, naming the file, the image id and the resume
command; data.on_bad_image=skip leaves it out and counts it in the report."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from dependency_injector import providers

from apex_x.adapters.checkpoints.torch_store import TorchCheckpointStore
from apex_x.adapters.config_yaml import load_config
from apex_x.adapters.datasets.coco_source import CocoDatasetSource
from apex_x.adapters.datasets.shapes_writer import write_shapes_dataset
from apex_x.container import create_container
from apex_x.domain import checkpoint_format as fmt
from apex_x.domain.errors import DatasetError
from apex_x.domain.types import DatasetReport

TINY = ["model.profile=small", "model.input_height=64", "model.input_width=64",
        "model.backbone=mobilenetv3_small_050", "model.width_multiplier=0.25", "train.epochs=1",
        "train.batch_size=2", "train.warmup_steps=0", "runtime.device=cpu", "train.ema=false",
        "train.stages=[{name: only, epochs: 1, losses: {det: 1.0}}]"]


class _ChangedAfterChecks(CocoDatasetSource):
    """The checks pass; right after them the train images at `cut` (split order) are cut short on disk."""

    cut: tuple[int, ...] = ()

    def validate(self, *, full_decode: bool, expected_num_classes: int | None = None) -> DatasetReport:
        report = super().validate(full_decode=full_decode, expected_num_classes=expected_num_classes)
        files = sorted(Path(self.settings.data.coco_train_images or "").iterdir())
        for index in self.cut:
            files[index].write_bytes(files[index].read_bytes()[:200])
        return report


def _run(tmp_path: Path, *extra: str, cut: tuple[int, ...] | None = None) -> tuple[object, Path, list[int]]:
    paths = write_shapes_dataset(tmp_path / "shapes", train=6, val=2, size=64, seed=0)
    run = tmp_path / "run"
    settings = load_config(None, [*TINY, *paths.config_overrides(), f"train.output_dir={run}", *extra])
    source = _ChangedAfterChecks(settings)
    order = CocoDatasetSource(settings).train_loader(2, seed=settings.train.seed).epoch_indices(0)
    source.cut = cut if cut is not None else (order[2],)  # the first image of the second batch
    container = create_container(settings)
    container.dataset_source.override(providers.Object(source))
    return container.train_use_case(), run, order


def test_a_decode_failure_mid_run_saves_last_pt_and_names_file_id_and_resume(tmp_path: Path) -> None:
    use_case, run, order = _run(tmp_path, "train.seed=3")
    with pytest.raises(DatasetError) as info:
        use_case.execute()  # type: ignore[attr-defined]
    message = str(info.value)
    image_id = order[2] + 1  # the shapes writer numbers images 1.. in file order
    assert f"image {image_id} (" in message and f"{image_id:06d}.png" in message
    assert "failed to decode during training" in message
    assert f"--resume {run / 'checkpoints' / 'last.pt'}" in message
    progress = TorchCheckpointStore().load(str(run / "checkpoints" / "last.pt"))[fmt.KEY_PROGRESS]
    assert (progress["step_in_epoch"], progress["global_step"], progress["epoch_complete"]) == (1, 1, False)
    report = json.loads((run / "train_report.json").read_text())
    assert report["status"] == "stopped" and "failed to decode" in report["message"]


def test_skip_counts_the_images_and_trains_on_the_rest(tmp_path: Path) -> None:
    use_case, _, _ = _run(tmp_path, "data.on_bad_image=skip", cut=(1, 2, 3, 4, 5))
    result = use_case.execute()  # type: ignore[attr-defined]
    assert result.status.startswith("finished")
    diagnostics = result.report["loss_diagnostics"]["run"]
    assert diagnostics["bad_images_skipped"] == 5  # 6 images, all but the first cut short
    assert sorted(diagnostics["bad_image_ids"]) == [2, 3, 4, 5, 6]


@pytest.mark.slow
def test_the_resume_command_names_the_real_config_as_the_caller_spells_it(tmp_path: Path) -> None:
    """The CLI's message is a command that runs as printed (the config path quoted); Python's is apex_x.train."""
    import shlex
    import subprocess
    import sys

    from apex_x.api import cli_resume_command, python_resume_command

    use_case, run, _ = _run(tmp_path, "train.seed=3")
    config = tmp_path / "my run.yaml"  # a space in the path: the command must quote it
    settings = use_case.settings  # type: ignore[attr-defined]
    config.write_text(json.dumps(settings.to_plain()))
    originals = {path: path.read_bytes() for path in Path(settings.data.coco_train_images).iterdir()}
    with pytest.raises(DatasetError) as info:
        use_case.execute(resume_command=cli_resume_command(str(config)))  # type: ignore[attr-defined]
    message = str(info.value)
    last = run / "checkpoints" / "last.pt"
    assert "CONFIG" not in message
    command = f"apex-x train '{config}' --resume {last}"
    assert f"resume with: {command};" in message
    assert f"{command} --set data.on_bad_image=skip" in message
    python = python_resume_command(str(config))(str(last), ["data.on_bad_image=skip"])
    assert python == f"apex_x.train({str(config)!r}, resume={str(last)!r}, overrides=['data.on_bad_image=skip'])"

    for path, data in originals.items():  # "fix or replace the file", then run the printed command
        path.write_bytes(data)
    words = shlex.split(message.split("resume with: ", 1)[1].split(";", 1)[0])
    assert words[:2] == ["apex-x", "train"]
    resumed = subprocess.run([sys.executable, "-m", "apex_x.cli", *words[1:]], capture_output=True, text=True,
                             timeout=600)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert json.loads((run / "train_report.json").read_text())["status"].startswith("finished")
