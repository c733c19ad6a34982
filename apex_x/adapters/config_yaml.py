"""Load a YAML config file plus `--set a.b=c` overrides into a validated ApexConfig."""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any

import yaml

from apex_x.domain.config import ApexConfig
from apex_x.domain.config_validation import (
    all_dotted_keys,
    build_config,
    check_ambiguous_booleans,
    suggest_keys,
)
from apex_x.domain.errors import ConfigError
from apex_x.domain.input_size import is_valid_side, nearest_valid_sides
from apex_x.domain.registry import MODEL_PROFILES
from apex_x.domain.text_rules import printable, text_problem

_FLOAT = re.compile(r"^[-+]?(\d+\.?\d*|\.\d+)([eE][-+]?\d+)?$|^[-+]?\.(inf|Inf|INF)$|^\.(nan|NaN|NAN)$", re.ASCII)
_INT = re.compile(r"^[-+]?\d+$", re.ASCII)
_AMBIGUOUS = re.compile(r"^(y|Y|yes|Yes|YES|n|N|no|No|NO|on|On|ON|off|Off|OFF)$")
_BOOL = re.compile(r"^(true|True|TRUE|false|False|FALSE)$")


# Bounds of a config document (a real config has a few hundred values, 5 levels, short numbers).
MAX_CONFIG_BYTES = 1 << 20
MAX_DEPTH = 32
MAX_VALUES = 10_000  # after aliases are expanded: a "billion laughs" document stops here
MAX_INT_DIGITS = 30
MAX_OVERRIDES = 1_000  # `--set` flags in one command (the schema has a few hundred keys)


class AmbiguousScalar(str):
    """A plain YAML scalar such as `no` that YAML 1.1 would read as a boolean."""

    yaml_ambiguous = True


class _StrictLoader(yaml.SafeLoader):
    """SafeLoader with YAML 1.2 booleans, `1e-3` as a float, flagged yes/no/on/off and no duplicate keys."""


# Replace the implicit resolvers of bool/float/int with stricter ones.
_StrictLoader.yaml_implicit_resolvers = {
    first: [(tag, regexp) for tag, regexp in resolvers if tag not in {
        "tag:yaml.org,2002:bool", "tag:yaml.org,2002:float", "tag:yaml.org,2002:int"}]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.copy().items()
}
_StrictLoader.add_implicit_resolver("tag:yaml.org,2002:bool", _BOOL, list("tTfF"))
_StrictLoader.add_implicit_resolver("tag:yaml.org,2002:int", _INT, list("-+0123456789"))
_StrictLoader.add_implicit_resolver("tag:yaml.org,2002:float", _FLOAT, list("-+0123456789."))
_StrictLoader.add_implicit_resolver("!ambiguous", _AMBIGUOUS, list("yYnNoO"))


def _construct_ambiguous(loader: yaml.SafeLoader, node: yaml.ScalarNode) -> AmbiguousScalar:
    return AmbiguousScalar(loader.construct_scalar(node))


def _construct_int(loader: yaml.SafeLoader, node: yaml.ScalarNode) -> int:
    text = str(loader.construct_scalar(node))
    if not _INT.match(text):  # an explicit !!int on '1_0', '0x10', ' 3' or non-ASCII digits
        raise ValueError("not a decimal integer")
    digits = len(text.lstrip("+-"))
    if digits > MAX_INT_DIGITS:
        raise ConfigError(
            f"integer of {digits} digits at line {node.start_mark.line + 1} (limit {MAX_INT_DIGITS} digits)",
            source=getattr(loader, "apex_source", "<yaml>"),
        )
    return int(text)


def _construct_float(loader: yaml.SafeLoader, node: yaml.ScalarNode) -> float:
    text = str(loader.construct_scalar(node))
    lowered = text.lower().lstrip("+")
    if lowered in {".inf", "-.inf", ".nan"}:
        return float(lowered.replace(".", ""))
    if not (_FLOAT.match(text) or _INT.match(text)):  # float() would take '1_0.5', ' 2', 'nan', 'infinity'
        raise ValueError("not a decimal number")
    return float(text)


