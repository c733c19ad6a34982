"""Building an inference model from a checkpoint payload: what it refuses, which weights it takes."""

from __future__ import annotations

import pytest
import torch

from apex_x.application.engine.distributed import resolve_device
from apex_x.application.inference import build_inference_model, checkpoint_config
from apex_x.domain import checkpoint_format as fmt
from apex_x.domain.errors import CheckpointError, UserError


def _build(payload, fakes, **kwargs):
    factory = fakes.FakeFactory()
    model = build_inference_model(
        payload,
        path="run/best.pt",
        profile_for=lambda config: factory,
        device=torch.device("cpu"),
        **kwargs,
    )
    return model, factory


def test_ema_weights_are_loaded_when_present(fakes) -> None:
    model, factory = _build(fakes.fake_payload(ema=True), fakes)
    assert model.weights == "ema"
    assert torch.equal(model.network.scale, torch.full((2,), 3.0))
    assert not model.network.training
    assert factory.built[0][1] == 2  # the checkpoint's class count
    assert model.input_size == (64, 96)
    assert model.categories == fakes.CATEGORIES
    assert model.best == {"name": "segm_AP", "value": 1.0, "epoch": 2}


def test_model_weights_without_ema(fakes) -> None:
    model, _ = _build(fakes.fake_payload(ema=False), fakes)
    assert model.weights == "model"
    assert torch.equal(model.network.scale, torch.full((2,), 2.0))


def test_model_overrides_apply_on_top_of_the_checkpoint(fakes) -> None:
    model, factory = _build(fakes.fake_payload(), fakes, model_overrides={"score_threshold": 0.5, "input_height": 128})
    assert model.config.model.score_threshold == 0.5
    assert model.input_size == (128, 96)
    assert factory.built[0][0].score_threshold == 0.5


def test_invalid_override_names_the_key(fakes) -> None:
    with pytest.raises(UserError, match="model.score_threshold"):
        _build(fakes.fake_payload(), fakes, model_overrides={"score_threshold": 7.0})


def test_weights_that_do_not_fit_are_reported(fakes) -> None:
    payload = fakes.fake_payload(ema=False)
    payload[fmt.KEY_MODEL] = {"scale": torch.ones(5), "extra.weight": torch.ones(1)}
    with pytest.raises(CheckpointError, match="run/best.pt does not fit the model: .*unexpected key.*extra.weight"):
        _build(payload, fakes)


@pytest.mark.parametrize(
    ("mutate", "message"),
    [
        (lambda p: {"weight": torch.ones(1)}, "not an Apex-X training checkpoint"),
        (lambda p: {**p, fmt.KEY_VERSION: 99}, "format version 99 is not supported"),
        (lambda p: {**p, fmt.KEY_VERSION: 0}, "format version 0 is not supported"),
        (lambda p: {k: v for k, v in p.items() if k != fmt.KEY_CONFIG}, "no 'config' entry"),
        (lambda p: {**p, fmt.KEY_CONFIG: {"model": {"profile": "huge"}}}, "config stored in the checkpoint is invalid at model.profile"),
    ],
)
def test_payloads_that_are_not_usable_checkpoints_are_refused(fakes, mutate, message) -> None:
    with pytest.raises(CheckpointError, match=message) as caught:
        checkpoint_config(mutate(fakes.fake_payload()), "some/file.pt")
    assert "some/file.pt" in str(caught.value)


def test_resolve_device() -> None:
    assert resolve_device("cpu") == torch.device("cpu")
    assert resolve_device("auto").type in {"cpu", "cuda"}
    if not torch.cuda.is_available():
        with pytest.raises(UserError, match="runtime.device: CUDA was requested but torch sees no CUDA device"):
            resolve_device("cuda")


def test_architecture_is_built_without_pretrained_weights_or_backbone_files(fakes) -> None:
    from apex_x.domain.config import ApexConfig

    factory = fakes.FakeFactory()
    settings = ApexConfig.model_validate({"model": {"backbone_weights": "/nowhere/backbone.pth"}})
    build_inference_model(
        fakes.fake_payload(config=settings),
        path="ck.pt",
        profile_for=lambda config: factory,
        device=torch.device("cpu"),
    )
    assert factory.pretrained is False
    assert factory.built[0][0].backbone_weights is None  # every weight comes from the checkpoint
