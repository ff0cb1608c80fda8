#!/usr/bin/env bash
# The GPU benchmark, one command on a GPU machine (about 5 minutes on one GPU at the defaults):
#   bash bench/gpu.sh [--clips N] [--epochs E] [--workers W]
# Needs a Python environment with emoflow and a CUDA build of torch: $VENV (default .venv).
set -euo pipefail
cd "$(dirname "$0")/.."
VENV="${VENV:-.venv}"
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader || true
exec "$VENV/bin/python" bench/gpu.py --device cuda "$@"
