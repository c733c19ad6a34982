"""Loss components are registered variants: the stages, schedules, clips and messages read them from the
registry, and a stage naming an unknown component fails listing the valid names."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from apex_x.adapters.config_yaml import load_config
from apex_x.adapters.models.profiles import get_profile
from apex_x.application.engine.run_health import _clip_of
from apex_x.application.engine.schedules import evaluation_loss_settings, loss_settings
from apex_x.domain.config import TrainConfig
from apex_x.domain.config import effective_stages as effective_stages_of
from apex_x.domain.errors import ConfigError
from apex_x.domain.registry import LOSS_COMPONENTS, Registry, UnknownVariantError

REPO = Path(__file__).resolve().parents[2]


def test_the_registry_names_the_four_components_in_order() -> None:
    assert LOSS_COMPONENTS.names() == ("det", "seg", "boundary", "distill")
    assert [component.name for component in LOSS_COMPONENTS.all()] == list(LOSS_COMPONENTS.names())
    assert [c.name for c in LOSS_COMPONENTS.all() if c.auxiliary] == ["distill"]


def test_every_clip_is_read_through_the_component_from_a_real_config_key() -> None:
    train = load_config(None, ["train.loss_seg_component_clip=7.5"]).train
    for component in LOSS_COMPONENTS.all():
        field = component.clip_key.removeprefix("train.")
        assert field in TrainConfig.model_fields and component.clip(train) == getattr(train, field)
    assert _clip_of("seg", train) == (7.5, "train.loss_seg_component_clip")
    assert _clip_of("distill", train) == (train.loss_det_component_clip, "train.loss_det_component_clip")
    assert _clip_of("not_a_component", train) is None


def test_settings_carry_every_component_clip_and_the_det_knobs() -> None:
    train = load_config(None, ["train.loss_box_weight=3.0", "train.loss_box_warmup_epochs=0"]).train
    settings = loss_settings({"det": 1.0}, 0.5, train)
    assert set(settings.clips) == set(LOSS_COMPONENTS.names())
    assert settings.params["det"] == {"box_scale": train.loss_box_scale_end, "box_weight": 3.0,
                                      "quality_weight": train.loss_quality_weight}
    assert evaluation_loss_settings(train).weights == {"det": 1.0, "seg": 1.0, "boundary": 1.0}


def test_default_curricula_ask_the_registry() -> None:
    def effective_stages(settings):
        return effective_stages_of(settings, get_profile(settings.model.profile).default_stages(settings))

    small = effective_stages(load_config(None))
    assert [stage.losses for stage in small] == [{"det": 1.0}, {"det": 1.0, "seg": 1.0, "boundary": 1.0}]
    worldclass = effective_stages(load_config(None, ["model.profile=worldclass"]))
    assert all(stage.losses == {"det": 1.0, "seg": 1.0, "boundary": 1.0} for stage in worldclass)


def test_an_unknown_stage_component_lists_the_valid_names() -> None:
    with pytest.raises(ConfigError) as info:
        load_config(None, ["train.stages=[{name: a, losses: {dett: 1.0}}]"])
    message = str(info.value)
    assert "train.stages.0.losses.dett" in message
    assert "unknown loss component 'dett'; valid: 'det', 'seg', 'boundary' or 'distill'" in message


def test_a_registry_imports_a_variant_only_when_asked() -> None:
    registry: Registry[object] = Registry("thing", {"json_thing": "json"})
    assert registry.names() == ("json_thing",)
    with pytest.raises(UnknownVariantError, match="unknown thing 'x'; valid: 'json_thing'"):
        registry.get("x")
    with pytest.raises(UnknownVariantError, match="does not register"):
        registry.get("json_thing")  # the module imports but registers nothing


def test_validating_a_config_imports_no_component_module() -> None:
    code = ("import sys; from apex_x.adapters.config_yaml import load_config; "
            "load_config(None, ['train.stages=[{name: a, losses: {det: 1.0}}]']); "
            "print(sorted(m for m in sys.modules if m.startswith('apex_x.loss_components.')))")  # no component file
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, cwd=REPO,
                            env={"PYTHONPATH": str(REPO), "PATH": ""})
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]"


def test_default_stage_losses_are_registered_model_components_and_new_ones_are_opt_in() -> None:
    """A stage naming no losses turns on the table's defaults (no component module imported by the domain):
    registered, computed by the model (not auxiliary). Registering another component changes no config."""
    from apex_x.domain.config import StageConfig
    from apex_x.domain.registry import DEFAULT_LOSS_COMPONENTS, LOSS_COMPONENTS

    assert StageConfig(name="x").losses == dict.fromkeys(DEFAULT_LOSS_COMPONENTS, 1.0)
    assert all(not LOSS_COMPONENTS.get(name).auxiliary for name in DEFAULT_LOSS_COMPONENTS)
    original = LOSS_COMPONENTS._modules.copy()
    LOSS_COMPONENTS._modules["extra"] = "apex_x.loss_components.extra"  # registered, never imported here
    try:
        assert "extra" not in StageConfig(name="x").losses
        assert StageConfig(name="x", losses={"extra": 1.0}).losses == {"extra": 1.0}
    finally:
        LOSS_COMPONENTS._modules = original
