#!/usr/bin/env bash
# `make demo`: the main job end to end on the embedded default: demonstrations from the scripted expert in the
# built-in MuJoCo world (RLDS), teacher annotations (plans, rationales), action chunks and training examples,
# fine-tuning a small VLA (the mini preset) on both kinds of examples (direct: image + task + robot state -> the next
# actions; hierarchical: VLM2VLA's subtasks, motion plans, actions and verifier), its ONNX export evaluated closed loop
# in the hierarchical mode, the grounded policy (a flow-matching action head fine-tuned from the shipped grounding
# base, models/ground-base, on episodes of every family recorded with pixel masks, each step's task the subtask under
# way) exported and evaluated closed loop as the low level of the hierarchy on every family, a video of every episode,
# a short RL stage, and round trips through RLDS/JSONL/TFRecord (real TensorFlow files too). The closed-loop tables are
# printed last.
# About 15 minutes on 2 cores (15 min 18 s on a 2-core Xeon, installation included: the grounded policy's data and
# training take 10-11 of them, the text policy's 1.5, the grounded policy's closed loop 1.5);
# DEMO_EPISODES, DART_EPISODES, SFT_STEPS, SFT_WORKERS, EVAL_EPISODES, RL_STEPS, HEAD_EPISODES, HEAD_DART_EPISODES,
# HEAD_STEPS and HEAD_EVAL_EPISODES change the sizes; DEMO_TEXT_DIRECT=1 also runs the text model in direct mode.
set -euo pipefail
cd "$(dirname "$0")/.."
# `make demo > log`: with stdout in a file, the progress (on stderr) goes there too, as plain lines every 10 s
[ -t 1 ] || exec 2>&1
OUT=demo-out
rm -rf "$OUT"
mkdir -p "$OUT"
vlakit() { node bin/run.js "$@"; }
step() { printf '\n\033[1m== %s\033[0m\n' "$*"; }

EPISODES=${DEMO_EPISODES:-24}
# DEMO_WRIST=1 adds the wrist camera to the demonstrations and the direct policy's input
CAMS=$([ "${DEMO_WRIST:-0}" = 1 ] && echo --wrist || true)
step "Demonstrations: the scripted expert in the built-in tabletop world ($EPISODES episodes, all task families)"
vlakit rollout --policy scripted --env builtin:tabletop --tasks all --episodes "$EPISODES" --seed 0 --masks $CAMS -o "$OUT/demos/tabletop_demos/1.0.0"
vlakit inspect "$OUT/demos/tabletop_demos" --samples 8
vlakit convert "$OUT/demos/tabletop_demos" -o "$OUT/demos.jsonl"
vlakit convert "$OUT/demos.jsonl" --to rlds -o "$OUT/demos_copy/tabletop_demos/1.0.0"
cmp <(vlakit convert "$OUT/demos_copy/tabletop_demos" -q) "$OUT/demos.jsonl"
echo "RLDS -> JSONL -> RLDS -> JSONL: identical"
DART=${DART_EPISODES:-96}
echo "and $DART episodes with DART noise (3 mm std on each executed move; the expert's own action is recorded), so the data shows recoveries from the states a slightly wrong policy reaches:"
vlakit rollout --policy scripted --env builtin:tabletop --tasks all --episodes "$DART" --seed 100 --dart 0.003 $CAMS -q -o "$OUT/demos_dart.jsonl"

step "Annotation with the built-in kinematic teacher: subtask plans (VLM2VLA) and rationales (ReFineVLA)"
vlakit annotate "$OUT/demos/tabletop_demos" --kind plan -o "$OUT/plans.jsonl"
vlakit annotate "$OUT/demos/tabletop_demos" --kind reasoning --stride 2 -o "$OUT/reasoning/tabletop_reasoning/1.0.0"
node -e '
const l = require("fs").readFileSync(process.argv[1], "utf8").split("\n")[10];
const r = JSON.parse(l);
console.log("step 10 of the first episode:", r.language_instruction);
console.log("  plan subtask:", r.plan.description, "(steps " + r.plan.start + "-" + r.plan.end + "):", r.plan.main_movements);
' "$OUT/plans.jsonl"

