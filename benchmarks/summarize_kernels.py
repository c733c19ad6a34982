"""Turn the pytest-benchmark JSON of bench_kernels.py into a short markdown summary (with the goals checked).

Usage: python benchmarks/summarize_kernels.py RESULTS.json [-o SUMMARY.md]
"""

from __future__ import annotations

import argparse
import json
from collections import defaultdict
from pathlib import Path

PHASES = ("forward", "backward", "forward+backward")
IMPL_ORDER = ["apex-triton", "apex-compiled", "apex-torch", "apex-torch-soft", "torchvision", "reference-eager", "reference-compile"]
FOCUS = "forward+backward"


def _load(path: Path) -> tuple[dict, dict]:
    """(machine/commit info, {(loss, shape, device): {impl: {phase: extra_info + median_s}}})."""
    data = json.loads(path.read_text())
    table: dict = defaultdict(lambda: defaultdict(dict))
    for bench in data.get("benchmarks", []):
        info = dict(bench.get("extra_info", {}))
        if "loss" not in info:
            continue
        info["median_s"] = bench["stats"]["median"]
        key = (info["loss"], "x".join(map(str, info["shape"])), info["device"])
        table[key][info["impl"]][info["phase"]] = info
    return data, table


def _ms(entry: dict | None) -> str:
    if not entry:
        return "-"
    if "unavailable" in entry:
        return "n/a"
    return f"{entry['median_s'] * 1e3:.3g}"


def _mb(entry: dict | None) -> str:
    if not entry or "peak_bytes" not in entry:
        return "-"
    return f"{entry['peak_bytes'] / 2**20:.4g}"


def _ratio(base: dict | None, ours: dict | None) -> float | None:
    if not base or not ours or "unavailable" in base or "unavailable" in ours:
        return None
    return base["median_s"] / ours["median_s"]


def _section(key: tuple, impls: dict) -> list[str]:
    loss, shape, device = key
    ours_name = "apex-triton" if device == "cuda" else ("apex-compiled" if "apex-compiled" in impls else "apex-torch")
    ours = impls.get(ours_name, {}).get(FOCUS)
    lines = [f"### {loss} {shape} ({device})", ""]
    header = f"| impl | fwd ms | bwd ms | fwd+bwd ms | fwd+bwd peak MiB | {ours_name} speed-up (fwd+bwd) |"
    if device == "cuda":
        header += " fwd+bwd GB/s | of peak |"
    lines += [header, "|" + "---|" * (header.count("|") - 1)]
    for impl in [name for name in IMPL_ORDER if name in impls]:
        phases = impls[impl]
        speed = _ratio(phases.get(FOCUS), ours)
        row = f"| {impl} | {_ms(phases.get('forward'))} | {_ms(phases.get('backward'))} | {_ms(phases.get(FOCUS))} | "
        row += f"{_mb(phases.get(FOCUS))} | {'-' if speed is None else f'{speed:.2f}x'} |"
        if device == "cuda":
            entry = phases.get(FOCUS)
            if entry and "bytes_must_move" in entry:
                rate = entry["bytes_must_move"] / entry["median_s"] / 1e9
                row += f" {rate:.0f} | {rate / entry['peak_bandwidth_gbps']:.0%} |"
            else:
                row += " - | - |"
        lines.append(row)
    return lines + [""]


def _fmt_ratio(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f}x"


def _goals(table: dict) -> list[str]:
    lines = ["## Goals", ""]
    for (loss, shape, device), impls in sorted(table.items()):
        if device == "cpu" and "torchvision" in impls:
            ours, theirs = impls.get("apex-torch", {}).get(FOCUS), impls["torchvision"].get(FOCUS)
            speed = _ratio(theirs, ours)
            if speed is None:
                continue
            lower = ours.get("peak_bytes", 0) < theirs.get("peak_bytes", 0)
            verdict = "PASS" if speed >= 2.0 and lower else "MISS"
            lines.append(
                f"- CPU {loss} {shape}: apex-torch {speed:.2f}x faster than torchvision (goal >= 2x), peak "
                f"{_mb(ours)} vs {_mb(theirs)} MiB (goal lower): **{verdict}**"
            )
        if device == "cpu" and "apex-compiled" in impls:
            ours, theirs = impls["apex-compiled"].get(FOCUS), impls.get("reference-compile", {}).get(FOCUS)
            speed = _ratio(theirs, ours)
            if speed is not None:
                verdict = "PASS" if speed >= 1.0 else "MISS"
                lines.append(
                    f"- CPU {loss} {shape}: apex-compiled (auto's CPU path) {speed:.2f}x the speed of torch.compile "
                    f"of the reference (goal >= 1x), eager apex-torch "
                    f"{_fmt_ratio(_ratio(theirs, impls.get('apex-torch', {}).get(FOCUS)))}: **{verdict}**"
                )
        if device == "cuda" and loss == "focal":
            ours = impls.get("apex-triton", {}).get(FOCUS)
            eager = _ratio(impls.get("reference-eager", {}).get(FOCUS), ours)
            compiled = _ratio(impls.get("reference-compile", {}).get(FOCUS), ours)
            if ours is None or "unavailable" in ours:
                continue
            rate = ours["bytes_must_move"] / ours["median_s"] / 1e9 / ours["peak_bandwidth_gbps"]
            extra = ours.get("peak_bytes", 0) / max(ours.get("grad_bytes", 1), 1)
            lines.append(
                f"- CUDA focal {shape} on {ours['device_name']}: vs eager "
                f"{'-' if eager is None else f'{eager:.1f}x'} (goal >= 8x), vs torch.compile "
                f"{'-' if compiled is None else f'{compiled:.2f}x'} (goal >= 1.3x), {rate:.0%} of peak bandwidth "
                f"(goal >= 75%), peak {extra:.2f}x the gradient's size (goal <= 1.1x)"
            )
    return lines + [""]


def summarize(path: Path) -> str:
    data, table = _load(path)
    machine = data.get("machine_info", {})
    cpu = machine.get("cpu", {}).get("brand_raw") or machine.get("processor", "unknown CPU")
    first = next((e for impls in table.values() for phases in impls.values() for e in phases.values()), {})
    lines = [
        "# Apex-X loss kernels benchmark",
        "",
        f"- results: `{path}` ({data.get('datetime', 'unknown date')}), size `{first.get('size', '?')}`",
        f"- machine: {cpu}, {machine.get('node', '?')}, python {machine.get('python_version', '?')}; "
        f"CPU threads {first.get('threads', '?')}",
        "- times: median of the rounds (ms); peak: memory allocated by the call (see bench_kernels.py)",
        "",
    ]
    unavailable = sorted(
        {f"{impl} ({key[0]} {key[2]}): {e['unavailable']}" for key, impls in table.items()
         for impl, phases in impls.items() for e in phases.values() if "unavailable" in e}  # fmt: skip
    )
    lines += _goals(table)
    for key in sorted(table):
        lines += _section(key, table[key])
    if unavailable:
        lines += ["## Not measured", ""] + [f"- {line}" for line in unavailable] + [""]
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("results", type=Path, help="pytest-benchmark JSON (--benchmark-json)")
    parser.add_argument("-o", "--output", type=Path, help="write the markdown here (default: stdout)")
    args = parser.parse_args()
    text = summarize(args.results)
    if args.output:
        args.output.parent.mkdir(parents=True, exist_ok=True)
        args.output.write_text(text)
    else:
        print(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
