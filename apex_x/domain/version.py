"""The version of Apex-X (kept equal to pyproject.toml's by a test): written into checkpoints and reports."""

__version__ = "0.1.0"
