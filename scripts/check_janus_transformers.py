#!/usr/bin/env python3
"""Checks `janus_trainer forward` against Hugging Face transformers' own Janus model (issue 10).

What it checks
  1. Builds a tiny random `JanusForConditionalGeneration` (transformers 5.x: Llama 2 layers x 64,
     4 heads, vocab 256; codebook 64 x 8; gen_aligner 8 -> 64 -> 64; gen_head 64 -> 64 -> 64; a
     3-level VQ decoder, widths 64/32/32, z_channels 32, 1 res block + 1; a 4 x 4 token grid that
     decodes to 16 x 16 pixels), seeded, every parameter redrawn by this script (not transformers'
     near-zero init, so every layer matters) and rounded to bfloat16 values.
  2. Writes its weights renamed into the PUBLISHED Janus-Pro layout (deepseek-ai/Janus-Pro-*):
     config.json with the nested `language_config` / `gen_vision_config` / `gen_aligner_config` /
     `gen_head_config`, and model.safetensors (bf16) with `language_model.model.*`,
     `language_model.lm_head.weight`, `gen_embed.weight`, `gen_aligner.layers.{0,2}.*`,
     `gen_head.{output_mlp_projector,vision_head}.*` and `gen_vision_model.{quantize.embedding,
     post_quant_conv,decoder}.*` (the decoder's `up.i.block.j` -> `conv_blocks.i.res.j`,
     `mid.block_1/attn_1/block_2` -> `mid.0/1/2`). The rename table is this script's own, written
     as the inverse of the mapping transformers' convert_janus_weights_to_hf.py applies to the
     published checkpoints; the set of names written is checked against the full list the
     published layout has for this config.
     Left out: the understanding side (`vision_model.*`, `aligner.*`) and the VQ encoder /
     `quant_conv`: our loader never reads them (janus_t2i_wants) and does not require them.
  3. Writes input.safetensors: `prompt_ids` [3, 7] int64 (BOS first, text, right-padded with the
     pad id, `<begin_of_image>` last, as the official trainer builds them), `attention_mask`
     [3, 7] (0 on the pads), `image_tokens` [3, 16].
  4. Runs `janus_trainer forward --model-dir D --input IN --output OUT` (float32, CPU).
  5. Compares OUR `logits` [3, 16, 64] with transformers' teacher-forced conditional logits in
     float32: transformers' language model (`model.language_model`) on the same input embeddings
     (the text embeddings of the prompt, then `generation_aligner(generation_embeddings(image
     tokens))`), the last hidden states at positions L-1 .. L+N-2 through `generation_head`.
     Fails when max |ours - theirs| > 1e-4 * max |theirs|.
  6. Compares OUR `images` [3, 16, 16, 3] uint8 with transformers' `decode_image_tokens`
     post-processed as the official trainer does (spec 2.7: clip((x + 1) / 2 * 255, 0, 255)
     truncated toward zero into uint8). Fails when any pixel differs by more than 1 level (a value
     within rounding of an integer may truncate either way).
  Prints one verdict line last. Exit status: 0 pass, 1 a mismatch, 2 a set-up error (transformers
  missing, the binary failed, an unknown tensor name).

Usage
  python3 scripts/check_janus_transformers.py --trainer build/examples/janus/janus_trainer
      [--workdir DIR] [--seed S] [--keep]
  python3 scripts/check_janus_transformers.py --trainer BIN --self-test
      without transformers: maps the tiny fixture (examples/janus/tests/data/janus_tiny) to
      transformers' names and back through the same rename table, writes it through the same
      writer, runs the same forward and comparisons against the fixture's independent float64
      reference, and checks that a perturbed weight FAILS the comparison.

What was not verified where this script was written (no transformers, PyTorch 1.13): the
transformers-specific part (steps 1, 5 and 6's reference side) has not run against the real
transformers; its module names (`model.language_model`, `model.generation_embeddings`,
`model.generation_aligner.{fc1, hidden_layers}`, `model.generation_head.{proj_out,vision_head}`,
`model.vqmodel.{quantize,post_quant_conv,decoder.{up,mid}}`, `decode_image_tokens`,
`prepare_embeddings_for_image_generation`) and JanusConfig's arguments were read from transformers'
source, not executed. It ran there end to end against a stand-in module with those names (forward:
the fixture script's float64 reference), and `--self-test` ran there.
It runs in seconds on a CPU (a tiny model); the GPU machine runs it in scripts/device-check.sh.
"""
import argparse
import collections
import json
import os
import re
import shutil
import struct
import subprocess
import sys
import tempfile
import time
import traceback
import types

