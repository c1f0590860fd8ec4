#!/usr/bin/env bash
# One-shot check of the GPU paths on a real NVIDIA GPU (see ../shared/gpu-check.md).
# Writes everything it measures as JSON/CSV into $OUT (default ./gpu-check-out). Budget: < 8 min.
#
# The reference machine has torch, transformers, nvidia-ml-py, numpy, pandas, pyarrow, typer,
# rich and httpx but no network. Wheels tokenprint needs beyond those travel in .whl/ (ignored
# by git; carry it): on a machine with PyPI,
#   python3 -m pip download --no-deps --only-binary=:all: --python-version 3.12 \
#     --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 -d .whl \
#     pydantic pydantic-core annotated-types typing-inspection tomli-w scipy
set -uo pipefail
OUT="${OUT:-./gpu-check-out}"
mkdir -p "$OUT"
export PYTHONUNBUFFERED=1
LOG="$OUT/gpu_check.log"
exec > >(tee -a "$LOG") 2>&1
echo "== gpu_check $(date -u +%FT%TZ)"

if compgen -G ".whl/*.whl" > /dev/null; then
  python3 -m pip install -q --no-index --no-deps --no-compile --target /tmp/tp-site .whl/*.whl \
    && export PYTHONPATH="/tmp/tp-site:${PYTHONPATH:-}"
fi
python3 -m pip install -q --no-deps --no-build-isolation -e . || {
  echo "editable install failed; running from src/"; export PYTHONPATH="$PWD/src:${PYTHONPATH:-}"; }

python3 - "$OUT" <<'PY' || echo "environment probe failed"
import json, sys, platform
out = sys.argv[1]
info = {"python": platform.python_version()}
try:
    import torch, transformers
    info.update(torch=torch.__version__, transformers=transformers.__version__,
                cuda=torch.version.cuda, gpu=torch.cuda.get_device_name(0))
except Exception as exc:
    info["torch_error"] = repr(exc)
try:
    import pynvml
    pynvml.nvmlInit()
    info["driver"] = pynvml.nvmlSystemGetDriverVersion()
    info["nvml_gpu"] = pynvml.nvmlDeviceGetName(pynvml.nvmlDeviceGetHandleByIndex(0))
except Exception as exc:
    info["nvml_error"] = repr(exc)
json.dump(info, open(f"{out}/environment.json", "w"), indent=2, default=str)
print(info)
PY

echo "== 1. NVML meter: idle floor, then a known matmul load (counter vs power integration)"
timeout 120 python3 scripts/gpu_meter_check.py "$OUT/meter_check.json" || echo "meter check failed"

echo "== 2. tokenprint bench (hf, cuda, random weights)"
timeout 330 python3 -m tokenprint bench --engine hf --model llama-3.2-1b,llama-3.1-8b --device cuda \
  --batch 1,8,32,128 --input-len 512 --output-len 128 --warmup 1 --repeat 3 --meter nvml \
  --idle-s 5 --results "$OUT/results" || echo "bench stopped (partial results are kept)"
python3 -m tokenprint runs export --results "$OUT/results" --format json --out "$OUT/bench_records.json"

echo "== 3. tokenprint predict for the same points, measured/predicted per point"
python3 scripts/gpu_compare.py "$OUT/bench_records.json" "$OUT/measured_vs_predicted.csv"
echo "== done $(date -u +%FT%TZ)"
