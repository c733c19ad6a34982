"""Every plain value of an Apex-X checkpoint payload, checked before anything is built or copied from it.

One validator per payload key (KEY_VALIDATORS); a key of a newer payload that this table does not know
is only checked to be a bounded plain value. A value that is not what the format says raises a
CheckpointError naming the file and the key, e.g. `progress.global_step`. To add a payload key, add
its validator to KEY_VALIDATORS (optional keys may be absent or None).
"""

from __future__ import annotations

import contextvars
import math
from collections.abc import Callable, Mapping
from typing import Any

import torch
from pydantic import ValidationError

from apex_x.domain import checkpoint_format as fmt
from apex_x.domain.config import ApexConfig
from apex_x.domain.errors import CheckpointError
from apex_x.domain.model_profiles import PROFILE_NAMES
from apex_x.domain.text_rules import text_problem

MAX_DEPTH = 12  # nesting of any plain value (the report history is 5 deep)
MAX_NODES = 2_000_000  # containers and leaves in all plain values, shared references counted each time
MAX_TEXT = 10_000  # characters of one string
MAX_TOTAL_TEXT = 20_000_000  # characters of all strings, shared references counted each time
MAX_COUNT = 10**12  # steps, epochs and other counters
MAX_CLASSES = 10_000  # the schema's model.num_classes bound

Validator = Callable[[Any, str], None]


class _Bad(Exception):
    """A value that is not what the format says: (dotted key, rule)."""

    def __init__(self, key: str, rule: str) -> None:
        super().__init__(key, rule)
        self.key, self.rule = key, rule


def _type_name(value: Any) -> str:
    return type(value).__name__


# [values left, characters left] for the whole payload being validated (validate_payload sets it), so that
# many keys, or one list repeating a long text, cannot add up to what one key may not hold.
_PAYLOAD_BUDGET: contextvars.ContextVar[list[int] | None] = contextvars.ContextVar("payload_budget", default=None)


def check_plain(value: Any, key: str, *, budget: list[int] | None = None, depth: int = 0) -> None:
    """value is built of dicts with str keys, lists/tuples, str, int, float, bool, None and tensors, at most
    MAX_DEPTH deep, MAX_NODES values and MAX_TOTAL_TEXT characters in all (shared references counted each
    time: an exponentially shared structure stops at the budget), across the whole payload when called
    from validate_payload."""
    budget = budget if budget is not None else (_PAYLOAD_BUDGET.get() or [MAX_NODES, MAX_TOTAL_TEXT])
    budget[0] -= 1
    if budget[0] < 0:
        raise _Bad(key, f"holds more than {MAX_NODES} values (a structure that expands when copied)")
    if depth > MAX_DEPTH:
        raise _Bad(key, f"is nested more than {MAX_DEPTH} levels deep")
    if isinstance(value, Mapping):
        for name, item in value.items():
            if not isinstance(name, (str, int)):
                raise _Bad(key, f"has a key of type {_type_name(name)}")
            check_plain(item, f"{key}.{name}", budget=budget, depth=depth + 1)
    elif isinstance(value, (list, tuple)):
        for index, item in enumerate(value):
            check_plain(item, f"{key}.{index}", budget=budget, depth=depth + 1)
    elif isinstance(value, str):
        if len(value) > MAX_TEXT:
            raise _Bad(key, f"is a text of {len(value)} characters (limit {MAX_TEXT})")
        budget[1] -= len(value)
        if budget[1] < 0:
            raise _Bad(key, f"brings the checkpoint's texts over {MAX_TOTAL_TEXT} characters (shared texts "
                       "counted each time: a structure that expands when copied)")
    elif not (value is None or isinstance(value, (bool, int, float, torch.Tensor))):
        raise _Bad(key, f"is a {_type_name(value)}, not a plain value")
    elif isinstance(value, int) and not isinstance(value, bool) and abs(value) > 2**64:
        raise _Bad(key, "is an integer of more than 64 bits")


