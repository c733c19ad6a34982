"""Behaviour every backend must show: clip gates, NaN handling, empty inputs, fallbacks, bad inputs."""

from __future__ import annotations

import math

import pytest
import torch

from apex_x import kernels
from apex_x.kernels import reference

from .cases import BACKENDS, box_batch, mask_boxes, use_backend, value_and_grad

pytestmark = pytest.mark.filterwarnings("ignore::RuntimeWarning")


def _inputs(name: str, device: str, count: int = 6):
    """(function, prediction, positional args) of one loss with small random inputs."""
    gen = torch.Generator().manual_seed(11)
    if name == "focal":
        return kernels.focal_loss, torch.randn(count, 5, generator=gen), (torch.randint(-1, 5, (count,), generator=gen),)
    if name == "giou":
        return kernels.giou_loss, box_batch(count, gen), (box_batch(count, gen),)
    fn = kernels.mask_loss if name == "mask" else kernels.boundary_loss
    targets = (torch.rand(count, 7, 9, generator=gen) > 0.5).float()
    return fn, torch.randn(count, 7, 9, generator=gen), (targets, mask_boxes(count, 7, 9, gen))


LOSS_NAMES = ["focal", "giou", "mask", "boundary"]


def _to(args, device):
    return tuple(arg.to(device) for arg in args)


@pytest.mark.parametrize("name", LOSS_NAMES)
@pytest.mark.parametrize("backend,device", BACKENDS)
def test_a_clipped_component_has_zero_gradient(monkeypatch, name, backend, device):
    use_backend(monkeypatch, backend)
    fn, prediction, args = _inputs(name, device)
    free_value, free_grad = value_and_grad(fn, prediction.to(device), *_to(args, device))
    assert float(free_value) > 0.0 and free_grad.abs().sum() > 0
    clip = float(free_value) / 2
    value, grad = value_and_grad(fn, prediction.to(device), *_to(args, device), clip=clip)
    assert float(value) == pytest.approx(clip)
    assert torch.equal(grad, torch.zeros_like(grad))


@pytest.mark.parametrize("name", LOSS_NAMES)
@pytest.mark.parametrize("backend,device", BACKENDS)
def test_nan_input_gives_zero_value_and_nan_gradient_only_in_its_row(monkeypatch, name, backend, device):
    use_backend(monkeypatch, backend)
    fn, prediction, args = _inputs(name, device)
    prediction[1, 2] = math.nan  # a logit row / a box coordinate / a mask row
    value, grad = value_and_grad(fn, prediction.to(device), *_to(args, device))
    assert float(value) == 0.0  # nan_to_num
    assert grad[1].isnan().any()  # the poisoned row (box: NaN reaches the coordinates torch's chain reaches)
    if name != "giou":
        assert grad[1, 2].isnan().all()
    assert torch.equal(grad[0], torch.zeros_like(grad[0])) and torch.equal(grad[3:], torch.zeros_like(grad[3:]))


@pytest.mark.parametrize("name", LOSS_NAMES)
@pytest.mark.parametrize("backend,device", BACKENDS)
def test_empty_inputs_give_zero(monkeypatch, name, backend, device):
    use_backend(monkeypatch, backend)
    fn, prediction, args = _inputs(name, device)
    value, grad = value_and_grad(fn, prediction[:0].to(device), *(arg[:0].to(device) for arg in args))
    assert float(value) == 0.0 and grad.shape == prediction[:0].shape


@pytest.mark.parametrize("name", LOSS_NAMES)
@pytest.mark.parametrize("backend,device", BACKENDS)
def test_second_backward_with_retain_graph_gives_the_same_gradient(monkeypatch, name, backend, device):
    use_backend(monkeypatch, backend)
    fn, prediction, args = _inputs(name, device)
    leaf = prediction.to(device).requires_grad_(True)
    value = fn(leaf, *_to(args, device)) * 3.0
    first = torch.autograd.grad(value, leaf, retain_graph=True)[0]
    second = torch.autograd.grad(value, leaf)[0]
    torch.testing.assert_close(first, second)


@pytest.mark.parametrize("backend,device", BACKENDS)
def test_forward_without_grad_and_non_contiguous_logits(monkeypatch, backend, device):
    use_backend(monkeypatch, backend)
    logits = torch.randn(5, 8).t().to(device)  # (8, 5), non-contiguous
    targets = torch.tensor([0, 4, -1, 2, 1, -1, 3, 0], device=device)
    with torch.no_grad():
        value = kernels.focal_loss(logits, targets)
    expected = reference.focal_loss_reference(logits.cpu(), targets.cpu())
    torch.testing.assert_close(value.cpu(), expected)


def test_tensor_normalizer_and_weights_that_require_grad_get_reference_gradients():
    gen = torch.Generator().manual_seed(3)
    logits = torch.randn(6, 4, generator=gen)
    targets = torch.randint(-1, 4, (6,), generator=gen)
    grads = []
    for fn in (kernels.focal_loss, reference.focal_loss_reference):
        weights = torch.rand(6, generator=torch.Generator().manual_seed(1)).requires_grad_(True)
        normalizer = torch.tensor(2.5, requires_grad=True)
        fn(logits, targets, weights=weights, normalizer=normalizer).backward()
        grads.append((weights.grad, normalizer.grad))
    torch.testing.assert_close(grads[0], grads[1])


@pytest.mark.parametrize("backend,device", BACKENDS)
def test_bad_inputs_raise_clear_errors(monkeypatch, backend, device):
    use_backend(monkeypatch, backend)
    logits = torch.randn(4, 3, device=device)
    with pytest.raises(ValueError, match=r"focal_loss: class id 7 out of range for 3 classes"):
        kernels.focal_loss(logits, torch.tensor([0, 7, -1, 1], device=device))
    with pytest.raises(ValueError, match=r"focal_loss: targets must be \(4,\) class ids or \(4, 3\) soft"):
        kernels.focal_loss(logits, torch.rand(4, 2, device=device))
    with pytest.raises(ValueError, match=r"giou_loss: pred_boxes and target_boxes must both be \(N, 4\)"):
        kernels.giou_loss(torch.rand(3, 4, device=device), torch.rand(2, 4, device=device))
    with pytest.raises(ValueError, match=r"mask_loss: boxes must be \(2, 4\)"):
        kernels.mask_loss(torch.rand(2, 5, 5, device=device), torch.rand(2, 5, 5, device=device), torch.rand(3, 4))
    with pytest.raises(ValueError, match=r"boundary_loss: weights must be \(2,\)"):
        kernels.boundary_loss(
            torch.rand(2, 5, 5, device=device), torch.rand(2, 5, 5, device=device), weights=torch.rand(5)
        )


def test_clip_component_is_the_reference_definition():
    value = torch.tensor([math.nan, math.inf, 3.0, 0.5])
    assert torch.equal(kernels.clip_component(value, 1.0), torch.tensor([0.0, 1.0, 1.0, 0.5]))


@pytest.mark.parametrize("name", LOSS_NAMES)
def test_autocast_does_not_lower_the_loss_precision(monkeypatch, name):
    use_backend(monkeypatch, "torch")
    fn, prediction, args = _inputs(name, "cpu")
    expected, expected_grad = value_and_grad(fn, prediction, *args)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        value, grad = value_and_grad(fn, prediction, *args)
    assert value.dtype == torch.float32
    torch.testing.assert_close(value, expected)
    torch.testing.assert_close(grad, expected_grad)
