"""apex-x export: ONNX (run with onnxruntime) and TorchScript files of a trained checkpoint hold the network
and its dense decoding; their raw outputs match eager torch and decode_exported gives the same detections as
the model's own post-processing. Bad inputs are clear errors."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

import apex_x
from apex_x.adapters.export.graph import ExportGraph
from apex_x.adapters.export.onnx_exporter import OnnxModelExporter
from apex_x.adapters.export.torchscript_exporter import TorchScriptModelExporter
from apex_x.adapters.models.postprocess import PostprocessSettings, detection_scores, postprocess_detections
from apex_x.api import load_model
from apex_x.domain.errors import ConfigError

pytest.importorskip("onnxruntime")
# (raw output, atol, rtol) of the exported runtimes against eager float32 torch on the CPU
TOLERANCES = {"boxes": (1e-3, 1e-4), "scores": (1e-5, 1e-4), "mask_coeffs": (1e-4, 1e-4), "prototypes": (1e-4, 1e-4)}
RUNNERS = {"onnx": OnnxModelExporter(), "torchscript": TorchScriptModelExporter()}


@pytest.fixture(scope="module")
def exported(trained_run: Any, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """Both formats of the trained tiny student, exported once (ONNX with a dynamic batch). Its head weights are
    perturbed (seeded) first: two steps of training leave every score equal, which would test nothing."""
    from apex_x.adapters.checkpoints.torch_store import TorchCheckpointStore

    folder = tmp_path_factory.mktemp("export")
    store, generator = TorchCheckpointStore(), torch.Generator().manual_seed(0)
    payload = store.load(str(trained_run.best))
    for key in ("model", "ema"):
        for name, tensor in payload[key].items():
            if name.startswith(("head.", "mask_head.")) and tensor.is_floating_point() and "running" not in name:
                tensor.add_(torch.randn(tensor.shape, generator=generator) * 0.3)
    checkpoint = folder / "best.pt"
    store.save(payload, str(checkpoint))
    results = {
        "onnx": apex_x.export(str(checkpoint), "onnx", output=folder / "model.onnx", dynamic_batch=True),
        "torchscript": apex_x.export(str(checkpoint), "torchscript", output=folder / "model.torchscript"),
    }
    return {"results": results, "model": load_model(str(checkpoint), device="cpu")}


def _separating_threshold(scores: torch.Tensor) -> float:
    """A score threshold in the widest gap between the 5th and 30th best scores: no detection sits near it."""
    ranked = torch.sort(scores.flatten(), descending=True).values[4:31]
    gaps = ranked[:-1] - ranked[1:]
    index = int(gaps.argmax())
    return float(ranked[index + 1] + gaps[index] / 2)


def _by_position(detections: Any) -> list[int]:
    """Detection order by (label, x1, y1): near-tied scores may swap places without changing the detections."""
    keys = [(int(label), round(float(box[0]), 1), round(float(box[1]), 1))
            for label, box in zip(detections.labels, detections.boxes, strict=True)]
    return sorted(range(len(keys)), key=keys.__getitem__)


def _images(trained_run: Any, count: int, size: tuple[int, int]) -> tuple[torch.Tensor, list[Any]]:
    from PIL import Image

    files = sorted(Path(trained_run.val_images).iterdir())[:count]
    pairs = [apex_x.letterbox(np.asarray(Image.open(path).convert("RGB")), size) for path in files]
    return torch.stack([tensor for tensor, _ in pairs]), [meta for _, meta in pairs]


@pytest.mark.parametrize("name", ["onnx", "torchscript"])
def test_raw_outputs_match_eager_torch(exported: dict[str, Any], trained_run: Any, name: str) -> None:
    result = exported["results"][name]
    images, _ = _images(trained_run, 3, result.input_size)  # a batch of 3: the ONNX batch is dynamic
    with torch.no_grad():
        eager = ExportGraph(exported["model"].network).eval()(images)
    got = RUNNERS[name].load(result.path, torch.device("cpu"))(images)
    for key, expected, actual in zip(("boxes", "scores", "mask_coeffs", "prototypes"), eager, got, strict=True):
        atol, rtol = TOLERANCES[key]
        assert actual.shape == expected.shape and actual.dtype == torch.float32, key
        assert torch.allclose(actual, expected, atol=atol, rtol=rtol), (key, (actual - expected).abs().max())


@pytest.mark.parametrize("name", ["onnx", "torchscript"])
def test_decoded_detections_equal_the_models_own(exported: dict[str, Any], trained_run: Any, name: str) -> None:
    result = exported["results"][name]
    metadata = json.loads(Path(result.metadata_path).read_text())
    images, metas = _images(trained_run, 2, tuple(metadata["input_size"]))
    model = exported["model"]
    with torch.no_grad():
        outputs = model.network(images)
    threshold = _separating_threshold(detection_scores(outputs))
    settings = PostprocessSettings(**{**metadata["postprocess"], "score_threshold": threshold})
    expected = postprocess_detections(outputs, metas, settings, metadata["mask_stride"])
    runner_outputs = RUNNERS[name].load(result.path, torch.device("cpu"))(images)
    decoded = apex_x.decode_exported([t.numpy() for t in runner_outputs], metas, metadata, score_threshold=threshold)
    assert 5 <= sum(len(item) for item in expected) <= 60
    for want, got in zip(expected, decoded, strict=True):
        assert len(want) == len(got)
        mine, theirs = _by_position(want), _by_position(got)
        assert torch.equal(want.labels[mine], got.labels[theirs])
        assert torch.allclose(want.scores[mine], got.scores[theirs], atol=1e-5)
        assert torch.allclose(want.boxes[mine], got.boxes[theirs], atol=1e-3)
        assert (want.masks[mine] != got.masks[theirs]).float().mean() < 1e-3  # pixels on the 0-logit edge may flip


def test_the_metadata_names_classes_sizes_and_settings(exported: dict[str, Any], trained_run: Any) -> None:
    result = exported["results"]["onnx"]
    metadata = json.loads(Path(result.metadata_path).read_text())
    model = exported["model"]
    assert metadata["classes"] == [{"id": i, "name": n} for i, n in zip(model.categories.original_ids,
                                                                         model.categories.names, strict=True)]
    assert metadata["input_size"] == list(model.input_size) and metadata["input"]["shape"][0] == "batch"
    assert metadata["outputs"] == ["boxes", "scores", "mask_coeffs", "prototypes"]
    import onnx

    props = {p.key: p.value for p in onnx.load(result.path).metadata_props}
    assert json.loads(props["apex_x_export"]) == metadata  # the same JSON inside the file
    extra = {"apex_x_export.json": ""}
    torch.jit.load(exported["results"]["torchscript"].path, _extra_files=extra)
    assert json.loads(extra["apex_x_export.json"])["export_format"] == "torchscript"


def test_the_cli_exports_beside_the_checkpoint_and_refuses_bad_sizes(trained_run: Any, tmp_path: Path,
                                                                     capsys: pytest.CaptureFixture[str]) -> None:
    import shutil

    from apex_x.cli import main

    checkpoint = tmp_path / "best.pt"
    shutil.copy(trained_run.best, checkpoint)
    assert main(["export", "--checkpoint", str(checkpoint), "--format", "torchscript", "--input-size", "96x64"]) == 0
    assert (tmp_path / "best.torchscript").is_file() and (tmp_path / "best.torchscript.json").is_file()
    assert "exported torchscript" in capsys.readouterr().out
    assert main(["export", "--checkpoint", str(checkpoint), "--format", "torchscript", "--input-size", "100x64"]) == 2
    err = capsys.readouterr().err
    assert "--input-size" in err and "multiple of 32" in err and "96 or 128" in err and "Traceback" not in err
    assert main(["export", "--checkpoint", str(checkpoint), "--input-size", "9000x64"]) == 2
    assert "less than or equal to 4096" in capsys.readouterr().err
    assert main(["export", "--checkpoint", str(checkpoint), "--input-size", "big"]) == 2
    assert "expected HEIGHTxWIDTH" in capsys.readouterr().err
    with pytest.raises(ConfigError, match="unknown export format 'tflite'; valid: 'onnx' or 'torchscript'"):
        apex_x.export(str(checkpoint), "tflite")


def test_a_model_without_dense_outputs_cannot_be_exported() -> None:
    from apex_x.adapters.export.graph import export_graph
    from apex_x.domain.errors import UserError

    class Plain(torch.nn.Module):
        def forward(self, images: torch.Tensor) -> dict[str, torch.Tensor]:
            return {"boxes": images.float()}

    with pytest.raises(UserError, match=r"lack \['cls_logits', 'quality', 'mask_coeffs', 'prototypes'\]"):
        export_graph(Plain(), (32, 32))


def test_benchmark_times_each_stage_of_each_format(trained_run: Any, tmp_path: Path,
                                                   capsys: pytest.CaptureFixture[str]) -> None:
    from apex_x.cli import main

    output = tmp_path / "bench.json"
    code = main(["benchmark", "--checkpoint", str(trained_run.best), "--formats", "eager,torchscript",
                 "--batch-size", "2", "--warmup", "1", "--iterations", "3", "--threads", "1",
                 "--image", str(trained_run.val_images), "--output-json", str(output)])
    assert code == 0
    report = json.loads(output.read_text())
    assert [item["format"] for item in report["formats"]] == ["eager", "torchscript"]
    for item in report["formats"]:
        assert item["status"] == "ok"
        stages = item["ms_per_image"]
        assert all(0 < stages[stage]["median"] <= stages[stage]["p90"] for stage in ("pre", "model", "post", "total"))
        assert stages["total"]["median"] >= stages["model"]["median"]
        assert item["images_per_s"] == pytest.approx(1000 / stages["total"]["median"], rel=0.01)
    assert report["model"]["parameters"] == sum(p.numel() for p in load_model(str(trained_run.best)).network.parameters())
    assert report["model"]["gflops"] > 0 and report["machine"]["threads"] == 1
    table = capsys.readouterr().out
    assert "torchscript" in table and "M parameters" in table and "GFLOPs" in table
    assert main(["benchmark", "--checkpoint", str(trained_run.best), "--formats", "eager,tflite"]) == 2
    assert "expected a comma-separated list of eager, torchscript, onnx" in capsys.readouterr().err
    for size, expected in (("65x64", "64 or 96"), ("9000x64", "less than or equal to 4096")):  # export's rule
        assert main(["benchmark", "--checkpoint", str(trained_run.best), "--input-size", size]) == 2
        err = capsys.readouterr().err
        assert "\nerror: --input-size" in err and expected in err and "internal error" not in err
