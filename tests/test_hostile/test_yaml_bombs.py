"""Kind 3 of issue 14: YAML bombs, deep nesting and huge integers end fast with exit 2 naming the file/flag."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from apex_x.adapters.config_yaml import MAX_DEPTH, MAX_INT_DIGITS, MAX_VALUES, load_config, parse_yaml_text
from apex_x.domain.errors import ConfigError

from .builders import billion_laughs
from .conftest import RSS_BOUND_KB, cli

DOCUMENTS = {
    "laughs": (billion_laughs(), f"more than {MAX_VALUES} values"),
    "laughs_in_a_key": ("train: &t {epochs: 1}\n" + billion_laughs(12, 10), f"more than {MAX_VALUES} values"),
    "deep_flow": ("model: " + "[" * 100_000 + "]" * 100_000 + "\n", f"more than {MAX_DEPTH} levels"),
    "deep_block": ("a:\n" + "".join("  " * level + f"k{level}:\n" for level in range(1, 400)),
                   f"more than {MAX_DEPTH} levels"),
    "alias_depth": ("\n".join(["a0: &a0 " + "[" * 20 + "1" + "]" * 20] + [
        f"a{i}: &a{i} " + "[" * 20 + f"*a{i - 1}" + "]" * 20 for i in range(1, 80)]) + "\n",
        f"more than {MAX_DEPTH} levels"),
    "self_alias": ("a: &a [1, *a]\n", "refers to the collection it is in"),
    "big_int": ("train:\n  epochs: " + "9" * 5000 + "\n", f"integer of 5000 digits at line 2 (limit {MAX_INT_DIGITS}"),
}


@pytest.mark.parametrize("name", sorted(DOCUMENTS))
def test_each_document_is_refused_in_well_under_a_second_naming_the_file(name: str, tmp_path: Path) -> None:
    text, fact = DOCUMENTS[name]
    path = tmp_path / f"{name}.yaml"
    path.write_text(text)
    assert path.stat().st_size < 1_000_000
    started = time.perf_counter()
    with pytest.raises(ConfigError) as refused:
        load_config(path)
    assert time.perf_counter() - started < 0.5
    assert str(refused.value).startswith(f"{path}: ") and fact in str(refused.value)


def test_a_set_value_bomb_names_the_flag() -> None:
    started = time.perf_counter()
    for value, fact in ((billion_laughs().replace("\n", ", ").join("{}").replace(", }", "}"), "values"),
                        ("9" * 5000, "integer of 5000 digits"), ("[" * 50_000 + "]" * 50_000, "levels")):
        with pytest.raises(ConfigError) as refused:
            load_config(None, [f"train.epochs={value}"])
        assert str(refused.value).startswith("--set train.epochs=") and fact in str(refused.value), refused.value
    assert time.perf_counter() - started < 1.0


def test_ordinary_anchors_still_work() -> None:
    assert parse_yaml_text("a: &x {det: 1.0}\nb: *x\nc: [*x, *x]\n", "c.yaml")["c"] == [{"det": 1.0}] * 2


@pytest.mark.slow
def test_cli_commands_refuse_bombs_with_exit_2_fast_and_small(tmp_path: Path) -> None:
    bomb = tmp_path / "laughs.yaml"
    bomb.write_text(billion_laughs(12, 10))  # 10**12 leaves when expanded
    deep = tmp_path / "deep.yaml"
    deep.write_text("train: " + "[" * 200_000 + "]" * 200_000 + "\n")
    runs = {
        "train": (cli("train", str(bomb), timeout=60), str(bomb)),
        "dataset-preflight": (cli("dataset-preflight", str(deep), timeout=60), str(deep)),
        "eval": (cli("eval", str(bomb), "--checkpoint", str(tmp_path / "x.pt"), timeout=60), str(bomb)),
    }
    (tmp_path / "none.yaml").write_text("{}\n")
    for name, (outcome, source) in runs.items():
        assert outcome.code == 2, (name, outcome.stderr[-2000:])
        assert outcome.error_line.startswith(f"error: {source}: "), (name, outcome.error_line)
        assert outcome.seconds < 30 and outcome.peak_rss_kb < RSS_BOUND_KB, name
    outcome = cli("train", str(tmp_path / "none.yaml"), "--set", "train.epochs=" + "7" * 5000, timeout=60)
    assert outcome.code == 2 and "integer of 5000 digits" in outcome.error_line, outcome.stderr[-2000:]


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("model:\n  ? [1, 2]\n  : 1\n", "a list used as a key at line 2"),
        ("train: {? {a: 1}: 2}\n", "a mapping used as a key at line 1"),
        ("train:\n  epochs: 1\x00\n", "invalid YAML: unacceptable character #x0000"),
        ("train:\n  epochs: \x01\n", "invalid YAML: unacceptable character #x0001"),
    ],
)
def test_complex_keys_and_control_characters_are_config_errors(text: str, message: str, tmp_path: Path) -> None:
    config = tmp_path / "odd.yaml"
    config.write_text(text)
    with pytest.raises(ConfigError, match=message) as caught:
        load_config(config)
    assert str(config) in str(caught.value)
    outcome = cli("dataset-preflight", str(config))
    assert outcome.code == 2 and message in outcome.stderr and "internal error" not in outcome.stderr


def test_a_large_plain_document_is_refused_while_parsing_without_blaming_aliases() -> None:
    text = "model: [" + ",".join(["1"] * 450_000) + "]\n"  # ~900 KB, under the size limit, no alias at all
    started = time.perf_counter()
    with pytest.raises(ConfigError, match=rf"more than {MAX_VALUES} values \(line 1\); a config holds a few hundred") as caught:
        parse_yaml_text(text, "big.yaml")
    assert time.perf_counter() - started < 3.0  # was 44 s and 850 MB
    assert "alias" not in str(caught.value) and "big.yaml" in str(caught.value)


def test_an_error_line_never_repeats_a_huge_pasted_key_or_value() -> None:
    """A 60 KB --set key is echoed by its message (twice); the CLI's one line keeps its ends and the count."""
    from apex_x.cli import main, shorten_long_words

    key = "train." + "a" * 60_000
    with pytest.raises(ConfigError) as raised:
        load_config(None, [f"{key}=1"])
    assert len(str(raised.value)) > 60_000  # the message itself names the key in full (API callers get it all)
    line = shorten_long_words(f"error: {raised.value}")
    assert len(line) < 1500 and line.count(" characters]...") == 2 and "train.aaaa" in line
    assert shorten_long_words("error: a normal line /with/a/path.yaml") == "error: a normal line /with/a/path.yaml"
    assert main(["train", "--set", f"{key}=1"]) == 2


