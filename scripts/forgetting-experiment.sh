#!/usr/bin/env bash
# Does the VLA keep its VLM skills? VLM2VLA's question (its Table 1), on the embedded default:
#  1. scene questions from the built-in world (train and test scenes apart), the test set held out;
#  2. a tiny base VLM pre-trained on the training questions (its tokenizer also covers the robot data);
#  3. the same robot data (VLM2VLA examples) fine-tuned two ways from that base: LoRA only, and every weight;
#  4. eval-vqa on the held-out questions: base, VLA-LoRA, VLA-full, with retention relative to the base.
# About 25 minutes on 2 cores. Usage: scripts/forgetting-experiment.sh [OUT] (default runs/forgetting).
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=${1:-runs/forgetting}
mkdir -p "$OUT"
vlakit() { node bin/run.js "$@"; }
# Rerunnable into the same OUT: each step replaces its own output (--overwrite), whole once it is complete.
BASE_STEPS=${BASE_STEPS:-1500}
VLA_STEPS=${VLA_STEPS:-800}

vlakit eval-vqa --generate "${TRAIN_QUESTIONS:-3000}" --seed 1 --as examples --overwrite -o "$OUT/sceneqa_train.jsonl"
vlakit eval-vqa --generate "${TEST_QUESTIONS:-300}" --seed 2 --overwrite -o "$OUT/sceneqa_test.jsonl"

vlakit rollout --policy scripted --tasks all --episodes 24 --seed 0 --overwrite -o "$OUT/demos.jsonl" -q
vlakit annotate "$OUT/demos.jsonl" --kind plan -q | vlakit chunk --mode merge -q | vlakit relabel --method vlm2vla --actions text --overwrite -o "$OUT/robot_examples.jsonl" -q

# the base VLM: two camera slots (the verifier examples show two frames), a vocabulary over both corpora
vlakit train-sft "$OUT/sceneqa_train.jsonl" --vocab-from "$OUT/robot_examples.jsonl" --cameras 2 --preset tiny --steps "$BASE_STEPS" --batch-size 16 --lr 3e-3 --overwrite -o "$OUT/base" -q
vlakit train-sft "$OUT/robot_examples.jsonl" --init "$OUT/base" --lora --lora-r 8 --lora-alpha 8 --steps "$VLA_STEPS" --batch-size 8 --lr 1e-3 --overwrite -o "$OUT/vla_lora" -q
vlakit train-sft "$OUT/robot_examples.jsonl" --init "$OUT/base" --steps "$VLA_STEPS" --batch-size 8 --lr 3e-3 --overwrite -o "$OUT/vla_full" -q

vlakit eval-vqa --models "base=$OUT/base,vla_lora=$OUT/vla_lora,vla_full=$OUT/vla_full" --data "$OUT/sceneqa_test.jsonl" --log-samples "$OUT/samples.jsonl" --overwrite --json 2> "$OUT/report.json" || { cat "$OUT/report.json"; exit 1; }
vlakit eval-vqa --models "base=$OUT/base,vla_lora=$OUT/vla_lora,vla_full=$OUT/vla_full" --data "$OUT/sceneqa_test.jsonl"
for m in vla_lora vla_full; do echo "$m: $(tail -n 1 "$OUT/$m/metrics.jsonl")"; done
