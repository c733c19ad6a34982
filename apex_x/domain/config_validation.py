"""Validate a raw config mapping against the schema; errors name the source (file or flag) and dotted key."""

from __future__ import annotations

import difflib
from collections.abc import Mapping
from typing import Any, Literal, get_args, get_origin

from pydantic import BaseModel, ValidationError

from apex_x.domain.config import ApexConfig
from apex_x.domain.errors import ConfigError
from apex_x.domain.text_rules import printable, text_problem


def all_dotted_keys(model: type[BaseModel] = ApexConfig, prefix: str = "") -> list[str]:
    """Every valid dotted key of the schema (sections and leaves)."""
    keys: list[str] = []
    for name, field in model.model_fields.items():
        dotted = f"{prefix}{name}"
        keys.append(dotted)
        annotation = field.annotation
        if isinstance(annotation, type) and issubclass(annotation, BaseModel):
            keys.extend(all_dotted_keys(annotation, prefix=f"{dotted}."))
    return keys


def _list_item_model(parent: str) -> type[BaseModel] | None:
    """The model of a list item's keys (`data.extra_train.0` -> ExtraTrainData), None when `parent` is not one."""
    model: type[BaseModel] = ApexConfig
    parts = parent.split(".")
    index = 0
    while index < len(parts):
        field = model.model_fields.get(parts[index])
        if field is None:
            return None
        annotation = field.annotation
        item = next((arg for arg in get_args(annotation) if get_origin(arg) is list), annotation)
        if get_origin(item) is list and index + 1 < len(parts) and parts[index + 1].isdigit():
            element = get_args(item)[0] if get_args(item) else None
            if not (isinstance(element, type) and issubclass(element, BaseModel)):
                return None
            model, index = element, index + 2
            if index == len(parts):
                return model
            continue
        if not (isinstance(annotation, type) and issubclass(annotation, BaseModel)):
            return None
        model, index = annotation, index + 1
    return None


def suggest_keys(dotted_key: str, limit: int = 3) -> list[str]:
    """Closest valid dotted keys to a mistyped one; inside a list item (data.extra_train.0.KEY), that item's keys."""
    parent, _, leaf = dotted_key.rpartition(".")
    item_model = _list_item_model(parent) if parent else None
    if item_model is not None:
        names = list(item_model.model_fields)
        close = difflib.get_close_matches(leaf, names, n=limit, cutoff=0.5) or names  # nothing close: all of them
        return [f"{parent}.{name}" for name in close]
    candidates = all_dotted_keys()
    suggestions = difflib.get_close_matches(dotted_key, candidates, n=limit, cutoff=0.6)
    if not suggestions:
        leaf = dotted_key.rsplit(".", 1)[-1]
        leaves = {key.rsplit(".", 1)[-1]: key for key in candidates}
        suggestions = [leaves[name] for name in difflib.get_close_matches(leaf, list(leaves), n=limit)]
    return suggestions


def field_description(dotted_key: str) -> tuple[str, str] | None:
    """(type, description) of a leaf key, for error messages and --help."""
    model: type[BaseModel] = ApexConfig
    parts = dotted_key.split(".")
    for index, part in enumerate(parts):
        field = model.model_fields.get(part)
        if field is None:
            return None
        annotation = field.annotation
        if index == len(parts) - 1:
            if get_origin(annotation) is Literal:
                type_name = " | ".join(repr(choice) for choice in get_args(annotation))
            else:
                type_name = getattr(annotation, "__name__", None) or str(annotation).replace("typing.", "")
            return type_name, field.description or ""
        if not (isinstance(annotation, type) and issubclass(annotation, BaseModel)):
            return None
        model = annotation
    return None


def _source_of(dotted_key: str, sources: Mapping[str, str], default_source: str) -> str:
    probe = dotted_key
    while probe:
        if probe in sources:
            return sources[probe]
        probe = probe.rpartition(".")[0]
    return default_source