import torch

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "examples", "janus", "tests", "fixtures"))
from fixture_util import add_vq_decoder, save_safetensors  # noqa: E402  (the project's own writer)

LOGIT_RTOL = 1e-4    # max |ours - reference| / max |reference|
IMAGE_LEVELS = 1     # uint8 levels
BOS, PAD, BOI = 1, 0, 7

# ---- safetensors reading (no dependency on the safetensors package) -------------------------------
_ST_DTYPES = {"F32": torch.float32, "F64": torch.float64, "BF16": torch.bfloat16, "F16": torch.float16,
              "I64": torch.int64, "I32": torch.int32, "U8": torch.uint8}


def read_safetensors(path):
    with open(path, "rb") as f:
        data = f.read()
    (n,) = struct.unpack("<Q", data[:8])
    header = json.loads(data[8:8 + n])
    out = collections.OrderedDict()
    base = 8 + n
    for name, info in header.items():
        if name == "__metadata__":
            continue
        a, b = info["data_offsets"]
        dtype = _ST_DTYPES[info["dtype"]]
        buf = bytearray(data[base + a: base + b])
        t = torch.frombuffer(buf, dtype=dtype) if len(buf) else torch.empty(0, dtype=dtype)
        out[name] = t.reshape(info["shape"]).clone()
    return out


# ---- names: transformers' JanusForConditionalGeneration -> the published Janus-Pro layout ----------
_VQ_RENAMES = [  # applied in order to the part after `model.vqmodel.`
    (r"^decoder\.up\.(\d+)\.", r"decoder.conv_blocks.\1."),
    (r"\.mid\.block_1\.", ".mid.0."),
    (r"\.mid\.attn_1\.", ".mid.1."),
    (r"\.mid\.block_2\.", ".mid.2."),
    (r"\.block\.(\d+)\.", r".res.\1."),
]
_DROPPED = ("model.vision_model.", "model.aligner.", "model.vqmodel.encoder.", "model.vqmodel.quant_conv.")


def published_name(hf):
    """The published name of transformers' tensor `hf`; None for what is left out (understanding
    side, VQ encoder); raises KeyError for a name this table does not know."""
    if hf.startswith(_DROPPED):
        return None
    if hf == "lm_head.weight":
        return "language_model.lm_head.weight"
    if hf.startswith("model.language_model."):
        return "language_model.model." + hf[len("model.language_model."):]
    if hf == "model.generation_embeddings.weight":
        return "gen_embed.weight"
    m = re.fullmatch(r"model\.generation_aligner\.fc1\.(weight|bias)", hf)
    if m:
        return "gen_aligner.layers.0." + m.group(1)
    m = re.fullmatch(r"model\.generation_aligner\.hidden_layers\.(\d+)\.(weight|bias)", hf)
    if m:  # MlpProjector: Linear, then (GELU, Linear) per extra depth -> Sequential indices 2, 4, ...
        return "gen_aligner.layers.%d.%s" % (2 * (int(m.group(1)) + 1), m.group(2))
    m = re.fullmatch(r"model\.generation_head\.(proj_out|vision_head)\.(weight|bias)", hf)
    if m:
        return "gen_head.%s.%s" % ({"proj_out": "output_mlp_projector"}.get(m.group(1), m.group(1)), m.group(2))
    if hf in ("model.vqmodel.quantize.embedding.weight",) or hf.startswith(("model.vqmodel.post_quant_conv.",
                                                                            "model.vqmodel.decoder.")):
        rest = hf[len("model.vqmodel."):]
        for pat, rep in _VQ_RENAMES:
            rest = re.sub(pat, rep, rest)
        return "gen_vision_model." + rest
    raise KeyError(hf)


