#!/usr/bin/env bash
# Issue 18: pick the named item among 1-3 distractors with grounded keypoints (docs/RESULTS.md, sessions 10-12). The
# vision tower's keypoints are named after the world's 14 kinds of objects (vision_config.keypoint_names) and trained
# by the grounding loss (train-sft --ground-weight) to find their object, from the pixel masks of the demonstrations
# (rollout --masks, relabel --ground --ground-all); a flow-matching action head reads the keypoint of the object the
# instruction names (--head-named-keypoints 1) and writes waypoint targets (relabel --waypoints).
#
#   scripts/experiments/pick-grounded.sh [OUT]        (default OUT: exp-pick-grounded; SEEDS="0 1 2", STEPS=2500,
#                                                     DART_EPISODES=960, EPISODES=16 closed-loop episodes from
#                                                     EVAL_SEED=2000; session 12's table: EPISODES=64 EVAL_SEED=3000;
#                                                     session 11's: DART_EPISODES=320, another OUT)
#
# Stages (each skipped when its output is there):
#   1. data: 24 plain + DART_EPISODES DART (3 mm) scripted pick episodes with 1-3 distractors and pixel masks, one
#      action per chunk, waypoint targets in cm (where the expert was heading, which DART records per step) with the
#      robot state in the compact task prompt, every visible object's centre as a grounding target
#   2. the grounding base: models/ground-base (shipped; README inside), or with MAKE_BASE=1 made again here: a
#      `mini`-sized model on 128-px images (8-px stem cells, 16 x 16 of them; 16 keypoints, 14 of them named after the
#      world's kinds of objects) trained 2000 steps (batch 16, lr 1e-3, grounding weight 1) on 12,000 "where is the X"
#      questions about pick scenes with 1-3 distractors, every visible object grounded; its tokenizer from the
#      questions and the same pick examples with session 10's ReFineVLA prompt (the shipped base: DART_EPISODES=320)
#   3. per seed: from the base, the flow head reading the named item's keypoint, STEPS steps (batch 8, lr 3e-3,
#      --workers 2, grounding weight 1, language weight 0.1), then EPISODES held-out pick episodes (seeds
#      EVAL_SEED+, 1-3 distractors) closed loop from the checkpoint, with the sampler's noise (--head-noise 1) and
#      from its mean (0)
#   4. the table on stdout
#
# Wall time on an idle 2-core machine: stage 1 about 1 min; per seed about 7 min of training and 1 min of rollouts
# (EPISODES=64: 2 min): about 25 minutes with the shipped base (MAKE_BASE=1: 7 min of questions and 8 min of
# training more).
set -euo pipefail
cd "$(dirname "$0")/../.."
ROOT=$(pwd)
V="node $ROOT/bin/run.js"
. scripts/experiments/common.sh
OUT=${1:-exp-pick-grounded}
SEEDS=${SEEDS:-0 1 2}
STEPS=${STEPS:-2500}
EPISODES=${EPISODES:-16}
EVAL_SEED=${EVAL_SEED:-2000}
DART_EPISODES=${DART_EPISODES:-960}
mkdir -p "$OUT" && cd "$OUT"

[ -s plain.jsonl ] || $V rollout --policy scripted --tasks pick --episodes 24 --seed 0 --masks --workers 2 -q -o plain.jsonl --overwrite
[ -s dart.jsonl ] || $V rollout --policy scripted --tasks pick --episodes "$DART_EPISODES" --seed 100 --dart 0.003 --masks --workers 2 -q -o dart.jsonl --overwrite
[ -s chunks.jsonl ] || cat plain.jsonl dart.jsonl | $V chunk --mode fixed --horizon 1 -q -o chunks.jsonl --overwrite
[ -s grounded.jsonl ] || $V relabel chunks.jsonl --method vlm2vla --no-reasoning --compact-prompt --actions text --units cm --precision 1 --state --split 0.2 --waypoints --ground --ground-all -q -o grounded.jsonl --overwrite

BASE=$ROOT/models/ground-base
if [ "${MAKE_BASE:-0}" = 1 ]; then
  BASE=base
  cat > config.json <<'JSON'
{"model_type": "vlakit-vla", "architectures": ["VlaForCausalLM"], "vision_config": {"image_size": 128, "patch_size": 32, "hidden_size": 64, "num_hidden_layers": 1, "num_attention_heads": 2, "intermediate_size": 128, "layer_norm_eps": 1e-06, "stem_patch_size": 8, "stem_channels": 32, "keypoints": 16, "keypoint_names": ["carrot", "eggplant", "corn", "mushroom", "spoon", "red block", "green block", "yellow block", "blue block", "plate", "towel", "pot", "pan", "basket"]}, "text_config": {"vocab_size": 512, "hidden_size": 48, "num_hidden_layers": 2, "num_attention_heads": 4, "num_key_value_heads": 2, "intermediate_size": 128, "rms_norm_eps": 1e-06, "rope_theta": 10000, "max_position_embeddings": 256}, "num_cameras": 1, "tie_word_embeddings": true, "initializer_range": 0.1, "torch_dtype": "float32"}
JSON
  if [ ! -s base/model.safetensors ]; then
    [ -s grounded-text.jsonl ] || $V relabel chunks.jsonl --method refinevla --no-reasoning --actions text --units cm --precision 1 --state --split 0.2 --waypoints --ground --ground-all -q -o grounded-text.jsonl --overwrite
    [ -s where.jsonl ] || $V eval-vqa --generate 12000 --seed 7 --types where --tasks pick --per-frame 1 --as examples --ground --ground-all -q -o where.jsonl --overwrite
    $V train-sft where.jsonl --config config.json --vocab-size 512 --vocab-from grounded-text.jsonl --steps 2000 --batch-size 16 --lr 1e-3 --workers 2 --ground-weight 1 --eval-every 100000 --save-every 100000 -q -o base --overwrite
  fi
fi
names=()
for seed in $SEEDS; do
  N=grounded-s$seed
  [ -s "$N/action_head.json" ] || $V train-sft grounded.jsonl --init "$BASE" --steps "$STEPS" --batch-size 8 --lr 3e-3 --workers 2 --seed "$seed" --ground-weight 1 --action-head flow --head-named-keypoints 1 --lang-weight 0.1 --eval-every "$STEPS" --eval-limit 200 --save-every 100000 -q -o "$N" --overwrite
  for z in 1 0; do
    R=$N-noise$z-seeds$EVAL_SEED-x$EPISODES
    [ -s "roll-$R.txt" ] || $V rollout --policy "$N" --mode direct --prompt compact --execute 1 --head-noise $z --tasks pick --episodes "$EPISODES" --seed "$EVAL_SEED" --json -o "roll-$R.jsonl" --overwrite 2> "roll-$R.txt"
    names+=("$R")
  done
done
table "${names[@]}"
