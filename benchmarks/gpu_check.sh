#!/usr/bin/env bash
# The prepared GPU check of the loss kernels: CUDA tests, then the COCO-sized CUDA kernel benchmark.
#
# Made for the lent device machine (one H200; its python3 has torch, triton, pytest and
# pytest-benchmark, but no pydantic, structlog, dependency-injector or pycocotools, and no network),
# so the missing wheels are fetched here first and carried:
#   bash benchmarks/gpu_check.sh --fetch-wheels        # here, once: writes .gpu_wheels/ (git-ignored)
#   device run: bash benchmarks/gpu_check.sh            # carry [".gpu_wheels"], timeout_s 600
# Results go to $OUT (the device tool brings them back), else benchmarks/results/gpu/:
# env.txt (card, driver, versions), tests.log, kernels_cuda_*.json and kernels_cuda.md.
# Each step has its own time limit, so a slow step still leaves the others' results.
set -uo pipefail
cd "$(dirname "$0")/.."

WHEELS=.gpu_wheels
PACKAGES=(pydantic pydantic-core annotated-types typing-inspection structlog dependency-injector pycocotools)
PYTHON=${PYTHON:-python3}

if [ "${1:-}" = "--fetch-wheels" ]; then
    # The device's python3 is 3.12 on x86_64 (see /work/.library/device/KINDS.md); override with GPU_PYTHON_VERSION.
    version=${GPU_PYTHON_VERSION:-3.12}
    rm -rf "$WHEELS" && mkdir -p "$WHEELS"
    exec "$PYTHON" -m pip download --no-deps --only-binary=:all: --python-version "$version" \
        --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 \
        -d "$WHEELS" "${PACKAGES[@]}"
fi

out=${OUT:-benchmarks/results/gpu}
mkdir -p "$out"
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1 MPLBACKEND=Agg
export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1
unset TRITON_INTERPRET

{
    date -u
    nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.max.sm,clocks.max.mem --format=csv 2>&1
    "$PYTHON" -c 'import sys, torch, triton; print("python", sys.version.split()[0], "torch", torch.__version__,
"triton", triton.__version__, "cuda", torch.version.cuda, "device", torch.cuda.get_device_name(0)
if torch.cuda.is_available() else "none")' 2>&1
} | tee "$out/env.txt"

missing=$("$PYTHON" - <<'EOF'
import importlib.util
names = {"pydantic": "pydantic", "structlog": "structlog", "dependency_injector": "dependency-injector",
         "pycocotools": "pycocotools"}
print(" ".join(package for module, package in names.items() if importlib.util.find_spec(module) is None))
EOF
)
if [ -n "$missing" ]; then
    if [ ! -d "$WHEELS" ]; then
        echo "error: missing packages ($missing) and no $WHEELS/ folder: run 'bash benchmarks/gpu_check.sh --fetch-wheels'" \
            "here and carry $WHEELS" >&2
        exit 2
    fi
    "$PYTHON" -m pip install -q --no-index --no-deps --find-links "$WHEELS" "${PACKAGES[@]}" 2>&1 | tee "$out/install.log" \
        || { echo "error: installing the carried wheels failed (see install.log)" >&2; exit 2; }
fi

echo "== CUDA tests (pytest -m cuda)"
timeout 240 "$PYTHON" -m pytest -q -m cuda -p no:cacheprovider tests 2>&1 | tee "$out/tests.log" | tail -15
tests_status=${PIPESTATUS[0]}

bench() {  # bench NAME SECONDS PYTEST_K
    echo "== kernel benchmark, CUDA, full size: $1"
    APEX_X_BENCH_SIZE=full timeout "$2" "$PYTHON" -m pytest benchmarks/bench_kernels.py -q -p no:cacheprovider \
        -k "cuda and ($3)" --benchmark-json="$out/kernels_cuda_$1.json" 2>&1 | tail -3
}
bench focal_giou 150 "focal or giou"
bench masks 150 "mask or boundary"
"$PYTHON" - "$out" <<'EOF'
import json, pathlib, sys
out = pathlib.Path(sys.argv[1])
parts = [json.loads(p.read_text()) for p in sorted(out.glob("kernels_cuda_*.json"))]
if parts:
    merged = dict(parts[0], benchmarks=[b for part in parts for b in part.get("benchmarks", [])])
    (out / "kernels_cuda.json").write_text(json.dumps(merged))
EOF
[ -f "$out/kernels_cuda.json" ] && "$PYTHON" benchmarks/summarize_kernels.py "$out/kernels_cuda.json" -o "$out/kernels_cuda.md" \
    && rm -f "$out"/kernels_cuda_*.json && cat "$out/kernels_cuda.md"
echo "== done (CUDA tests exit code $tests_status)"
exit "$tests_status"
