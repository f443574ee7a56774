#!/usr/bin/env bash
# Issue 20, VLM2VLA's claim (docs/RESULTS.md): fine-tuning a VLM on robot data with LoRA and the actions written as
# text keeps the VLM's skills, where full fine-tuning and actions as reserved tokens forget them, while the policy
# still acts. On the built-in world, at the scale of 2 CPU cores:
#
#   scripts/experiments/vlm2vla.sh [OUT]   (default OUT: exp-vlm2vla)
#
# The base VLM: the grounding base's architecture (models/ground-base-ctx: 14 named keypoints, 3 x 3 keypoint keys,
# a 2-layer decoder 48 wide) trained from scratch (scripts/experiments/make-ground-base.sh) on its 12,000 "Where is
# the X?" questions with the grounding loss plus SCENE_QUESTIONS=4000 scene questions (colour, count, exists,
# left/right, on, holding; eval-vqa --generate, seed 21); its tokenizer is the shipped base's with 266 reserved
# tokens added (<unused0>..<unused265>, never seen in pre-training: the "least likely tokens" of a small VLM).
# The VLA: the same robot data for every arm (24 plain + DART_EPISODES DART episodes of all four families, waypoint
# targets with each release 2 steps early, the robot state in the compact prompt of the subtask under way: the
# hierarchy-grounded.sh recipe's data), fine-tuned STEPS steps (batch 8, --workers 2) from the base four ways:
#   lora-text    LoRA r16 / alpha 32 (decoder q,k,v,o,gate,up,down), actions as text in cm (VLM2VLA), lr LORA_LR=3e-3
#   full-text    every weight, actions as text, lr FULL_LR=1e-3
#   lora-tokens  LoRA r16 / alpha 32, actions as text with each digit spelled by one of the 10 reserved tokens
#                (VLM2VLA-AT), lr LORA_LR
#   full-bins    every weight, 256 bins per dimension over the targets' q01..q99, each bin a reserved token
#                (OpenVLA's actions), lr FULL_LR
#   lora-r1-text (not in the default ARMS) LoRA r1 / alpha 2, actions as text, lr LORA_LR: rank 16 of Gemma-3-12B's
#                3840-wide layers is 0.4% of their width; here the decoder is 48 wide, so r16 is a third of it and
#                hardly low-rank; r1 (2%) is the nearer match
# ARMS picks some of them. Per seed (SEEDS="0 1 2") and arm:
#   retention: eval-vqa on 400 held-out scene questions (seed 22) and 200 held-out where-questions (seed 4243, the
#     position metric: right within 2 cm), the base beside the VLA (eval-vqa's forgetting report); and the named
#     keypoints' misses on 200 held-out frames (scripts/experiments/measure-keypoints.sh), the base's visual grounding
#   closed loop: the ONNX export in the hierarchy with the world's plan and verifier (rollout --mode hierarchical
#     --planner oracle --verifier oracle --prompt compact --execute 1), EPISODES=96 held-out episodes (24 per
#     family) from EVAL_SEED=3000, greedy (TEMPERATURE=0: --temperature-actions, as OpenVLA decodes its actions)
# The table on stdout (TSV in OUT/table.tsv): per arm and seed, the scene-QA and where scores and their retention, the
# successes per family with Wilson 95% intervals, and the pooled rows over the seeds.
#
# Wall time on an idle 2-core AMD EPYC: the base about 25 min (its questions 8, training 15), the robot data 3 min;
# per arm and seed about 9 min of training (STEPS=1500), 1 min of evaluation and 3 min of closed loop.
set -euo pipefail
cd "$(dirname "$0")/../.."
ROOT=$(pwd)
V="node $ROOT/bin/run.js"
OUT=${1:-exp-vlm2vla}
SEEDS=${SEEDS:-0 1 2}
STEPS=${STEPS:-1500}
EPISODES=${EPISODES:-96}
EVAL_SEED=${EVAL_SEED:-3000}
DART_EPISODES=${DART_EPISODES:-960}
SCENE_QUESTIONS=${SCENE_QUESTIONS:-4000}
ARMS=${ARMS:-lora-text full-text lora-tokens full-bins}
LORA_LR=${LORA_LR:-3e-3}
FULL_LR=${FULL_LR:-1e-3}
TEMPERATURE=${TEMPERATURE:-0}
mkdir -p "$OUT" && cd "$OUT"
OUT=$(pwd)

