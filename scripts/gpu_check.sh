#!/usr/bin/env bash
# QLoRA 4-bit and LoRA bf16, 30 steps each, on the largest model this CUDA machine has (offline cache,
# registry, or the Hub ids in TUNELAB_GPU_MODELS when a Hub is reachable); appends tokens/s, peak GPU
# memory and loss to bench/RESULTS.md. One command, under 8 minutes:   scripts/gpu_check.sh
# Needs: torch with CUDA, the project's requirements, and bitsandbytes for the QLoRA half.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON="${PYTHON:-$( [ -x .venv/bin/python ] && echo .venv/bin/python || echo python3 )}"
export PYTHONPATH="$PWD/src${PYTHONPATH:+:$PYTHONPATH}"
export TOKENIZERS_PARALLELISM=false
export HF_HUB_OFFLINE="${HF_HUB_OFFLINE:-1}"   # the cache only, unless the caller turns the Hub on
exec timeout 470 "$PYTHON" bench/gpu_check.py "$@"
