#!/usr/bin/env bash
# The main job: World Models training on real VizDoom TakeCover with the best measured configuration (README,
# "Deciding every 50 frames"). Two iterations of: collect 100 real episodes (the first with random actions held
# 1-100 steps, the second with the agent) -> fit V and M (5-member ensemble), refit M's done head on 100-step dreams
# from the real states -> CMA-ES in the dream, 32 generations of 32 candidates x 8 dreams (deaths sampled and
# calibrated to the real survival; the controller decides every 50th frame) -> evaluate on 100 real episodes; prints
# the real score (mean ± std), the dream score and their gap. Writes runs/takecover/ (RLlib checkpoint,
# world_model.pt, progress.jsonl, real_vs_dream.gif). About 20 minutes on 2 CPU cores (1,145 s measured).
# Extra arguments go to `rllib-worldmodel train` (see `rllib-worldmodel train --help`).
set -euo pipefail
cd "$(dirname "$0")/.."
PY="${PYTHON:-python3}"
bash scripts/install.sh
export RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0
"$PY" -m rllib_worldmodel.cli train --env takecover --iterations 2 --episodes-per-iteration 100 \
    --eval-episodes 100 --hold 1 100 --num-heads 5 --done-bias-init -5 --vae-warmup-epochs 2 --done-mode sample \
    --calibrate-deaths --done-refit-horizon 100 --action-repeat 50 --cma-population 32 --cma-rollouts 8 \
    --cma-generations 32 --out runs/takecover "$@"