# 1. the base VLM
[ -s tokenizer.json ] || node -e '
  // the shipped base tokenizer with 266 reserved tokens after its vocabulary (not special: they decode as text)
  const fs = require("fs");
  const t = JSON.parse(fs.readFileSync(process.argv[1], "utf8"));
  let next = 0;
  for (const id of Object.values(t.model.vocab)) next = Math.max(next, id + 1);
  for (const a of t.added_tokens) next = Math.max(next, a.id + 1);
  for (let i = 0; i < 266; i++) t.added_tokens.push({ id: next + i, content: `<unused${i}>`, single_word: false, lstrip: false, rstrip: false, normalized: false, special: false });
  fs.writeFileSync("tokenizer.json", JSON.stringify(t));
' "$ROOT/models/ground-base/tokenizer.json"
[ -s scene-train.jsonl ] || $V eval-vqa --generate "$SCENE_QUESTIONS" --seed 21 --tasks all --per-frame 2 --as examples -q -o scene-train.jsonl --overwrite
[ -s scene-test.jsonl ] || $V eval-vqa --generate 400 --seed 22 --tasks all --per-frame 2 -q -o scene-test.jsonl --overwrite
[ -s where-test.jsonl ] || $V eval-vqa --generate 200 --seed 4243 --types where --tasks all --per-frame 1 -q -o where-test.jsonl --overwrite
[ -s base-build/base/model.safetensors ] || STEM_CHANNELS=128 KEYPOINT_CONTEXT=3 TOKENIZER=tokenizer.json EXTRA=scene-train.jsonl bash "$ROOT/scripts/experiments/make-ground-base.sh" "$OUT/base-build"
BASE=$OUT/base-build/base
[ -s kp-base.md ] || OUT=$OUT/keypoints bash "$ROOT/scripts/experiments/measure-keypoints.sh" "$BASE" > kp-base.md

# 2. the robot data, one set of examples per action representation
[ -s plain.jsonl ] || $V rollout --policy scripted --tasks all --episodes 24 --seed 0 --masks --workers 2 -q -o plain.jsonl --overwrite
[ -s dart.jsonl ] || $V rollout --policy scripted --tasks all --episodes "$DART_EPISODES" --seed 100 --dart 0.003 --masks --workers 2 -q -o dart.jsonl --overwrite
[ -s chunks.jsonl ] || cat plain.jsonl dart.jsonl | $V chunk --mode fixed --horizon 1 -q -o chunks.jsonl --overwrite
RELABEL="--method vlm2vla --no-reasoning --compact-prompt --subtask-prompts --state --split 0.2 --waypoints --release-lead 2"
[ -s text.jsonl ] || $V relabel chunks.jsonl $RELABEL --actions text --units cm --precision 1 -q -o text.jsonl --overwrite
[ -s tokens.jsonl ] || $V relabel chunks.jsonl $RELABEL --actions tokens --tokenizer tokenizer.json --units cm --precision 1 -q -o tokens.jsonl --overwrite
[ -s stats.json ] || $V relabel chunks.jsonl --waypoints --release-lead 2 -q --stats-out stats.json --overwrite
[ -s bins.jsonl ] || $V relabel chunks.jsonl $RELABEL --actions bins --tokenizer tokenizer.json --stats stats.json -q -o bins.jsonl --overwrite