def check_ambiguous_booleans(raw: Any, sources: Mapping[str, str], default_source: str, prefix: str = "") -> None:
    """YAML 1.1 words (yes/no/on/off) are never silently read as booleans or strings."""
    if isinstance(raw, Mapping):
        for key, value in raw.items():
            check_ambiguous_booleans(value, sources, default_source, f"{prefix}{key}.")
        return
    if isinstance(raw, str) and getattr(raw, "yaml_ambiguous", False):
        key = prefix.rstrip(".")
        if str(raw) in _word_choices(key):
            return  # a text-only key whose named choices include the word (model.size: n): it means that choice
        raise ConfigError(
            f"ambiguous value {raw!r}: YAML 1.1 reads it as a boolean. Write true/false for a boolean, "
            f"or quote it (\"{raw}\") if you mean the text",
            source=_source_of(key, sources, default_source),
            key=key,
        )


def check_text_values(raw: Any, sources: Mapping[str, str], default_source: str, prefix: str = "") -> None:
    """Every key and text value is printable, JSON-safe text (domain/text_rules.py): a NUL in
    train.output_dir, an escape sequence or a lone surrogate (from `--set` or a YAML escape) is a ConfigError
    naming the key, never a failure when the value is printed, written to JSON or used as a path."""
    items = raw.items() if isinstance(raw, Mapping) else enumerate(raw) if isinstance(raw, list) else ()
    for key, value in items:
        dotted = f"{prefix}{key}"
        texts = [("key", key)] if isinstance(key, str) else []
        texts += [("value", value)] if isinstance(value, str) else []
        for what, text in texts:
            problem = text_problem(text)
            if problem is not None:
                raise ConfigError(
                    f"{problem} in the {what} '{printable(text)}': config text must be printable Unicode (no NUL, "
                    "control or escape characters, no bytes that are not UTF-8)",
                    source=_source_of(dotted, sources, default_source),
                    key=printable(dotted),
                )
        if isinstance(value, (Mapping, list)):
            check_text_values(value, sources, default_source, f"{dotted}.")


def _word_choices(dotted_key: str) -> tuple[str, ...]:
    """The names a text key lists as `word_choices` in its schema field (json_schema_extra), else ()."""
    model: type[BaseModel] = ApexConfig
    parts = dotted_key.split(".")
    for index, part in enumerate(parts):
        field = model.model_fields.get(part)
        if field is None:
            return ()
        if index == len(parts) - 1:
            extra = field.json_schema_extra if isinstance(field.json_schema_extra, dict) else {}
            return tuple(str(item) for item in extra.get("word_choices") or ())  # type: ignore[union-attr]
        if not (isinstance(field.annotation, type) and issubclass(field.annotation, BaseModel)):
            return ()
        model = field.annotation
    return ()


def build_config(
    raw: Mapping[str, Any], *, sources: Mapping[str, str] | None = None, default_source: str = "<config>"
) -> ApexConfig:
    """Validate a merged raw mapping. `sources` maps dotted keys to the file or flag that set them."""
    sources = sources or {}
    if not isinstance(raw, Mapping):
        raise ConfigError(f"the top level must be a mapping, got {type(raw).__name__}", source=default_source)
    check_text_values(raw, sources, default_source)
    try:
        return ApexConfig.model_validate(dict(raw))
    except ValidationError as error:
        raise _translate(error, sources, default_source) from None


def _translate(error: ValidationError, sources: Mapping[str, str], default_source: str) -> ConfigError:
    messages: list[str] = []
    first_key: str | None = None
    first_source: str | None = None
    for item in error.errors():
        key = ".".join(str(part) for part in item["loc"]) or "<root>"
        source = _source_of(key, sources, default_source)
        first_key = first_key or key
        first_source = first_source or source
        kind = item["type"]
        if kind == "extra_forbidden":
            suggestions = suggest_keys(key)
            hint = f"; did you mean {' or '.join(suggestions)}?" if suggestions else ""
            messages.append(f"{source}: {key}: unknown key{hint}")
            continue
        if kind == "value_error":  # a validator's own sentence already names the value and the rule
            message = str(item["msg"]).removeprefix("Value error, ")
            messages.append(f"{source}: {key}: {message}")
            continue
        described = field_description(key)
        expected = f" (expected {described[0]})" if described else ""
        got = item.get("input")
        got_text = f"; got {got!r} ({type(got).__name__})" if not isinstance(got, Mapping) else ""
        messages.append(f"{source}: {key}: {item['msg']}{expected}{got_text}")
    if len(messages) == 1:
        message = f"invalid configuration: {messages[0]}"
    else:
        message = "invalid configuration:\n  " + "\n  ".join(messages)
    config_error = ConfigError(message)
    config_error.key = first_key
    config_error.source = first_source
    return config_error