# Tensors a checkpoint may hold: dense (strided), on the CPU after map_location, of a real or integer dtype.
TENSOR_DTYPES = frozenset({torch.float16, torch.bfloat16, torch.float32, torch.float64, torch.uint8, torch.int8,
                           torch.int16, torch.int32, torch.int64, torch.bool})


def tensor_problem(tensor: torch.Tensor) -> str | None:
    """None for a dense CPU tensor of a TENSOR_DTYPES dtype; else what it is (nested, sparse, quantized, complex,
    meta, ...), which no state dict of Apex-X holds and which would fail or be cast silently when loaded."""
    if tensor.is_nested:
        return "a nested tensor"
    if tensor.layout is not torch.strided:
        return f"a {str(tensor.layout).replace('torch.', '')} tensor"
    if tensor.is_quantized:
        return "a quantized tensor"
    if tensor.device.type != "cpu":
        return f"a tensor on the {tensor.device.type} device"
    if tensor.dtype not in TENSOR_DTYPES:
        return f"a {str(tensor.dtype).replace('torch.', '')} tensor"
    return None


def plain_copy(value: Any, path: str) -> Any:
    """The loaded object rebuilt from plain containers: every dict / OrderedDict as a dict read through
    `dict.items` (attributes an unpickler set on an OrderedDict, e.g. a shadowing `items`, are dropped), every
    list and tuple anew, every tensor checked (tensor_problem). No recursion; at most MAX_NODES values and
    MAX_DEPTH + 8 levels. Raises CheckpointError naming the file and the key."""
    limit = MAX_DEPTH + 8
    nodes = 0
    root: list[Any] = [None]
    # (value, parent, slot, key, depth); a _Finish entry turns a filled list back into a tuple after its items
    stack: list[Any] = [(value, root, 0, "", 0)]
    while stack:
        entry = stack.pop()
        if isinstance(entry, _Finish):
            entry.parent[entry.slot] = tuple(entry.parent[entry.slot])
            continue
        item, parent, slot, key, depth = entry
        nodes += 1
        where = key or "the top level"
        if nodes > MAX_NODES:
            raise CheckpointError(f"{path}: checkpoint holds more than {MAX_NODES} values; refusing to use it")
        if depth > limit:
            raise CheckpointError(f"{path}: checkpoint value '{where}' is nested more than {limit} levels deep; "
                                  "refusing to use it")
        if isinstance(item, dict):
            copied: Any = {}
            children = list(dict.items(item))
        elif isinstance(item, (list, tuple)):
            children = list(enumerate(list.__iter__(item) if isinstance(item, list) else tuple.__iter__(item)))
            copied = [None] * len(children)
            if isinstance(item, tuple):
                stack.append(_Finish(parent, slot))
        else:
            children = []
            copied = item
            problem = tensor_problem(item) if isinstance(item, torch.Tensor) else None
            if problem is not None:
                raise CheckpointError(f"{path}: checkpoint value '{where}' is {problem}, not a dense CPU tensor of "
                                      "a real or integer dtype; the file is damaged or was not written by Apex-X, "
                                      "refusing to use it")
        parent[slot] = copied
        for name, child in reversed(children):  # popped in order: a dict keeps its key order
            stack.append((child, copied, name, f"{key}.{name}" if key else str(name), depth + 1))
    return root[0]


class _Finish:
    """plain_copy's marker: parent[slot], a list of a tuple's items, becomes a tuple."""

    def __init__(self, parent: Any, slot: Any) -> None:
        self.parent, self.slot = parent, slot


def _int(value: Any, key: str, low: int = 0, high: int = MAX_COUNT) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise _Bad(key, f"must be an integer, got {_type_name(value)}")
    if not low <= value <= high:
        raise _Bad(key, f"must be in [{low}, {high}], got {value}")
    return value


