#!/usr/bin/env python3
"""
A float64 NumPy reference of the Hugging Face architectures vlakit runs, written from transformers' modeling
files (LlamaForCausalLM; vlakit's own vlakit-vla, a ViT + projector + that Llama; Idefics3ForConditionalGeneration = SigLIP vision tower, pixel-shuffle connector, Llama
text model; Gemma3ForCausalLM; Gemma3ForConditionalGeneration; PaliGemmaForConditionalGeneration = SigLIP, linear
projector, Gemma 2 text model with prefix-LM attention), in their formulation: rotate_half with cat(freqs, freqs), repeat_kv by repeat, the patch convolution
as a strided window sum, the pixel shuffle as transformers' view/permute sequence, image features scattered into
the image-token positions. It shares no code with vlakit. Used to make the dumps under test/fixtures/reference/:

    python3 test/reference/hf_reference.py DIR

reads DIR/config.json, DIR/model.safetensors and DIR/inputs.json ({"input_ids": [...], "pixel_values": flat list,
"pixel_shape": [N, C, S, S], and for PaliGemma "prefix_length": the tokens of token_type_ids 0}) and writes DIR/expected.json ({"logits": [T][V]}). Needs only numpy.
"""
import json
import struct
import sys

import numpy as np


def load_safetensors(path):
    with open(path, "rb") as f:
        data = f.read()
    (n,) = struct.unpack("<Q", data[:8])
    header = json.loads(data[8 : 8 + n])
    base = 8 + n
    out = {}
    for name, info in header.items():
        if name == "__metadata__":
            continue
        a, b = info["data_offsets"]
        raw = data[base + a : base + b]
        if info["dtype"] == "F32":
            arr = np.frombuffer(raw, dtype="<f4")
        elif info["dtype"] == "F16":
            arr = np.frombuffer(raw, dtype="<f2")
        elif info["dtype"] == "BF16":
            arr = (np.frombuffer(raw, dtype="<u2").astype(np.uint32) << 16).view(np.float32)
        else:
            raise ValueError(f"dtype {info['dtype']}")
        out[name] = arr.astype(np.float64).reshape(info["shape"])
    return out


def rms_norm(x, w, eps):
    var = np.mean(x * x, axis=-1, keepdims=True)
    return w * (x / np.sqrt(var + eps))


def layer_norm(x, w, b, eps):
    mu = x.mean(-1, keepdims=True)
    var = ((x - mu) ** 2).mean(-1, keepdims=True)
    return (x - mu) / np.sqrt(var + eps) * w + b


def linear(x, W, b=None):
    y = x @ W.T
    return y if b is None else y + b


def gelu_tanh(x):
    return 0.5 * x * (1.0 + np.tanh(np.sqrt(2.0 / np.pi) * (x + 0.044715 * x**3)))


def softmax(x):
    m = x.max(-1, keepdims=True)
    e = np.exp(x - m)
    return e / e.sum(-1, keepdims=True)


def rotate_half(x):
    h = x.shape[-1] // 2
    return np.concatenate([-x[..., h:], x[..., :h]], axis=-1)


