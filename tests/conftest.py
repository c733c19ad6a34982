"""Shared test setup: offline, headless, interpreter-mode Triton on CPU-only machines."""

from __future__ import annotations

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("MPLBACKEND", "Agg")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import torch  # noqa: E402  (after the environment above)

if not torch.cuda.is_available():
    # Triton kernels run on CPU tensors through the interpreter; must be set before triton is imported.
    os.environ.setdefault("TRITON_INTERPRET", "1")

import pytest  # noqa: E402


@pytest.fixture(scope="session")
def shapes_dataset(tmp_path_factory: pytest.TempPathFactory):  # noqa: ANN201 - ShapesPaths, imported lazily
    """A small built-in shapes dataset on disk (24 train / 8 val images, 128 px, 3 classes), written once.

    Returns `apex_x.adapters.datasets.shapes_writer.ShapesPaths`: `.train_images`, `.train_annotations`,
    `.val_images`, `.val_annotations`, `.data_config()` and `.config_overrides()` (for load_config).
    Read-only for tests: write a fresh one with `write_shapes_dataset` to modify files.
    """
    from apex_x.adapters.datasets.shapes_writer import write_shapes_dataset

    return write_shapes_dataset(tmp_path_factory.mktemp("shapes_dataset"), train=24, val=8, size=128, seed=0)
