"""The checkpoint payload contract: a format tag + version and plain keys (tensors and plain values only)."""

from __future__ import annotations

FORMAT_TAG = "apex-x-checkpoint"
FORMAT_VERSION = 1

# Keys of a full Apex-X training checkpoint (every value is a tensor or a plain Python value).
KEY_FORMAT = "format"  # FORMAT_TAG
KEY_VERSION = "format_version"  # FORMAT_VERSION
KEY_APEX_VERSION = "apex_x_version"
KEY_PROFILE = "profile"  # a name of domain.registry.MODEL_PROFILES
KEY_MODEL = "model"  # the model weights, for profiles whose ModelProfile.weights_key is "model"
KEY_TEACHER = "teacher"  # the user guide's `teacher` layout (TeacherModelV3's ModelProfile.weights_key)
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


# The keys a profile may keep its weights under (ModelProfile.weights_key); a payload holds exactly one.
MODEL_WEIGHT_KEYS = (KEY_MODEL, KEY_TEACHER)
