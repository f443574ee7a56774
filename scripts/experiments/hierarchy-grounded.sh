#!/usr/bin/env bash
# Issue 18: every task family with the grounded flow head as the low level of the VLM2VLA hierarchy (docs/RESULTS.md,
# sessions 13 and 14). Each training step's task is the subtask under way (relabel --subtask-prompts: "move to the
# spoon", "put the spoon on the towel"), so the four families share their skills; the head reads the keypoints of the
# first two objects its subtask names (--head-named-keypoints 2). In closed loop the verifier is the world's oracle
# and the plan the world's subtask list (--planner oracle) or a text model's (PLANNERS=learned: trained on the world's
# lists, relabel --subtask-lists); every action comes from the head.
#
#   scripts/experiments/hierarchy-grounded.sh [OUT]   (default OUT: exp-hierarchy-grounded)
#
# Settings (environment): SEEDS="0 1 2"; STEPS=2500; DART_EPISODES=960; EPISODES=96 closed-loop episodes (24 per
# family) from EVAL_SEED=3000; NOISES="1 0" (the head's starting noise in closed loop); MODES="hierarchical" (add
# direct: the instruction as the head's task, no plan); PLANNERS="oracle" (add learned: the planner model, trained
# PLANNER_STEPS=600 steps); BASE=models/ground-base (the checkpoint the heads and the planner start from, relative
# to the repository; the run names do not say it, so another base needs another OUT);
# RELEASE_LEAD=0 (relabel --release-lead: each release labelled that many steps early; like BASE, another value
# needs another OUT); HEAD_SAMPLES=1 (rollout --head-samples: the median of that many chunks per cycle; the run
# names end -kK when above 1);
# DAGGER_EPISODES=0 (above 0: one DAgger round of that many episodes). DAGGER=finetune: a
# round per seed, after which the seed's head trains DAGGER_STEPS=2500 more steps; DAGGER=aggregate: one round with a
# collector head (seed 0, COLLECT_STEPS=2500 steps), whose labelled states join every seed's data before it trains.
#
# Stages (each skipped when its output is there):
#   1. data: 24 plain + DART_EPISODES DART (3 mm) scripted episodes of all four families with 1-3 distractors and
#      pixel masks, one action per chunk, waypoint targets in cm with the robot state in the compact prompt of the
#      subtask, every visible object's centre as a grounding target; with PLANNERS=learned, one subtask-list example
#      per episode and the planner trained on them (from models/ground-base, batch 8, lr 3e-3)
#   2. per seed: from the shipped base (models/ground-base), the flow head, STEPS steps (batch 8, lr 3e-3,
#      --workers 2, grounding weight 1, language weight 0.1); the optional DAgger round (the head drives the hierarchy
#      on DAGGER_EPISODES training episodes while the scripted expert labels its states, then DAGGER_STEPS steps at lr
#      1e-3 on those labels and the data above); then EPISODES held-out episodes (seeds EVAL_SEED+) closed loop from
#      the checkpoint, per noise scale, mode and planner
#   3. the table on stdout: per run and family, successes, the 95% Wilson interval and the subtask kinds where the
#      failures ended
#
# Wall time on an idle 2-core machine: stage 1 about 4 min (DART_EPISODES=480: 2; the planner of 1500 steps 4 more);
# per seed about 10 min of training (STEPS=5000: about 16), 2 min per closed-loop run of 96 episodes, and for a
# DAgger round of 384 episodes about 14 min. The longer recipe of session 14 (STEPS=5000 NOISES=1 MODES="hierarchical
# direct" PLANNERS="oracle learned" PLANNER_STEPS=1500): about 4 + 4 + 3 x (16 + 3 x 2) = 74 minutes. The recipe of
# session 19 (docs/RESULTS.md), better on every family in half the training: BASE=models/ground-base-wide NOISES=1
# MODES="hierarchical direct" (2500 steps): on the 2-core Xeon of session 19, about 4 + 3 x (14.5 + 2 x 3.5) = 70 minutes.
# The recipe of session 20 (pick 94%, place 71%, near 92%, place_then_lift 68% over 3 seeds):
# BASE=models/ground-base-ctx NOISES=1 MODES="hierarchical direct": on the 2-core AMD EPYC of session 20, about
# 2 + 3 x (15.5 + 2 x 1.5) = 58 minutes. The recipe of session 21, the best so far (pick 96%, place 81%, near 93%,
# place_then_lift 78%): the same with RELEASE_LEAD=2, about 60 minutes on the same machine. DAGGER=aggregate,
# measured on a slower machine (session 17, where STEPS=2500 on the plain data took 12.5 min): the collector 11 min,
# its round of 384 episodes 9 min, each seed's STEPS=5000 on the aggregate data 25 min.
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
DAGGER_EPISODES=${DAGGER_EPISODES:-0}
DAGGER_STEPS=${DAGGER_STEPS:-2500}
DAGGER=${DAGGER:-finetune}
COLLECT_STEPS=${COLLECT_STEPS:-2500}
case $DAGGER in finetune | aggregate) ;; *) echo "hierarchy-grounded.sh: DAGGER=$DAGGER: expected finetune or aggregate" >&2; exit 2 ;; esac
MODES=${MODES:-hierarchical}
PLANNERS=${PLANNERS:-oracle}
PLANNER_STEPS=${PLANNER_STEPS:-600}
RELEASE_LEAD=${RELEASE_LEAD:-0}
HEAD_SAMPLES=${HEAD_SAMPLES:-1}
BASE=$(cd "${BASE:-$ROOT/models/ground-base}" && pwd)
mkdir -p "$OUT" && cd "$OUT"