step "Training data: merged action chunks and VLM2VLA / ReFineVLA examples; direct examples (image + task + robot state -> the next action)"
vlakit chunk "$OUT/plans.jsonl" --mode merge -o "$OUT/chunks.jsonl"
vlakit relabel "$OUT/chunks.jsonl" --stats-out "$OUT/action_stats.json"
# actions as text in centimeters with one decimal: half the tokens of meters with three, the same 1 mm resolution;
# --state: the action prompts carry the robot state (gripper position and opening), which rollout writes the same way
vlakit relabel "$OUT/chunks.jsonl" --method vlm2vla --actions text --units cm --precision 1 --state --split 0.2 --report -o "$OUT/examples_vlm2vla.jsonl"
vlakit convert "$OUT/demos/tabletop_demos" -q | cat - "$OUT/demos_dart.jsonl" | vlakit chunk --mode fixed --horizon 1 -o "$OUT/chunks_direct.jsonl"
vlakit relabel "$OUT/chunks_direct.jsonl" --method refinevla --no-reasoning --actions text --units cm --precision 1 --state --split 0.2 -o "$OUT/examples_direct.jsonl"
cat "$OUT/examples_vlm2vla.jsonl" "$OUT/examples_direct.jsonl" > "$OUT/examples_both.jsonl"
vlakit convert "$OUT/reasoning/tabletop_reasoning" -q | vlakit chunk --mode fixed --horizon 4 --stride 4 -o "$OUT/chunks_fixed.jsonl"
vlakit relabel "$OUT/chunks_fixed.jsonl" --method refinevla --actions words --split 0.2 -o "$OUT/examples_refinevla.jsonl"

step "Fine-tuning a small VLA (preset mini: 64-px images) on the VLM2VLA and direct examples together (TensorFlow.js; ${SFT_STEPS:=300} steps)"
# --workers: data-parallel threads (the WebAssembly backend runs on one core per thread in Node)
WORKERS=${SFT_WORKERS:-$(node -e 'console.log(Math.min(4, require("os").availableParallelism()))')}
vlakit train-sft "$OUT/examples_both.jsonl" --preset mini --steps "$SFT_STEPS" --batch-size 8 --lr 3e-3 --workers "$WORKERS" --eval-every 1000 --eval-limit 400 --save-every 1000 --stats "$OUT/action_stats.json" -o "$OUT/sft"
tail -n 1 "$OUT/sft/metrics.jsonl"

step "Export of the fine-tuned policy to ONNX (prefill + decode with a KV cache), checked against the checkpoint"
vlakit export "$OUT/sft" -o "$OUT/sft-onnx" --attentions
ls -l "$OUT/sft-onnx"
echo "and with int8 weights (7-bit, correct on every CPU; a quarter of the size, faster on the CPU; judged against the checkpoint by relative logit error):"
INT8_MODEL=",int8=$OUT/sft-int8"
if vlakit export "$OUT/sft" -o "$OUT/sft-int8" --quantize int8 2>"$OUT/sft-int8.log"; then
  cat "$OUT/sft-int8.log" >&2
else
  rc=$?
  cat "$OUT/sft-int8.log" >&2
  # only a missed parity tolerance is expected (int8 moves the logits); any other failure stops the demo
  if [ "$rc" = 1 ] && grep -q 'E_ONNX.*does not match its checkpoint' "$OUT/sft-int8.log"; then
    echo "The int8 export misses its parity tolerance on this machine, so it was not written; the demo goes on with the float32 export (the int8 model is left out of the VQA step)."
    INT8_MODEL=""
  else
    exit "$rc"
  fi
fi

step "Open-loop replay of the policy on the direct examples: error per action dimension beside the never-move baseline, and with blank images (does it read them?)"
vlakit replay --model "$OUT/sft-onnx" "$OUT/examples_direct.jsonl" --limit 100 --blank-images

step "Closed-loop evaluation of the exported policy in the built-in world (held-out seeds), a video of every episode in $OUT/videos: the VLM2VLA hierarchy (subtasks, motion plan, actions) with the model as its own verifier and with the world's oracle"
vlakit rollout --policy "$OUT/sft-onnx" --mode hierarchical --verifier model --tasks all --episodes 2 --seed 1000 -o "$OUT/eval_model_verifier.jsonl"
vlakit rollout --policy "$OUT/sft-onnx" --mode hierarchical --verifier oracle --max-retries 2 --tasks all --episodes "${EVAL_EPISODES:=8}" --seed 1000 --video "$OUT/videos/hierarchical" -o "$OUT/eval_oracle_verifier.jsonl" 2> "$OUT/eval_hierarchical.txt" || { cat "$OUT/eval_hierarchical.txt" >&2; exit 1; }
cat "$OUT/eval_hierarchical.txt"
node -e '
const r = JSON.parse(require("fs").readFileSync(process.argv[1], "utf8").split("\n")[0]);
console.log("first cycle of the first episode:", JSON.stringify({ subtasks: r.policy.subtasks, motion_plan: r.policy.motion_plan, actions: r.policy.text, timing: r.timing }));
' "$OUT/eval_oracle_verifier.jsonl"
if [ "${DEMO_TEXT_DIRECT:-0}" = 1 ]; then
  echo "and the same model in direct mode (its next action as text every step):"
  vlakit rollout --policy "$OUT/sft-onnx" --mode direct --prompt refinevla-nr $CAMS --execute 1 --tasks all --episodes "$EVAL_EPISODES" --seed 1000 --video "$OUT/videos/direct-text" -o "$OUT/eval_direct_text.jsonl"
