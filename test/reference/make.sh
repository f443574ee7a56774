#!/usr/bin/env bash
# Remakes the reference dumps under test/fixtures/reference/: random weights from `vlakit model init` at each
# config (transformers' tensor names), seeded inputs, and the logits of the float64 NumPy reference
# (test/reference/hf_reference.py). Needs numpy; `make test` only reads the committed results.
# vlakit-vla-tiny: VlaModel.init's weights (model init is for Hugging Face layouts), its norms and biases noised too.
# Arguments: the dump directories to remake (default: all). Gemma's norm weights, which model init sets to 0 as
# transformers does (the model multiplies by 1 + w), get seeded noise so the dumps exercise them.
set -euo pipefail
cd "$(dirname "$0")/../.."
dirs=("$@")
[ ${#dirs[@]} -gt 0 ] || dirs=(test/fixtures/reference/*/)
for d in "${dirs[@]}"; do
  d=${d%/}
  rm -f "$d/model.safetensors"
  if grep -q '"vlakit-vla"' "$d/config.json"; then
    # vlakit's own model: VlaModel.init's weights ([in, out] linears), as a train-sft run starts
    node --input-type=module -e '
      import { readFileSync } from "node:fs";
      import { VlaModel } from "./dist/lib/model/model.js";
      import { writeSafetensors } from "./dist/lib/model/safetensors.js";
      const d = process.argv[1];
      const m = VlaModel.init(JSON.parse(readFileSync(`${d}/config.json`, "utf8")), 7);
      await writeSafetensors(`${d}/model.safetensors`, new Map([...m.params].map(([n, v]) => [n, { shape: v.shape, data: v.dataSync() }])));
    ' "$d"
  else
    rm -rf "$d.tmp"; node bin/run.js model init --config "$d/config.json" --seed 7 -o "$d.tmp" -q
    mv "$d.tmp/model.safetensors" "$d/" && rm -rf "$d.tmp"
  fi
  python3 - "$d" <<'PY'
import json, struct, sys
import numpy as np
d = sys.argv[1]
c = json.load(open(f"{d}/config.json"))
if c["model_type"] in ("gemma3_text", "gemma3", "paligemma", "vlakit-vla"):
    path = f"{d}/model.safetensors"
    raw = open(path, "rb").read()
    (n,) = struct.unpack("<Q", raw[:8])
    header = json.loads(raw[8 : 8 + n])
    rng = np.random.RandomState(11)
    arrays = {}
    for name in sorted(k for k in header if k != "__metadata__"):
        info = header[name]
        assert info["dtype"] == "F32"
        a, b = info["data_offsets"]
        x = np.frombuffer(raw[8 + n + a : 8 + n + b], dtype="<f4").reshape(info["shape"]).copy()
        if len(info["shape"]) == 1 and ("norm" in name or (c["model_type"] == "vlakit-vla" and (".ln" in name or name.endswith(".bias")))):
            x += rng.normal(0, 0.3, size=x.shape).astype(np.float32)
        if c["model_type"] == "vlakit-vla" and (c["vision_config"].get("keypoint_query") or c["vision_config"].get("keypoint_context")) and name.startswith("vision.keypoints."):
            x *= 8  # peaked spatial softmaxes and large keypoint tokens, so the prompt's part of each query (or the keys' context) shows in the logits
        arrays[name] = x
    meta, off = {}, 0
    for name, x in arrays.items():
        meta[name] = {"dtype": "F32", "shape": list(x.shape), "data_offsets": [off, off + x.nbytes]}
        off += x.nbytes
    h = json.dumps(meta, separators=(",", ":")).encode()
    h += b" " * (-len(h) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(h)) + h + b"".join(x.tobytes() for x in arrays.values()))
PY
  python3 - "$d" <<'PY'
import json, sys
import numpy as np
d = sys.argv[1]
c = json.load(open(f"{d}/config.json"))
rng = np.random.RandomState(3)
if c["model_type"] == "gemma3":
    v = c["vision_config"]; s = v["image_size"]; per = c["mm_tokens_per_image"]; img = c["image_token_index"]
    boi, eoi = c["boi_token_index"], c["eoi_token_index"]
    ids = [2, 5, boi] + [img] * per + [eoi, 9, 11, boi] + [img] * per + [eoi] + list(rng.randint(3, 59, 6))
    pix = rng.uniform(-1, 1, size=(2, 3, s, s))
    inp = {"input_ids": [int(i) for i in ids], "pixel_shape": list(pix.shape), "pixel_values": [round(float(x), 6) for x in pix.ravel()]}
elif c["model_type"] == "paligemma":
    # PaliGemmaProcessor's layout: image tokens, bos, prefix, "\n" (token_type_ids 0), then a suffix (1)
    v = c["vision_config"]; s = v["image_size"]; per = (s // v["patch_size"]) ** 2; img = c["image_token_index"]
    prefix = [img] * (2 * per) + [2] + list(rng.randint(3, 59, 5)) + [10]
    ids = prefix + list(rng.randint(3, 59, 6))
    pix = rng.uniform(-1, 1, size=(2, 3, s, s))
    inp = {"input_ids": [int(i) for i in ids], "prefix_length": len(prefix), "pixel_shape": list(pix.shape), "pixel_values": [round(float(x), 6) for x in pix.ravel()]}
elif c["model_type"] == "idefics3":
    v = c["vision_config"]; s = v["image_size"]; per = (s // v["patch_size"]) ** 2 // c["scale_factor"] ** 2
    ids = [1, 5, 7] + [c["image_token_id"]] * per + [9, 11] + [c["image_token_id"]] * per + list(rng.randint(3, 59, 6))
    pix = rng.uniform(-1, 1, size=(2, 3, s, s))
    inp = {"input_ids": [int(i) for i in ids], "pixel_shape": list(pix.shape), "pixel_values": [round(float(x), 6) for x in pix.ravel()]}
elif c["model_type"] == "vlakit-vla":
    v = c["vision_config"]; s = v["image_size"]
    pix = rng.uniform(-1, 1, size=(c["num_cameras"], s, s, 3))
    ids = [2] + list(rng.randint(5, c["text_config"]["vocab_size"], 9))
    if v.get("keypoint_query") == "prompt":  # <bos> prompt <sep> answer: the keypoint queries read the prompt only
        ids = ids[:6] + [4] + ids[6:]
    inp = {"input_ids": [int(i) for i in ids], "pixel_shape": list(pix.shape), "pixel_values": [round(float(x), 6) for x in pix.ravel()]}
else:
    inp = {"input_ids": [1] + [int(i) for i in rng.randint(3, c["vocab_size"], 17)]}
json.dump(inp, open(f"{d}/inputs.json", "w"))
PY
  python3 test/reference/hf_reference.py "$d"
done
