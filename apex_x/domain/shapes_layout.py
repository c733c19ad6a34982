"""Where `apex-x make-shapes DIR --layout L` puts each file, and the command that writes a config's data.

One table for the writer (adapters/datasets/shapes_writer.py) and for every "how to fix" message, so
that a config whose data.* paths are a built-in layout is told the exact command that makes them
(`apex-x make-shapes data/coco --layout coco` for configs/coco_baseline.yaml), not another config's.
"""

from __future__ import annotations

import posixpath
from collections.abc import Mapping
from typing import Literal

Layout = Literal["shapes", "coco"]

# data.* key -> path under DIR, per layout (train images, train annotations, val images, val annotations).
LAYOUT_FILES: Mapping[Layout, Mapping[str, str]] = {
    "shapes": {
        "coco_train_images": "train",
        "coco_train_annotations": "instances_train.json",
        "coco_val_images": "val",
        "coco_val_annotations": "instances_val.json",
    },
    "coco": {
        "coco_train_images": "train2017",
        "coco_train_annotations": "annotations/instances_train2017.json",
        "coco_val_images": "val2017",
        "coco_val_annotations": "annotations/instances_val2017.json",
    },
}


def _root_for(paths: Mapping[str, str | None], layout: Layout) -> str | None:
    roots = set()
    for key, tail in LAYOUT_FILES[layout].items():
        value = paths.get(key)
        if value is None:
            if key.startswith("coco_val"):
                continue  # a config without a val split still matches the layout
            return None
        normal = posixpath.normpath(str(value).replace("\\", "/"))
        if normal != tail and not normal.endswith("/" + tail):
            return None
        roots.add(normal[: len(normal) - len(tail)].rstrip("/") or ".")
    return roots.pop() if len(roots) == 1 else None


def make_shapes_command(paths: Mapping[str, str | None]) -> str | None:
    """`apex-x make-shapes DIR [--layout coco]` that writes exactly these data.* paths, or None.

    paths: the config's data keys without the `data.` prefix (coco_train_images, ...), as written.
    """
    for layout in LAYOUT_FILES:
        root = _root_for(paths, layout)
        if root is not None:
            return f"apex-x make-shapes {root}" + ("" if layout == "shapes" else f" --layout {layout}")
    return None