fi

step "Where the policy looks when it writes actions (ReFineVLA attention maps; attention mass on the named object from the world's pixel masks)"
vlakit attn-viz --model "$OUT/sft-onnx" --input "$OUT/examples_vlm2vla.jsonl" --stage actions --limit 6 --tokens action --top-k 5 --fusion max -o "$OUT/attn"
ls "$OUT/attn"

step "The grounded policy in the VLM2VLA hierarchy: a flow-matching action head that reads where the named objects are, trained on every subtask of every family, fine-tuned from a grounding base (${HEAD_STEPS:=2500} steps)"
# models/ground-base (README inside): a model made by this project whose 14 named keypoints find the world's kinds of
# objects (trained on 12,000 "where is the X?" scenes; making it takes about 15 minutes, so it ships with vlakit).
# Its data: episodes of all four families among 1-3 distractors, recorded with the world's pixel masks, so each step
# also says where the objects are (relabel --ground --ground-all). Each step's task is the subtask under way ("move to
# the spoon", "put the spoon on the towel": relabel --subtask-prompts), the low level of the hierarchy, so every family
# teaches the skills the others share; each action is the position the expert was heading for (--waypoints). The head
# reads the keypoints of the first two objects its subtask names (--head-named-keypoints 2). The expert opens the hand
# only within 4 mm of its put point; each release is labelled 2 steps (3 cm of travel) early (--release-lead 2), so
# the head learns to open where it can tell it is there.
HEAD_DART=${HEAD_DART_EPISODES:-400}
echo "data: ${HEAD_EPISODES:=24} plain + $HEAD_DART DART episodes of every family with masks, seeds 0+ and 100+"
vlakit rollout --policy scripted --tasks all --episodes "$HEAD_EPISODES" --seed 0 --masks --workers "$WORKERS" -q -o "$OUT/head_plain.jsonl"
vlakit rollout --policy scripted --tasks all --episodes "$HEAD_DART" --seed 100 --dart 0.003 --masks --workers "$WORKERS" -q -o "$OUT/head_dart.jsonl"
cat "$OUT/head_plain.jsonl" "$OUT/head_dart.jsonl" | vlakit chunk --mode fixed --horizon 1 -q -o "$OUT/chunks_head.jsonl"
vlakit relabel "$OUT/chunks_head.jsonl" --method vlm2vla --no-reasoning --compact-prompt --subtask-prompts --actions text --units cm --precision 1 --state --split 0.2 --waypoints --release-lead 2 --ground --ground-all -o "$OUT/examples_head.jsonl"
node -e '
const e = JSON.parse(require("fs").readFileSync(process.argv[1], "utf8").split("\n")[40]);
console.log("an example:", JSON.stringify(e.messages[0].content.at(-1).text), "->", e.messages[1].content[0].text, "; where:", JSON.stringify(e.ground));
' "$OUT/examples_head.jsonl"
# the grounding loss keeps the keypoints on their objects where the hand covers them (--ground-weight 1)
vlakit train-sft "$OUT/examples_head.jsonl" --init models/ground-base --action-head flow --head-named-keypoints 2 --ground-weight 1 --lang-weight 0.1 --steps "$HEAD_STEPS" --batch-size 8 --lr 3e-3 --workers "$WORKERS" --eval-every "$HEAD_STEPS" --eval-limit 200 -o "$OUT/head"
tail -n 1 "$OUT/head/metrics.jsonl"
vlakit export "$OUT/head" -o "$OUT/head-onnx"
echo "closed loop on ${HEAD_EVAL_EPISODES:=32} held-out episodes (seeds 1000+), every family: the world's subtask list as the plan and its oracle as the verifier (--planner oracle --verifier oracle), every action from the head, sampled from its prior (the gripper's open/close is bimodal: the prior's mean would average it away):"
vlakit rollout --policy "$OUT/head-onnx" --mode hierarchical --planner oracle --verifier oracle --max-retries 100 --prompt compact --execute 1 --tasks all --episodes "$HEAD_EVAL_EPISODES" --seed 1000 --workers "$WORKERS" --video "$OUT/videos/head" -o "$OUT/eval_head.jsonl" 2> "$OUT/eval_head.txt" || { cat "$OUT/eval_head.txt" >&2; exit 1; }
cat "$OUT/eval_head.txt"

