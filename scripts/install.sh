#!/usr/bin/env bash
# Installs rllib_worldmodel and everything its tests and main job need. Idempotent: safe to run again.
set -euo pipefail
cd "$(dirname "$0")/.."
PY="${PYTHON:-python3}"

# torch goes first and pinned: with no torch present, any requirement admitting a newer release would make pip
# download a multi-GB CUDA build. 2.13.0 is the CPU build on this project's machines; a GPU user installs a CUDA
# build of 2.13.0 beforehand (its version 2.13.0+cuXXX satisfies setup.py's range, so this step is skipped).
if ! "$PY" -c "import torch" >/dev/null 2>&1; then
    "$PY" -m pip install --quiet "torch==2.13.0"
fi
"$PY" -m pip install --quiet -e ".[test,box2d]"