def published_state(hf_state):
    out, unknown = collections.OrderedDict(), []
    for k, t in hf_state.items():
        try:
            p = published_name(k)
        except KeyError:
            unknown.append(k)
            continue
        if p is not None:
            if p in out:
                raise SystemExit(f"check_janus_transformers: two tensors map to `{p}`")
            out[p] = t
    if unknown:
        raise SystemExit("check_janus_transformers: transformers tensors this script cannot name in the published "
                         "layout (a renamed module?): " + ", ".join(unknown[:8]) + (" ..." if len(unknown) > 8 else ""))
    return out


def expected_published(c):
    """Every tensor name the published layout has for the text-to-image part of config `c` (a
    namespace: hidden, layers, vocab, codebook, embed, aligner_depth, z, ch, ch_mult, num_res),
    lm_head included, understanding side and VQ encoder excluded."""
    names = ["language_model.model.embed_tokens.weight", "language_model.model.norm.weight",
             "language_model.lm_head.weight", "gen_embed.weight",
             "gen_head.output_mlp_projector.weight", "gen_head.output_mlp_projector.bias",
             "gen_head.vision_head.weight", "gen_head.vision_head.bias",
             "gen_vision_model.quantize.embedding.weight",
             "gen_vision_model.post_quant_conv.weight", "gen_vision_model.post_quant_conv.bias"]
    for i in range(c.layers):
        p = f"language_model.model.layers.{i}."
        names += [p + "input_layernorm.weight", p + "post_attention_layernorm.weight"]
        names += [p + f"self_attn.{m}_proj.weight" for m in "qkvo"]
        names += [p + f"mlp.{m}_proj.weight" for m in ("gate", "up", "down")]
    for d in range(c.aligner_depth):
        names += [f"gen_aligner.layers.{2 * d}.weight", f"gen_aligner.layers.{2 * d}.bias"]
    add_vq_decoder("gen_vision_model.decoder.", c.z, c.ch, c.ch_mult, c.num_res,
                   lambda n, *a: names.extend([n + ".weight", n + ".bias"]),
                   lambda n, *a: names.extend([n + ".weight", n + ".bias"]))
    return set(names)


def check_names(state, c):
    want, got = expected_published(c), set(state)
    if want != got:
        raise SystemExit("check_janus_transformers: the renamed state is not the published layout: missing "
                         f"{sorted(want - got)[:8]}, unexpected {sorted(got - want)[:8]}")


def config_json(c):
    """config.json in the published schema (deepseek-ai/Janus-Pro-*) for namespace `c`."""
    return {
        "architectures": ["MultiModalityCausalLM"],
        "model_type": "multi_modality",
        "torch_dtype": "bfloat16",
        "language_config": {
            "hidden_size": c.hidden, "intermediate_size": c.intermediate, "max_position_embeddings": c.max_pos,
            "model_type": "llama", "num_attention_heads": c.heads, "num_hidden_layers": c.layers,
            "num_key_value_heads": c.kv_heads, "rms_norm_eps": c.rms_eps, "rope_theta": c.rope_theta,
            "torch_dtype": "bfloat16", "vocab_size": c.vocab,
        },
        "gen_vision_config": {"cls": "VQ-16", "model_type": "gen_vision",
                              "params": {"image_token_size": c.codebook, "n_embed": c.embed}},
        "gen_aligner_config": {"cls": "MlpProjector", "model_type": "gen_aligner",
                               "params": {"depth": c.aligner_depth, "input_dim": c.embed, "n_embed": c.hidden,
                                          "projector_type": "mlp_gelu"}},
        "gen_head_config": {"cls": "vision_head", "model_type": "gen_head",
                            "params": {"image_token_embed": c.head_embed, "image_token_size": c.codebook,
                                       "n_embed": c.hidden}},
    }


