#!/usr/bin/env python3
"""
Runs the tiny reference checkpoints of test/fixtures/reference/ through transformers and peft themselves (a machine
with torch, transformers 5 and peft; no network), to check the float64 NumPy reference (hf_reference.py) that
vlakit's tests compare against, and to make PEFT-written references for LoRA:

    python3 test/reference/transformers_check.py OUT [VLAKIT_ADAPTERS]

OUT/transformers.json  per checkpoint: transformers' logits (float64, eager attention) on inputs.json, the largest
                       difference from expected.json, and what from_pretrained reported (missing/unexpected keys)
OUT/peft-<name>/       an adapter written by peft's save_pretrained (r 4, alpha 8, A and B seeded random)
OUT/peft.json          per adapter: the logits with it, and for a labelled copy of the inputs transformers' loss and
                       the gradient of every LoRA matrix (by HF module name), float64; for llama-tiny three steps of
                       torch's AdamW (lr 1e-2, decay 0.01, clipped to norm 1) from it; and, for each adapter that
                       vlakit wrote (VLAKIT_ADAPTERS/vlakit-adapter-<name>/), the logits peft gets with it
"""
import json
import os
import sys
import traceback

import torch
import transformers
import peft

OUT = sys.argv[1]
VLAKIT = sys.argv[2] if len(sys.argv) > 2 else None
REF = "test/fixtures/reference"
HF = ["llama-tiny", "idefics3-tiny", "gemma3-text-tiny", "gemma3-tiny", "paligemma-tiny"]
# modules adapted in the peft references (both towers where the names occur in both)
PEFT = {"llama-tiny": ["q_proj", "v_proj", "gate_proj"], "idefics3-tiny": ["q_proj", "v_proj", "fc1"], "gemma3-text-tiny": ["q_proj", "o_proj", "up_proj"]}
DT = torch.float64


def load(name, dtype=DT):
    d = f"{REF}/{name}"
    cfg = json.load(open(f"{d}/config.json"))
    cls = getattr(transformers, cfg["architectures"][0])
    model, info = cls.from_pretrained(d, dtype=dtype, attn_implementation="eager", output_loading_info=True)
    model.eval()
    return model, cfg, {k: sorted(v) if isinstance(v, (set, list)) else str(v) for k, v in info.items()}


def inputs(name, cfg, dtype=DT):
    i = json.load(open(f"{REF}/{name}/inputs.json"))
    ids = torch.tensor([i["input_ids"]])
    kw = {"input_ids": ids}
    if "pixel_values" in i:
        pv = torch.tensor(i["pixel_values"], dtype=dtype).reshape(i["pixel_shape"])
        kw["pixel_values"] = pv.unsqueeze(0) if cfg["model_type"] == "idefics3" else pv  # Idefics3: [B, N, C, S, S]
    if cfg["model_type"] == "gemma3":
        kw["token_type_ids"] = (ids == cfg.get("image_token_index", 262144)).long()  # what Gemma3Processor returns
    if "prefix_length" in i:
        T = ids.shape[1]
        kw["token_type_ids"] = torch.tensor([[0] * i["prefix_length"] + [1] * (T - i["prefix_length"])])
    return kw


def max_diff(a, b):
    return float((torch.tensor(a, dtype=DT) - torch.tensor(b, dtype=DT)).abs().max())


def hf_name(n):
    """peft's parameter name -> the module's name in the checkpoint's own layout + .lora_A/B.weight"""
    n = n.replace("base_model.model.", "", 1).replace(".default", "")
    return n


report = {"versions": {"torch": torch.__version__, "transformers": transformers.__version__, "peft": peft.__version__}}
print(json.dumps(report["versions"]), flush=True)

