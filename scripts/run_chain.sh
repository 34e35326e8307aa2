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
# Every iteration checkpoints, and each leg runs up to its iteration of the chain (`--until-iteration`), so the same
# command run again after a crash or a stop goes on from the last finished iteration: a finished leg (its
# world_model.pt written) is skipped, a leg stopped part-way resumes from its own checkpoint, the next leg from the
# last one's. Usage: bash scripts/run_chain.sh [OUT=runs/chain] [FIRST_LEG=1] [LAST_LEG=5]. Legs before FIRST_LEG
# are not run (leg N then starts from leg N-1's checkpoint in OUT), nor legs after LAST_LEG: LAST_LEG=4 stops at
# iteration 16's planning agent without the distill step, and the same command with a later LAST_LEG goes on from
# there. CHAIN_DRY_RUN=1 prints each command instead of running it.
# REPLAY_CAPACITY=N sets every leg's replay capacity (kept in OUT/replay_capacity: a chain run again uses it, and
# refuses a different one). The default is 400,000 (the product's `replay_capacity`): the
# whole chain collects about 700,000 real steps and 400,000 keeps the newest ~57%; on the same 600 real episodes its
# iteration 16 planned +133 ± 27 frames above the 200,000-step chain's and its C alone +187 ± 19 (one chain each).
# REPLAY_CAPACITY=200000 runs the original (the newest ~30%). Each 100,000 steps of replay is about 1.25 GB resident
# and ~3x that at the fit's peak: 400,000 held about 12 GB, so give it a 16 GB machine ("Keeping every round's data").
set -euo pipefail
cd "$(dirname "$0")/.."
OUT="${1:-runs/chain}"
FIRST="${2:-1}"
LAST="${3:-5}"
for pair in "FIRST_LEG:$FIRST" "LAST_LEG:$LAST"; do
    case "${pair#*:}" in
    [1-5]) ;;
    *)
        echo "${pair%%:*}=${pair#*:}: give a leg of the chain, 1 to 5" \
            "(usage: bash scripts/run_chain.sh [OUT] [FIRST_LEG] [LAST_LEG])." >&2
        exit 2
        ;;
    esac
done
if [ "$FIRST" -gt "$LAST" ]; then
    echo "FIRST_LEG=$FIRST is after LAST_LEG=$LAST, so there is nothing to run: give FIRST_LEG <= LAST_LEG." >&2
    exit 2
fi
PY="${PYTHON:-python3}"
export RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0
# Each leg starts its own Ray (RAY_ADDRESS=local) unless told otherwise: Ray's default joins any cluster started on
# this machine (/tmp/ray/ray_current_cluster), and a leg that began while a test's short-lived cluster was up joined
# it and died when that cluster stopped (RESULTS.md, "A third chain, with a 600,000-step replay").
export RAY_ADDRESS="${RAY_ADDRESS:-local}"
kept() {  # kept VAR FILE DEFAULT: the chain's setting VAR as it was started (kept in OUT/FILE), into $KEPT
    # A setting of the chain itself, kept in OUT on its first run and reused when it is run again: a resumed leg with
    # a smaller replay would drop collected episodes for good at its next collection, and one with other train flags
    # would go on silently as another recipe. Unset or empty: the kept value; another value is refused. A chain
    # started before a setting was kept keeps what its next run gives.
    local file="$OUT/$2" given
    given=$(set -f && printf '%s ' ${!1:-})  # words, unglobbed: spacing is not a difference
    given=${given% }
    if [ -f "$file" ]; then
        KEPT=$(cat "$file")
        if [ -n "$given" ] && [ "$given" != "$KEPT" ]; then
            echo "$1=$given, but the chain in $OUT was started with ${KEPT:-none} ($file): run it again without" \
                "$1 (or with the same), or start another chain in a new OUT." >&2
            exit 2
        fi
    else
        KEPT="${given:-$3}"
        if [ -z "${CHAIN_DRY_RUN:-}" ]; then mkdir -p "$OUT" && printf '%s\n' "$KEPT" >"$file"; fi
    fi
}
kept REPLAY_CAPACITY replay_capacity 400000
CAPACITY=$KEPT
kept CHAIN_FLAGS chain_flags ""
FLAGS=$KEPT
COMMON=(--fit-epochs-over new --replay-capacity "$CAPACITY")
# PRECISION=bf16: V and M compute in bfloat16 in every leg (`world_model(precision=...)`). Not recommended: on a 2-core
# AMD EPYC with AVX512-BF16 the chain ran only 1.12x faster (13,568 s against 15,239 s) and its planner at iteration
# 16 played 903.5 over 600 real episodes, 12-162 below three float32 chains' on the same episodes (RESULTS.md, "The
# chain in bfloat16"). A compute setting, not the chain's data: a chain may be resumed at another.
if [ -n "${PRECISION:-}" ]; then COMMON+=(--precision "$PRECISION"); fi
# CHAIN_FLAGS='--seed 1 ...': more `rllib-worldmodel train` flags for every training leg, after the leg's own (so they
# win), split on spaces: a variant chain (another seed, C's input) without editing this script, which must not be
# edited while a chain runs from it (bash reads it as it goes). Kept in OUT/chain_flags like the replay capacity.
read -ra EXTRA <<<"$FLAGS"
COMMON+=(${EXTRA[@]+"${EXTRA[@]}"})
# the fine planner: leg 4 collects and deploys it, leg 5 labels C with it (the same planner, or the fit learns another)
PLAN=(--plan-horizon 12 --plan-every 3 --plan-dream-episodes 8)