def write_model_dir(path, state, c):
    os.makedirs(path, exist_ok=True)
    with open(os.path.join(path, "config.json"), "w") as f:
        json.dump(config_json(c), f, indent=2)
    save_safetensors(os.path.join(path, "model.safetensors"),
                     collections.OrderedDict((k, t.detach().to(torch.bfloat16).contiguous()) for k, t in state.items()),
                     {"format": "pt"})


def make_inputs(gen, vocab, codebook, n_tokens, lengths=(5, 3, 1)):
    """prompt_ids [B, L]: BOS, text, pads, <begin_of_image> (the official trainer right-pads the
    tokenizer's output, then appends the <begin_of_image> column); attention_mask 0 on the pads."""
    b, L = len(lengths), max(lengths) + 2
    ids = torch.full((b, L), PAD, dtype=torch.int64)
    mask = torch.zeros(b, L, dtype=torch.int64)
    for r, n in enumerate(lengths):
        ids[r, 0] = BOS
        ids[r, 1:1 + n] = torch.randint(10, vocab, (n,), generator=gen)
        mask[r, :1 + n] = 1
        ids[r, -1], mask[r, -1] = BOI, 1
    tokens = torch.randint(0, codebook, (b, n_tokens), generator=gen)
    return {"prompt_ids": ids, "attention_mask": mask, "image_tokens": tokens}


def to_uint8(decoded_nhwc):
    """Spec 2.7: clip((x + 1) / 2 * 255, 0, 255), truncated toward zero into uint8 (numpy's cast)."""
    return ((decoded_nhwc.double() + 1) / 2 * 255).clamp(0, 255).trunc().to(torch.uint8)


def run_forward(trainer, model_dir, inp, out, threads):
    cmd = [trainer, "forward", "--model-dir", model_dir, "--input", inp, "--output", out]
    if threads:
        cmd += ["--threads", str(threads)]
    t0 = time.time()
    r = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, timeout=120)
    if r.returncode != 0:
        sys.stdout.write(r.stdout)
        raise SystemExit(f"check_janus_transformers: `{' '.join(cmd)}` exited {r.returncode}")
    return read_safetensors(out), time.time() - t0


def compare(ours, ref_logits, ref_images):
    """(ok, message) for our forward output against reference logits [B, N, V] and uint8 images."""
    msgs, ok = [], True
    lg = ours.get("logits")
    if lg is None or tuple(lg.shape) != tuple(ref_logits.shape) or lg.dtype != torch.float32:
        return False, f"logits: got {None if lg is None else (tuple(lg.shape), lg.dtype)}, want {tuple(ref_logits.shape)} float32"
    err = (lg.double() - ref_logits.double()).abs().max().item()
    scale = ref_logits.double().abs().max().item()
    rel = err / scale if scale > 0 else float("inf")
    ok &= rel <= LOGIT_RTOL and scale > 0
    msgs.append(f"logits {tuple(lg.shape)}: max abs err {err:.3g}, largest |logit| {scale:.3g}, relative {rel:.3g} "
                f"(limit {LOGIT_RTOL:g})")
    im = ours.get("images")
    if im is None or tuple(im.shape) != tuple(ref_images.shape) or im.dtype != torch.uint8:
        return False, "; ".join(msgs) + f"; images: got {None if im is None else (tuple(im.shape), im.dtype)}, " \
                                        f"want {tuple(ref_images.shape)} uint8"
    diff = (im.int() - ref_images.int()).abs()
    ok &= diff.max().item() <= IMAGE_LEVELS
    msgs.append(f"images {tuple(im.shape)}: max diff {diff.max().item()} levels, {(diff > 0).sum().item()} of "
                f"{diff.numel()} values differ (limit {IMAGE_LEVELS})")
    return bool(ok), "; ".join(msgs)


