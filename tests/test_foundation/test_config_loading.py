"""Config: YAML + `--set` typing, strictness, error messages, shipped configs, JSON round trip, stable hash."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from apex_x.adapters.config_yaml import load_config
from apex_x.api import CONFIG_FLAGS
from apex_x.api import load_config as api_load_config
from apex_x.domain.config import ApexConfig
from apex_x.domain.config_validation import all_dotted_keys
from apex_x.domain.errors import ConfigError, UserError

from .conftest import REPO_ROOT


def _error(path: str | Path | None = None, overrides: tuple[str, ...] = ()) -> ConfigError:
    with pytest.raises(ConfigError) as caught:
        load_config(path, overrides)
    return caught.value


def _write(tmp_path: Path, text: str, name: str = "config.yaml") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def test_set_reads_yaml_scalars_with_the_fields_types() -> None:
    config = load_config(
        None,
        [
            "train.lr=1e-3",
            "train.epochs=3",
            "train.ema=false",
            "model.num_classes=null",
            "data.scale_jitter=[0.5, 1.5]",
            "train.output_dir=runs/a",
            "train.grad_clip_norm=~",
        ],
    )
    assert isinstance(config.train.lr, float) and config.train.lr == pytest.approx(0.001)
    assert config.train.epochs == 3 and isinstance(config.train.epochs, int)
    assert config.train.ema is False
    assert config.model.num_classes is None
    assert config.data.scale_jitter == [0.5, 1.5]
    assert config.train.output_dir == "runs/a"
    assert config.train.grad_clip_norm is None


def test_scientific_notation_in_a_yaml_file_is_a_float(tmp_path: Path) -> None:
    # Plain PyYAML reads 1e-3 as the string "1e-3"; the strict loader reads it as YAML 1.2 does.
    config = load_config(_write(tmp_path, "train:\n  lr: 1e-3\n  weight_decay: 5E-2\n"))
    assert config.train.lr == pytest.approx(0.001)
    assert config.train.weight_decay == pytest.approx(0.05)


@pytest.mark.parametrize("override", ["train.ema=no", "train.output_dir=no", "train.deterministic=on", "train.ema=yes"])
def test_yaml_1_1_booleans_are_rejected_not_guessed(override: str) -> None:
    error = _error(overrides=(override,))
    key = override.split("=")[0]
    assert error.key == key
    assert f"--set {override}" in str(error)
    assert "true/false" in str(error)


def test_yaml_1_1_boolean_in_a_file_names_the_file_and_key(tmp_path: Path) -> None:
    path = _write(tmp_path, "train:\n  allow_synthetic_fallback: yes\n")
    error = _error(path)
    assert str(path) in str(error) and "train.allow_synthetic_fallback" in str(error)


def test_quoted_no_is_text(tmp_path: Path) -> None:
    assert load_config(None, ['train.output_dir="no"']).train.output_dir == "no"


def test_wrong_type_names_the_flag_key_and_expected_type() -> None:
    error = _error(overrides=("train.epochs=abc",))
    message = str(error)
    assert "--set train.epochs=abc" in message and "train.epochs" in message
    assert "expected int" in message and "'abc'" in message
    assert "\n" not in message  # one error, one line
    assert isinstance(error, UserError)


def test_float_for_an_int_and_text_for_a_float_are_errors() -> None:
    assert "expected int" in str(_error(overrides=("train.epochs=1.5",)))
    assert "train.lr" in str(_error(overrides=("train.lr=fast",)))


def test_choice_errors_list_the_choices() -> None:
    message = str(_error(overrides=("runtime.device=gpu",)))
    assert "runtime.device" in message and "'cpu'" in message and "'cuda'" in message


def test_unknown_key_suggests_the_closest() -> None:
    error = _error(overrides=("train.epochz=1",))
    assert error.key == "train.epochz"
    assert "did you mean train.epochs" in str(error)
    assert "trian.epochs" in str(_error(overrides=("trian.epochs=1",)))
    assert "did you mean train.epochs" in str(_error(overrides=("trian.epochs=1",)))


def test_an_unknown_key_in_a_list_item_suggests_that_item_s_keys() -> None:
    """data.extra_train items have their own keys: the suggestion is among them, not the whole schema's."""
    message = str(_error(overrides=('data.extra_train=[{"coco_images": "x", "colour": 1}]',)))
    assert "data.extra_train.0.coco_images: unknown key; did you mean data.extra_train.0.coco_train_images?" in message
    listed = message.split("data.extra_train.0.colour: unknown key; did you mean ")[1]
    assert all(f"data.extra_train.0.{name}" in listed
               for name in ("format", "coco_train_images", "coco_train_annotations", "yolo_data"))