def _mapping(value: Any, key: str, required: tuple[str, ...] = ()) -> Mapping[str, Any]:
    if not isinstance(value, Mapping):
        raise _Bad(key, f"must be a mapping, got {_type_name(value)}")
    missing = [name for name in required if name not in value]
    if missing:
        raise _Bad(f"{key}.{missing[0]}", "is missing")
    return value


def _text(value: Any, key: str, limit: int = 200) -> str:
    if not isinstance(value, str) or len(value) > limit:
        raise _Bad(key, f"must be a text of at most {limit} characters, got {_type_name(value)}")
    return value


def _config(value: Any, key: str) -> None:
    _mapping(value, key)
    check_plain(value, key)
    try:
        ApexConfig.model_validate(dict(value))
    except ValidationError as error:
        first = error.errors()[0]
        where = ".".join(str(part) for part in first["loc"])
        raise _Bad(f"{key}.{where}" if where else key, f"{first['msg']} (the same rule as a YAML config)") from None


def _categories(value: Any, key: str) -> None:
    plain = _mapping(value, key, ("original_ids", "names"))
    ids, names = plain["original_ids"], plain["names"]
    for name, items in (("original_ids", ids), ("names", names)):
        if not isinstance(items, (list, tuple)):
            raise _Bad(f"{key}.{name}", f"must be a list, got {_type_name(items)}")
        if not 1 <= len(items) <= MAX_CLASSES:
            raise _Bad(f"{key}.{name}", f"must list 1 to {MAX_CLASSES} classes, got {len(items)}")
    if len(ids) != len(names):
        raise _Bad(key, f"has {len(ids)} original_ids but {len(names)} names")
    for index, item in enumerate(ids):
        _int(item, f"{key}.original_ids.{index}", -(2**63), 2**63 - 1)
    for index, item in enumerate(names):
        _text(item, f"{key}.names.{index}", 1000)
        problem = text_problem(item)
        if problem is not None:
            raise _Bad(f"{key}.names.{index}", f"holds {problem} (class names are printable text)")
    if len(set(ids)) != len(ids):
        raise _Bad(f"{key}.original_ids", "has duplicate ids")


def _input_size(value: Any, key: str) -> None:
    if not isinstance(value, (list, tuple)) or len(value) != 2:
        raise _Bad(key, f"must be [height, width], got {_type_name(value)}")
    _int(value[0], f"{key}.0", 32, 4096)
    _int(value[1], f"{key}.1", 32, 4096)


_PROGRESS_INTS = ("stage_index", "epoch", "epoch_in_stage", "step_in_epoch", "global_step")


def _progress(value: Any, key: str) -> None:
    plain = _mapping(value, key, (*_PROGRESS_INTS, "stage_name", "epoch_complete"))
    for name in _PROGRESS_INTS + ("epoch_number", "ema_updates"):
        if name in plain:
            _int(plain[name], f"{key}.{name}")
    if "world_size" in plain:
        _int(plain["world_size"], f"{key}.world_size", 1, 1_000_000)
    _text(plain["stage_name"], f"{key}.stage_name")
    for name in ("epoch_complete", "finished"):
        if name in plain and not isinstance(plain[name], bool):
            raise _Bad(f"{key}.{name}", f"must be true or false, got {_type_name(plain[name])}")


def _tensor(value: Any, key: str, dtype: torch.dtype, numel: int | None = None) -> None:
    if not isinstance(value, torch.Tensor) or value.dtype != dtype or value.dim() != 1:
        raise _Bad(key, f"must be a 1-d {dtype} tensor, got {_type_name(value)}")
    if numel is not None and value.numel() != numel:
        raise _Bad(key, f"must hold {numel} values, got {value.numel()}")


def _only_keys(plain: Mapping[str, Any], key: str, allowed: tuple[str, ...]) -> None:
    extra = sorted(str(name) for name in plain if name not in allowed)
    if extra:
        raise _Bad(f"{key}.{extra[0]}", f"is not part of this state ({', '.join(allowed)})")