# ---- the transformers side -----------------------------------------------------------------------------
def redraw(model, seed):
    """Every parameter drawn again from `seed`: embedding tables N(0, 1), biases 0.05 N, other
    vectors (RMSNorm, GroupNorm, LayerNorm weights) 1 + 0.1 N, other weights N(0, 1 / fan_in);
    then rounded to bfloat16 values (what the published bf16 file holds), so both sides start
    from identical numbers."""
    g = torch.Generator().manual_seed(seed)
    seen = set()
    with torch.no_grad():
        for _, module in model.named_modules():
            for name, p in module.named_parameters(recurse=False):
                if p.data_ptr() in seen:  # tied
                    continue
                seen.add(p.data_ptr())
                if isinstance(module, torch.nn.Embedding):
                    v = torch.randn(p.shape, generator=g)
                elif name == "bias":
                    v = 0.05 * torch.randn(p.shape, generator=g)
                elif p.dim() == 1:
                    v = 1.0 + 0.1 * torch.randn(p.shape, generator=g)
                else:
                    fan_in = p[0].numel()
                    v = torch.randn(p.shape, generator=g) / fan_in ** 0.5
                p.copy_(v.to(torch.bfloat16).float())


def rope_theta_of(tc):
    if getattr(tc, "rope_theta", None) is not None:
        return float(tc.rope_theta)
    rp = getattr(tc, "rope_parameters", None) or getattr(tc, "rope_scaling", None) or {}
    if isinstance(rp, dict) and rp.get("rope_type", "default") not in ("default", None):
        raise SystemExit(f"check_janus_transformers: text config has rope {rp}; only plain RoPE is supported")
    return float(rp.get("rope_theta", 10000.0)) if isinstance(rp, dict) else 10000.0


