"""The checkpoint payload contract: a format tag + version and plain keys (tensors and plain values only)."""

from __future__ import annotations

FORMAT_TAG = "apex-x-checkpoint"
FORMAT_VERSION = 1

# Keys of a full Apex-X training checkpoint (every value is a tensor or a plain Python value).
KEY_FORMAT = "format"  # FORMAT_TAG
KEY_VERSION = "format_version"  # FORMAT_VERSION
KEY_APEX_VERSION = "apex_x_version"
KEY_PROFILE = "profile"  # "small" | "worldclass"
KEY_MODEL = "model"  # student weights (profile small)
KEY_TEACHER = "teacher"  # TeacherModelV3 weights (profile worldclass), the user guide's `teacher` layout
KEY_EMA = "ema"  # EMA weights (same layout as the model's), or None
KEY_OPTIMIZER = "optimizer"
KEY_SCHEDULER = "scheduler"
KEY_SCALER = "scaler"
KEY_RNG = "rng"  # {"python": [...], "numpy": {...}, "torch": uint8 tensor, "cuda": [uint8 tensors]}
KEY_PROGRESS = "progress"  # {"stage_index", "stage_name", "epoch", "step_in_epoch", "global_step", "finished"}
KEY_BEST = "best"  # {"name", "value", "epoch"}
KEY_CONFIG = "config"  # effective config, plain dict (ApexConfig.to_plain())
KEY_CATEGORIES = "categories"  # CategoryMap.to_plain(): original ids and names, index = contiguous id
KEY_DATASET_FINGERPRINT = "dataset_fingerprint"
KEY_INPUT_SIZE = "input_size"  # [height, width]
KEY_ARCHITECTURE = "architecture"  # SegmentationModel.architecture(): plain values to rebuild it offline

# Layouts the secure loader accepts for model weights, in order of preference (the user guide's section 4).
WEIGHT_LAYOUT_KEYS = ("model_state_dict", "state_dict", "model", "teacher", "ema_model", "ema")


def weights_key_for_profile(profile: str) -> str:
    """Where a full checkpoint keeps the model weights of a profile."""
    return KEY_TEACHER if profile == "worldclass" else KEY_MODEL