def _rng(value: Any, key: str) -> None:
    """The exact layout capture_rng writes: any other key, version or size would fail in random.setstate,
    np.random.set_state or torch.set_rng_state."""
    plain = _mapping(value, key, ("python", "numpy", "torch"))
    _only_keys(plain, key, ("python", "numpy", "torch", "cuda"))
    python = _mapping(plain["python"], f"{key}.python", ("version", "state", "gauss"))
    _only_keys(python, f"{key}.python", ("version", "state", "gauss"))
    _int(python["version"], f"{key}.python.version", 3, 3)
    state = python["state"]
    if not isinstance(state, (list, tuple)) or len(state) != 625:
        raise _Bad(f"{key}.python.state", "must be a list of 625 integers (Mersenne Twister state)")
    for index, item in enumerate(state[:624]):
        _int(item, f"{key}.python.state.{index}", 0, 2**32 - 1)
    _int(state[624], f"{key}.python.state.624", 0, 624)
    if python["gauss"] is not None and not isinstance(python["gauss"], float):
        raise _Bad(f"{key}.python.gauss", f"must be a float or null, got {_type_name(python['gauss'])}")
    numpy_keys = ("name", "keys", "pos", "has_gauss", "cached_gaussian")
    numpy = _mapping(plain["numpy"], f"{key}.numpy", numpy_keys)
    _only_keys(numpy, f"{key}.numpy", numpy_keys)
    if numpy["name"] != "MT19937":
        raise _Bad(f"{key}.numpy.name", f"must be 'MT19937', got {numpy['name']!r}")
    _tensor(numpy["keys"], f"{key}.numpy.keys", torch.int64, 624)
    if int(numpy["keys"].min()) < 0 or int(numpy["keys"].max()) > 2**32 - 1:
        raise _Bad(f"{key}.numpy.keys", "must hold 32-bit unsigned values")
    _int(numpy["pos"], f"{key}.numpy.pos", 0, 624)
    _int(numpy["has_gauss"], f"{key}.numpy.has_gauss", 0, 1)
    if not isinstance(numpy["cached_gaussian"], float):
        raise _Bad(f"{key}.numpy.cached_gaussian", "must be a float")
    _tensor(plain["torch"], f"{key}.torch", torch.uint8, torch.get_rng_state().numel())  # this torch's size
    cuda = plain.get("cuda") or []
    if not isinstance(cuda, (list, tuple)) or len(cuda) > 4096:
        raise _Bad(f"{key}.cuda", "must be a list of uint8 tensors")
    for index, item in enumerate(cuda):
        _tensor(item, f"{key}.cuda.{index}", torch.uint8)
        if item.numel() > 1 << 10:
            raise _Bad(f"{key}.cuda.{index}", "is larger than a CUDA generator state (16 bytes)")


def _optimizer(value: Any, key: str) -> None:
    plain = _mapping(value, key, ("state", "param_groups"))
    state, groups = plain["state"], plain["param_groups"]
    if not isinstance(state, Mapping):
        raise _Bad(f"{key}.state", f"must be a mapping, got {_type_name(state)}")
    if not isinstance(groups, (list, tuple)) or not groups:
        raise _Bad(f"{key}.param_groups", "must be a non-empty list")
    owned: set[int] = set()
    for index, group in enumerate(groups):
        where = f"{key}.param_groups.{index}"
        _mapping(group, where, ("params",))
        check_plain(group, where)
        params = group["params"]
        if not isinstance(params, (list, tuple)):
            raise _Bad(f"{where}.params", f"must be a list of parameter ids, got {_type_name(params)}")
        for position, item in enumerate(params):
            owned.add(_int(item, f"{where}.params.{position}", 0, 10**9))
    for param_id, entry in state.items():
        where = f"{key}.state.{param_id}"
        _int(param_id, where, 0, 10**9)
        if param_id not in owned:
            raise _Bad(where, "belongs to no parameter group")
        entry = _mapping(entry, where)
        for name, item in entry.items():
            if not isinstance(name, str) or not isinstance(item, (torch.Tensor, int, float)):
                raise _Bad(f"{where}.{name}", f"must be a tensor or a number, got {_type_name(item)}")