def transformers_check(args):
    try:
        import transformers
        from transformers import JanusConfig, JanusForConditionalGeneration
    except Exception as e:  # noqa: BLE001
        raise SystemExit(f"check_janus_transformers: transformers with Janus is not importable: {e}")
    torch.manual_seed(args.seed)
    grid, patch = 4, 16
    H, layers, heads, inter, vocab = 64, 2, 4, 96, 256
    codebook, embed, z, ch, ch_mult, num_res = 64, 8, 32, 32, [1, 1, 2], 1
    text = {"model_type": "llama", "vocab_size": vocab, "hidden_size": H, "intermediate_size": inter,
            "num_hidden_layers": layers, "num_attention_heads": heads, "num_key_value_heads": heads,
            "max_position_embeddings": 512, "rms_norm_eps": 1e-6, "hidden_act": "silu",
            "tie_word_embeddings": False, "bos_token_id": BOS, "pad_token_id": PAD, "eos_token_id": 2}
    vision = {"hidden_size": 32, "num_hidden_layers": 1, "num_attention_heads": 2, "image_size": grid * patch,
              "patch_size": patch, "projection_dim": H, "depth": 2, "mlp_ratio": 2.0,
              "num_image_tokens": grid * grid}
    vq = {"embed_dim": embed, "num_embeddings": codebook, "latent_channels": z, "base_channels": ch,
          "channel_multiplier": ch_mult, "num_res_blocks": num_res, "projection_dim": H, "num_hidden_layers": 2,
          "hidden_act": "gelu", "image_token_embed_dim": H, "num_patches": grid}
    config = JanusConfig(text_config=text, vision_config=vision, vq_config=vq, image_token_id=vocab - 1)
    for sub in (config, config.text_config, config.vision_config, config.vq_config):
        try:
            sub._attn_implementation = "eager"  # the plain softmax(QK^T)V path, float32
        except Exception:  # noqa: BLE001
            pass
    model = JanusForConditionalGeneration(config).float().eval()
    redraw(model, args.seed)
    tc, vc = model.config.text_config, model.config.vq_config
    if vc.hidden_act != "gelu" or vc.projection_dim != tc.hidden_size or vc.image_token_embed_dim != tc.hidden_size:
        raise SystemExit("check_janus_transformers: the VQ config must have exact GELU and projection_dim == "
                         "image_token_embed_dim == hidden_size (the published gen_head / gen_aligner shapes)")
    n_side = getattr(vc, "num_patches", grid)
    if n_side != grid:
        raise SystemExit(f"check_janus_transformers: vq_config.num_patches is {n_side}, expected {grid}")
    c = types.SimpleNamespace(hidden=tc.hidden_size, intermediate=tc.intermediate_size, layers=tc.num_hidden_layers,
                              heads=tc.num_attention_heads, kv_heads=tc.num_key_value_heads, vocab=tc.vocab_size,
                              max_pos=tc.max_position_embeddings, rms_eps=tc.rms_norm_eps, rope_theta=rope_theta_of(tc),
                              codebook=vc.num_embeddings, embed=vc.embed_dim, aligner_depth=vc.num_hidden_layers,
                              head_embed=vc.projection_dim, z=vc.latent_channels, ch=vc.base_channels,
                              ch_mult=tuple(vc.channel_multiplier), num_res=vc.num_res_blocks)
    state = published_state(model.state_dict())
    check_names(state, c)

    work = args.workdir or tempfile.mkdtemp(prefix="janus-hf-")
    try:
        mdir = os.path.join(work, "model")
        if os.path.exists(mdir):
            shutil.rmtree(mdir)
        write_model_dir(mdir, state, c)
        inputs = make_inputs(torch.Generator().manual_seed(args.seed + 1), c.vocab, c.codebook, grid * grid)
        inp, out = os.path.join(work, "input.safetensors"), os.path.join(work, "output.safetensors")
        save_safetensors(inp, inputs, {"format": "pt"})

        ids, mask, tokens = inputs["prompt_ids"], inputs["attention_mask"], inputs["image_tokens"]
        L, N = ids.shape[1], tokens.shape[1]
        with torch.no_grad():
            text_emb = model.get_input_embeddings()(ids)
            if hasattr(model, "prepare_embeddings_for_image_generation"):
                img_emb = model.prepare_embeddings_for_image_generation(tokens)
            else:
                img_emb = model.model.generation_aligner(model.model.generation_embeddings(tokens))
            x = torch.cat([text_emb, img_emb], dim=1)
            m = torch.cat([mask, torch.ones_like(tokens)], dim=1)
            hid = model.model.language_model(inputs_embeds=x, attention_mask=m, use_cache=False).last_hidden_state
            ref_logits = model.model.generation_head(hid[:, L - 1:L - 1 + N]).float()
            dec = model.decode_image_tokens(tokens).float()
            if dec.dim() == 4 and dec.shape[1] == 3 and dec.shape[-1] != 3:
                dec = dec.permute(0, 2, 3, 1)  # NCHW -> NHWC
            ref_images = to_uint8(dec)
        ours, secs = run_forward(args.trainer, mdir, inp, out, args.threads)
        ok, msg = compare(ours, ref_logits, ref_images)
        print(f"janus_trainer forward ({secs:.1f} s) vs transformers {transformers.__version__} "
              f"(torch {torch.__version__}), seed {args.seed}: {msg}")
        if args.keep or args.workdir:
            save_safetensors(os.path.join(work, "reference.safetensors"),
                             {"logits": ref_logits.contiguous(), "images": ref_images.contiguous()}, {"format": "pt"})
            print(f"kept: {work} (model/, input.safetensors, output.safetensors, reference.safetensors)")
        return ok, msg
    finally:
        if not (args.keep or args.workdir):
            shutil.rmtree(work, ignore_errors=True)


