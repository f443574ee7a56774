#!/usr/bin/env bash
# How well the named keypoints of grounding bases find the built-in world's objects on frames they never saw (the
# READMEs of models/ground-base-wide and models/ground-base-ctx, docs/RESULTS.md): 200 "Where is the X?" questions
# about all four families' frames (seed 4243, every visible object a target), each base evaluated on them as
# train-sft's grounding evaluation does (`val_ground_miss`: targets more than one stem cell from the keypoint's
# expected position; `val_ground_error`: the median distance as a fraction of the image's side), per object too.
#
#   scripts/experiments/measure-keypoints.sh BASE... (default: models/ground-base models/ground-base-wide models/ground-base-ctx)
#
# Settings (environment): QUESTIONS=200, SEED=4243, TASKS=all, OUT=exp-keypoints. About 30 s for the questions and
# 10 s per base on 2 cores.
set -euo pipefail
cd "$(dirname "$0")/../.."
ROOT=$(pwd)
V="node $ROOT/bin/run.js"
QUESTIONS=${QUESTIONS:-200}
SEED=${SEED:-4243}
TASKS=${TASKS:-all}
OUT=${OUT:-exp-keypoints}
bases=("$@")
[ ${#bases[@]} -gt 0 ] || bases=(models/ground-base models/ground-base-wide models/ground-base-ctx)
abs=()
for b in "${bases[@]}"; do abs+=("$(cd "$b" && pwd)"); done
mkdir -p "$OUT" && cd "$OUT"
Q=where-$TASKS-$SEED-x$QUESTIONS.jsonl
[ -s "$Q" ] || $V eval-vqa --generate "$QUESTIONS" --seed "$SEED" --types where --tasks "$TASKS" --per-frame 1 --as examples --ground --ground-all -q -o "$Q" --overwrite
# every question a val example; a copy of the first 16 as the train split a run needs (one step at lr 1e-12: the
# weights stay as they are, the evaluation runs once)
node -e '
const fs = require("fs");
const q = fs.readFileSync(process.argv[1], "utf8").trim().split("\n").map(JSON.parse);
const train = q.slice(0, 16).map((e) => ({ ...e, id: `${e.id}-train`, meta: { ...e.meta, episode_id: `${e.meta.episode_id}-train`, split: "train" } }));
const val = q.map((e) => ({ ...e, meta: { ...e.meta, split: "val" } }));
fs.writeFileSync("eval.jsonl", [...train, ...val].map((e) => JSON.stringify(e)).join("\n") + "\n");
' "$Q"
echo "| base | missed | median error (px of a 64-px frame) | missed per object |"
echo "| --- | --- | --- | --- |"
for b in "${abs[@]}"; do
  R=run-$(basename "$b")
  $V train-sft eval.jsonl --init "$b" --steps 1 --lr 1e-12 --batch-size 8 --ground-weight 1 --eval-every 1 --save-every 100000 -q -o "$R" --overwrite
  node -e '
const fs = require("fs");
const m = fs.readFileSync(process.argv[1] + "/metrics.jsonl", "utf8").trim().split("\n").map(JSON.parse).filter((r) => r.val_ground_miss !== undefined).at(-1);
const by = Object.entries(m.val_ground_miss_by_object).sort((a, b) => b[1] - a[1]).map(([k, v]) => `${k} ${(100 * v).toFixed(0)}%`).join(", ");
console.log(`| ${process.argv[2]} | ${(100 * m.val_ground_miss).toFixed(1)}% | ${(64 * m.val_ground_error).toFixed(2)} | ${by} |`);
' "$R" "${b#$ROOT/}"
done
