#!/usr/bin/env bash
# The main job: collect real VizDoom TakeCover episodes, fit the world model (V then M), save the checkpoint and
# write GIFs of real frames next to V's reconstructions and M's dreams. About 10 minutes on 2 CPU cores.
# Extra arguments go to `rllib-worldmodel fit` (see `rllib-worldmodel fit --help`).
set -euo pipefail
cd "$(dirname "$0")/.."
PY="${PYTHON:-python3}"
bash scripts/install.sh
export RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0
"$PY" -m rllib_worldmodel.cli fit --env takecover --episodes 100 --vae-epochs 3 --mdn-epochs 20 \
    --out runs/takecover_world_model "$@"