def _construct_mapping(loader: yaml.SafeLoader, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
    seen: dict[Any, int] = {}
    for key_node, _ in node.value:
        line = key_node.start_mark.line + 1
        if not isinstance(key_node, yaml.ScalarNode):  # `? [1, 2]`: a list or mapping as a key
            raise ConfigError(
                f"a {'list' if isinstance(key_node, yaml.SequenceNode) else 'mapping'} used as a key at line {line}: "
                "config keys are plain names",
                source=getattr(loader, "apex_source", "<yaml>"),
            )
        key = loader.construct_object(key_node, deep=deep)
        if key in seen:
            raise ConfigError(
                f"duplicate key {key!r} at line {line} (first defined at line {seen[key]})",
                source=getattr(loader, "apex_source", "<yaml>"),
                key=str(key),
            )
        seen[key] = line
    return loader.construct_mapping(node, deep=deep)


def _check_duplicate_keys(node: yaml.Node, path: str, source: str) -> None:
    """Duplicate keys anywhere in the document, named by their dotted path and line."""
    if isinstance(node, yaml.MappingNode):
        seen: dict[str, int] = {}
        for key_node, value_node in node.value:
            key = str(key_node.value) if isinstance(key_node, yaml.ScalarNode) else None
            dotted = f"{path}.{key}" if path and key is not None else (key or path)
            line = key_node.start_mark.line + 1
            if key is not None and key in seen:
                raise ConfigError(
                    f"duplicate key at line {line} (first defined at line {seen[key]})",
                    source=source,
                    key=dotted,
                )
            if key is not None:
                seen[key] = line
            _check_duplicate_keys(value_node, dotted, source)
    elif isinstance(node, yaml.SequenceNode):
        for index, item in enumerate(node.value):
            _check_duplicate_keys(item, f"{path}.{index}" if path else str(index), source)


def _construct_bool(loader: yaml.SafeLoader, node: yaml.ScalarNode) -> bool:
    text = str(loader.construct_scalar(node))
    if not _BOOL.match(text):
        raise ValueError("a boolean is true or false")
    return text.lower() == "true"


_TAG_RULES = {
    "!!int": "a decimal integer (no 0x/0o/0b prefix or sexagesimal 1:30)",
    "!!float": "a decimal number",
    "!!bool": "a boolean (true or false)",
}


def _guarded(constructor: Callable[..., Any]) -> Callable[..., Any]:
    """A constructor whose failure on a value (an explicit tag such as `!!int '0x10'`, `!!bool 'maybe'`,
    `!!timestamp 'abc'`, `!!map [1]`) is a ConfigError naming the line, the tag and the value, not a Python
    error from inside PyYAML."""

    def construct(loader: yaml.SafeLoader, node: yaml.Node, *args: Any, **kwargs: Any) -> Any:
        try:
            return constructor(loader, node, *args, **kwargs)
        except (ConfigError, yaml.YAMLError):
            raise
        except Exception:  # noqa: BLE001 - any failure to build a value is the document's fault
            tag = node.tag.replace("tag:yaml.org,2002:", "!!")
            value = repr(node.value) if isinstance(node, yaml.ScalarNode) else f"a {node.id}"
            raise ConfigError(
                f"line {node.start_mark.line + 1}, column {node.start_mark.column + 1}: {value} is not "
                f"{_TAG_RULES.get(tag, f'a valid {tag} value')}; write the value plainly, without an explicit "
                "tag (e.g. `epochs: 3`, `lr: 0.001`, `amp: true`)",
                source=getattr(loader, "apex_source", "<yaml>"),
            ) from None

    return construct


_StrictLoader.add_constructor("!ambiguous", _construct_ambiguous)
_StrictLoader.add_constructor("tag:yaml.org,2002:float", _construct_float)
_StrictLoader.add_constructor("tag:yaml.org,2002:int", _construct_int)
_StrictLoader.add_constructor("tag:yaml.org,2002:bool", _construct_bool)
_StrictLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _construct_mapping)
_StrictLoader.yaml_constructors = {
    tag: _guarded(constructor) for tag, constructor in _StrictLoader.yaml_constructors.items()
}


