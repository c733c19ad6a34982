"""The container's string-wired providers (`_lazy("module:Name")`, `_attr("module:Name")`) all resolve: a typo
in a module path or a name fails here, not the first user who reaches that provider."""

from __future__ import annotations

import importlib
import re

import pytest

from apex_x import container

from .conftest import REPO_ROOT

_WIRED = re.compile(r"""_(?:lazy|attr)\(\s*["']([\w.]+:\w+)["']""")


def test_every_wired_target_is_recorded() -> None:
    in_source = _WIRED.findall((REPO_ROOT / "apex_x" / "container.py").read_text())
    assert in_source and set(in_source) == set(container.TARGETS)


@pytest.mark.parametrize("target", sorted(set(container.TARGETS)))
def test_every_wired_target_resolves(target: str) -> None:
    module_name, _, attribute = target.partition(":")
    module = importlib.import_module(module_name)
    assert hasattr(module, attribute), f"{module_name} has no {attribute!r} (container wires {target!r})"


def test_every_provider_of_the_default_container_is_reachable() -> None:
    root = container.create_container()
    for name in ("model_profile", "preflight", "load_model", "checkpoint_store", "configure_logging",
                 "check_output_file", "state_load_report"):
        assert getattr(root, name)() is not None, name