[ -s plain.jsonl ] || $V rollout --policy scripted --tasks all --episodes 24 --seed 0 --masks --workers 2 -q -o plain.jsonl --overwrite
[ -s dart.jsonl ] || $V rollout --policy scripted --tasks all --episodes "$DART_EPISODES" --seed 100 --dart 0.003 --masks --workers 2 -q -o dart.jsonl --overwrite
[ -s chunks.jsonl ] || cat plain.jsonl dart.jsonl | $V chunk --mode fixed --horizon 1 -q -o chunks.jsonl --overwrite
# the head's examples (the data above and a DAgger round's alike) and the head's training settings
RELABEL="--method vlm2vla --no-reasoning --compact-prompt --subtask-prompts --actions text --units cm --precision 1 --state --split 0.2 --waypoints --release-lead $RELEASE_LEAD --ground --ground-all"
HEAD="--batch-size 8 --workers 2 --ground-weight 1 --action-head flow --head-named-keypoints 2 --lang-weight 0.1 --eval-limit 200 --save-every 100000"
[ -s subtasks.jsonl ] || $V relabel chunks.jsonl $RELABEL -q -o subtasks.jsonl --overwrite

HIER="--mode hierarchical --planner oracle --verifier oracle"
if [[ " $PLANNERS " == *" learned "* ]]; then
  # the planner: a text model trained on the world's subtask lists of the same episodes (one example per episode)
  [ -s lists.jsonl ] || $V relabel chunks.jsonl --method vlm2vla --subtask-lists --split 0.2 -q -o lists.jsonl --overwrite
  [ -s planner/model.safetensors ] || $V train-sft lists.jsonl --init "$BASE" --steps "$PLANNER_STEPS" --batch-size 8 --lr 3e-3 --workers 2 --eval-every "$PLANNER_STEPS" --eval-limit 100 --save-every 100000 -q -o planner --overwrite
fi
# a DAgger round's states: the head drives the hierarchy on training seeds (apart from the data's and the evaluation's)
# while the scripted expert labels every state it visits (its own target: policy.dagger.target); $1 head, $2 first seed,
# $3 output name
dagger() {
  [ -s "$3.jsonl" ] || $V rollout --policy "$1" $HIER --prompt compact --execute 1 --dagger --tasks all --episodes "$DAGGER_EPISODES" --seed "$2" --masks --workers 2 -q -o "$3.jsonl" --overwrite
  [ -s "$3-examples.jsonl" ] || $V chunk "$3.jsonl" --mode fixed --horizon 1 -q | $V relabel $RELABEL -q -o "$3-examples.jsonl" --overwrite
}
# a head trained from the shipped base: $1 data, $2 steps, $3 seed, $4 output
from_base() {
  [ -s "$4/action_head.json" ] || $V train-sft "$1" --init "$BASE" --steps "$2" --lr 3e-3 --seed "$3" $HEAD --eval-every "$2" -q -o "$4" --overwrite
}
DATA=subtasks.jsonl
SUFFIX=
if [ "$DAGGER_EPISODES" -gt 0 ] && [ "$DAGGER" = aggregate ]; then
  # DAgger with aggregation (Ross et al. 2011): one collector head's mistakes, labelled by the expert, join the data
  # every seed's head then trains on from the base
  C=collect-s0-$COLLECT_STEPS
  from_base subtasks.jsonl "$COLLECT_STEPS" 0 "$C"
  dagger "$C" 5000 "dagger-$C"
  [ -s aggregate.jsonl ] || cat subtasks.jsonl "dagger-$C-examples.jsonl" > aggregate.jsonl
  DATA=aggregate.jsonl
  SUFFIX=-agg$DAGGER_EPISODES
fi
names=()
for seed in $SEEDS; do
  N=sub-s$seed-$STEPS$SUFFIX
  from_base "$DATA" "$STEPS" "$seed" "$N"
  if [ "$DAGGER_EPISODES" -gt 0 ] && [ "$DAGGER" = finetune ]; then
    # one DAgger round on the seed's own head (seeds 5000 + 1000 x seed); then the head trains on its states' labels
    # and the data above, from where it was
    D=dagger-s$seed-$STEPS
    dagger "$N" $((5000 + 1000 * seed)) "$D"
    P=$N-dagger$DAGGER_STEPS
    [ -s "$P/action_head.json" ] || cat subtasks.jsonl "$D-examples.jsonl" | $V train-sft --init "$N" --steps "$DAGGER_STEPS" --lr 1e-3 --seed "$seed" $HEAD --eval-every "$DAGGER_STEPS" -q -o "$P" --overwrite
    N=$P
  fi
  for z in $NOISES; do
    for mode in $MODES; do
      if [ "$mode" = hierarchical ]; then runs=$PLANNERS; else runs=direct; fi
      for planner in $runs; do
        case $planner in
          oracle) M=$HIER ;;
          learned) M="--mode hierarchical --planner planner --verifier oracle" ;;
          *) M="--mode direct" ;;
        esac
        R=$N-noise$z$([ "$HEAD_SAMPLES" = 1 ] || echo "-k$HEAD_SAMPLES")-$mode-$planner-seeds$EVAL_SEED-x$EPISODES
        [ -s "roll-$R.txt" ] || $V rollout --policy "$N" $M --prompt compact --execute 1 --head-noise "$z" --head-samples "$HEAD_SAMPLES" --tasks all --episodes "$EPISODES" --seed "$EVAL_SEED" --workers 2 --json -o "roll-$R.jsonl" --overwrite 2> "roll-$R.txt"
        names+=("$R")
      done
    done
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
