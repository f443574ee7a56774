#!/usr/bin/env bash
# The RoboAlign claim on the built-in world, reproducibly: demonstrations -> plans -> VLM2VLA examples -> SFT of a
# tiny model -> RL on a small subset, over several seeds; prints held-out action accuracy before and after RL.
# Usage: bash scripts/rl-experiment.sh [OUT_DIR]   (about 10 minutes on 2 cores)
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=${1:-rl-experiment}
SEEDS=${SEEDS:-"0 1 2"}
LR=${RL_LR:-3e-3}
BETA=${RL_BETA:-0.04}
TAG=${RL_TAG:-rl}
vlakit() { node bin/run.js "$@"; }
mkdir -p "$OUT"
if [ ! -f "$OUT/sft/config.json" ]; then
  # a rerun after an earlier one stopped part-way regenerates these (--overwrite: each replaces its own output)
  vlakit rollout --policy scripted --tasks all --episodes 48 --seed 100 -q --overwrite -o "$OUT/demos/tabletop/1.0.0"
  vlakit annotate "$OUT/demos/tabletop" --kind plan -q --overwrite -o "$OUT/plans.jsonl"
  vlakit chunk "$OUT/plans.jsonl" --mode merge -q --overwrite -o "$OUT/chunks.jsonl"
  vlakit relabel "$OUT/chunks.jsonl" --method vlm2vla --actions text --split 0.2 --seed 1 -q --overwrite -o "$OUT/examples.jsonl"
  vlakit train-sft "$OUT/examples.jsonl" --preset tiny --steps 600 --batch-size 8 --lr 3e-3 -q -o "$OUT/sft"
fi
# RL prompts: the action-stage examples (the train split gives the prompts, the val split the held-out set)
grep '"stage":"actions"' "$OUT/examples.jsonl" > "$OUT/rl_examples.jsonl"
for s in $SEEDS; do
  vlakit train-rl "$OUT/rl_examples.jsonl" --init "$OUT/sft" --max-prompts 16 --group 8 --prompts-per-step 4 \
    --steps 15 --temperature 0.7 --lr "$LR" --beta "$BETA" --max-new-tokens 120 --eval-every 15 --seed "$s" --json --overwrite -o "$OUT/$TAG-$s" 2> "$OUT/$TAG-$s.json"
done
node -e '
const fs = require("fs");
const out = process.argv[1], seeds = process.argv[2].split(" "), tag = process.argv[3];
const rows = seeds.map((s) => JSON.parse(fs.readFileSync(`${out}/${tag}-${s}.json`, "utf8").trim().split("\n").pop()));
const stat = (xs) => { const m = xs.reduce((a, b) => a + b, 0) / xs.length; return [m, Math.sqrt(xs.reduce((a, x) => a + (x - m) ** 2, 0) / xs.length)]; };
for (const k of ["accuracy", "l1", "reward", "format"]) {
  const b = stat(rows.map((r) => r.eval.before[k])), a = stat(rows.map((r) => r.eval.after[k]));
  console.log(`${k.padEnd(9)} before ${b[0].toFixed(4)} +- ${b[1].toFixed(4)}   after ${a[0].toFixed(4)} +- ${a[1].toFixed(4)}   (${rows.map((r) => r.eval.before[k].toFixed(3) + "->" + r.eval.after[k].toFixed(3)).join(", ")})`);
}
console.log(`held-out prompts: ${rows[0].eval.before.prompts}`);
' "$OUT" "$SEEDS" "$TAG"
