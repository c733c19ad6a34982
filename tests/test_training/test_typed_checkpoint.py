"""The typed checkpoint: what the trainer writes reads back as the same payload; other payloads are refused
once, naming the file and the rule; the store validates every tagged payload it loads."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from apex_x.adapters.checkpoints.torch_store import TorchCheckpointStore
from apex_x.domain import checkpoint_format as fmt
from apex_x.domain.checkpoint import RESUME_KEYS, TrainingCheckpoint
from apex_x.domain.config import ApexConfig
from apex_x.domain.errors import CheckpointError
from apex_x.domain.types import CategoryMap

from .helpers import make_use_case

STEPS = "train.steps_per_stage=2"


def _checkpoint(**changes) -> TrainingCheckpoint:
    values = dict(
        profile="worldclass", weights_key="teacher", model_state={"w": torch.zeros(2)}, ema_state={"w": torch.ones(2)},
        config=ApexConfig().to_plain(), categories=CategoryMap((1, 5), ("a", "b")).to_plain(),
        optimizer=torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=0.1).state_dict(), scheduler={"kind": "x"}, rng={"python": [1]},
        progress={"epoch": 0}, best={"name": "segm_AP", "value": 0.5, "epoch": 1}, dataset_fingerprint="abc",
        input_size=(64, 96), architecture={"k": 1}, train_state={"consecutive_bad": 0}, apex_x_version="0.1",
    )
    return TrainingCheckpoint(**{**values, **changes})


def test_a_written_checkpoint_reads_back_as_the_same_payload(tmp_path: Path) -> None:
    run = tmp_path / "run"
    make_use_case(run, STEPS, reports=False).execute(stop_after_steps=1)
    path = str(run / "checkpoints" / "last.pt")
    payload = TorchCheckpointStore().load(path)
    checkpoint = TrainingCheckpoint.from_payload(payload, path, required=RESUME_KEYS)
    assert payload[fmt.KEY_FORMAT] == fmt.FORMAT_TAG and checkpoint.weights_key == "model"
    assert checkpoint.weights(prefer_ema=True)[0] == "ema" and checkpoint.weights()[0] == "model"
    assert checkpoint.settings(path).model.profile == checkpoint.profile == "small"
    again = checkpoint.to_payload()
    assert list(again) == list(payload)
    assert all(torch.equal(again["model"][key], value) for key, value in payload["model"].items())
    path_again = tmp_path / "again.pt"
    TorchCheckpointStore().save(again, str(path_again))
    assert TrainingCheckpoint.from_payload(TorchCheckpointStore().load(str(path_again)), "again").progress == (
        checkpoint.progress)


@pytest.mark.parametrize(
    ("payload", "message"),
    [
        ({"w": torch.ones(1)}, "not an Apex-X training checkpoint .*; for the test"),
        ({**_checkpoint().to_payload(), fmt.KEY_VERSION: 7}, "format version 7 is not supported"),
        ({k: v for k, v in _checkpoint().to_payload().items() if k != fmt.KEY_RNG}, "no 'rng' entry"),
        ({k: v for k, v in _checkpoint().to_payload().items() if k != "teacher"}, "no model weights"),
    ],
)
def test_unusable_payloads_are_refused_naming_the_file(payload, message) -> None:
    with pytest.raises(CheckpointError, match=message) as caught:
        TrainingCheckpoint.from_payload(payload, "x/ck.pt", required=RESUME_KEYS, why="for the test")
    assert "x/ck.pt" in str(caught.value)
