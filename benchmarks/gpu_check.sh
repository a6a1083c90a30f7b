#!/usr/bin/env bash
# One-shot GPU check: the CUDA tests, CUDA speed figures and a short CUDA budget curve.
#   bash benchmarks/gpu_check.sh [OUT_DIR]
# Needs a python3 with a CUDA build of torch. Wheels for missing pure dependencies may sit in .whl/.
set -uo pipefail
out=${1:-${OUT:-bench_out/gpu}}
mkdir -p "$out"
if compgen -G ".whl/*.whl" >/dev/null; then
  site=$(mktemp -d)                      # private folder: nothing else can plant modules in it
  trap 'rm -rf "$site"' EXIT
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target "$site" .whl/*.whl || exit 1
  export PYTHONPATH="$site"
fi
export PYTHONPATH="$PWD/src${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv | tee "$out/gpu.txt"
python3 -c "import torch, selfnet; print('torch', torch.__version__, 'cuda', torch.version.cuda)" | tee -a "$out/gpu.txt"
python3 -m pytest -q -p no:cacheprovider tests/gpu 2>&1 | tee "$out/pytest.txt"
python3 benchmarks/speed.py --device cuda --sizes 48x256x256,96x512x512 --published --batch-sizes 8,32 --steps 200 \
  2>&1 | tee "$out/speed.md"
python3 benchmarks/budget_curve.py --device cuda --minutes 0.5,1 --figure "$out/budget_curve_cuda.png" \
  2>&1 | tee "$out/budget.md"