_BRACKETS = re.compile(r"[\[\]{}]")


def _check_depth(text: str, source: str) -> None:
    """Nesting depth from the parser's events (no recursion), before the recursive composer runs. Flow
    brackets are counted on the text first: PyYAML's scanner slows down quadratically inside them."""
    depth = 0
    for match in _BRACKETS.finditer(text):
        depth = depth + 1 if match.group() in "[{" else max(depth - 1, 0)
        if depth > MAX_DEPTH:
            line = text.count("\n", 0, match.start()) + 1
            raise ConfigError(f"nested more than {MAX_DEPTH} levels of brackets deep at line {line}", source=source)
    depth = 0
    written = 0  # values as written (aliases not expanded): counted while parsing, so a huge plain document
    for event in yaml.parse(text, Loader=_StrictLoader):  # stops after MAX_VALUES events, not after all of it
        if isinstance(event, (yaml.ScalarEvent, yaml.MappingStartEvent, yaml.SequenceStartEvent, yaml.AliasEvent)):
            written += 1
            if written > MAX_VALUES:
                raise ConfigError(
                    f"more than {MAX_VALUES} values (line {event.start_mark.line + 1}); a config holds a few "
                    "hundred: is this a data file?",
                    source=source,
                )
        if isinstance(event, (yaml.MappingStartEvent, yaml.SequenceStartEvent)):
            depth += 1
            if depth > MAX_DEPTH:
                raise ConfigError(
                    f"nested more than {MAX_DEPTH} levels deep at line {event.start_mark.line + 1}; a config "
                    "is a few levels of sections and lists",
                    source=source,
                )
        elif isinstance(event, (yaml.MappingEndEvent, yaml.SequenceEndEvent)):
            depth -= 1


def _check_expansion(root: yaml.Node, source: str) -> None:
    """Count the values and levels of the document with aliases expanded (memoised per node: linear time)."""
    seen: dict[int, tuple[int, int]] = {}  # id(node) -> (values, levels) below and including it
    in_progress: set[int] = set()

    def refuse(node: yaml.Node, what: str) -> ConfigError:
        return ConfigError(f"{what} at line {node.start_mark.line + 1}; refusing to read it", source=source)

    def measure(node: yaml.Node, depth: int) -> tuple[int, int]:
        key = id(node)
        if key in in_progress:
            raise refuse(node, "an alias refers to the collection it is in")
        count, height = seen.get(key, (0, 0))
        if key not in seen:
            in_progress.add(key)
            count, height = 1, 1
            children = ([item for pair in node.value for item in pair] if isinstance(node, yaml.MappingNode)
                        else list(node.value) if isinstance(node, yaml.SequenceNode) else [])
            for child in children:
                child_count, child_height = measure(child, depth + 1)
                count, height = count + child_count, max(height, child_height + 1)
                if count > MAX_VALUES:
                    raise refuse(node, f"with its aliases expanded, the document holds more than {MAX_VALUES} "
                                 "values (aliases of aliases: a 'billion laughs' bomb?)")
            in_progress.discard(key)
            seen[key] = (count, height)
        if depth + height > MAX_DEPTH + 1:
            raise refuse(node, f"with aliases expanded, the document is nested more than {MAX_DEPTH} levels deep")
        return count, height

    measure(root, 0)


