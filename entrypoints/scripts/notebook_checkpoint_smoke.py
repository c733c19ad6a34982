"""Notebook inference smoke artifact (CPU/CUDA): load a checkpoint and predict on one image per device.

    python scripts/notebook_checkpoint_smoke.py \
      --checkpoint artifacts/quickstart/checkpoints/best.pt \
      --image data/shapes/val/000001.png \
      --devices cpu,cuda \
      --output-json artifacts/notebook_smoke/report.json

A `cuda` run is marked `skip` when CUDA is unavailable; a DINOv2 token-grid reshape failure is retried
once with a square resize and recorded. Exit code 0 when no device failed, 2 on bad flags or when every
failure is a bad input (a checkpoint or image Apex-X refuses, named in the report), 1 otherwise.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--checkpoint", required=True, help="Apex-X checkpoint (e.g. checkpoints/best.pt).")
    parser.add_argument("--image", required=True, help="Image file to predict on.")
    parser.add_argument("--devices", default="cpu,cuda", help="Comma-separated devices to try (default: cpu,cuda).")
    parser.add_argument(
        "--output-json",
        default="artifacts/notebook_smoke/report.json",
        help="Where to write the JSON report (default: artifacts/notebook_smoke/report.json).",
    )
    args = parser.parse_args(argv)
    devices = [device.strip() for device in args.devices.split(",") if device.strip()]
    unknown = [device for device in devices if device not in ("cpu", "cuda")]
    if not devices or unknown:
        parser.error(f"--devices: expected a comma-separated list of cpu/cuda, got {args.devices!r}")

    from apex_x.domain.errors import UserError
    from apex_x.notebook import check_smoke_output, smoke_run

    output = Path(args.output_json)
    try:
        check_smoke_output(output)
    except UserError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    report = smoke_run(args.checkpoint, args.image, devices)
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    for name, run in report["devices"].items():
        details = (
            f"{run['latency_ms']} ms, {run['num_detections']} detections"
            + (", retried with square resize" if run["retried_with_square_resize"] else "")
            if run["status"] == "ok"
            else run["error"]
        )
        print(f"{name}: {run['status']} ({details})")
    print(f"report: {output}")
    return int(report["exit_code"])


if __name__ == "__main__":
    sys.exit(main())