# 3. per seed and arm: fine-tune, score the VQA, export, roll out
for seed in $SEEDS; do
  for arm in $ARMS; do
    case $arm in
      lora-text) data=text.jsonl how="--lora --lora-r 16 --lora-alpha 32 --lr $LORA_LR" ;;
      full-text) data=text.jsonl how="--lr $FULL_LR" ;;
      lora-r1-text) data=text.jsonl how="--lora --lora-r 1 --lora-alpha 2 --lr $LORA_LR" ;;
      lora-tokens) data=tokens.jsonl how="--lora --lora-r 16 --lora-alpha 32 --lr $LORA_LR" ;;
      full-bins) data=bins.jsonl how="--lr $FULL_LR" ;;
      *) echo "vlm2vla.sh: unknown arm $arm (expected lora-text, full-text, lora-tokens, full-bins or lora-r1-text)" >&2; exit 2 ;;
    esac
    N=$arm-s$seed-$STEPS
    [ -s "$N/model.safetensors" ] || $V train-sft "$data" --init "$BASE" $how --steps "$STEPS" --batch-size 8 --workers 2 --seed "$seed" --eval-every "$STEPS" --eval-limit 200 --save-every 100000 -q -o "$N" --overwrite
    [ -s "vqa-$N.json" ] || { $V eval-vqa --models "base=$BASE,vla=$N" --data scene-test.jsonl --data where-test.jsonl --json -q 2> "vqa-$N.tmp" && mv "vqa-$N.tmp" "vqa-$N.json"; }
    [ -s "kp-$N.md" ] || OUT=$OUT/keypoints bash "$ROOT/scripts/experiments/measure-keypoints.sh" "$OUT/$N" > "kp-$N.md"
    [ -d "$N-onnx" ] || $V export "$N" -o "$N-onnx" -q
    R=roll-$N-temp$TEMPERATURE-seeds$EVAL_SEED-x$EPISODES
    [ -s "$R.txt" ] || $V rollout --policy "$N-onnx" --mode hierarchical --planner oracle --verifier oracle --prompt compact --execute 1 --temperature-actions "$TEMPERATURE" --tasks all --episodes "$EPISODES" --seed "$EVAL_SEED" --workers 2 --json -o "$R.jsonl" --overwrite 2> "$R.txt"
  done
done

