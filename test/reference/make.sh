#!/usr/bin/env bash
# Remakes the reference dumps under test/fixtures/reference/: random weights from `vlakit model init` at each
# config (transformers' tensor names), seeded inputs, and the logits of the float64 NumPy reference
# (test/reference/hf_reference.py). Needs numpy; `make test` only reads the committed results.
set -euo pipefail
cd "$(dirname "$0")/../.."
for d in test/fixtures/reference/*/; do
  d=${d%/}
  rm -f "$d/model.safetensors"
  rm -rf "$d.tmp"; node bin/run.js model init --config "$d/config.json" --seed 7 -o "$d.tmp" -q
  mv "$d.tmp/model.safetensors" "$d/" && rm -rf "$d.tmp"
  python3 - "$d" <<'PY'
import json, sys
import numpy as np
d = sys.argv[1]
c = json.load(open(f"{d}/config.json"))
rng = np.random.RandomState(3)
if c["model_type"] == "idefics3":
    v = c["vision_config"]; s = v["image_size"]; per = (s // v["patch_size"]) ** 2 // c["scale_factor"] ** 2
    ids = [1, 5, 7] + [c["image_token_id"]] * per + [9, 11] + [c["image_token_id"]] * per + list(rng.randint(3, 59, 6))
    pix = rng.uniform(-1, 1, size=(2, 3, s, s))
    inp = {"input_ids": [int(i) for i in ids], "pixel_shape": list(pix.shape), "pixel_values": [round(float(x), 6) for x in pix.ravel()]}
else:
    inp = {"input_ids": [1] + [int(i) for i in rng.randint(3, c["vocab_size"], 17)]}
json.dump(inp, open(f"{d}/inputs.json", "w"))
PY
  python3 test/reference/hf_reference.py "$d"
done