def parse_yaml_text(text: str, source: str) -> Any:
    """Parse YAML text with the strict loader; syntax errors name the source, line and column.

    Bounded: at most MAX_CONFIG_BYTES of text, MAX_DEPTH levels, MAX_VALUES values with aliases expanded
    and MAX_INT_DIGITS digits per integer; anything beyond is a ConfigError naming the source.
    """
    if len(text) > MAX_CONFIG_BYTES:
        raise ConfigError(f"{len(text)} characters is too long for a config (limit {MAX_CONFIG_BYTES})", source=source)
    try:
        loader = _StrictLoader(text)  # the reader refuses control characters (NUL, \x01, ...) here
    except yaml.YAMLError as error:
        raise ConfigError(f"invalid YAML: {error}".replace("\n", " "), source=source) from None
    loader.apex_source = source  # type: ignore[attr-defined]
    try:
        _check_depth(text, source)
        node = loader.get_single_node()
        if node is None:
            return None
        _check_expansion(node, source)
        _check_duplicate_keys(node, "", source)
        return loader.construct_document(node)
    except ConfigError:
        raise
    except yaml.YAMLError as error:
        mark = getattr(error, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = getattr(error, "problem", None) or str(error)
        raise ConfigError(f"invalid YAML{where}: {problem}", source=source) from None
    finally:
        loader.dispose()


def read_config_file(path: str | Path) -> dict[str, Any]:
    """Read a YAML config file into a raw mapping (empty file = empty mapping)."""
    file_path = Path(path)
    if not file_path.is_file():
        if file_path.is_dir():
            raise ConfigError(f"config {file_path} is a folder, not a YAML file (e.g. configs/quickstart.yaml)",
                              source=str(file_path))
        if file_path.exists():
            raise ConfigError(f"config {file_path} is not a regular file (a device, pipe or socket); give a YAML "
                              "file", source=str(file_path))
        raise ConfigError(f"config file not found: {file_path}", source=str(file_path))
    try:
        text = file_path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as error:
        raise ConfigError(f"cannot read config file: {error}", source=str(file_path)) from None
    data = parse_yaml_text(text, str(file_path))
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"the top level must be a mapping, got {type(data).__name__}", source=str(file_path))
    return data


def parse_override(text: str) -> tuple[str, Any]:
    """`a.b=c` -> ("a.b", YAML scalar of c); the value keeps its YAML type (`1e-3` is a float).

    A numeric part names an item of a list the config already has: `train.stages.1.epochs=3`."""
    flag = f"--set {text}"
    key, sep, value_text = text.partition("=")
    key = key.strip()
    parts = key.split(".")
    if not sep or not key or parts[0].isdigit() or any(
        not (part.isidentifier() or part.isdigit()) for part in parts
    ):
        raise ConfigError(
            "expected KEY=VALUE with a dotted key such as train.epochs=3 (an item of a list by its index: "
            "train.stages.0.epochs=3)",
            source=flag,
        )
    problem = text_problem(text)
    if problem is not None:
        raise ConfigError(f"{problem}: a --set flag must be printable Unicode text (no NUL, control or escape "
                          "characters, no bytes that are not UTF-8)", source=printable(flag))
    value = parse_yaml_text(value_text, flag) if value_text.strip() else ""
    return key, value


def schema_key(dotted_key: str) -> str:
    """The schema key of an override: the part before the first list index (`train.stages.1.epochs` ->
    `train.stages`); the item's own keys are checked by the schema when the config is built."""
    parts = dotted_key.split(".")
    first_index = next((index for index, part in enumerate(parts) if part.isdigit()), len(parts))
    return ".".join(parts[:first_index])


def _no_item(list_key: str, position: str, size: int) -> str:
    if list_key == "train.stages" and size == 0:
        return (f"train.stages is not set, so it has no item {position}: the run uses the default curriculum, "
                "whose stages take train.epochs each; set that (e.g. --set train.epochs=2) or the whole list "
                "(--set 'train.stages=[{name: a, epochs: 2}]')")
    if size == 0:
        return f"{list_key} is not set, so it has no item {position}; set the whole list (--set '{list_key}=[...]')"
    return f"{list_key} has {size} item(s) (indexes 0 to {size - 1}), so it has no item {position}"


