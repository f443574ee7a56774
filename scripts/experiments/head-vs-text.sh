#!/usr/bin/env bash
# Issue 25's experiment: actions as text vs a diffusion head vs a flow-matching head, on the same backbone, data and
# budget, 3 training seeds each, closed loop on the same 16 held-out single-item pick episodes (docs/RESULTS.md,
# "Actions as text vs a continuous action head").
#
#   scripts/experiments/head-vs-text.sh [OUT]        (default OUT: exp-head-vs-text)
#
# Stages (each skipped when its output is there, so an interrupted run continues):
#   1. data: pick with the item alone on the table, 24 plain + 320 DART (3 mm) scripted episodes, chunks of 4
#      actions, the robot state in the prompt and as numbers (relabel --state), 20% of the episodes held out
#   2. base: a `mini`-sized model with the patch stem and 16 keypoints, trained 4000 steps (batch 16, lr 1e-3) on
#      12,000 "Where is the X?" questions about single-item pick scenes: the one-object grounding model
#      (BASE=DIR uses an existing one instead)
#   3. for seeds 0 1 2: text / diffusion / flow, each 2500 steps (batch 8, lr 1e-3, --workers 2) from the base; the
#      heads with the language loss at weight 0.1; every policy runs from its ONNX export (a head's export gives the
#      checkpoint's episodes: same chunks to 1e-4; about half the cycle time of tfjs)
#   4. RoboAlign's order, per seed: GRPO (train-rl, rewarding action accuracy) on the text run of stage 3, then a
#      flow head over the frozen backbone, against the same head over the text run directly (the backbone frozen in
#      both, so the comparison is of the features GRPO leaves)
#   5. the table (success, 95% Wilson interval, median closest approach, cycle ms) on stdout
#
# Wall time on an idle 2-core machine: stage 1 about 5 min, stage 2 about 17 min, each of the 9 runs of stage 3
# 11-15 min (training) + 1 min (export and rollout); stage 4 per seed: GRPO 4-6 min and two frozen-backbone heads of
# 8-11 min each: about 2.5 hours for stages 1-3 and 75 minutes more for stage 4.
# STAGES="1 2 3" (the default: "1 2 3 4") stops before RoboAlign's order.
set -euo pipefail
cd "$(dirname "$0")/../.."
V="node $(pwd)/bin/run.js"
. scripts/experiments/common.sh
OUT=${1:-exp-head-vs-text}
mkdir -p "$OUT" && cd "$OUT"

pick_data 4 examples.jsonl
BASE=${BASE:-base}
[ "$BASE" = base ] && grounding_base examples.jsonl

for seed in 0 1 2; do
  for kind in text diffusion flow; do
    N=$kind-s$seed
    if [ ! -s "roll-$N.txt" ]; then
      extra=()
      [ "$kind" = text ] || extra=(--action-head "$kind" --lang-weight 0.1)
      $V train-sft examples.jsonl --init "$BASE" --steps 2500 --batch-size 8 --lr 1e-3 --workers 2 --seed "$seed" --eval-every 100000 --save-every 100000 -q -o "$N" --overwrite "${extra[@]}"
      $V export "$N" -o "$N-onnx" -q --overwrite
      roll "$N-onnx" "$N"
    fi
  done
done

if [[ " ${STAGES:-1 2 3 4} " == *" 4 "* ]]; then
  for seed in 0 1 2; do
    if [ ! -s "rl-s$seed/model.safetensors" ]; then
      $V train-rl examples.jsonl --init "text-s$seed" --max-prompts 64 --group 8 --prompts-per-step 4 --steps 30 --temperature 0.7 --max-new-tokens 120 --seed "$seed" -q -o "rl-s$seed" --overwrite
    fi
    for from in text rl; do
      N=$from-flow-frozen-s$seed
      if [ ! -s "roll-$N.txt" ]; then
        $V train-sft examples.jsonl --init "$from-s$seed" --action-head flow --freeze-backbone --steps 2500 --batch-size 8 --lr 1e-3 --workers 2 --seed "$seed" --eval-every 100000 --save-every 100000 -q -o "$N" --overwrite
        $V export "$N" -o "$N-onnx" -q --overwrite
        roll "$N-onnx" "$N"
      fi
    done
  done
fi

# the table: one row per run, from rollout's --json report (the last line of each roll-*.txt)
runs=()
for seed in 0 1 2; do for kind in text diffusion flow text-flow-frozen rl-flow-frozen; do runs+=("$kind-s$seed"); done; done
table "${runs[@]}"
