"""The packages each preflight profile needs, with the minimum versions of pyproject.toml."""

from __future__ import annotations

import re
from dataclasses import dataclass

from apex_x.installation import install_command

PROFILES = ("base", "worldclass")
MINIMUM_PYTHON = "3.10"


@dataclass(frozen=True)
class Requirement:
    """One dependency: pip name, import name, minimum version and why Apex-X needs it."""

    distribution: str
    import_name: str
    minimum: str
    extra: str | None  # None = core dependency; "worldclass" = the extra that installs it
    purpose: str
    needs_cuda: bool = False  # required only where CUDA is available on Linux (triton)

    @property
    def install_command(self) -> str:
        """The command that installs it for how Apex-X is installed here (wheel or editable checkout)."""
        return install_command(self.extra)


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

WORLDCLASS_REQUIREMENTS: tuple[Requirement, ...] = (
    Requirement("transformers", "transformers", "4.40", "worldclass", "DINOv2 backbone of TeacherModelV3"),
    Requirement("peft", "peft", "0.10", "worldclass", "LoRA adapters of TeacherModelV3"),
    Requirement("safetensors", "safetensors", "0.4", "worldclass", "safetensors weights export/import"),
)


def requirements_of(profile: str) -> tuple[Requirement, ...]:
    """Every requirement of a profile (worldclass includes base)."""
    if profile == "base":
        return BASE_REQUIREMENTS
    if profile == "worldclass":
        return BASE_REQUIREMENTS + WORLDCLASS_REQUIREMENTS
    raise ValueError(f"unknown preflight profile {profile!r}; choose from {', '.join(PROFILES)}")


def requirement_for_module(module_name: str) -> Requirement | None:
    """The requirement that provides a top-level module name (for 'No module named X' errors)."""
    top = module_name.split(".", 1)[0]
    for requirement in BASE_REQUIREMENTS + WORLDCLASS_REQUIREMENTS:
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