def _scheduler(value: Any, key: str) -> None:
    """The schedule's position (informational: the lr follows progress.global_step); known keys typed."""
    plain = _mapping(value, key)
    check_plain(plain, key)
    if "kind" in plain:
        _text(plain["kind"], f"{key}.kind")
    for name in ("global_step", "total_steps"):
        if name in plain:
            _int(plain[name], f"{key}.{name}")


_BEST_KEYS = ("name", "value", "epoch", "val_loss", "chosen_by")


def _best(value: Any, key: str) -> None:
    if value is None:
        return
    plain = _mapping(value, key, ("name", "value", "epoch"))
    extra = sorted(str(name) for name in plain if name not in _BEST_KEYS)
    if extra:
        raise _Bad(f"{key}.{extra[0]}", f"is not part of a best-metric entry ({', '.join(_BEST_KEYS)})")
    _number(plain.get("val_loss"), f"{key}.val_loss")
    if plain.get("chosen_by") is not None:
        _text(plain["chosen_by"], f"{key}.chosen_by")
    _text(plain["name"], f"{key}.name")
    number = plain["value"]
    if number is not None and (isinstance(number, bool) or not isinstance(number, (int, float))):
        raise _Bad(f"{key}.value", f"must be a number or null, got {_type_name(number)}")
    if isinstance(number, int) and abs(number) > 2**53:
        raise _Bad(f"{key}.value", "is out of range")
    _int(plain["epoch"], f"{key}.epoch")


def _state_dict(value: Any, key: str) -> None:
    if value is None:
        return
    plain = _mapping(value, key)
    for name, item in plain.items():
        if not isinstance(name, str) or not isinstance(item, torch.Tensor):
            raise _Bad(f"{key}.{name}", f"must be a tensor, got {_type_name(item)}")


_DIAG_INTS = ("steps", "applied_steps", "nan_loss", "inf_loss", "nan_grad", "inf_grad", "skipped_steps",
              "oom_skipped_steps", "zero_grad_steps", "bad_images_skipped")
_DIAG_NUMBERS = ("grad_norm_last", "grad_norm_max", "total_sum")
_DIAG_TABLES = ("component_sums", "component_counts", "bad_components", "clipped_steps")


def _number(value: Any, key: str, *, optional: bool = True) -> None:
    if value is None and optional:
        return
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise _Bad(key, f"must be a number, got {_type_name(value)}")


def _diagnostics_scope(value: Any, key: str) -> None:
    if value is None:
        return
    plain = _mapping(value, key)
    for name, item in plain.items():
        where = f"{key}.{name}"
        if name in _DIAG_INTS:
            _int(item, where)
        elif name == "first_bad_step":
            if item is not None:
                _int(item, where)
        elif name in _DIAG_NUMBERS:
            _number(item, where)
        elif name in _DIAG_TABLES:
            for component, number in _mapping(item, where).items():
                _text(component, f"{where}.{component}")
                _number(number, f"{where}.{component}", optional=False)
        elif name == "bad_image_ids":
            if not isinstance(item, (list, tuple)):
                raise _Bad(where, f"must be a list of image ids, got {_type_name(item)}")
            for index, image_id in enumerate(item):
                _int(image_id, f"{where}.{index}", -(2**63), 2**63 - 1)
        # other names: fields of a newer version, dropped when read (bounded by check_plain)


