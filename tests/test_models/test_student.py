"""StudentModelFactory: outputs, parameter groups, input validation and local backbone weights."""

from __future__ import annotations

import pytest
import torch

from apex_x.adapters.models.backbone import TimmBackbone
from apex_x.adapters.models.student import StudentModelFactory
from apex_x.domain.config import ModelConfig
from apex_x.domain.errors import CheckpointError, ConfigError
from apex_x.domain.ports import SegmentationModel

TINY = {"backbone": "lcnet_050", "input_height": 64, "input_width": 96, "neck_channels": 32,
        "width_multiplier": 1.0, "num_prototypes": 8}


def _config(**changes) -> ModelConfig:
    return ModelConfig(**{**TINY, **changes})


def test_forward_outputs_have_the_documented_shapes() -> None:
    model = StudentModelFactory().build(_config(), num_classes=3)
    assert isinstance(model, SegmentationModel)
    images = torch.randint(0, 256, (2, 3, 64, 96), dtype=torch.uint8)
    outputs = model(images)
    anchors = 8 * 12 + 4 * 6 + 2 * 3
    expected = {
        "cls_logits": (2, anchors, 3), "box_ltrb": (2, anchors, 4), "boxes": (2, anchors, 4),
        "quality": (2, anchors), "mask_coeffs": (2, anchors, 8), "prototypes": (2, 8, 16, 24),
        "anchor_points": (anchors, 2), "strides": (anchors,),
    }
    assert {key: tuple(value.shape) for key, value in outputs.items()} == expected
    assert bool((outputs["box_ltrb"] > 0).all())
    boxes, points = outputs["boxes"], outputs["anchor_points"]
    assert bool(((boxes[..., :2] <= points) & (boxes[..., 2:] >= points)).all())  # boxes contain their anchor


def test_parameter_groups_partition_the_parameters() -> None:
    model = StudentModelFactory().build(_config(), num_classes=2)
    groups = model.parameter_groups()
    assert set(groups) == {"backbone", "neck", "head", "mask"}
    grouped = [id(p) for params in groups.values() for p in params]
    assert len(grouped) == len(set(grouped)) == len(list(model.parameters()))
    assert all(groups[name] for name in groups)


@pytest.mark.parametrize(
    ("changes", "num_classes", "key"),
    [
        ({}, 0, "num_classes"),
        ({"num_classes": 5}, 3, "model.num_classes"),
        ({"input_height": 80}, 3, "model.input_height"),
        ({"mask_stride": 3}, 3, "model.mask_stride"),
        ({"backbone": "resnet_does_not_exist"}, 3, "model.backbone"),
        ({"backbone": "vit_tiny_patch16_224"}, 3, "model.backbone"),
    ],
)
def test_bad_inputs_are_clear_config_errors(changes: dict, num_classes: int, key: str) -> None:
    unchecked = _config().model_copy(update=changes)  # the factory checks again what the schema checks first
    with pytest.raises(ConfigError) as caught:
        StudentModelFactory().build(unchecked, num_classes=num_classes)
    assert caught.value.key == key
    assert key in str(caught.value)


def test_the_small_profile_refuses_another_profiles_config() -> None:
    from apex_x.adapters.models.profiles import get_profile

    with pytest.raises(ConfigError) as caught:
        get_profile("small").build(_config().model_copy(update={"profile": "worldclass"}), num_classes=3)
    assert caught.value.key == "model.profile" and "model.profile" in str(caught.value)


def test_local_backbone_weights_load_securely(tmp_path) -> None:
    source = TimmBackbone("lcnet_050")
    path = tmp_path / "backbone.pt"
    torch.save({"state_dict": {f"module.{k}": v for k, v in source.body.state_dict().items()}}, path)
    model = StudentModelFactory().build(_config(backbone_weights=str(path)), num_classes=3)
    for key, value in source.body.state_dict().items():
        assert torch.equal(model.backbone.body.state_dict()[key], value), key


def test_bad_backbone_weights_are_clear_errors(tmp_path) -> None:
    with pytest.raises(ConfigError, match="does not exist"):
        StudentModelFactory().build(_config(backbone_weights=str(tmp_path / "missing.pt")), num_classes=3)
    other = tmp_path / "other.pt"
    torch.save(TimmBackbone("lcnet_075").body.state_dict(), other)
    with pytest.raises(CheckpointError, match=r"other.pt \(model.backbone_weights\): its layout fits the backbone by no mapping: .* differ in shape"):
        StudentModelFactory().build(_config(backbone_weights=str(other)), num_classes=3)
    pickled = tmp_path / "pickled.pt"
    torch.save({"state_dict": {"weight": torch.zeros(1)}, "object": ModelConfig()}, pickled)
    with pytest.raises(CheckpointError, match="model.backbone_weights: refusing to load .*pickled Python objects .*ModelConfig"):
        StudentModelFactory().build(_config(backbone_weights=str(pickled)), num_classes=3)


def test_timm_full_model_weights_load_into_the_feature_extractor(tmp_path) -> None:
    import timm

    full = timm.create_model("cs3darknet_s", pretrained=False)  # stage names differ in features_only form
    path = tmp_path / "full.pt"
    torch.save(full.state_dict(), path)
    backbone = TimmBackbone("cs3darknet_s", weights_path=str(path))
    state = backbone.body.state_dict()
    assert torch.equal(state["stem_conv1.conv.weight"], full.state_dict()["stem.conv1.conv.weight"])
    key = next(k for k in state if k.startswith("stages_3"))
    assert torch.equal(state[key], full.state_dict()[key.replace("stages_3", "stages.3")])


def test_images_without_objects_train_and_predict() -> None:
    from apex_x.domain.types import LossSettings

    from .shape_batches import make_shapes_batch

    model = StudentModelFactory().build(_config(input_width=64), num_classes=3)
    batch = make_shapes_batch(batch_size=2, size=64, empty_images=(0, 1))
    assert not batch.valid.any()
    losses = model.compute_losses(model(batch.images), batch, LossSettings(weights={"det": 1.0, "seg": 1.0, "boundary": 1.0}))
    assert set(losses) == {"det", "seg", "boundary"} and all(torch.isfinite(v) for v in losses.values())
    sum(losses.values()).backward()
    assert all(p.grad is not None for p in model.parameter_groups()["mask"])
    model.eval()
    with torch.no_grad():
        detections = model.postprocess(model(batch.images), batch.metas)
    assert len(detections) == 2 and all(d.masks.shape[1:] == (64, 64) for d in detections)