# ---- --self-test: everything but transformers, on the project's own fixture -----------------------
def hf_name_for_test(pub):
    """The inverse of published_name, written separately for the self-test only (None: not kept)."""
    if pub.startswith(("vision_model.", "aligner.", "gen_vision_model.encoder.", "gen_vision_model.quant_conv.")) \
            or pub == "gen_vision_model.quantize.codebook_used":
        return None
    if pub == "language_model.lm_head.weight":
        return "lm_head.weight"
    if pub.startswith("language_model.model."):
        return "model.language_model." + pub[len("language_model.model."):]
    if pub == "gen_embed.weight":
        return "model.generation_embeddings.weight"
    m = re.fullmatch(r"gen_aligner\.layers\.(\d+)\.(weight|bias)", pub)
    if m:
        k = int(m.group(1))
        return "model.generation_aligner." + ("fc1" if k == 0 else f"hidden_layers.{k // 2 - 1}") + "." + m.group(2)
    if pub.startswith("gen_head.output_mlp_projector."):
        return "model.generation_head.proj_out." + pub.rsplit(".", 1)[1]
    if pub.startswith("gen_head.vision_head."):
        return "model.generation_head.vision_head." + pub.rsplit(".", 1)[1]
    if pub.startswith("gen_vision_model."):
        rest = pub[len("gen_vision_model."):]
        rest = re.sub(r"^decoder\.conv_blocks\.", "decoder.up.", rest)
        rest = rest.replace(".mid.0.", ".mid.block_1.").replace(".mid.1.", ".mid.attn_1.").replace(".mid.2.", ".mid.block_2.")
        rest = re.sub(r"\.res\.(\d+)\.", r".block.\1.", rest)
        return "model.vqmodel." + rest
    raise KeyError(pub)


