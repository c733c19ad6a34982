"""Shared test setup: offline, headless, interpreter-mode Triton on CPU-only machines."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("MPLBACKEND", "Agg")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
# The suite trains on the eager torch loss path: "auto" would compile the mask and boundary losses in every
# training subprocess (~40 s cold per loss on 2 cores). The compiled path has its own parity tests
# (tests/test_kernels, backend "compiled-cpu") and tests/test_kernels/test_kernels_dispatch.py checks what auto picks.
os.environ.setdefault("APEX_X_KERNELS", "torch")
# Passed dataset checks are cached (data.check_cache): keep the suite's cache out of the home folder.
os.environ.setdefault("APEX_X_CACHE_DIR", tempfile.mkdtemp(prefix="apex_x_test_cache_"))

import torch  # noqa: E402  (after the environment above)

if not torch.cuda.is_available():
    # Triton kernels run on CPU tensors through the interpreter; must be set before triton is imported.
    os.environ.setdefault("TRITON_INTERPRET", "1")

import pytest  # noqa: E402


def pytest_configure(config: pytest.Config) -> None:
    """Refuse to run when a test module or package would shadow an installed module (its name taken on sys.path)."""
    from test_foundation.package_names import collisions

    found = collisions(Path(__file__).resolve().parent)
    if found:
        raise pytest.UsageError("a test module shadows an installed one:\n  " + "\n  ".join(found))


@pytest.fixture(scope="session")
def shapes_dataset(tmp_path_factory: pytest.TempPathFactory):  # noqa: ANN201 - ShapesPaths, imported lazily
    """A small built-in shapes dataset on disk (24 train / 8 val images, 128 px, 3 classes), written once.

    Returns `apex_x.adapters.datasets.shapes_writer.ShapesPaths`: `.train_images`, `.train_annotations`,
    `.val_images`, `.val_annotations`, `.data_config()` and `.config_overrides()` (for load_config).
    Read-only for tests: write a fresh one with `write_shapes_dataset` to modify files.
    """
    from apex_x.adapters.datasets.shapes_writer import write_shapes_dataset

    return write_shapes_dataset(tmp_path_factory.mktemp("shapes_dataset"), train=24, val=8, size=128, seed=0)


FAKE_COMMIT = "fedcba9876543210fedcba9876543210fedcba98"


def lay_out_timm_download(hub_dir, model_name: str, *, seed: int = 0) -> dict:
    """A random-init timm `model_name` saved in a Hugging Face hub cache folder (`<HF_HOME>/hub`) under its real
    hub id (e.g. timm/lcnet_050.ra2_in1k), laid out as a first download leaves it: blobs/<hash> files,
    snapshots/<commit>/{model.safetensors, config.json} symlinks to them, refs/main. Returns the saved tensors."""
    import hashlib
    import json
    from pathlib import Path

    import timm
    from safetensors.torch import save_file
    from timm.models import get_pretrained_cfg

    torch.manual_seed(seed)
    model = timm.create_model(model_name, pretrained=False)
    state = {key: value.detach().clone().contiguous() for key, value in model.state_dict().items()}
    repo_id = get_pretrained_cfg(model_name).hf_hub_id
    repo = Path(hub_dir) / ("models--" + repo_id.replace("/", "--"))
    (repo / "blobs").mkdir(parents=True, exist_ok=True)
    snapshot = repo / "snapshots" / FAKE_COMMIT
    snapshot.mkdir(parents=True, exist_ok=True)
    staging = repo / "staging.safetensors"
    save_file(state, str(staging))
    config = json.dumps({"architecture": model_name, "num_classes": 1000, "num_features": model.num_features}).encode()
    files = {"model.safetensors": staging.read_bytes(), "config.json": config}
    staging.unlink()
    for name, data in files.items():
        # LFS files are stored under their sha256, small git files under their git blob sha1: both are hex names.
        digest = hashlib.sha256(data).hexdigest() if name.endswith(".safetensors") else hashlib.sha1(
            b"blob %d\0" % len(data) + data).hexdigest()
        (repo / "blobs" / digest).write_bytes(data)
        link = snapshot / name
        if not link.exists():
            link.symlink_to(Path("..") / ".." / "blobs" / digest)
    (repo / "refs").mkdir(exist_ok=True)
    (repo / "refs" / "main").write_text(FAKE_COMMIT)
    return state


@pytest.fixture(scope="session")
def timm_download():  # noqa: ANN201 - the helper function itself
    """lay_out_timm_download(hub_dir, model_name, seed=0) -> the saved state dict (see its docstring)."""
    return lay_out_timm_download
