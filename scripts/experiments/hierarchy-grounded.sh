#!/usr/bin/env bash
# Issue 18: every task family with the grounded flow head as the low level of the VLM2VLA hierarchy (docs/RESULTS.md,
# session 13). Each training step's task is the subtask under way (relabel --subtask-prompts: "move to the spoon",
# "put the spoon on the towel"), so the four families share their skills; the head reads the keypoints of the first
# two objects its subtask names (--head-named-keypoints 2). In closed loop the plan is the world's subtask list and
# the verifier its oracle (--planner oracle --verifier oracle); every action comes from the head.
#
#   scripts/experiments/hierarchy-grounded.sh [OUT]   (default OUT: exp-hierarchy-grounded; SEEDS="0 1 2",
#                                                     STEPS=2500, DART_EPISODES=960, EPISODES=96 closed-loop episodes
#                                                     (24 per family) from EVAL_SEED=3000, NOISES="1 0": the head's
#                                                     starting noise in closed loop)
#
# Stages (each skipped when its output is there):
#   1. data: 24 plain + DART_EPISODES DART (3 mm) scripted episodes of all four families with 1-3 distractors and
#      pixel masks, one action per chunk, waypoint targets in cm with the robot state in the compact prompt of the
#      subtask, every visible object's centre as a grounding target
#   2. per seed: from the shipped base (models/ground-base), the flow head, STEPS steps (batch 8, lr 3e-3,
#      --workers 2, grounding weight 1, language weight 0.1), then EPISODES held-out episodes (seeds EVAL_SEED+)
#      closed loop from the checkpoint, once per noise scale in NOISES
#   3. the table on stdout: per run and family, successes, the 95% Wilson interval and the subtask kinds where the
#      failures ended
#
# Wall time on an idle 2-core machine: stage 1 about 4 min (DART_EPISODES=480: 2); per seed about 10 min of training
# (STEPS=5000: about 16) and 2 min of rollouts per noise scale: about 45 minutes for 3 seeds at 2500 steps with both
# scales, about 60 at 5000 steps with one (the longer recipe: STEPS=5000 NOISES=1).
set -euo pipefail
cd "$(dirname "$0")/../.."
ROOT=$(pwd)
V="node $ROOT/bin/run.js"
OUT=${1:-exp-hierarchy-grounded}
SEEDS=${SEEDS:-0 1 2}
STEPS=${STEPS:-2500}
EPISODES=${EPISODES:-96}
EVAL_SEED=${EVAL_SEED:-3000}
DART_EPISODES=${DART_EPISODES:-960}
NOISES=${NOISES:-1 0}
mkdir -p "$OUT" && cd "$OUT"

[ -s plain.jsonl ] || $V rollout --policy scripted --tasks all --episodes 24 --seed 0 --masks --workers 2 -q -o plain.jsonl --overwrite
[ -s dart.jsonl ] || $V rollout --policy scripted --tasks all --episodes "$DART_EPISODES" --seed 100 --dart 0.003 --masks --workers 2 -q -o dart.jsonl --overwrite
[ -s chunks.jsonl ] || cat plain.jsonl dart.jsonl | $V chunk --mode fixed --horizon 1 -q -o chunks.jsonl --overwrite
[ -s subtasks.jsonl ] || $V relabel chunks.jsonl --method vlm2vla --no-reasoning --compact-prompt --subtask-prompts --actions text --units cm --precision 1 --state --split 0.2 --waypoints --ground --ground-all -q -o subtasks.jsonl --overwrite

names=()
for seed in $SEEDS; do
  N=sub-s$seed-$STEPS
  [ -s "$N/action_head.json" ] || $V train-sft subtasks.jsonl --init "$ROOT/models/ground-base" --steps "$STEPS" --batch-size 8 --lr 3e-3 --workers 2 --seed "$seed" --ground-weight 1 --action-head flow --head-named-keypoints 2 --lang-weight 0.1 --eval-every "$STEPS" --eval-limit 200 --save-every 100000 -q -o "$N" --overwrite
  for z in $NOISES; do
    R=$N-noise$z-seeds$EVAL_SEED-x$EPISODES
    [ -s "roll-$R.txt" ] || $V rollout --policy "$N" --mode hierarchical --planner oracle --verifier oracle --max-retries 100 --prompt compact --execute 1 --head-noise "$z" --tasks all --episodes "$EPISODES" --seed "$EVAL_SEED" --workers 2 --json -o "roll-$R.jsonl" --overwrite 2> "roll-$R.txt"
    names+=("$R")
  done
done

node --input-type=module -e '
  import { existsSync, readFileSync } from "node:fs";
  const pct = (x) => (100 * x).toFixed(1);
  console.log("| run | family | success | 95% CI (Wilson) | failures ended in (subtask kind: count) |");
  console.log("| --- | --- | --- | --- | --- |");
  for (const name of process.argv.slice(1)) {
    if (!existsSync(`roll-${name}.txt`)) continue;
    const r = JSON.parse(readFileSync(`roll-${name}.txt`, "utf8").trim().split("\n").at(-1));
    for (const t of r.tasks) {
      const ends = {};
      for (const f of r.failures) if (f.family === t.family && !f.success) ends[f.ended_in?.kind ?? "-"] = (ends[f.ended_in?.kind ?? "-"] ?? 0) + 1;
      console.log(`| ${name} | ${t.family} | ${t.successes}/${t.episodes} | [${pct(t.ci95[0])}, ${pct(t.ci95[1])}] | ${Object.entries(ends).map(([k, n]) => `${k}: ${n}`).join(", ") || "-"} |`);
    }
  }
' "${names[@]}"