def self_test(args):
    fx = os.path.join(ROOT, "examples", "janus", "tests", "data", "janus_tiny")
    pub = read_safetensors(os.path.join(fx, "safetensors", "model.safetensors"))
    with open(os.path.join(fx, "safetensors", "config.json")) as f:
        fcfg = json.load(f)
    lc = fcfg["language_config"]
    c = types.SimpleNamespace(hidden=lc["hidden_size"], intermediate=lc["intermediate_size"],
                              layers=lc["num_hidden_layers"], heads=lc["num_attention_heads"],
                              kv_heads=lc["num_key_value_heads"], vocab=lc["vocab_size"],
                              max_pos=lc["max_position_embeddings"], rms_eps=1e-6, rope_theta=10000.0,
                              codebook=fcfg["gen_vision_config"]["params"]["image_token_size"],
                              embed=fcfg["gen_vision_config"]["params"]["n_embed"],
                              aligner_depth=fcfg["gen_aligner_config"]["params"]["depth"],
                              head_embed=fcfg["gen_head_config"]["params"]["image_token_embed"],
                              z=32, ch=32, ch_mult=(1, 1), num_res=2)  # make_janus_fixture.py's VQ
    hf = collections.OrderedDict((hf_name_for_test(k), t) for k, t in pub.items() if hf_name_for_test(k))
    back = published_state(hf)
    kept = {k for k in pub if hf_name_for_test(k)}
    assert set(back) == kept, (sorted(set(back) ^ kept))[:5]
    assert all(torch.equal(back[k], pub[k]) for k in back)
    check_names(back, c)
    try:  # a name the table does not know must stop the check
        published_state({"model.generation_head.something_new.weight": torch.zeros(1)})
        raise AssertionError("an unknown transformers name was accepted")
    except SystemExit:
        pass
    ours_cfg = config_json(c)
    for key in ("gen_vision_config", "gen_aligner_config", "gen_head_config"):
        assert ours_cfg[key] == fcfg[key], (key, ours_cfg[key], fcfg[key])
    for k, v in lc.items():
        assert ours_cfg["language_config"][k] == v, (k, ours_cfg["language_config"][k], v)
    print(f"self-test: {len(back)} tensors renamed to transformers' names and back, bit-identical; "
          f"the published name list matches; config.json matches the fixture's")

    ref = read_safetensors(os.path.join(fx, "forward", "reference.safetensors"))
    inputs = read_safetensors(os.path.join(fx, "forward", "input.safetensors"))
    made = make_inputs(torch.Generator().manual_seed(99), c.vocab, c.codebook, 16)
    assert torch.equal(made["attention_mask"], inputs["attention_mask"]), "make_inputs: mask layout differs from the fixture's"
    assert torch.equal(made["prompt_ids"][:, [0, -1]], inputs["prompt_ids"][:, [0, -1]]), "BOS / BOI columns differ"
    work = args.workdir or tempfile.mkdtemp(prefix="janus-hf-self-")
    try:
        mdir = os.path.join(work, "model")
        shutil.rmtree(mdir, ignore_errors=True)
        write_model_dir(mdir, back, c)
        inp, out = os.path.join(work, "input.safetensors"), os.path.join(work, "output.safetensors")
        save_safetensors(inp, inputs, {"format": "pt"})
        ours, secs = run_forward(args.trainer, mdir, inp, out, args.threads)
        ok, msg = compare(ours, ref["logits"], ref["images"])
        print(f"self-test: janus_trainer forward ({secs:.1f} s) vs the fixture's float64 reference: {msg}")
        if not ok:
            return False, msg
        # the comparison must be able to fail: a language-model weight scaled by 1.01 (logits),
        # a VQ decoder bias moved by 0.05 (images)
        for k, change in (("language_model.model.layers.1.mlp.down_proj.weight", lambda t: t * 1.01),
                          ("gen_vision_model.decoder.conv_out.bias", lambda t: t + 0.05)):
            bad = collections.OrderedDict(back)
            bad[k] = change(bad[k].float()).to(torch.bfloat16)
            shutil.rmtree(mdir)
            write_model_dir(mdir, bad, c)
            ours_bad, _ = run_forward(args.trainer, mdir, inp, out, args.threads)
            bad_ok, bad_msg = compare(ours_bad, ref["logits"], ref["images"])
            print(f"self-test: with `{k}` changed the comparison says: {'PASS' if bad_ok else 'FAIL'} ({bad_msg})")
            if bad_ok:
                return False, f"a changed `{k}` passed the comparison"
        return True, msg
    finally:
        if not (args.keep or args.workdir):
            shutil.rmtree(work, ignore_errors=True)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--trainer", required=True, help="the janus_trainer binary")
    ap.add_argument("--workdir", help="keep the model directory, input, output and reference here")
    ap.add_argument("--keep", action="store_true", help="keep the temporary directory")
    ap.add_argument("--seed", type=int, default=2026)
    ap.add_argument("--threads", type=int, default=0, help="janus_trainer --threads (0: its default)")
    ap.add_argument("--self-test", action="store_true", help="no transformers: the fixture through the same path")
    args = ap.parse_args()
    if not os.access(args.trainer, os.X_OK):
        print(f"check_janus_transformers: FAIL (set-up): {args.trainer} is not an executable")
        return 2
    t0 = time.time()
    try:
        ok, msg = (self_test if args.self_test else transformers_check)(args)
    except SystemExit as e:
        print(f"check_janus_transformers: FAIL (set-up): {e}")
        return 2
    except Exception as e:  # noqa: BLE001  (an API that changed: the traceback, then the verdict)
        traceback.print_exc()
        print(f"check_janus_transformers: FAIL (set-up): {type(e).__name__}: {e}")
        return 2
    what = "self-test (fixture, no transformers)" if args.self_test else "janus_trainer forward vs transformers"
    print(f"check_janus_transformers: {'PASS' if ok else 'FAIL'}: {what}: {msg} ({time.time() - t0:.1f} s)")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
