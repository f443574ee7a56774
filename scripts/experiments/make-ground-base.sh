#!/usr/bin/env bash
# Makes the grounding base shipped as models/ground-base (its README; docs/RESULTS.md, issue 18, session 18): a
# `mini`-sized model on 128-px images whose 14 named keypoints find the built-in world's kinds of objects, trained
# with the grounding loss on "Where is the X?" questions about frames of the scripted expert's demonstrations of all
# four task families (half at the start, half 5-90 steps in: the hand over the table, items held above receptacles),
# every visible object a grounding target.
#
#   scripts/experiments/make-ground-base.sh [OUT]   (default OUT: exp-ground-base; the base lands in OUT/base)
#
# Settings (environment): QUESTIONS=12000 (made by two generators at once, seeds 7 and 8, half each), STEPS=2000
# (batch 16, lr 1e-3, grounding weight 1, --workers 2), STEM_CHANNELS=32 (the patch stem's width: the keypoints'
# per-cell features), KEYPOINT_CONTEXT=1 (vision_config.keypoint_context: the side of the square of cells each keypoint
# key reads; 3 for the base of session 20). TOKENIZER: by default the shipped base's (models/ground-base/tokenizer.json),
# so every model fine-tuned from either base reads the same token ids (another one, e.g. that file with reserved
# tokens added for action tokens or bins: scripts/experiments/vlm2vla.sh). EXTRA: more training examples (a JSONL
# file, e.g. scene questions from eval-vqa --generate --as examples) trained on beside the questions.
#
# Wall time on an idle 2-core machine (session 18's Intel Xeon): the questions about 11 min (two generators), the
# training about 12 min.
set -euo pipefail
# paths given in the environment are relative to where the script is called from
[ -z "${TOKENIZER:-}" ] || TOKENIZER=$(realpath "$TOKENIZER")
[ -z "${EXTRA:-}" ] || EXTRA=$(realpath "$EXTRA")
cd "$(dirname "$0")/../.."
ROOT=$(pwd)
V="node $ROOT/bin/run.js"
OUT=${1:-exp-ground-base}
QUESTIONS=${QUESTIONS:-12000}
STEPS=${STEPS:-2000}
STEM_CHANNELS=${STEM_CHANNELS:-32}
KEYPOINT_CONTEXT=${KEYPOINT_CONTEXT:-1}
TOKENIZER=${TOKENIZER:-$ROOT/models/ground-base/tokenizer.json}
mkdir -p "$OUT" && cd "$OUT"

if [ ! -s where.jsonl ]; then
  half=$((QUESTIONS / 2))
  pids=()
  for seed in 7 8; do
    [ -s "where-$seed.jsonl" ] || $V eval-vqa --generate "$half" --seed "$seed" --types where --tasks all --per-frame 1 --as examples --ground --ground-all -q -o "where-$seed.jsonl" --overwrite &
    pids+=($!)
  done
  for p in "${pids[@]}"; do wait "$p"; done # a generator's failure stops the script (set -e)
  cat where-7.jsonl where-8.jsonl > where.jsonl
fi
# the shipped base's architecture (models/ground-base/config.json) with the stem's width and the keys' context as set
node -e '
const c = JSON.parse(require("fs").readFileSync(process.argv[1], "utf8"));
delete c.vlakit;
c.vision_config.stem_channels = Number(process.argv[2]);
if (process.argv[3] !== "1") c.vision_config.keypoint_context = Number(process.argv[3]);
require("fs").writeFileSync("config.json", JSON.stringify(c, null, 2) + "\n");
' "$ROOT/models/ground-base/config.json" "$STEM_CHANNELS" "$KEYPOINT_CONTEXT"
[ -s base/model.safetensors ] || $V train-sft where.jsonl ${EXTRA:+"$EXTRA"} --config config.json --tokenizer "$TOKENIZER" --steps "$STEPS" --batch-size 16 --lr 1e-3 --workers 2 --ground-weight 1 --eval-every 100000 --save-every 100000 -q -o base --overwrite
echo "the base: $OUT/base"
