#!/usr/bin/env bash
# The main job: World Models training on real VizDoom TakeCover with the best measured configuration (RESULTS.md,
# "M's epochs, counted right"): the game at 4 tics a step. One iteration of: collect 400 real episodes with random
# actions held 1-25 steps -> fit V (3 epochs) and M (5-member ensemble, 20 epochs) -> refit M's done head on 25-step
# dreams from the real states -> CMA-ES in the dream, 32 generations of 32 candidates x 8 dreams (deaths sampled and
# calibrated to the real survival; the controller decides every 25th step, 100 frames) -> evaluate on 100 real
# episodes, each of C's decisions replaced by the first action with the best expected survival over 50 steps
# dreamed from the real state (decision-time planning, at C's own interval); prints the real score (frames
# survived, mean ± std), the dream score and their gap. Writes runs/takecover/ (RLlib checkpoint, world_model.pt,
# progress.jsonl, real_vs_dream.gif). 11 to 31 minutes on 2 CPU cores, by the CPU. Extra arguments go to
# `rllib-worldmodel train` (`--iterations 2` adds a round of the agent's own episodes; see `rllib-worldmodel train
# --help`).
set -euo pipefail
cd "$(dirname "$0")/.."
PY="${PYTHON:-python3}"
bash scripts/install.sh
export RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0
"$PY" -m rllib_worldmodel.cli train --env takecover --frame-skip 4 --iterations 1 --episodes-per-iteration 400 \
    --eval-episodes 100 --hold 1 25 --num-heads 5 --done-bias-init -5 --vae-warmup-epochs 2 --mdn-epochs 20 \
    --seq-len 500 --done-mode sample --calibrate-deaths --done-refit-horizon 25 --action-repeat 25 \
    --cma-population 32 --cma-rollouts 8 --cma-generations 32 --plan-horizon 50 --out runs/takecover "$@"