for name in HF:
    try:
        model, cfg, info = load(name)
        kw = inputs(name, cfg)
        with torch.no_grad():
            logits = model(**kw).logits[0]
        exp = json.load(open(f"{REF}/{name}/expected.json"))["logits"]
        r = {"loading": info, "logits": logits.tolist(), "max_diff_vs_expected": max_diff(logits.tolist(), exp), "max_abs_logit": float(logits.abs().max())}
        if "token_type_ids" in kw:
            with torch.no_grad():
                alt = model(**{k: v for k, v in kw.items() if k != "token_type_ids"}).logits[0]
            r["max_diff_without_token_type_ids"] = max_diff(alt.tolist(), exp)
        report[name] = r
        print(name, "max diff vs expected.json", r["max_diff_vs_expected"], "| without token_type_ids", r.get("max_diff_without_token_type_ids"), "| missing", info.get("missing_keys"), "unexpected", info.get("unexpected_keys"), flush=True)
    except Exception:
        report[name] = {"error": traceback.format_exc()}
        print(name, "FAILED", traceback.format_exc(), flush=True)

json.dump(report, open(f"{OUT}/transformers.json", "w"))

out = {}
for name, targets in PEFT.items():
    try:
        torch.manual_seed(5)
        base, cfg, _ = load(name)
        model = peft.get_peft_model(base, peft.LoraConfig(r=4, lora_alpha=8, lora_dropout=0.0, target_modules=targets))
        for n, p in model.named_parameters():
            if "lora_" in n:
                with torch.no_grad():
                    p.normal_(0, 0.1)
                    p.copy_(p.float().double())  # float32 values, so that the F32 copy of the adapter is exact
        d = f"{OUT}/peft-{name}"
        model.save_pretrained(d)
        if os.path.exists(f"{d}/README.md"):
            os.remove(f"{d}/README.md")  # peft's model card: not needed
        kw = inputs(name, cfg)
        labels = kw["input_ids"].clone()
        labels[0, : labels.shape[1] // 2] = -100  # the first half is the prompt
        model.train(False)
        res = model(**kw, labels=labels)
        res.loss.backward()
        grads = {hf_name(n): p.grad.tolist() for n, p in model.named_parameters() if "lora_" in n and p.grad is not None}
        adamw = []
        if name == "llama-tiny":
            # three AdamW steps (lr 1e-2, weight decay 0.01, gradients clipped to a global norm of 1) from the saved adapter
            lora = [(hf_name(n), p) for n, p in model.named_parameters() if "lora_" in n]
            opt = torch.optim.AdamW([p for _, p in lora], lr=1e-2, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.01)
            for _ in range(3):
                opt.zero_grad()
                loss = model(**kw, labels=labels).loss
                loss.backward()
                norm = torch.nn.utils.clip_grad_norm_([p for _, p in lora], 1.0)
                opt.step()
                adamw.append({"loss": float(loss.detach()), "grad_norm": float(norm), "params": {n: p.detach().tolist() for n, p in lora}})
        out[name] = {"adamw": adamw, "targets": targets, "logits": res.logits[0].tolist(), "labels": labels[0].tolist(), "loss": float(res.loss.detach()), "grads": grads, "names": sorted(grads)[:6]}
        print("peft", name, "loss", float(res.loss), len(grads), "LoRA matrices, e.g.", sorted(grads)[:2], flush=True)
    except Exception:
        out[name] = {"error": traceback.format_exc()}
        print("peft", name, "FAILED", traceback.format_exc(), flush=True)

if VLAKIT:
    for name in ["llama-tiny", "idefics3-tiny"]:
        try:
            base, cfg, _ = load(name)
            model = peft.PeftModel.from_pretrained(base, f"{VLAKIT}/vlakit-adapter-{name}")
            model.eval()
            with torch.no_grad():
                logits = model(**inputs(name, cfg)).logits[0]
            n = sum(1 for k, _ in model.named_parameters() if "lora_A" in k)
            out[f"vlakit-{name}"] = {"logits": logits.tolist(), "lora_modules": n}
            print("vlakit adapter read by peft", name, n, "modules", flush=True)
        except Exception:
            out[f"vlakit-{name}"] = {"error": traceback.format_exc()}
            print("vlakit adapter", name, "FAILED", traceback.format_exc(), flush=True)

json.dump(out, open(f"{OUT}/peft.json", "w"))
print("done", flush=True)