def test_unknown_key_in_a_file_names_the_file_and_suggests(tmp_path: Path) -> None:
    path = _write(tmp_path, "train:\n  epochs: 2\n  batchsize: 4\n")
    message = str(_error(path))
    assert str(path) in message and "train.batchsize" in message and "train.batch_size" in message


def test_duplicate_yaml_key_names_the_dotted_key_and_both_lines(tmp_path: Path) -> None:
    path = _write(tmp_path, "model:\n  profile: small\ntrain:\n  epochs: 3\n  lr: 0.1\n  epochs: 4\n")
    error = _error(path)
    assert error.key == "train.epochs"
    assert str(path) in str(error)
    assert "line 6" in str(error) and "line 4" in str(error)


def test_duplicate_key_inside_a_stage_list(tmp_path: Path) -> None:
    path = _write(tmp_path, "train:\n  stages:\n    - name: a\n      name: b\n")
    assert _error(path).key == "train.stages.0.name"


def test_yaml_syntax_error_names_file_and_line(tmp_path: Path) -> None:
    path = _write(tmp_path, "train:\n  epochs: [1, 2\nmodel: {}\n")
    message = str(_error(path))
    assert str(path) in message and "line" in message


def test_missing_file_and_non_mapping_top_level(tmp_path: Path) -> None:
    assert "not found" in str(_error(tmp_path / "nope.yaml"))
    assert "mapping" in str(_error(_write(tmp_path, "- 1\n- 2\n")))


def test_malformed_set_is_an_error_naming_the_flag() -> None:
    for override in ("train.epochs", "=3", "train..epochs=3"):
        assert f"--set {override}" in str(_error(overrides=(override,)))


def test_an_item_of_an_existing_list_is_set_by_its_index(tmp_path: Path) -> None:
    path = _write(tmp_path, "train:\n  epochs: 4\n  stages:\n    - {name: a, epochs: 1, losses: {det: 1.0}}\n"
                  "    - {name: b}\n")
    config = load_config(path, ["train.stages.1.epochs=3", "train.stages.0.lr_scale=0.5"])
    assert [(stage.name, stage.epochs, stage.lr_scale) for stage in config.train.stages] == [
        ("a", 1, 0.5), ("b", 3, 1.0)]
    assert config.train.stages[0].losses == {"det": 1.0}  # the rest of the item is kept


def test_set_item_of_a_yaml_alias_changes_only_that_item(tmp_path: Path) -> None:
    path = _write(tmp_path, "train:\n  stages:\n    - &s {name: a, epochs: 1}\n    - *s\n")
    config = load_config(path, ["train.stages.1.epochs=4", "train.stages.1.name=b"])
    assert [(stage.name, stage.epochs) for stage in config.train.stages] == [("a", 1), ("b", 4)]


def test_a_list_index_that_is_not_there_says_what_is(tmp_path: Path) -> None:
    path = _write(tmp_path, "train:\n  stages:\n    - {name: a}\n    - {name: b}\n")
    out_of_range = _error(path, ("train.stages.2.epochs=3",))
    assert out_of_range.key == "train.stages.2.epochs"
    assert "--set train.stages.2.epochs=3" in str(out_of_range) and "2 item(s) (indexes 0 to 1)" in str(out_of_range)
    default = str(_error(overrides=("train.stages.0.epochs=2",)))  # no list: the default curriculum
    assert "default curriculum" in default and "--set train.epochs=2" in default
    unknown = _error(path, ("train.stages.0.epoch=2",))
    assert unknown.key == "train.stages.0.epoch"
    assert "train.stages.1" in str(_error(path, ("train.stages.1.epochs=-1",)))  # the schema still checks it


