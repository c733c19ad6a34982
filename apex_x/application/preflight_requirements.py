"""The base packages every preflight checks, with the minimum versions of pyproject.toml; a model profile adds
its own (ModelProfile.requirements), handed to the use case by the container."""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence

from apex_x.domain.environment import Requirement

BASE_PROFILE = "base"  # the preflight profile of the core dependencies alone
MINIMUM_PYTHON = "3.10"


BASE_REQUIREMENTS: tuple[Requirement, ...] = (
    Requirement("torch", "torch", "2.10", None, "tensors, autograd, CUDA; 2.10 fixes the weights_only CVEs"),
    Requirement("torchvision", "torchvision", "0.25", None, "box ops (NMS) and timm's image models"),
    Requirement("numpy", "numpy", "1.24", None, "arrays"),
    Requirement("timm", "timm", "1.0", None, "student backbones"),
    Requirement("pycocotools", "pycocotools", "2.0.7", None, "COCO annotations and bbox/segm AP"),
    Requirement("pydantic", "pydantic", "2.6", None, "typed config validation"),
    Requirement("dependency-injector", "dependency_injector", "4.41", None, "composition root"),
    Requirement("structlog", "structlog", "24.1", None, "structured logs"),
    Requirement("pyyaml", "yaml", "6.0", None, "YAML configs"),
    Requirement("pillow", "PIL", "10.0", None, "image decoding"),
    Requirement("tqdm", "tqdm", "4.66", None, "progress bars"),
    Requirement("matplotlib", "matplotlib", "3.7", None, "report plots"),
    Requirement("triton", "triton", "3.2", None, "fused loss kernels on CUDA", needs_cuda=True),
)

def requirements_of(profile: str, extra: Mapping[str, Sequence[Requirement]]) -> tuple[Requirement, ...]:
    """Every requirement of a preflight profile: base's, plus `extra[profile]` (a model profile's packages)."""
    if profile == BASE_PROFILE:
        return BASE_REQUIREMENTS
    if profile in extra:
        return BASE_REQUIREMENTS + tuple(extra[profile])
    raise ValueError(f"unknown preflight profile {profile!r}; choose from {', '.join([BASE_PROFILE, *extra])}")


def requirement_for_module(module_name: str, extra: Iterable[Requirement] = ()) -> Requirement | None:
    """The requirement (base's or one of `extra`) that provides a top-level module name (for 'No module named X')."""
    top = module_name.split(".", 1)[0]
    for requirement in (*BASE_REQUIREMENTS, *extra):
        if requirement.import_name == top:
            return requirement
    return None


def release_tuple(version: str) -> tuple[int, ...]:
    """The leading release numbers of a version: "2.14.1+cu128" -> (2, 14, 1), "0.21.0rc1" -> (0, 21, 0)."""
    match = re.match(r"\s*v?(\d+(?:\.\d+)*)", version)
    if not match:
        raise ValueError(f"not a version: {version!r}")
    return tuple(int(part) for part in match.group(1).split("."))


def at_least(version: str, minimum: str) -> bool:
    """Whether `version` >= `minimum`, comparing release numbers (missing parts count as 0)."""
    have, need = release_tuple(version), release_tuple(minimum)
    width = max(len(have), len(need))
    return have + (0,) * (width - len(have)) >= need + (0,) * (width - len(need))
