#!/usr/bin/env bash
# The main job: a short World Models training on real VizDoom TakeCover. Two iterations of: collect 100 real
# episodes (the first with random actions held 1-10 steps, the second with the agent) -> fit V and M -> CMA-ES in
# the dream -> evaluate on the real game; prints the real score (mean ± std over 20 episodes), the dream score and
# their gap. Writes runs/takecover/ (RLlib checkpoint, world_model.pt, progress.jsonl, real_vs_dream.gif).
# Extra arguments go to `rllib-worldmodel train` (see `rllib-worldmodel train --help`).
set -euo pipefail
cd "$(dirname "$0")/.."
PY="${PYTHON:-python3}"
bash scripts/install.sh
export RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0
"$PY" -m rllib_worldmodel.cli train --env takecover --iterations 2 --episodes-per-iteration 100 \
    --eval-episodes 20 --cma-population 32 --cma-rollouts 8 --cma-generations 5 --out runs/takecover "$@"