step "VQA: scene questions with exact answers from the world, asked of the policy (eval-vqa; scripts/forgetting-experiment.sh runs the full base-vs-VLA comparison)"
vlakit eval-vqa --generate 60 --seed 7 -o "$OUT/sceneqa.jsonl"
VQAV2=../shared/fixtures/vqa/vqav2
[ -n "$INT8_MODEL" ] || echo "(without the int8 export: it missed its parity tolerance in the export step)"
vlakit eval-vqa --models "sft=$OUT/sft,export=$OUT/sft-onnx$INT8_MODEL" --data "$OUT/sceneqa.jsonl" $([ -d "$VQAV2" ] && echo --data "$VQAV2") --log-samples "$OUT/vqa_samples.jsonl"

step "RL alignment (RoboAlign-style GRPO) on a small subset, rewarding action accuracy"
grep '"stage":"actions"' "$OUT/examples_vlm2vla.jsonl" > "$OUT/rl_examples.jsonl"
vlakit train-rl "$OUT/rl_examples.jsonl" --init "$OUT/sft" --max-prompts 8 --group 4 --prompts-per-step 2 --steps ${RL_STEPS:-6} --temperature 0.7 --lr 1e-3 --beta 0.2 --max-new-tokens 120 --eval-every ${RL_STEPS:-6} -o "$OUT/rl"
vlakit attn-viz --compare "sft=$OUT/sft,rl=$OUT/rl" --input "$OUT/examples_vlm2vla.jsonl" --stage actions --limit 3 --tokens action -o "$OUT/attn_sft_vs_rl"

PENGUIN=../shared/fixtures/tfrecord/tfx/penguin/Split-train_data_tfrecord-00000-of-00001.gz
if [ -f "$PENGUIN" ]; then
  step "A gzip TFRecord of tf.train.Example written by TensorFlow"
  vlakit inspect "$PENGUIN"
  vlakit convert "$PENGUIN" -o "$OUT/penguin.jsonl"
  head -n 2 "$OUT/penguin.jsonl"
  vlakit convert "$OUT/penguin.jsonl" -o "$OUT/penguin.tfrecord.gz"
  cmp <(vlakit convert "$OUT/penguin.tfrecord.gz" -q) "$OUT/penguin.jsonl"
  echo "JSONL -> gzip TFRecord -> JSONL: identical"
else
  echo "(../shared/fixtures not found: skipping the TensorFlow-written files)"
fi

step "An RLDS dataset in TFDS's layout: two cameras, nested observation, 7-D actions"
vlakit inspect fixtures/toy_kitchen --split train
vlakit convert fixtures/toy_kitchen --split train -o "$OUT/steps.jsonl"
vlakit convert "$OUT/steps.jsonl" --to rlds -o "$OUT/toy_kitchen/1.0.0" --features fixtures/toy_kitchen/1.0.0/features.json
ls "$OUT/toy_kitchen/1.0.0"
cmp <(vlakit convert "$OUT/toy_kitchen/1.0.0" -q) "$OUT/steps.jsonl"
echo "RLDS -> JSONL -> RLDS -> JSONL: identical"

step "Closed-loop success in the built-in world (held-out seeds 1000+, 95% Wilson intervals; videos in $OUT/videos)"
echo "the grounded policy in the hierarchy (the world's subtask list and oracle as planner and verifier, every action from the flow head; 1-3 distractors), every family:"
sed -n '/^task /,/^safety/p' "$OUT/eval_head.txt"
echo "the text policy in the hierarchy (VLM2VLA: subtasks, motion plan, actions as text, all from the model; the world's oracle as verifier), every family:"
sed -n '/^task /,/^safety/p' "$OUT/eval_hierarchical.txt"
echo "Done: outputs in $OUT/"