def _assign(raw: dict[str, Any], dotted_key: str, value: Any, source: str) -> None:
    """Set `dotted_key` in `raw`; a numeric part indexes an existing list. Every container on the way is
    copied before it is changed, so YAML aliases that share it elsewhere keep their value."""
    parts = dotted_key.split(".")
    node: Any = raw
    for index, part in enumerate(parts):
        here = ".".join(parts[:index]) or "the config"
        last = index == len(parts) - 1
        if isinstance(node, list):
            if not part.isdigit():
                raise ConfigError(f"{here} is a list: name an item by its index, e.g. {here}.0.{part}",
                                  source=source, key=dotted_key)
            if int(part) >= len(node):
                raise ConfigError(_no_item(here, part, len(node)), source=source, key=dotted_key)
            slot: Any = int(part)
        else:
            if part.isdigit():
                raise ConfigError(f"{here} is not a list: it has no item {part}", source=source, key=dotted_key)
            slot = part
            if not last and node.get(part) is None:
                if parts[index + 1].isdigit():
                    raise ConfigError(_no_item(".".join(parts[: index + 1]), parts[index + 1], 0),
                                      source=source, key=dotted_key)
                node[part] = {}
        if last:
            node[slot] = value
            return
        child = node[slot]
        if not isinstance(child, (dict, list)):
            prefix = ".".join(parts[: index + 1])
            raise ConfigError(f"{prefix} is a value, not a section", source=source, key=dotted_key)
        node[slot] = child = dict(child) if isinstance(child, dict) else list(child)
        node = child


def load_config(
    path: str | Path | None,
    overrides: Iterable[str] = (),
    extra: Mapping[str, Any] | None = None,
) -> ApexConfig:
    """File (optional) + `--set` overrides + values from dedicated flags -> validated config."""
    default_source = str(path) if path is not None else "<defaults>"
    raw: dict[str, Any] = read_config_file(path) if path is not None else {}
    sources: dict[str, str] = {}
    overrides = list(overrides)
    if len(overrides) > MAX_OVERRIDES:
        raise ConfigError(f"{len(overrides)} --set flags in one command, over the limit of {MAX_OVERRIDES} (the "
                          "config has fewer keys than that); put the values in the YAML file", source="--set")
    for text in overrides:
        key, value = parse_override(text)
        flag = f"--set {text}"
        if schema_key(key) not in all_dotted_keys():
            suggestions = suggest_keys(key)
            hint = f"; did you mean {' or '.join(suggestions)}?" if suggestions else ""
            raise ConfigError(f"unknown key{hint}", source=flag, key=key)
        _assign(raw, key, value, flag)
        sources[key] = flag
    for key, (value, flag) in (extra or {}).items():
        _assign(raw, key, value, flag)
        sources[key] = flag
    check_ambiguous_booleans(raw, sources, default_source)
    config = build_config(raw, sources=sources, default_source=default_source)
    check_input_size(config, sources, default_source)
    return config


def check_input_size(config: ApexConfig, sources: Mapping[str, str], default_source: str) -> None:
    """model.input_height / input_width against the configured profile's rule (ModelProfile.input_size_multiple,
    its coarsest stride): ConfigError naming the file or flag, the key, the value and the nearest valid sides."""
    profile = MODEL_PROFILES.get(config.model.profile)  # imports the profile's module only (no torch)
    multiple = profile.input_size_multiple
    for side in ("input_height", "input_width"):
        value = getattr(config.model, side)
        if not is_valid_side(value, multiple):
            key = f"model.{side}"
            error = ConfigError(  # the message names the source and key once, as the schema's errors do
                f"invalid configuration: {sources.get(key, default_source)}: {key}: must be a multiple of {multiple} "
                f"(the {profile.name} profile's coarsest stride), got {value}; nearest valid: "
                f"{' or '.join(map(str, nearest_valid_sides(value, multiple)))}"
            )
            error.key, error.source = key, sources.get(key, default_source)
            raise error
