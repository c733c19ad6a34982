"""Model profiles: every name of the schema is a registered variant; the schema refuses other names; each
profile names its curriculum, weights key and input-size rule; nothing heavy is imported to ask."""

from __future__ import annotations

import subprocess
import sys

import pytest
from pydantic import ValidationError

from apex_x.adapters.models.profiles import all_profiles, get_profile
from apex_x.domain import checkpoint_format as fmt
from apex_x.domain.config import ApexConfig, ModelConfig
from apex_x.domain.registry import MODEL_PROFILES


@pytest.mark.parametrize("name", MODEL_PROFILES.names())
def test_every_schema_name_is_a_registered_profile(name: str) -> None:
    profile = get_profile(name)
    assert profile.name == name
    assert profile.weights_key in fmt.MODEL_WEIGHT_KEYS
    settings = ApexConfig(model=ModelConfig(profile=name))
    stages = profile.default_stages(settings)
    assert stages and all(stage.losses for stage in stages)
    assert profile.input_size_problem(256, 256) is None
    assert "multiple of 32" in (profile.input_size_problem(250, 256) or "")


def test_the_schema_refuses_an_unknown_profile_listing_the_valid_ones() -> None:
    with pytest.raises(ValidationError, match=r"unknown model profile 'huge'; valid: 'small' or 'worldclass'"):
        ModelConfig(profile="huge")
    with pytest.raises(ValueError, match=r"unknown model profile 'huge'; valid: 'small' or 'worldclass'"):
        get_profile("huge")


def test_the_container_selects_the_profile_of_the_config() -> None:
    from apex_x.container import create_container

    for profile in all_profiles():
        settings = ApexConfig(model=ModelConfig(profile=profile.name))
        assert create_container(settings).model_profile() is profile


def test_asking_a_profile_imports_no_model_library() -> None:
    code = (
        "import sys; from apex_x.adapters.models.profiles import all_profiles, preflight_requirements; "
        "all_profiles(); preflight_requirements(); "
        "print(sorted(m for m in ('timm', 'transformers', 'peft') if m in sys.modules))"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=True)
    assert result.stdout.strip() == "[]"