def test_precedence_file_then_set_then_flags(tmp_path: Path) -> None:
    path = _write(tmp_path, "train:\n  epochs: 5\n  seed: 1\n  batch_size: 2\n")
    config = api_load_config(path, ["train.epochs=6", "train.seed=2"], seed=3, num_classes=4, steps_per_stage=10)
    assert config.train.epochs == 6
    assert config.train.seed == 3
    assert config.train.batch_size == 2
    assert config.model.num_classes == 4
    assert config.train.steps_per_stage == 10
    assert api_load_config(path, seed=None).train.seed == 1  # None = flag not given


def test_flag_errors_name_the_flag() -> None:
    with pytest.raises(ConfigError) as caught:
        api_load_config(None, num_classes=0)
    assert "--num-classes 0" in str(caught.value) and "model.num_classes" in str(caught.value)


def test_unknown_api_flag_is_a_type_error_with_a_suggestion() -> None:
    with pytest.raises(TypeError, match="did you mean 'seed'"):
        api_load_config(None, sede=1)


def test_every_api_flag_targets_a_real_key() -> None:
    keys = set(all_dotted_keys())
    assert {key for key, _ in CONFIG_FLAGS.values()} <= keys


@pytest.mark.parametrize(
    "path", sorted(str(p.relative_to(REPO_ROOT)) for p in [*REPO_ROOT.glob("configs/*.yaml"), REPO_ROOT / "examples/smoke_cpu.yaml"])
)
def test_every_shipped_config_validates(path: str) -> None:
    config = load_config(REPO_ROOT / path)
    assert isinstance(config, ApexConfig)


def test_the_seed_configs_exist() -> None:
    for name in ("coco_baseline", "worldclass", "smoke_cpu", "quickstart"):
        assert (REPO_ROOT / "configs" / f"{name}.yaml").is_file()
    assert load_config(REPO_ROOT / "configs/worldclass.yaml").model.profile == "worldclass"
    assert load_config(REPO_ROOT / "examples/smoke_cpu.yaml").train.allow_synthetic_fallback is False


def test_json_round_trip_is_lossless() -> None:
    config = load_config(
        REPO_ROOT / "configs/worldclass.yaml",
        ["train.stages=[{name: warm, epochs: 1, losses: {det: 1.0}, trainable: [head]}]", "train.lr=3e-4"],
    )
    text = json.dumps(config.to_plain())
    again = ApexConfig.model_validate(json.loads(text))
    assert again == config
    assert again.stable_hash() == config.stable_hash()


_HASH_SCRIPT = (
    "from apex_x.adapters.config_yaml import load_config; "
    "print(load_config('configs/coco_baseline.yaml', ['train.lr=1e-3']).stable_hash())"
)


def test_hash_is_stable_across_processes_and_changes_with_the_config() -> None:
    here = load_config(REPO_ROOT / "configs/coco_baseline.yaml", ["train.lr=1e-3"]).stable_hash()
    hashes = {
        subprocess.run(
            [sys.executable, "-c", _HASH_SCRIPT],
            cwd=REPO_ROOT, env={"PYTHONHASHSEED": seed, "PATH": ""}, capture_output=True, text=True, check=True,
        ).stdout.strip()
        for seed in ("1", "2")
    }
    assert hashes == {here}
    assert len(here) == 64
    other = load_config(REPO_ROOT / "configs/coco_baseline.yaml", ["train.lr=2e-3"]).stable_hash()
    assert other != here


def test_an_extra_train_item_with_the_other_format_s_keys_names_the_format_to_set() -> None:
    message = str(_error(overrides=('data.extra_train=[{"yolo_data": "more/data.yaml"}]',)))
    assert "data.extra_train.0: yolo_data is a key of format 'yolo' but this item's format is 'coco'" in message
    assert "add format: yolo" in message
    message = str(_error(overrides=('data.extra_train=[{"format": "yolo", "coco_train_images": "imgs"}]',)))
    assert "coco_train_images is a key of format 'coco' but this item's format is 'yolo'" in message