def _train_state(value: Any, key: str) -> None:
    if value is None:
        return
    plain = _mapping(value, key)
    check_plain(plain, key)
    report = plain.get("report")
    if report is not None:
        report = _mapping(report, f"{key}.report")
        _best(report.get("best"), f"{key}.report.best")
        history = report.get("history")
        if history is not None and not isinstance(history, (list, tuple)):
            raise _Bad(f"{key}.report.history", f"must be a list, got {_type_name(history)}")
        for index, item in enumerate(history or []):
            _mapping(item, f"{key}.report.history.{index}")
        warnings = report.get("warnings")
        if warnings is not None and not isinstance(warnings, (list, tuple)):
            raise _Bad(f"{key}.report.warnings", f"must be a list, got {_type_name(warnings)}")
        for index, item in enumerate(warnings or []):
            _mapping(item, f"{key}.report.warnings.{index}")
        _number(report.get("elapsed_s"), f"{key}.report.elapsed_s")
        if report.get("sessions") is not None:
            _int(report["sessions"], f"{key}.report.sessions")
    diagnostics = plain.get("diagnostics")
    if diagnostics is not None:
        diagnostics = _mapping(diagnostics, f"{key}.diagnostics")
        _diagnostics_scope(diagnostics.get("epoch"), f"{key}.diagnostics.epoch")
        _diagnostics_scope(diagnostics.get("run"), f"{key}.diagnostics.run")
        for name, scope in _mapping(diagnostics.get("stages") or {}, f"{key}.diagnostics.stages").items():
            _diagnostics_scope(scope, f"{key}.diagnostics.stages.{name}")
    if plain.get("consecutive_bad") is not None:
        _int(plain["consecutive_bad"], f"{key}.consecutive_bad")
    first_bad = plain.get("first_bad")
    if first_bad is not None:
        if not isinstance(first_bad, (list, tuple)) or len(first_bad) != 2 or not isinstance(first_bad[1], (list, tuple)):
            raise _Bad(f"{key}.first_bad", "must be [step, [component names]] or null")
        _int(first_bad[0], f"{key}.first_bad.0")


def _text_value(value: Any, key: str) -> None:
    if value is not None:
        _text(value, key, 1000)


def _profile(value: Any, key: str) -> None:
    if value not in PROFILE_NAMES:
        raise _Bad(key, f"must be one of {list(PROFILE_NAMES)}, got {value!r}")


KEY_VALIDATORS: dict[str, Validator] = {
    fmt.KEY_PROFILE: _profile,
    fmt.KEY_APEX_VERSION: _text_value,
    fmt.KEY_CONFIG: _config,
    fmt.KEY_CATEGORIES: _categories,
    fmt.KEY_INPUT_SIZE: lambda value, key: None if value is None else _input_size(value, key),
    fmt.KEY_PROGRESS: lambda value, key: None if value is None else _progress(value, key),
    fmt.KEY_RNG: lambda value, key: None if value is None else _rng(value, key),
    fmt.KEY_OPTIMIZER: lambda value, key: None if value is None else _optimizer(value, key),
    fmt.KEY_SCHEDULER: lambda value, key: None if value is None else _scheduler(value, key),
    fmt.KEY_BEST: _best,
    fmt.KEY_DATASET_FINGERPRINT: _text_value,
    fmt.KEY_MODEL: _state_dict,
    fmt.KEY_TEACHER: _state_dict,
    fmt.KEY_EMA: _state_dict,
    fmt.KEY_ARCHITECTURE: lambda value, key: None if value is None else check_plain(_mapping(value, key), key),
    "train_state": _train_state,
}
_SKIP = {fmt.KEY_FORMAT, fmt.KEY_VERSION}


