# Shared stages of the single-item pick experiments (sourced by head-vs-text.sh and pick-waypoints.sh; $V is the
# vlakit command, the working directory the experiment's output directory).

# pick_data HORIZON OUT [relabel flags...]: pick with the item alone on the table, 24 plain + 320 DART (3 mm) scripted
# episodes, chunks of HORIZON actions, the robot state in the prompt and as numbers, 20% of the episodes held out.
pick_data() {
  local horizon=$1 out=$2
  shift 2
  [ -s "$out" ] && return 0
  [ -s plain.jsonl ] || $V rollout --policy scripted --tasks pick --episodes 24 --seed 0 --distractors 0 -q -o plain.jsonl --overwrite
  [ -s dart.jsonl ] || $V rollout --policy scripted --tasks pick --episodes 320 --seed 100 --dart 0.003 --distractors 0 -q -o dart.jsonl --overwrite
  cat plain.jsonl dart.jsonl | $V chunk --mode fixed --horizon "$horizon" -q -o "chunks-h$horizon.jsonl" --overwrite
  $V relabel "chunks-h$horizon.jsonl" --method refinevla --no-reasoning --actions text --units cm --precision 1 --state --split 0.2 -q -o "$out" --overwrite "$@"
}

# grounding_base VOCAB_FROM: the one-object grounding model in ./base, unless there: a `mini`-sized model with the
# patch stem and 16 keypoints, trained 4000 steps (batch 16, lr 1e-3) on 12,000 "Where is the X?" questions about
# single-item pick scenes; its vocabulary from the questions and VOCAB_FROM (the action examples it is fine-tuned on).
grounding_base() {
  [ -s base/model.safetensors ] && return 0
  $V eval-vqa --generate 12000 --seed 7 --types where --tasks pick --distractors 0 --per-frame 1 --as examples -q -o where.jsonl --overwrite
  cat > base-config.json <<'JSON'
{"model_type": "vlakit-vla", "architectures": ["VlaForCausalLM"], "vision_config": {"image_size": 64, "patch_size": 16, "hidden_size": 64, "num_hidden_layers": 1, "num_attention_heads": 2, "intermediate_size": 128, "layer_norm_eps": 1e-06, "stem_patch_size": 4, "stem_channels": 32, "keypoints": 16}, "text_config": {"vocab_size": 512, "hidden_size": 48, "num_hidden_layers": 2, "num_attention_heads": 4, "num_key_value_heads": 2, "intermediate_size": 128, "rms_norm_eps": 1e-06, "rope_theta": 10000, "max_position_embeddings": 256}, "num_cameras": 1, "tie_word_embeddings": true, "initializer_range": 0.1, "torch_dtype": "float32"}
JSON
  $V train-sft where.jsonl --config base-config.json --vocab-size 512 --vocab-from "$1" --steps 4000 --batch-size 16 --lr 1e-3 --workers 2 --eval-every 100000 --save-every 100000 -q -o base --overwrite
}

# roll POLICY NAME: 16 held-out single-item pick episodes (seeds 2000+), one action per cycle; the report as JSON in roll-NAME.txt
roll() {
  $V rollout --policy "$1" --mode direct --prompt refinevla-nr --execute 1 --tasks pick --episodes 16 --seed 2000 --distractors 0 --json -o "roll-$2.jsonl" --overwrite 2> "roll-$2.txt"
}

# table NAME...: one row per rollout report roll-NAME.txt that exists (success, 95% Wilson interval, median closest
# approach of the failed episodes, median cycle time)
table() {
  node --input-type=module -e '
    import { existsSync, readFileSync } from "node:fs";
    console.log("| run | pick | 95% CI (Wilson) | closest approach of the failed episodes, median (cm) | cycle ms, median |");
    console.log("| --- | --- | --- | --- | --- |");
    for (const name of process.argv.slice(1)) {
      if (!existsSync(`roll-${name}.txt`)) continue;
      const r = JSON.parse(readFileSync(`roll-${name}.txt`, "utf8").trim().split("\n").at(-1));
      const t = r.tasks[0];
      const d = r.failures.filter((f) => !f.success && f.min_distance_m != null).map((f) => 100 * f.min_distance_m).sort((a, b) => a - b);
      const med = d.length ? d[Math.floor(d.length / 2)].toFixed(1) : "-";
      console.log(`| ${name} | ${t.successes}/${t.episodes} | [${(100 * t.ci95[0]).toFixed(1)}, ${(100 * t.ci95[1]).toFixed(1)}] | ${med} | ${Math.round(t.latencyMs.median)} |`);
    }
  ' "$@"
}
