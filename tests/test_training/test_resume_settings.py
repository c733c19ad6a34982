"""On resume the checkpoint's config is the base: --set and flags apply on top, the YAML's own differences do
not (and are logged), and a file that is not a training checkpoint leaves the request to the train use case."""

from __future__ import annotations

from typing import Any

import structlog

from apex_x.adapters.config_yaml import load_config
from apex_x.application.engine.resume import resume_settings
from apex_x.domain import checkpoint_format as fmt


class DictStore:
    """CheckpointStore fake: `load` returns the payload it holds."""

    def __init__(self, payload: Any) -> None:
        self.payload = payload

    def load(self, path: str) -> Any:
        return self.payload


def _payload(overrides: list[str]) -> dict[str, Any]:
    settings = load_config(None, overrides)
    return {fmt.KEY_FORMAT: fmt.FORMAT_TAG, fmt.KEY_VERSION: fmt.FORMAT_VERSION, fmt.KEY_PROFILE: "small",
            fmt.KEY_MODEL: {}, fmt.KEY_CONFIG: settings.to_plain(), fmt.KEY_CATEGORIES: {"ids": [1], "names": ["a"]}}


def test_the_checkpoint_config_is_the_base_and_only_what_was_asked_now_applies() -> None:
    stored = _payload(["train.lr=0.01", "train.epochs=3", "model.input_height=320"])
    seed = {"train.seed": (7, "--seed 7")}
    # what the command asked: the YAML says lr 0.5 (and the default input size), --set epochs 5, --seed 7
    requested = load_config(None, ["train.lr=0.5", "train.epochs=5"], extra=seed)
    with structlog.testing.capture_logs() as logs:
        settings = resume_settings(requested, "run/last.pt", ["train.epochs=5"], store=DictStore(stored),
                                   load=lambda texts: load_config(None, texts, extra=seed))
    assert (settings.train.lr, settings.train.epochs, settings.train.seed) == (0.01, 5, 7)
    assert settings.model.input_height == 320  # from the checkpoint, not the YAML's default
    ignored = next(entry for entry in logs if entry["event"] == "resume_yaml_ignored")
    assert sorted(ignored["keys"]) == ["model.input_height", "train.lr"]


def test_a_file_that_is_no_training_checkpoint_leaves_the_request_unchanged() -> None:
    requested = load_config(None, ["train.lr=0.5"])
    for payload in ({"state_dict": {}}, [1, 2], {**_payload([]), fmt.KEY_VERSION: 99}):
        assert resume_settings(requested, "x.pt", [], store=DictStore(payload), load=lambda texts: 1 / 0) is requested


def test_set_on_resume_addresses_the_checkpoints_stages_not_the_yamls(tmp_path) -> None:
    """Stages given with --set at the start are not in the YAML; `--set train.stages.1.epochs=N` on resume (what
    the 'already finished' message suggests) applies to the checkpoint's stages."""
    from apex_x.api import train

    config = tmp_path / "run.yaml"
    config.write_text(f"model: {{input_height: 32, input_width: 32, backbone: lcnet_050}}\n"
                      f"train: {{epochs: 1, batch_size: 4, output_dir: {tmp_path / 'run'}}}\n"
                      "data: {format: synthetic, synthetic_train_images: 8, synthetic_val_images: 4}\n"
                      "runtime: {device: cpu}\n")
    stages = "train.stages=[{name: a, losses: {det: 1.0}}, {name: b, losses: {det: 1.0, seg: 1.0}}]"
    train(str(config), overrides=[stages], steps_per_stage=1)
    result = train(str(config), resume=str(tmp_path / "run" / "checkpoints" / "last.pt"),
                   overrides=["train.stages.1.epochs=2"], steps_per_stage=1)
    assert [(entry["epoch"], entry["stage"]) for entry in result.report["history"]] == [(1, "a"), (2, "b"), (3, "b")]