def llama_model(W, c, inputs_embeds, prefix):
    """LlamaModel over inputs_embeds [T, D] (batch 1), positions 0..T-1, causal."""
    T, D = inputs_embeds.shape
    H = c["num_attention_heads"]
    KV = c.get("num_key_value_heads") or H
    hd = c.get("head_dim") or D // H
    eps = c.get("rms_norm_eps", 1e-6)
    theta = c.get("rope_theta", 10000.0)
    inv_freq = 1.0 / (theta ** (np.arange(0, hd, 2, dtype=np.float64) / hd))
    freqs = np.outer(np.arange(T, dtype=np.float64), inv_freq)  # [T, hd/2]
    emb = np.concatenate([freqs, freqs], axis=-1)  # [T, hd]
    cos, sin = np.cos(emb), np.sin(emb)
    mask = np.triu(np.full((T, T), -np.inf), k=1)
    bias = c.get("attention_bias", False)
    x = inputs_embeds
    for i in range(c["num_hidden_layers"]):
        p = f"{prefix}.layers.{i}"
        g = lambda n: W.get(n) if bias else None
        h = rms_norm(x, W[f"{p}.input_layernorm.weight"], eps)
        q = linear(h, W[f"{p}.self_attn.q_proj.weight"], g(f"{p}.self_attn.q_proj.bias")).reshape(T, H, hd).transpose(1, 0, 2)
        k = linear(h, W[f"{p}.self_attn.k_proj.weight"], g(f"{p}.self_attn.k_proj.bias")).reshape(T, KV, hd).transpose(1, 0, 2)
        v = linear(h, W[f"{p}.self_attn.v_proj.weight"], g(f"{p}.self_attn.v_proj.bias")).reshape(T, KV, hd).transpose(1, 0, 2)
        q = q * cos + rotate_half(q) * sin
        k = k * cos + rotate_half(k) * sin
        k = np.repeat(k, H // KV, axis=0)  # repeat_kv: head j uses kv head j // (H/KV)
        v = np.repeat(v, H // KV, axis=0)
        att = softmax(q @ k.transpose(0, 2, 1) / np.sqrt(hd) + mask) @ v  # [H, T, hd]
        x = x + linear(att.transpose(1, 0, 2).reshape(T, H * hd), W[f"{p}.self_attn.o_proj.weight"], g(f"{p}.self_attn.o_proj.bias"))
        h = rms_norm(x, W[f"{p}.post_attention_layernorm.weight"], eps)
        mb = c.get("mlp_bias", False)
        m = lambda n: W.get(n) if mb else None
        gate = linear(h, W[f"{p}.mlp.gate_proj.weight"], m(f"{p}.mlp.gate_proj.bias"))
        up = linear(h, W[f"{p}.mlp.up_proj.weight"], m(f"{p}.mlp.up_proj.bias"))
        act = gate / (1.0 + np.exp(-gate))
        x = x + linear(act * up, W[f"{p}.mlp.down_proj.weight"], m(f"{p}.mlp.down_proj.bias"))
    return rms_norm(x, W[f"{prefix}.norm.weight"], eps)


def idefics3_vision(W, v, pixels, prefix="model.vision_model"):
    """Idefics3VisionTransformer / SiglipVisionTransformer (no head): pixels [N, C, S, S] -> [N, g*g, D] after
    post_layernorm. Tensors under `prefix`."""
    N, C, S, _ = pixels.shape
    P = v["patch_size"]
    g = S // P
    D = v["hidden_size"]
    wc = W[f"{prefix}.embeddings.patch_embedding.weight"]  # [D, C, P, P]
    bc = W[f"{prefix}.embeddings.patch_embedding.bias"]
    out = np.zeros((N, D, g, g))
    for r in range(g):
        for s in range(g):
            window = pixels[:, :, r * P : (r + 1) * P, s * P : (s + 1) * P]  # [N, C, P, P]
            out[:, :, r, s] = np.einsum("ncij,dcij->nd", window, wc) + bc
    x = out.reshape(N, D, g * g).transpose(0, 2, 1)  # flatten(2).transpose(1, 2)
    x = x + W[f"{prefix}.embeddings.position_embedding.weight"][np.arange(g * g)]
    H = v["num_attention_heads"]
    hd = D // H
    eps = v.get("layer_norm_eps", 1e-6)
    for i in range(v["num_hidden_layers"]):
        p = f"{prefix}.encoder.layers.{i}"
        h = layer_norm(x, W[f"{p}.layer_norm1.weight"], W[f"{p}.layer_norm1.bias"], eps)
        L = x.shape[1]
        q = linear(h, W[f"{p}.self_attn.q_proj.weight"], W[f"{p}.self_attn.q_proj.bias"]).reshape(N, L, H, hd).transpose(0, 2, 1, 3)
        k = linear(h, W[f"{p}.self_attn.k_proj.weight"], W[f"{p}.self_attn.k_proj.bias"]).reshape(N, L, H, hd).transpose(0, 2, 1, 3)
        vv = linear(h, W[f"{p}.self_attn.v_proj.weight"], W[f"{p}.self_attn.v_proj.bias"]).reshape(N, L, H, hd).transpose(0, 2, 1, 3)
        att = softmax(q @ k.transpose(0, 1, 3, 2) * hd**-0.5) @ vv
        x = x + linear(att.transpose(0, 2, 1, 3).reshape(N, L, D), W[f"{p}.self_attn.out_proj.weight"], W[f"{p}.self_attn.out_proj.bias"])
        h = layer_norm(x, W[f"{p}.layer_norm2.weight"], W[f"{p}.layer_norm2.bias"], eps)
        x = x + linear(gelu_tanh(linear(h, W[f"{p}.mlp.fc1.weight"], W[f"{p}.mlp.fc1.bias"])), W[f"{p}.mlp.fc2.weight"], W[f"{p}.mlp.fc2.bias"])
    return layer_norm(x, W[f"{prefix}.post_layernorm.weight"], W[f"{prefix}.post_layernorm.bias"], eps)


def pixel_shuffle(x, scale):
    """Idefics3Connector.pixel_shuffle, as transformers writes it."""
    bsz, seq, dim = x.shape
    h = w = int(seq**0.5)
    x = x.reshape(bsz, h, w, dim)
    x = x.reshape(bsz, h, w // scale, dim * scale)
    x = x.transpose(0, 2, 1, 3)
    x = x.reshape(bsz, w // scale, h // scale, dim * scale * scale)
    x = x.transpose(0, 2, 1, 3)
    return x.reshape(bsz, seq // (scale * scale), dim * scale * scale)


def gemma_rms_norm(x, w, eps):
    """Gemma3RMSNorm: x * rsqrt(mean(x^2) + eps) * (1 + w)."""
    return x / np.sqrt(np.mean(x * x, axis=-1, keepdims=True) + eps) * (1.0 + w)


def gemma_text_defaults(c):
    """Gemma3TextConfig / Gemma2Config defaults for what a config.json may leave out."""
    g3 = c.get("model_type") == "gemma3_text"
    d = dict(
        vocab_size=262208 if g3 else 256000, hidden_size=2304, intermediate_size=9216, num_hidden_layers=26,
        num_attention_heads=8, num_key_value_heads=4, head_dim=256, rms_norm_eps=1e-6,
        rope_theta=1000000.0 if g3 else 10000.0, rope_local_base_freq=10000.0, query_pre_attn_scalar=256,
        sliding_window=4096, sliding_window_pattern=6, rope_scaling=None, tie_word_embeddings=True,
        final_logit_softcapping=None if g3 else 30.0, attn_logit_softcapping=None if g3 else 50.0,
    )
    d.update({k: v for k, v in c.items()})
    if d.get("layer_types") is None:
        if g3:  # Gemma3Attention: is_sliding = bool((layer_idx + 1) % sliding_window_pattern)
            d["layer_types"] = ["sliding_attention" if (i + 1) % d["sliding_window_pattern"] else "full_attention" for i in range(d["num_hidden_layers"])]
        else:  # Gemma2Attention: sliding_window if not bool(layer_idx % 2)
            d["layer_types"] = ["full_attention" if i % 2 else "sliding_attention" for i in range(d["num_hidden_layers"])]
    return d


def rope_cos_sin(T, hd, theta, factor=1.0):
    inv_freq = 1.0 / (theta ** (np.arange(0, hd, 2, dtype=np.float64) / hd))
    inv_freq = inv_freq / factor  # "linear" rope scaling divides the frequencies
    freqs = np.outer(np.arange(T, dtype=np.float64), inv_freq)
    emb = np.concatenate([freqs, freqs], axis=-1)
    return np.cos(emb), np.sin(emb)


def gemma_text_model(W, c, inputs_embeds, prefix, token_type_ids=None, prefix_length=None):
    """Gemma3TextModel / Gemma2Model over already-scaled inputs_embeds [T, D]: the final hidden states [T, D].

    Masks as masking_utils builds them: causal; sliding layers also need q - kv < sliding_window; with
    token_type_ids (Gemma 3 images) OR-ed: q and kv both image tokens of the same contiguous image block."""
    c = gemma_text_defaults(c)
    g3 = c["model_type"] == "gemma3_text"
    T, D = inputs_embeds.shape
    H, KV, hd = c["num_attention_heads"], c["num_key_value_heads"], c["head_dim"]
    eps = c["rms_norm_eps"]
    q_idx = np.arange(T)[:, None]
    kv_idx = np.arange(T)[None, :]
    causal = kv_idx <= q_idx
    sliding = causal & (kv_idx > q_idx - c["sliding_window"])
    if token_type_ids is not None:
        is_image = token_type_ids == 1
        prev = np.concatenate([[False], is_image[:-1]])
        group = np.cumsum(is_image & ~prev) - 1
        group = np.where(is_image, group, -1)
        extra = is_image[:, None] & is_image[None, :] & (group[:, None] == group[None, :])
        causal = causal | extra
        sliding = sliding | extra
    if prefix_length is not None:  # PaliGemma: token_type_ids 0 (image + prefix) attend both ways, OR-ed into both masks
        in_prefix = np.arange(T) < prefix_length
        extra = in_prefix[:, None] & in_prefix[None, :]
        causal = causal | extra
        sliding = sliding | extra
    masks = {"full_attention": np.where(causal, 0.0, -np.inf), "sliding_attention": np.where(sliding, 0.0, -np.inf)}
    scaling = c["rope_scaling"] or {}
    factor = scaling.get("factor", 1.0) if (scaling.get("rope_type") or scaling.get("type")) == "linear" else 1.0
    if g3:  # rotary_emb (global: rope_theta + rope_scaling) and rotary_emb_local (rope_local_base_freq, default)
        ropes = {"full_attention": rope_cos_sin(T, hd, c["rope_theta"], factor), "sliding_attention": rope_cos_sin(T, hd, c["rope_local_base_freq"])}
    else:
        r = rope_cos_sin(T, hd, c["rope_theta"], factor)
        ropes = {"full_attention": r, "sliding_attention": r}
    x = inputs_embeds
    for i in range(c["num_hidden_layers"]):
        p = f"{prefix}.layers.{i}"
        kind = c["layer_types"][i]
        residual = x
        h = gemma_rms_norm(x, W[f"{p}.input_layernorm.weight"], eps)
        q = (h @ W[f"{p}.self_attn.q_proj.weight"].T).reshape(T, H, hd).transpose(1, 0, 2)  # [H, T, hd]
        k = (h @ W[f"{p}.self_attn.k_proj.weight"].T).reshape(T, KV, hd).transpose(1, 0, 2)
        v = (h @ W[f"{p}.self_attn.v_proj.weight"].T).reshape(T, KV, hd).transpose(1, 0, 2)
        if g3:
            q = gemma_rms_norm(q, W[f"{p}.self_attn.q_norm.weight"], eps)
            k = gemma_rms_norm(k, W[f"{p}.self_attn.k_norm.weight"], eps)
        cos, sin = ropes[kind]
        q = q * cos + rotate_half(q) * sin
        k = k * cos + rotate_half(k) * sin
        k = np.repeat(k, H // KV, axis=0)
        v = np.repeat(v, H // KV, axis=0)
        w = q @ k.transpose(0, 2, 1) * c["query_pre_attn_scalar"] ** -0.5
        if c["attn_logit_softcapping"] is not None and not g3:  # Gemma3Attention passes no softcap (transformers 5.17)
            w = np.tanh(w / c["attn_logit_softcapping"]) * c["attn_logit_softcapping"]
        att = softmax(w + masks[kind]) @ v  # [H, T, hd]
        o = att.transpose(1, 0, 2).reshape(T, H * hd) @ W[f"{p}.self_attn.o_proj.weight"].T
        x = residual + gemma_rms_norm(o, W[f"{p}.post_attention_layernorm.weight"], eps)
        residual = x
        h = gemma_rms_norm(x, W[f"{p}.pre_feedforward_layernorm.weight"], eps)
        m = gelu_tanh(h @ W[f"{p}.mlp.gate_proj.weight"].T) * (h @ W[f"{p}.mlp.up_proj.weight"].T)
        m = m @ W[f"{p}.mlp.down_proj.weight"].T
        x = residual + gemma_rms_norm(m, W[f"{p}.post_feedforward_layernorm.weight"], eps)
    return gemma_rms_norm(x, W[f"{prefix}.norm.weight"], eps), c


def gemma_logits(h, head, c):
    logits = h @ head.T
    cap = c["final_logit_softcapping"]
    return logits if cap is None else np.tanh(logits / cap) * cap


def gemma3_projector(W, c, vision_outputs):
    """Gemma3MultiModalProjector: [N, g*g, Dv] -> [N, mm_tokens_per_image, Dt]."""
    v = c["vision_config"]
    N, L, Dv = vision_outputs.shape
    g = v["image_size"] // v["patch_size"]
    per_side = int(c.get("mm_tokens_per_image", 256) ** 0.5)
    k = g // per_side
    x = vision_outputs.transpose(0, 2, 1).reshape(N, Dv, g, g)
    pooled = x.reshape(N, Dv, per_side, k, per_side, k).mean(axis=(3, 5))  # AvgPool2d(kernel=stride=k)
    pooled = pooled.reshape(N, Dv, per_side * per_side).transpose(0, 2, 1)
    normed = gemma_rms_norm(pooled, W["multi_modal_projector.mm_soft_emb_norm.weight"], v.get("layer_norm_eps", 1e-6))
    return normed @ W["multi_modal_projector.mm_input_projection_weight"]


def vlakit_vla(W, c, ids, pixels):
    """
    vlakit's built-in VLA (model_type vlakit-vla; no transformers counterpart, written from docs/MODEL.md): a ViT
    over each camera image (patches in row-major grid order, each flattened as row, column, channel), a two-layer
    projector plus a learned vector per camera, then a Llama decoder over [image tokens, text] with the head tied to
    the embedding; the logits of the text positions. Linear weights are stored [in, out]: x @ W + b.
    pixels: [C, S, S, 3] of one example.
    """
    v, t = c["vision_config"], c["text_config"]
    P, S, C = v["patch_size"], v["image_size"], c["num_cameras"]
    g = S // P
    Dv, Hv = v["hidden_size"], v["num_attention_heads"]
    hv = Dv // Hv
    eps = v["layer_norm_eps"]
    patches = np.zeros((C, g * g, P * P * 3))
    for cam in range(C):
        for gy in range(g):
            for gx in range(g):
                patches[cam, gy * g + gx] = pixels[cam, gy * P : (gy + 1) * P, gx * P : (gx + 1) * P, :].reshape(-1)
    lin = lambda x, n: x @ W[f"{n}.weight"] + W[f"{n}.bias"]
    if v.get("stem_patch_size"):
        # the patch stem: every s x s cell of a patch (cells row-major, each flattened row, column, channel) through
        # one linear map and a tanh-GELU; the patch embedding reads the cells' features in cell order
        s, Cs = v["stem_patch_size"], v["stem_channels"]
        q = P // s
        feats = np.zeros((C, g * g, q * q * Cs))
        for cam in range(C):
            for gy in range(g):
                for gx in range(g):
                    for cy in range(q):
                        for cx in range(q):
                            y0, x0 = gy * P + cy * s, gx * P + cx * s
                            cell = pixels[cam, y0 : y0 + s, x0 : x0 + s, :].reshape(-1)
                            k = cy * q + cx
                            feats[cam, gy * g + gx, k * Cs : (k + 1) * Cs] = gelu_tanh(lin(cell, "vision.stem"))
        patches = feats
    x = lin(patches, "vision.patch_embed") + W["vision.pos_embed"]  # [C, Np, Dv]
    K = v.get("keypoints") or 0
    if K:
        # keypoint tokens: per keypoint k a softmax over the raster of stem cells of query_k . key_k(cell) / sqrt(8),
        # the cells' (learned, grid-initialized) positions mapped by value_k and averaged, then proj + embed_k
        dk, G = 8, S // s
        kps = np.zeros((C, K, Dv))
        for cam in range(C):
            cellf = np.zeros((G * G, Cs))
            for r in range(G):
                for col in range(G):
                    cell = pixels[cam, r * s : (r + 1) * s, col * s : (col + 1) * s, :].reshape(-1)
                    cellf[r * G + col] = gelu_tanh(lin(cell, "vision.stem"))
            n = v.get("keypoint_context") or 1
            if n > 1:
                # keypoint_context n: each cell's key reads the n x n cells around it (row-major, each cell's Cs
                # features in turn), zeros where the square leaves the image
                r = (n - 1) // 2
                grid = np.zeros((G + 2 * r, G + 2 * r, Cs))
                grid[r : r + G, r : r + G] = cellf.reshape(G, G, Cs)
                ctx = np.zeros((G * G, n * n * Cs))
                for row in range(G):
                    for col in range(G):
                        ctx[row * G + col] = grid[row : row + n, col : col + n].reshape(-1)
                cellf = ctx
            key = lin(cellf, "vision.keypoints.key")  # [G*G, K*dk]
            val = lin(W["vision.keypoints.grid"], "vision.keypoints.value")  # [G*G, K*dk]
            query = W["vision.keypoints.query"][0].copy()  # [K*dk]
            if v.get("keypoint_query") == "prompt":
                # plus a linear map (no bias) of the mean embedding of the prompt: the ids after <bos> (2) and before
                # the first <sep> (4), pads (0) skipped
                end = int(np.argmax(ids == 4)) if (ids == 4).any() else len(ids)
                toks = [i for i in ids[:end] if i not in (0, 2)]
                mean = W["model.embed_tokens.weight"][toks].mean(axis=0) if toks else np.zeros(t["hidden_size"])
                query = query + mean @ W["vision.keypoints.prompt.weight"]
            for k in range(K):
                sl = slice(k * dk, (k + 1) * dk)
                logits = key[:, sl] @ query[sl] / np.sqrt(dk)
                w = np.exp(logits - logits.max())
                w /= w.sum()
                kps[cam, k] = lin(w @ val[:, sl], "vision.keypoints.proj") + W["vision.keypoints.embed"][k]
        x = np.concatenate([x, kps], axis=1)  # [C, Np + K, Dv]
    heads = lambda a: a.reshape(C, -1, Hv, hv).transpose(0, 2, 1, 3)  # [C, Hv, Np, hv]
    for i in range(v["num_hidden_layers"]):
        p = f"vision.layers.{i}"
        h = layer_norm(x, W[f"{p}.ln1.weight"], W[f"{p}.ln1.bias"], eps)
        qkv = lin(h, f"{p}.attn.qkv")
        q, k, vv = qkv[..., :Dv], qkv[..., Dv : 2 * Dv], qkv[..., 2 * Dv :]
        att = softmax(heads(q) @ heads(k).transpose(0, 1, 3, 2) / np.sqrt(hv)) @ heads(vv)  # bidirectional
        x = x + lin(att.transpose(0, 2, 1, 3).reshape(C, -1, Dv), f"{p}.attn.proj")
        h = layer_norm(x, W[f"{p}.ln2.weight"], W[f"{p}.ln2.bias"], eps)
        x = x + lin(gelu_tanh(lin(h, f"{p}.mlp.fc1")), f"{p}.mlp.fc2")
    x = layer_norm(x, W["vision.post_ln.weight"], W["vision.post_ln.bias"], eps)
    feats = lin(gelu_tanh(lin(x, "projector.fc1")), "projector.fc2") + W["projector.camera_embed"][:, None, :]  # [C, Np, D]
    D = t["hidden_size"]
    emb = np.concatenate([feats.reshape(-1, D), W["model.embed_tokens.weight"][ids]])
    # the decoder's weights in transformers' [out, in] layout, for llama_model
    Wt = {n: (a.T if n.startswith("model.layers.") and a.ndim == 2 else a) for n, a in W.items()}
    h = llama_model(Wt, t, emb, "model")
    return (h @ W["model.embed_tokens.weight"].T)[C * (g * g + K) :]


def forward(d):
    c = json.load(open(f"{d}/config.json"))
    W = load_safetensors(f"{d}/model.safetensors")
    inp = json.load(open(f"{d}/inputs.json"))
    ids = np.array(inp["input_ids"])
    if c["model_type"] == "vlakit-vla":
        return vlakit_vla(W, c, ids, np.array(inp["pixel_values"], dtype=np.float64).reshape(inp["pixel_shape"]))
    if c["model_type"] == "llama":
        x = W["model.embed_tokens.weight"][ids]
        h = llama_model(W, c, x, "model")
        head = W["model.embed_tokens.weight"] if c.get("tie_word_embeddings") else W["lm_head.weight"]
        return h @ head.T
    if c["model_type"] == "idefics3":
        t = c["text_config"]
        x = W["model.text_model.embed_tokens.weight"][ids].copy()
        if "pixel_values" in inp:
            pixels = np.array(inp["pixel_values"], dtype=np.float64).reshape(inp["pixel_shape"])
            feats = pixel_shuffle(idefics3_vision(W, c["vision_config"], pixels), c["scale_factor"])
            feats = feats @ W["model.connector.modality_projection.proj.weight"].T  # [N, L, D]
            mask = ids == c["image_token_id"]
            assert mask.sum() == feats.shape[0] * feats.shape[1], "image tokens and features differ in number"
            x[mask] = feats.reshape(-1, feats.shape[-1])
        h = llama_model(W, t, x, "model.text_model")
        head = W["model.text_model.embed_tokens.weight"] if c.get("tie_word_embeddings") else W["lm_head.weight"]
        return h @ head.T
    if c["model_type"] == "gemma3_text":
        x = W["model.embed_tokens.weight"][ids] * np.sqrt(gemma_text_defaults(c)["hidden_size"])  # Gemma3TextScaledWordEmbedding
        h, tc = gemma_text_model(W, c, x, "model")
        head = W["model.embed_tokens.weight"] if tc["tie_word_embeddings"] else W["lm_head.weight"]
        return gemma_logits(h, head, tc)
    if c["model_type"] == "gemma3":
        t = dict(c["text_config"], model_type="gemma3_text")
        image_token = c.get("image_token_index", c.get("image_token_id", 262144))
        x = W["language_model.model.embed_tokens.weight"][ids] * np.sqrt(gemma_text_defaults(t)["hidden_size"])
        if "pixel_values" in inp:
            pixels = np.array(inp["pixel_values"], dtype=np.float64).reshape(inp["pixel_shape"])
            feats = gemma3_projector(W, c, idefics3_vision(W, c["vision_config"], pixels, "vision_tower.vision_model"))
            mask = ids == image_token
            assert mask.sum() == feats.shape[0] * feats.shape[1], "image tokens and features differ in number"
            x[mask] = feats.reshape(-1, feats.shape[-1])  # masked_scatter, unscaled
        token_type_ids = (ids == image_token).astype(np.int64)  # what Gemma3Processor returns
        h, tc = gemma_text_model(W, t, x, "language_model.model", token_type_ids)
        head = W["language_model.model.embed_tokens.weight"] if tc["tie_word_embeddings"] else W["language_model.lm_head.weight"]
        return gemma_logits(h, head, tc)
    if c["model_type"] == "paligemma":
        t = dict(c["text_config"], model_type="gemma2")
        D = gemma_text_defaults(t)["hidden_size"]
        image_token = c.get("image_token_index", c.get("image_token_id", 256000))
        x = W["language_model.model.embed_tokens.weight"][ids].copy()  # PaliGemmaModel: unscaled embeddings
        if "pixel_values" in inp:
            pixels = np.array(inp["pixel_values"], dtype=np.float64).reshape(inp["pixel_shape"])
            feats = idefics3_vision(W, c["vision_config"], pixels, "vision_tower.vision_model")
            feats = linear(feats, W["multi_modal_projector.linear.weight"], W["multi_modal_projector.linear.bias"])
            feats = feats / np.sqrt(D)  # get_image_features: / text_config.hidden_size ** 0.5
            mask = ids == image_token
            assert mask.sum() == feats.shape[0] * feats.shape[1], "image tokens and features differ in number"
            x[mask] = feats.reshape(-1, feats.shape[-1])
        x = x * np.sqrt(D)  # Gemma2Model: inputs_embeds * normalizer
        h, tc = gemma_text_model(W, t, x, "language_model.model", None, inp["prefix_length"])
        head = W["language_model.model.embed_tokens.weight"] if tc["tie_word_embeddings"] else W["language_model.lm_head.weight"]
        return h @ head.T  # PaliGemmaForConditionalGeneration: no final_logit_softcapping (transformers 5.17)
    raise ValueError(c["model_type"])


if __name__ == "__main__":
    d = sys.argv[1]
    logits = forward(d)
    json.dump({"logits": [[float(v) for v in row] for row in logits]}, open(f"{d}/expected.json", "w"))
    print(f"{d}: logits {logits.shape}, max |logit| {np.abs(logits).max():.4f}")