run() {  # the command, or with CHAIN_DRY_RUN set its shell-quoted words
    if [ -n "${CHAIN_DRY_RUN:-}" ]; then printf '%q ' "$@" && echo; else "$@"; fi
}
complete() {  # the complete checkpoint in folder $1: checkpoint, or checkpoint.previous after an interrupted save
    for c in "$1/checkpoint" "$1/checkpoint.previous"; do
        if [ -f "$c/algorithm_state.pkl" ]; then echo "$c" && return; fi
    done
}
leg() {  # leg N UNTIL FLAGS...: run_main.sh with FLAGS up to the chain's iteration UNTIL, from where it stands
    local n=$1 until=$2 dir="$OUT/leg$1" from
    shift 2
    if [ "$n" -lt "$FIRST" ] || [ "$n" -gt "$LAST" ]; then return; fi
    if [ -f "$dir/world_model.pt" ]; then echo "leg $n: finished earlier ($dir), skipped" && return; fi
    from=$(complete "$dir")  # stopped part-way: its own checkpoint
    if [ -z "$from" ] && [ "$n" -gt 1 ]; then
        # the last leg's checkpoint: as it saved it when it ran just now, else as found (after an interrupted save,
        # .previous); missing, train says so and names the folder
        [ "$RAN" = $((n - 1)) ] || from=$(complete "$OUT/leg$((n - 1))")
        from=${from:-$OUT/leg$((n - 1))/checkpoint}
    fi
    run bash scripts/run_main.sh "$@" --until-iteration "$until" "${COMMON[@]}" ${from:+--resume "$from"} --out "$dir"
    RAN=$n
}
RAN=0
leg 1 8 --iterations 8 --action-repeat 12 --plan-horizon 0
leg 2 11 --iterations 3 --action-repeat 12 --plan-horizon 0 --calibrate-deaths policy
leg 3 14 --iterations 3 --action-repeat 6 --plan-horizon 0 --calibrate-deaths policy
leg 4 16 --iterations 2 --action-repeat 6 --calibrate-deaths "${PLAN[@]}" --plan-collect --episodes-per-iteration 200
if [ "$LAST" -ge 5 ]; then  # leg 5, the distill step, is not a run_main.sh leg
    if [ -f "$OUT/distilled/world_model.pt" ]; then
        echo "leg 5: finished earlier ($OUT/distilled), skipped"
    else
        run "$PY" -m rllib_worldmodel.cli distill --checkpoint "$OUT/leg4/checkpoint" "${PLAN[@]}" --states 16000 \
            --eval-episodes 100 --out "$OUT/distilled"
    fi
fi