# 4. the table
node --input-type=module - "$ROOT" "$STEPS" "$EVAL_SEED" "$EPISODES" "$SEEDS" "$ARMS" "$TEMPERATURE" <<'JS' | tee table.tsv
import { existsSync, readFileSync, writeFileSync } from "node:fs";
const [root, steps, evalSeed, episodes, seeds, arms, temperature] = process.argv.slice(2);
const summary = {}; // for the plot: per arm, each seed's scene-QA retention and successes
const { wilson } = await import(`${root}/dist/lib/env/rollout.js`); // the interval rollout reports
const pct = (x) => (100 * x).toFixed(1);
const last = (f) => JSON.parse(readFileSync(f, "utf8").trim().split("\n").at(-1));
// measure-keypoints.sh's row: | model | missed% | ...
const missed = (f) => Number(readFileSync(f, "utf8").split("\n").find((l) => /^\| (?!base \|)(?!---)/.test(l))?.split("|")[2].replace("%", ""));
const FAMILIES = ["pick", "place", "near", "place_then_lift"];
const BENCH = ["scene-test", "where-test"];
const baseMiss = existsSync("kp-base.md") ? missed("kp-base.md") : NaN;
console.log(["arm", "seed", "scene QA (base)", "retained", "where within 2 cm (base)", "retained", `keypoints missed (base ${baseMiss}%)`, ...FAMILIES, "all, 95% CI"].join("\t"));
for (const arm of arms.split(/\s+/)) {
  const pooled = { k: {}, q: {}, kp: [] };
  for (const seed of seeds.split(/\s+/)) {
    const n = `${arm}-s${seed}-${steps}`;
    const r = `roll-${n}-temp${temperature}-seeds${evalSeed}-x${episodes}.txt`;
    if (!existsSync(`vqa-${n}.json`) || !existsSync(r)) continue;
    const q = last(`vqa-${n}.json`).report.benchmarks;
    const cells = [arm, seed];
    for (const b of BENCH) {
      const { base, vla } = q.find((x) => x.benchmark === b).scores;
      cells.push(`${pct(vla)} (${pct(base)})`, base ? `${pct(vla / base)}%` : "-");
      (pooled.q[b] ??= []).push([vla, base]);
    }
    const kp = existsSync(`kp-${n}.md`) ? missed(`kp-${n}.md`) : NaN;
    cells.push(`${kp}%`);
    pooled.kp.push(kp);
    const roll = last(r);
    let k = 0, m = 0;
    for (const f of FAMILIES) {
      const t = roll.tasks.find((x) => x.family === f) ?? { successes: 0, episodes: 0 };
      cells.push(`${t.successes}/${t.episodes}`);
      k += t.successes; m += t.episodes;
      const p = (pooled.k[f] ??= [0, 0]); p[0] += t.successes; p[1] += t.episodes;
    }
    const [lo, hi] = wilson(k, m);
    cells.push(`${k}/${m} = ${pct(k / m)}% [${pct(lo)}, ${pct(hi)}]`);
    const a = (pooled.k.all ??= [0, 0]); a[0] += k; a[1] += m;
    const [vla, base] = pooled.q["scene-test"].at(-1);
    (summary[arm] ??= []).push({ seed, retained: base ? vla / base : 0, successes: k, episodes: m });
    console.log(cells.join("\t"));
  }
  if (!pooled.k.all) continue;
  const cells = [arm, "pooled"];
  for (const b of BENCH) {
    const v = pooled.q[b].reduce((s, [x]) => s + x, 0), base = pooled.q[b].reduce((s, [, y]) => s + y, 0);
    cells.push(`${pct(v / pooled.q[b].length)} (${pct(base / pooled.q[b].length)})`, base ? `${pct(v / base)}%` : "-");
  }
  cells.push(`${(pooled.kp.reduce((s, x) => s + x, 0) / pooled.kp.length).toFixed(1)}%`);
  for (const f of [...FAMILIES, "all"]) {
    const [k, m] = pooled.k[f];
    const [lo, hi] = wilson(k, m);
    cells.push(f === "all" ? `${k}/${m} = ${pct(k / m)}% [${pct(lo)}, ${pct(hi)}]` : `${k}/${m}`);
  }
  console.log(cells.join("\t"));
}
writeFileSync("summary.json", JSON.stringify(summary, null, 2) + "\n");
JS
# the plot: closed-loop success against scene-QA retention, per arm (pooled over the seeds, Wilson 95% interval) and
# per seed (hollow)
node --input-type=module - "$ROOT" <<'JS'
import { readFileSync } from "node:fs";
const { writeChartPng } = await import(`${process.argv[2]}/dist/lib/viz/chart.js`);
const summary = JSON.parse(readFileSync("summary.json", "utf8"));
const { wilson } = await import(`${process.argv[2]}/dist/lib/env/rollout.js`);
const COLORS = ["#0072b2", "#d55e00", "#009e73", "#cc79a7", "#e69f00"];
const series = [];
Object.entries(summary).forEach(([arm, runs], i) => {
  const k = runs.reduce((s, r) => s + r.successes, 0), n = runs.reduce((s, r) => s + r.episodes, 0);
  const [lo, hi] = wilson(k, n);
  const ret = runs.reduce((s, r) => s + r.retained, 0) / runs.length;
  series.push({ name: `${arm} (${runs.length} seeds)`, color: COLORS[i % 5], points: [{ x: 100 * ret, y: (100 * k) / n, yLow: 100 * lo, yHigh: 100 * hi }] });
  series.push({ name: `${arm}, each seed`, color: COLORS[i % 5], hollow: true, points: runs.map((r) => ({ x: 100 * r.retained, y: (100 * r.successes) / r.episodes })) });
});
await writeChartPng({ title: "VLM2VLA on the built-in world: what the VLA keeps vs what it does", xLabel: "scene-QA exact match kept (% of the base VLM's)", yLabel: "closed-loop success, all families (%)", xDomain: [-5, 105], yDomain: [0, 100], width: 900, height: 520, series }, "retention-vs-success.png", { overwrite: true });
console.log("the plot: retention-vs-success.png");
JS
