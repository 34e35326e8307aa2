#!/usr/bin/env bash
# The main job: World Models training on real VizDoom TakeCover with the best measured configuration (RESULTS.md,
# "The main job fits C to the fine planner and plays it alone"): the game at 4 tics a step. One iteration of: collect
# 1,200 real episodes with random actions held 1-25 steps -> fit V (3 epochs) and M (5-member ensemble, 20 epochs)
# -> refit M's done head on 25-step dreams from the real states -> CMA-ES in the dream, 32 generations of 32
# candidates x 8 dreams (deaths sampled and calibrated to the real survival; C decides every 25th step, 100 frames)
# -> fit C to the fine planner's dreamed choices (12 steps ahead of the agent's real state, every 3 steps) at 8,000
# real states of the replay -> evaluate that C alone, deciding every 3 steps, on 100 real episodes; prints the real
# score (frames survived, mean ± std), the dream score and their gap. Writes runs/takecover/ (RLlib checkpoint,
# world_model.pt, progress.jsonl, real_vs_dream.gif). About 20 minutes on 2 CPU cores. Extra arguments go to
# `rllib-worldmodel train` (see `rllib-worldmodel train --help`; the main job before 2026-12-04 23:30 UTC is
# `--episodes-per-iteration 400 --vae-warmup-epochs 2 --plan-horizon 50 --plan-every 0 --distill-states 0
# --distill-deploy planner`).
set -euo pipefail
cd "$(dirname "$0")/.."
PY="${PYTHON:-python3}"
bash scripts/install.sh
export RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0
"$PY" -m rllib_worldmodel.cli train --env takecover --frame-skip 4 --iterations 1 --episodes-per-iteration 1200 \
    --eval-episodes 100 --hold 1 25 --num-heads 5 --done-bias-init -5 --vae-warmup-epochs 0 --mdn-epochs 20 \
    --seq-len 500 --done-mode sample --calibrate-deaths --done-refit-horizon 25 --action-repeat 25 \
    --cma-population 32 --cma-rollouts 8 --cma-generations 32 --plan-horizon 12 --plan-every 3 \
    --distill-states 8000 --distill-deploy alone --out runs/takecover "$@"
