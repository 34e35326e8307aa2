#!/usr/bin/env bash
# The long chain that made the best agent measured so far (RESULTS.md: "The 48-frame loop, run again from scratch and
# continued" -> "Deaths anchored to the controller" -> "The loop at 24-frame decisions, warm-started" -> "The planning
# agent collects its own data" -> "The best agent through the product path"), as one command: 16 loop iterations in
# four legs, each resumed from the last leg's checkpoint, then C fitted to the planner's dreamed choices.
#
#   leg 1: 8 iterations, C deciding every 12 steps (48 frames), deaths calibrated to the random holds
#   leg 2: 3 iterations, the same with deaths anchored to the last controller's real score
#   leg 3: 3 iterations, C deciding every 6 steps (24 frames), policy anchor
#   leg 4: 2 iterations, the planning agent (12 steps ahead every 3) collecting 200 episodes each
#   leg 5: `rllib-worldmodel distill`: C fitted to the planner at the newest 16,000 real states, planning on it,
#          evaluated on 100 real episodes
#
# The original ran as five commands over two sessions (~4.9 h on 2 cores) with the replay's then default capacity of
# 200,000 steps. Legs 1-4 iterate at ~7-10 minutes each on a 2-core AMD EPYC (RESULTS.md, "The 48-frame loop's low
# third run was a low draw"), so the whole chain needs about 2.5-3 hours there (measured 2026-12-05: ~2.6 h at
# 200,000, iteration 16 at 1,003.5 real; ~3 h at 400,000; RESULTS.md, "The whole chain as one command" and "The whole
# chain with a 400,000-step replay in every leg").
# Every leg checkpoints after each iteration; `bash scripts/run_chain.sh OUT N` starts at leg N from leg N-1's
# checkpoint in OUT (e.g. after a crash). Usage: bash scripts/run_chain.sh [OUT=runs/chain] [FIRST_LEG=1]
# REPLAY_CAPACITY=N sets every leg's replay capacity. The default is 400,000 (the product's `replay_capacity`): the
# whole chain collects about 700,000 real steps and 400,000 keeps the newest ~57%; on the same 600 real episodes its
# iteration 16 planned +133 ± 27 frames above the 200,000-step chain's and its C alone +187 ± 19 (one chain each).
# REPLAY_CAPACITY=200000 runs the original (the newest ~30%). Each 100,000 steps of replay is about 1.25 GB resident
# and ~3x that at the fit's peak: 400,000 held about 12 GB, so give it a 16 GB machine ("Keeping every round's data").
set -euo pipefail
cd "$(dirname "$0")/.."
OUT="${1:-runs/chain}"
FIRST="${2:-1}"
PY="${PYTHON:-python3}"
export RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0
COMMON=(--fit-epochs-over new --replay-capacity "${REPLAY_CAPACITY:-400000}")
# the fine planner: leg 4 collects and deploys it, leg 5 labels C with it (the same planner, or the fit learns another)
PLAN=(--plan-horizon 12 --plan-every 3 --plan-dream-episodes 8)

leg() {  # leg N: run it when N >= FIRST_LEG
    [ "$1" -ge "$FIRST" ]
}
if leg 1; then
    bash scripts/run_main.sh --iterations 8 --action-repeat 12 --plan-horizon 0 "${COMMON[@]}" --out "$OUT/leg1"
fi
if leg 2; then
    bash scripts/run_main.sh --iterations 3 --action-repeat 12 --plan-horizon 0 --calibrate-deaths policy \
        "${COMMON[@]}" --resume "$OUT/leg1/checkpoint" --out "$OUT/leg2"
fi
if leg 3; then
    bash scripts/run_main.sh --iterations 3 --action-repeat 6 --plan-horizon 0 --calibrate-deaths policy \
        "${COMMON[@]}" --resume "$OUT/leg2/checkpoint" --out "$OUT/leg3"
fi
if leg 4; then
    bash scripts/run_main.sh --iterations 2 --action-repeat 6 --calibrate-deaths "${PLAN[@]}" --plan-collect \
        --episodes-per-iteration 200 "${COMMON[@]}" --resume "$OUT/leg3/checkpoint" --out "$OUT/leg4"
fi
if leg 5; then
    "$PY" -m rllib_worldmodel.cli distill --checkpoint "$OUT/leg4/checkpoint" "${PLAN[@]}" --states 16000 \
        --eval-episodes 100 --out "$OUT/distilled"
fi
