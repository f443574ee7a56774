#!/usr/bin/env bash
# Issue 18: waypoint targets written as text (VLM2VLA's motion plans in language: each step's target is the point
# the expert's current straight move ends at, in centimetres) from the one-object grounding model, 3 training seeds,
# closed loop on the same 16 held-out single-item pick episodes as head-vs-text.sh (docs/RESULTS.md, session 9).
#
#   scripts/experiments/pick-waypoints.sh [OUT]        (default OUT: exp-pick-waypoints; BASE=DIR reuses a grounding model)
#
# Stages (each skipped when its output is there):
#   1. data: the single-item pick episodes of head-vs-text.sh, one action per chunk, relabelled with --waypoints
#   2. base: the one-object grounding model (common.sh), unless BASE is given
#   3. for seeds 0 1 2: actions as text, 2500 steps (batch 8, lr 1e-3, --workers 2) from the base, exported, rolled
#      out (rollout moves toward each written target in 1.5 cm steps)
#   4. one DAgger round per seed: 150 episodes driven by the policy (seeds 3000+) with the expert's moves as labels,
#      relabelled as waypoints the same way, then 1500 more steps on the demonstrations and these together
#   5. the table on stdout
#
# Wall time on an idle 2-core machine: stage 1 about 5 min, stage 2 about 17 min, each seed about 8 min of training
# and 1 min of rollout, then its DAgger round about 9 min: about 80 minutes.
set -euo pipefail
cd "$(dirname "$0")/../.."
V="node $(pwd)/bin/run.js"
. scripts/experiments/common.sh
OUT=${1:-exp-pick-waypoints}
mkdir -p "$OUT" && cd "$OUT"

pick_data 1 waypoints.jsonl --waypoints
BASE=${BASE:-base}
[ "$BASE" = base ] && grounding_base waypoints.jsonl

for seed in 0 1 2; do
  N=waypoints-s$seed
  if [ ! -s "roll-$N.txt" ]; then
    $V train-sft waypoints.jsonl --init "$BASE" --steps 2500 --batch-size 8 --lr 1e-3 --workers 2 --seed "$seed" --eval-every 100000 --save-every 100000 -q -o "$N" --overwrite
    $V export "$N" -o "$N-onnx" -q --overwrite
    roll "$N-onnx" "$N"
  fi
done
for seed in 0 1 2; do
  N=waypoints-dagger-s$seed
  if [ ! -s "roll-$N.txt" ]; then
    $V rollout --policy "waypoints-s$seed-onnx" --mode direct --prompt refinevla-nr --execute 1 --tasks pick --episodes 150 --seed 3000 --distractors 0 --dagger --workers 2 -q -o "dagger-s$seed.jsonl" --overwrite
    $V chunk "dagger-s$seed.jsonl" --mode fixed --horizon 1 -q -o "dagger-chunks-s$seed.jsonl" --overwrite
    $V relabel "dagger-chunks-s$seed.jsonl" --method refinevla --no-reasoning --actions text --units cm --precision 1 --state --waypoints --split 0.2 -q -o "dagger-s$seed-examples.jsonl" --overwrite
    cat waypoints.jsonl "dagger-s$seed-examples.jsonl" > "all-s$seed.jsonl"
    $V train-sft "all-s$seed.jsonl" --init "waypoints-s$seed" --steps 1500 --batch-size 8 --lr 1e-3 --workers 2 --seed "$seed" --eval-every 100000 --save-every 100000 -q -o "$N" --overwrite
    $V export "$N" -o "$N-onnx" -q --overwrite
    roll "$N-onnx" "$N"
  fi
done
table waypoints-s0 waypoints-s1 waypoints-s2 waypoints-dagger-s0 waypoints-dagger-s1 waypoints-dagger-s2
