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