def _input_size_matches_config(payload: Mapping[str, Any]) -> None:
    """Apex-X writes `input_size` from the config it stores: a file where they differ was edited (predict
    would run at the edited size, e.g. 4096 x 4096 for a model trained at 64)."""
    size, config = payload.get(fmt.KEY_INPUT_SIZE), payload.get(fmt.KEY_CONFIG)
    model = config.get("model") if isinstance(config, Mapping) else None
    if size is None or not isinstance(model, Mapping):
        return
    stored = [model.get("input_height"), model.get("input_width")]
    if all(isinstance(value, int) for value in stored) and [int(size[0]), int(size[1])] != stored:
        raise _Bad(fmt.KEY_INPUT_SIZE, f"is {[int(size[0]), int(size[1])]} but the checkpoint's own config says "
                                       f"model.input_height/input_width {stored}")


def _profile_matches_config(payload: Mapping[str, Any]) -> None:
    """Apex-X writes `profile` from the config it stores: a file where they differ was edited (a forged stored
    config could otherwise pick another model, e.g. one whose backbone is fetched from a repository)."""
    profile, config = payload.get(fmt.KEY_PROFILE), payload.get(fmt.KEY_CONFIG)
    model = config.get("model") if isinstance(config, Mapping) else None
    stored = model.get("profile") if isinstance(model, Mapping) else None
    if profile is not None and stored is not None and stored != profile:
        raise _Bad(fmt.KEY_PROFILE, f"is {profile!r} but the checkpoint's own config says model.profile {stored!r}")


def validate_payload(payload: Mapping[str, Any], path: str) -> None:
    """Check every key of an Apex-X payload; raise CheckpointError naming the file and the first bad key."""
    token = _PAYLOAD_BUDGET.set([MAX_NODES, MAX_TOTAL_TEXT])
    try:
        for name, value in payload.items():
            if not isinstance(name, str):
                raise _Bad(str(name), f"payload keys must be texts, got {_type_name(name)}")
            if name in _SKIP:
                continue
            validator = KEY_VALIDATORS.get(name)
            if validator is not None:
                validator(value, name)
            else:
                check_plain(value, name)
        _input_size_matches_config(payload)
        _profile_matches_config(payload)
    except _Bad as bad:
        raise CheckpointError(
            f"{path}: checkpoint value '{bad.key}' {bad.rule}; the file is damaged or was not written by "
            "Apex-X, refusing to use it"
        ) from None
    except RecursionError:
        raise CheckpointError(f"{path}: checkpoint values are nested too deeply; refusing to use it") from None
    finally:
        _PAYLOAD_BUDGET.reset(token)


def describe_misfit(model: Mapping[str, tuple[int, ...]], weights: Mapping[str, tuple[int, ...]]) -> str | None:
    """What keeps `weights` (key -> shape) from fitting a model of `model` shapes, or None when they fit.
    Used with a model built on the meta device: a stored config that asks for another (e.g. a huge) model
    than its weights is refused before anything is allocated."""
    missing = sorted(key for key in model if key not in weights)
    unexpected = sorted(key for key in weights if key not in model)
    wrong = sorted(key for key in model if key in weights and tuple(model[key]) != tuple(weights[key]))
    if not (missing or unexpected or wrong):
        return None
    parts = [f"{len(missing)} missing key(s): {', '.join(missing[:5])}"] if missing else []
    if unexpected:
        parts.append(f"{len(unexpected)} unexpected key(s): {', '.join(unexpected[:5])}")
    if wrong:
        shown = ", ".join(f"{key} checkpoint {list(weights[key])} vs model {list(model[key])}" for key in wrong[:3])
        parts.append(f"{len(wrong)} shape mismatch(es): {shown}")
    model_numel, file_numel = (sum(math.prod(shape) for shape in table.values()) for table in (model, weights))
    return (f"does not fit the model: the config stored in the checkpoint builds {model_numel:,} parameters, "
            f"its weights hold {file_numel:,} values; " + "; ".join(parts))


__all__ = ["describe_misfit", "KEY_VALIDATORS", "MAX_DEPTH", "MAX_NODES", "check_plain", "plain_copy", "tensor_problem",
           "validate_payload"]
