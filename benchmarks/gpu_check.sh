#!/usr/bin/env bash
# The GPU checks in one run, on a machine with an NVIDIA card, CuPy and (for the benchmark's peer) PyTorch
# with CUDA; under 8 minutes on an H100. Run from anywhere:
#     MINIVGG_DATA=DIR benchmarks/gpu_check.sh [OUT_DIR]
# DIR holds Fashion-MNIST's four .gz files (or leave MINIVGG_DATA unset where Debian's package is installed).
# Everything printed also goes to OUT_DIR/gpu_check.log (default: a new folder under /tmp). Each step has its
# own time limit; a failed step is reported and the next one still runs; the exit status is 1 if any failed.
set -uo pipefail
cd "$(dirname "$0")/.."
out=${1:-$(mktemp -d /tmp/gpu_check.XXXXXX)}
mkdir -p "$out"
export PYTHONPATH=".${PYTHONPATH:+:$PYTHONPATH}" MPLBACKEND=Agg MINIVGG_FAST_GPU=1
failed=()

step() {  # step SECONDS NAME COMMAND...
  local limit=$1 name=$2
  shift 2
  echo "== $name ($(date -u +%H:%M:%S), limit ${limit}s): $*"
  local start=$SECONDS
  timeout "$limit" "$@"
  local code=$?
  echo "== $name: exit $code after $((SECONDS - start)) s"
  [ "$code" = 0 ] || failed+=("$name")
}

exec > >(tee "$out/gpu_check.log") 2>&1
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader || true
python3 -c "import cupy, numpy; print('CuPy', cupy.__version__, 'NumPy', numpy.__version__)"
step 90 doctor python3 -m minivgg doctor
step 150 "pytest -m gpu" python3 -m pytest -q -m gpu -x tests
step 60 "lesson 12" python3 lessons/12_gpu.py --quick
step 60 "lesson 22" python3 lessons/22_cuda_im2col.py --quick
step 180 benchmark python3 benchmarks/gpu_step.py --repeats 20
step 150 "train, fast tier, 3 epochs" python3 -m minivgg train --device cuda --epochs 3 --out "$out/run"
if [ ${#failed[@]} = 0 ]; then echo "== all passed"; else echo "== failed: ${failed[*]}"; fi
[ ${#failed[@]} = 0 ]