def test_a_config_path_that_is_not_a_file_is_named_for_what_it_is(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="is a folder, not a YAML file"):
        load_config(tmp_path)
    with pytest.raises(ConfigError, match="is not a regular file"):
        load_config("/dev/null")
    with pytest.raises(ConfigError, match="config file not found"):
        load_config(tmp_path / "missing.yaml")


def test_running_out_of_memory_is_a_clear_error_not_a_bug(monkeypatch: pytest.MonkeyPatch,
                                                          capsys: pytest.CaptureFixture[str]) -> None:
    """An allocation that fails (MemoryError, or torch's allocator message) ends with exit 2 and advice."""
    import apex_x.commands.make_shapes as command
    from apex_x.cli import main

    for failure in (MemoryError(), RuntimeError("[enforce fail at alloc_cpu.cpp:117] DefaultCPUAllocator: can't "
                                                "allocate memory: you tried to allocate 99 bytes")):
        def fail(args: object, failure: BaseException = failure) -> int:
            raise failure

        monkeypatch.setattr(command, "run", fail)
        assert main(["make-shapes", "somewhere"]) == 2
        line = capsys.readouterr().err.strip().splitlines()[-1]
        assert line.startswith("error: out of memory") and "train.batch_size" in line and "bug" not in line


def test_thousands_of_set_flags_are_refused_at_once() -> None:
    from apex_x.adapters.config_yaml import MAX_OVERRIDES

    started = time.perf_counter()
    with pytest.raises(ConfigError, match=f"20000 --set flags in one command, over the limit of {MAX_OVERRIDES}"):
        load_config(None, ["train.epochs=1"] * 20_000)
    assert time.perf_counter() - started < 1.0
    assert load_config(None, ["train.epochs=2"] * MAX_OVERRIDES).train.epochs == 2
