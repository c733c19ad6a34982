"""PredictImages over fakes: bad inputs are reported and the others processed; thresholds; batching."""

from __future__ import annotations

import pytest
import torch

from apex_x.application.predict import PredictImages
from apex_x.domain.errors import UserError


def _images() -> dict[str, torch.Tensor]:
    return {name: torch.zeros((30 + i, 40, 3), dtype=torch.uint8) for i, name in enumerate(["a.png", "b.png", "c.png"])}


def test_bad_inputs_are_reported_and_the_rest_is_processed(fakes, fake_inference_model) -> None:
    reader = fakes.FakeReader(_images(), folders={"dir/": ["b.png", "x.broken", "c.png"], "empty/": []})
    sink = fakes.RecordingSink()
    run = PredictImages(fake_inference_model, reader, sink, score_threshold=0.5, batch_size=2).execute(
        ["a.png", "missing.png", "dir/", "empty/"]
    )
    assert [item.path for item in run.predictions] == ["a.png", "b.png", "c.png"]
    assert [item.image_id for item in run.predictions] == [1, 2, 3]
    assert [failure.path for failure in run.failures] == ["missing.png", "empty/", "x.broken"]
    assert all(failure.path in failure.message for failure in run.failures)
    assert [(image_id, path, shape) for image_id, path, shape, _ in sink.added] == [
        (1, "a.png", (30, 40, 3)),
        (2, "b.png", (31, 40, 3)),
        (3, "c.png", (32, 40, 3)),
    ]
    assert run.outputs == ["fake://predictions.json"]
    assert sink.summary["failures"][0] == {"path": "missing.png", "error": "missing.png: no such file or folder"}
    assert [image["height"] for image in sink.summary["images"]] == [30, 31, 32]
    assert fake_inference_model.network.seen_shapes == [(2, 3, 64, 96), (1, 3, 64, 96)]  # batched, input size


def test_score_threshold_filters_detections(fakes, fake_inference_model) -> None:
    reader = fakes.FakeReader(_images())
    high = PredictImages(fake_inference_model, reader, score_threshold=0.5).execute(["a.png"])
    low = PredictImages(fake_inference_model, reader, score_threshold=0.05).execute(["a.png"])
    assert len(high.predictions[0].detections) == 1
    assert high.predictions[0].detections.labels.tolist() == [1]
    assert len(low.predictions[0].detections) == 2 and low.num_detections == 2


def test_default_threshold_is_the_model_config(fakes, fake_inference_model) -> None:
    use_case = PredictImages(fake_inference_model, fakes.FakeReader(_images()))
    assert use_case.score_threshold == 0.05


def test_no_inputs_is_a_user_error(fakes, fake_inference_model) -> None:
    with pytest.raises(UserError, match="--image"):
        PredictImages(fake_inference_model, fakes.FakeReader({})).execute([])


def test_every_input_bad_gives_no_predictions_but_all_failures(fakes, fake_inference_model) -> None:
    sink = fakes.RecordingSink()
    run = PredictImages(fake_inference_model, fakes.FakeReader({}), sink).execute(["nope.png", "x.broken"])
    assert run.predictions == [] and not run.ok
    assert [failure.path for failure in run.failures] == ["nope.png", "x.broken"]
    assert sink.summary is not None and sink.summary["images"] == []
