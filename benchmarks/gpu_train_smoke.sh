#!/usr/bin/env bash
# GPU smoke test of `fedbench train diffusers-lora` (tiny random pipeline, CUDA, bf16): steps/s and
# peak memory, a resume, the LoRA in the diffusers editor. Self-contained: needs only this repo and its
# .venv (no network, no fixtures). Arguments pass through to benchmarks/gpu_train_smoke.py, e.g.
#   benchmarks/gpu_train_smoke.sh --steps 50 --resolution 128 --batch-size 16
#   benchmarks/gpu_train_smoke.sh --cpu-fallback        # no GPU: check the script itself on the CPU
# Exit codes: 0 passed, 1 a check failed, 2 no CUDA (without --cpu-fallback).
set -euo pipefail
REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$REPO"
PY="${PYTHON:-$REPO/.venv/bin/python}"
if [ ! -x "$PY" ]; then
  echo "gpu_train_smoke: no Python at $PY (set PYTHON=/path/to/python or carry .venv)" >&2
  exit 2
fi
# The venv's editable install may point at another checkout's src/: import this copy's code first.
export PYTHONPATH="$REPO/src${PYTHONPATH:+:$PYTHONPATH}"
# Everything is built locally: never wait on a model hub.
export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 HF_HUB_DISABLE_TELEMETRY=1
EXTRA=()
if [ -n "${OUT:-}" ] && [ -d "${OUT}" ]; then EXTRA=(--json "$OUT/gpu_train_smoke.json"); fi
exec "$PY" benchmarks/gpu_train_smoke.py "${EXTRA[@]}" "$@"
