#!/usr/bin/env python3
"""PyTorch-eager baseline of the GCPO operators: what a user runs without gcpo.

Each operator is computed the way the official Janus-Pro GCPO trainer computes it (see
shared/spec/janus-trainer.md sections 2.4-2.12), with the same shapes and names as the CUDA
benchmarks (bench/cuda/, gcpo_bench_cuda), and timed the same way: CUDA events around the
operator, warm-up first, L2 flushed before memory-bound operators (128 MiB write, then a 128 MiB
read of another buffer), median of the repetitions. Before each timed call the device is
synchronised, so the time includes the Python launch overhead of every small kernel, as a
trainer sees it.

One JSON line per operator and shape on stdout (also appended to --out):
  {"name": "op:token_stats/dtype:bf16/R:32/N:576/V:16384", "op": "token_stats", "dtype": "bf16",
   "dims": {"R": 32, ...}, "median_us": ..., "min_us": ..., "mean_us": ..., "reps": 5, ...}
A case that fails prints {"name": ..., "error": "..."}; one skipped for the time budget prints
{"name": ..., "skipped": "budget"}. Progress goes to stderr.

The operators and how the official code computes them:
  token_stats            entropy = -(p * log(p + 1e-12)).sum(-1) with p = softmax(logits) over the
                         whole [R, N, V] tensor; log-probs = log_softmax + gather, one rollout at
                         a time (the official _get_per_token_logps loop), stacked
  token_stats_backward   autograd of those log-probs to the logits (forward not timed)
  count_nonfinite        (~isfinite(logits)).sum()
  group_similarity       per step t: the [P, G, G] F.cosine_similarity matrix of the step's
                         embeddings, mean of the off-diagonal entries, repeat_interleave; stacked
  group_similarity_from_tokens   the same with the step's embeddings = table[tokens[:, t]]
  initial_mask, smoothed_entropy (Python loop over the H x W positions), entropy_gradient
  (central differences by slicing), gradient_topk (per-rollout topk in the window),
  low_similarity_mask (clone, +inf on excluded, topk(largest=False), scatter), union_mask
  select_critical_tokens all of the above from entropy and a similarity map
  group_advantages       view(-1, G).mean / .std (unbiased), repeat_interleave, (r - m) / (s + 1e-4)
  advantage_weight       exp(clamp(lp - ref, -0.5, 0.5)).cumsum(-1) / arange(1, N + 1)
  gcpo_loss_forward      completion mask from the critical mask, exp(lp - lp.detach()) * A * weight,
                         k3 KL, masked token mean, mean KL (no .item(): no host sync is charged)
  gcpo_loss_backward     autograd of that loss to lp (forward not timed)
  gcpo_loss_forward_backward  both
  generation_step        one sampling step of 16 images: cond / uncond rows interleaved in [32, V],
                         uncond + 5 * (cond - uncond), softmax, multinomial, and the entropy and
                         log-prob of the sampled token

Usage: python3 bench/baseline/torch_baseline.py [--device cuda|cpu] [--R 8 32] [--N 576 1024]
       [--V 16384] [--D 2048] [--G 4 8] [--dtypes bf16 fp32] [--ops ...] [--reps 5] [--warmup 1]
       [--budget-s 120] [--out baseline.jsonl] [--list]
For a quick check on a CPU: --device cpu --R 4 --N 16 --V 64 --D 32 --G 2 4 --reps 1 --warmup 0.
That these functions compute what the official trainer computes:
       python3 bench/baseline/torch_baseline.py --check-conformance tests/data/conformance
"""

import argparse
import json
import math
import statistics
import sys
import time

# --- names -------------------------------------------------------------------------------------

DIM_ORDER = ("R", "N", "V", "D", "G")


def bench_name(op, dtype, dims):
    """The same name gcpo_bench_cuda gives: op:<op>/dtype:<dtype>/R:../N:.. (dims in DIM_ORDER)."""
    parts = ["op:" + op, "dtype:" + dtype]
    parts += ["%s:%d" % (k, dims[k]) for k in DIM_ORDER if k in dims]
    return "/".join(parts)


# --- the cases ---------------------------------------------------------------------------------


class Case:
    """One operator at one shape: `make(ctx)` builds the inputs and returns (setup, fn), where
    `setup()` (untimed, may be None) returns the state that the timed `fn(state)` consumes."""

    def __init__(self, op, dtype, dims, memory_bound, make):
        self.op, self.dtype, self.dims = op, dtype, dict(dims)
        self.memory_bound = memory_bound
        self.make = make
        self.name = bench_name(op, dtype, self.dims)


def build_cases(args):
    cases = []
    square = [n for n in args.N if int(math.isqrt(n)) ** 2 == n]
    for dt in args.dtypes:
        for R in args.R:
            for N in args.N:
                d = {"R": R, "N": N, "V": args.V}
                cases.append(Case("token_stats", dt, d, True, lambda c, R=R, N=N, dt=dt: op_token_stats(c, R, N, dt)))
                cases.append(Case("token_stats_backward", dt, d, True,
                                  lambda c, R=R, N=N, dt=dt: op_token_stats_backward(c, R, N, dt)))
                cases.append(Case("count_nonfinite", dt, d, True,
                                  lambda c, R=R, N=N, dt=dt: op_count_nonfinite(c, R, N, dt)))
    for dt in args.dtypes:
        for R in args.R:
            for N in args.N:
                for G in args.G:
                    if R % G:
                        continue
                    cases.append(Case("group_similarity", dt, {"R": R, "N": N, "D": args.D, "G": G}, True,
                                      lambda c, R=R, N=N, G=G, dt=dt: op_group_similarity(c, R, N, G, dt)))
    for dt in args.dtypes:
        for R in args.R:
            for N in args.N:
                for G in args.G:
                    if R % G:
                        continue
                    cases.append(Case("group_similarity_from_tokens", dt,
                                      {"R": R, "N": N, "V": args.V, "D": args.D, "G": G}, True,
                                      lambda c, R=R, N=N, G=G, dt=dt: op_similarity_from_tokens(c, R, N, G, dt)))
    for R in args.R:
        for N in square:
            cases.append(Case("select_critical_tokens", "fp32", {"R": R, "N": N}, False,
                              lambda c, R=R, N=N: op_select(c, R, N)))
    for op in ("initial_mask", "smoothed_entropy", "entropy_gradient", "gradient_topk", "low_similarity_mask",
               "union_mask"):
        for R in args.R:
            for N in square:
                cases.append(Case(op, "fp32", {"R": R, "N": N}, False,
                                  lambda c, R=R, N=N, op=op: op_selection_step(c, op, R, N)))
    for R in args.R:
        for G in args.G:
            if R % G:
                continue
            cases.append(Case("group_advantages", "fp32", {"R": R, "G": G}, False,
                              lambda c, R=R, G=G: op_advantages(c, R, G)))
    for R in args.R:
        for N in args.N:
            cases.append(Case("advantage_weight", "fp32", {"R": R, "N": N}, False,
                              lambda c, R=R, N=N: op_weight(c, R, N)))
    for op in ("gcpo_loss_forward", "gcpo_loss_backward", "gcpo_loss_forward_backward"):
        for R in args.R:
            for N in args.N:
                cases.append(Case(op, "fp32", {"R": R, "N": N}, False,
                                  lambda c, R=R, N=N, op=op: op_loss(c, op, R, N)))
    for dt in args.dtypes:
        cases.append(Case("generation_step", dt, {"R": args.gen_rows, "V": args.V}, False,
                          lambda c, dt=dt: op_generation_step(c, args.gen_rows, dt)))
    if args.ops:
        wanted = set(args.ops)
        cases = [c for c in cases if c.op in wanted]
    # The operators of one GCPO step and the goals first, so that a time budget, if it
    # runs out, costs the least important cases.
    first = ("token_stats", "token_stats_backward", "group_similarity", "select_critical_tokens", "group_advantages",
             "gcpo_loss_forward", "gcpo_loss_backward", "gcpo_loss_forward_backward", "generation_step")
    cases.sort(key=lambda c: first.index(c.op) if c.op in first else len(first))
    return cases


# --- inputs --------------------------------------------------------------------------------------


class Context:
    def __init__(self, torch, device, args):
        self.torch, self.device, self.args = torch, device, args
        self.V, self.D = args.V, args.D
        self.gen = torch.Generator(device=device)
        self.gen.manual_seed(1234)
        self.cfg_scale = 5.0
        self.beta = 0.01
        self.dtypes = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}

    def randn(self, *shape, dtype=None, scale=1.0, shift=0.0):
        t = self.torch.randn(*shape, generator=self.gen, device=self.device, dtype=self.torch.float32)
        t = t * scale + shift
        return t.to(dtype) if dtype is not None else t

    def rand(self, *shape, lo=0.0, hi=1.0):
        t = self.torch.rand(*shape, generator=self.gen, device=self.device, dtype=self.torch.float32)
        return t * (hi - lo) + lo

    def logits(self, rows, dtype):
        """[rows, V] logits: per-row scale in [0.6, 3.6] times a normal draw, plus a few peaks."""
        t = self.randn(rows, self.V)
        t = t * self.rand(rows, 1, lo=0.6, hi=3.6)
        peaks = self.rand(rows, self.V) < (1.0 / 2048.0)
        t = t + 6.0 * peaks.to(t.dtype)
        return t.to(self.dtypes[dtype])

    def tokens(self, R, N):
        return self.torch.randint(0, self.V, (R, N), generator=self.gen, device=self.device, dtype=self.torch.int64)


# --- the official computations ---------------------------------------------------------------------


def entropy_official(torch, logits):
    probs = torch.nn.functional.softmax(logits, dim=-1)
    return -(probs * torch.log(probs + 1e-12)).sum(dim=-1)


def logps_official(torch, logits, tokens):
    rows = []
    for logits_row, tokens_row in zip(logits, tokens):
        log_probs = logits_row.log_softmax(dim=-1)
        rows.append(torch.gather(log_probs, dim=1, index=tokens_row.unsqueeze(1)).squeeze(1))
    return torch.stack(rows)


def similarity_official(torch, step_embeddings, N, G):
    """step_embeddings(t) -> [R, D]: the embeddings of step t's sampled tokens."""
    F = torch.nn.functional
    cos_sim_list = []
    for t in range(N):
        e = step_embeddings(t).clone()
        e = e.view(-1, G, e.shape[-1])
        cos = F.cosine_similarity(e.unsqueeze(2), e.unsqueeze(1), dim=-1)  # [P, G, G]
        off_diagonal = ~torch.eye(G, dtype=torch.bool, device=cos.device)
        avg = cos[:, off_diagonal].mean(dim=1)
        cos_sim_list.append(torch.repeat_interleave(avg, G, dim=0))
    return torch.stack(cos_sim_list, dim=1)


def initial_official(torch, R, N, device):
    first = torch.zeros(R, N, dtype=torch.bool, device=device)
    first[:, : int(N * 0.1)] = True
    return first


def smoothed_official(torch, entropy):
    """Causal 5-neighbour mean, one grid position at a time as the official code does."""
    B, N = entropy.shape
    h = w = int(N ** 0.5)
    emap = entropy.view(B, h, w)
    mean_map = torch.zeros_like(emap)
    for i in range(h):
        for j in range(w):
            nb = [emap[:, i, j]]
            if j > 0:
                nb.append(emap[:, i, j - 1])
            if i > 0 and j > 0:
                nb.append(emap[:, i - 1, j - 1])
            if i > 0:
                nb.append(emap[:, i - 1, j])
            if i > 0 and j < w - 1:
                nb.append(emap[:, i - 1, j + 1])
            mean_map[:, i, j] = torch.stack(nb, dim=-1).mean(-1)
    return mean_map


def gradient_official(torch, mean_map):
    dx = torch.zeros_like(mean_map)
    dy = torch.zeros_like(mean_map)
    dx[:, :, 1:-1] = (mean_map[:, :, 2:] - mean_map[:, :, :-2]) / 2
    dx[:, :, 0] = mean_map[:, :, 1] - mean_map[:, :, 0]
    dx[:, :, -1] = mean_map[:, :, -1] - mean_map[:, :, -2]
    dy[:, 1:-1, :] = (mean_map[:, 2:, :] - mean_map[:, :-2, :]) / 2
    dy[:, 0, :] = mean_map[:, 1, :] - mean_map[:, 0, :]
    dy[:, -1, :] = mean_map[:, -1, :] - mean_map[:, -2, :]
    return torch.sqrt(dx ** 2 + dy ** 2)


def gradient_topk_official(torch, grad_mag, frac=0.1):
    B = grad_mag.shape[0]
    flat = grad_mag.reshape(B, -1)
    N = flat.shape[1]
    n_valid, offset = int(N * 0.8), int(N * 0.1)
    selected = torch.zeros_like(flat)
    for b in range(B):
        sub = flat[b, offset : offset + n_valid]
        k = min(int(N * frac), sub.shape[0])
        _, idx = torch.topk(sub, k)
        selected[b, offset + idx] = 1
    return selected


def low_similarity_official(torch, similarity, exclude, k):
    valid = similarity.clone()
    valid[exclude] = float("inf")
    _, idx = torch.topk(valid, k=k, dim=1, largest=False)
    mask = torch.zeros_like(similarity, dtype=torch.bool)
    rows = torch.arange(similarity.size(0), device=similarity.device).unsqueeze(1).expand_as(idx)
    mask[rows, idx] = True
    return mask


def select_official(torch, entropy, similarity):
    R, N = entropy.shape
    k = int(N * 0.1)
    first = initial_official(torch, R, N, entropy.device)
    mean_map = smoothed_official(torch, entropy)
    grad_mask = gradient_topk_official(torch, gradient_official(torch, mean_map)).bool()
    sim_mask = low_similarity_official(torch, similarity, grad_mask | first, k)
    final = grad_mask | sim_mask | first
    return final, final.sum(dim=-1)


def advantages_official(torch, rewards, G):
    mean = rewards.view(-1, G).mean(dim=1).repeat_interleave(G, dim=0)
    std = rewards.view(-1, G).std(dim=1).repeat_interleave(G, dim=0)
    return (rewards - mean) / (std + 1e-4)


def weight_official(torch, lp, ref):
    coef = torch.exp(torch.clamp(lp - ref, -0.5, 0.5))
    return coef.cumsum(dim=-1) / torch.arange(1, coef.size(1) + 1, dtype=coef.dtype, device=coef.device)


def loss_official(torch, lp, ref, adv, critical, beta):
    completion_mask = torch.ones_like(critical, dtype=torch.int64)
    completion_mask[critical] = 0
    completion_mask = 1 - completion_mask
    per_token_loss = torch.exp(lp - lp.detach()) * adv.unsqueeze(1)
    per_token_loss = per_token_loss * weight_official(torch, lp, ref)
    kl = torch.exp(ref - lp) - (ref - lp) - 1
    per_token_loss = -(per_token_loss - beta * kl)
    loss = (per_token_loss * completion_mask).sum() / completion_mask.sum()
    mean_kl = (kl * completion_mask).sum() / completion_mask.sum()
    return loss, mean_kl


def generation_step_official(torch, logits, cfg_scale, temperature=1.0):
    cond, uncond = logits[0::2, :], logits[1::2, :]
    guided = uncond + cfg_scale * (cond - uncond)
    probs = torch.softmax(guided / temperature, dim=-1)
    token = torch.multinomial(probs, num_samples=1)
    entropy = -(probs * torch.log(probs + 1e-12)).sum(dim=-1)
    logprob = torch.log(probs.gather(-1, token)).squeeze(-1)
    return token.squeeze(-1), logprob, entropy


# --- case builders: (setup, fn) ----------------------------------------------------------------------


def op_token_stats(c, R, N, dt):
    torch = c.torch
    logits = c.logits(R * N, dt).view(R, N, c.V)
    tokens = c.tokens(R, N)
    return None, lambda _: (entropy_official(torch, logits), logps_official(torch, logits, tokens))


def op_token_stats_backward(c, R, N, dt):
    torch = c.torch
    logits = c.logits(R * N, dt).view(R, N, c.V)
    tokens = c.tokens(R, N)
    grad = c.randn(R, N, dtype=logits.dtype, scale=1e-3)

    def setup():
        leaf = logits.detach().requires_grad_(True)
        return leaf, logps_official(torch, leaf, tokens)

    return setup, lambda s: torch.autograd.grad(s[1], s[0], grad)[0]


def op_count_nonfinite(c, R, N, dt):
    torch = c.torch
    logits = c.logits(R * N, dt).view(R, N, c.V)
    return None, lambda _: (~torch.isfinite(logits)).sum()


def op_group_similarity(c, R, N, G, dt):
    torch = c.torch
    emb = c.randn(R, N, c.D, dtype=c.dtypes[dt], scale=0.02, shift=0.01)
    return None, lambda _: similarity_official(torch, lambda t: emb[:, t, :], N, G)


def op_similarity_from_tokens(c, R, N, G, dt):
    torch = c.torch
    table = c.randn(c.V, c.D, dtype=c.dtypes[dt], scale=0.02, shift=0.01)
    tokens = c.tokens(R, N)
    return None, lambda _: similarity_official(torch, lambda t: table[tokens[:, t]], N, G)


def selection_maps(c, R, N):
    return c.rand(R, N, lo=0.0, hi=9.0), c.rand(R, N, lo=-0.2, hi=1.0)


def op_select(c, R, N):
    entropy, similarity = selection_maps(c, R, N)
    return None, lambda _: select_official(c.torch, entropy, similarity)


def op_selection_step(c, op, R, N):
    torch = c.torch
    entropy, similarity = selection_maps(c, R, N)
    h = int(math.isqrt(N))
    if op == "initial_mask":
        return None, lambda _: initial_official(torch, R, N, c.device)
    if op == "smoothed_entropy":
        return None, lambda _: smoothed_official(torch, entropy)
    if op == "entropy_gradient":
        emap = entropy.view(R, h, h)
        return None, lambda _: gradient_official(torch, emap)
    if op == "gradient_topk":
        return None, lambda _: gradient_topk_official(torch, entropy).bool()
    if op == "low_similarity_mask":
        exclude = c.rand(R, N) < 0.2
        return None, lambda _: low_similarity_official(torch, similarity, exclude, int(N * 0.1))
    if op == "union_mask":
        a, b, d = (c.rand(R, N) < 0.1 for _ in range(3))
        return None, lambda _: (lambda f: (f, f.sum(dim=-1)))(a | b | d)
    raise ValueError(op)


def op_advantages(c, R, G):
    rewards = c.rand(R)
    return None, lambda _: advantages_official(c.torch, rewards, G)


def logp_pair(c, R, N):
    lp = c.rand(R, N, lo=-9.0, hi=-0.5)
    return lp, lp + 0.4 * c.randn(R, N)


def op_weight(c, R, N):
    lp, ref = logp_pair(c, R, N)
    return None, lambda _: weight_official(c.torch, lp, ref)


def op_loss(c, op, R, N):
    torch = c.torch
    lp, ref = logp_pair(c, R, N)
    adv = c.randn(R)
    critical = c.rand(R, N) < 0.3

    def forward(leaf):
        return loss_official(torch, leaf, ref, adv, critical, c.beta)

    if op == "gcpo_loss_forward":
        return (lambda: lp.detach().requires_grad_(True)), forward

    if op == "gcpo_loss_backward":
        def setup():
            leaf = lp.detach().requires_grad_(True)
            return leaf, forward(leaf)[0]

        return setup, lambda s: torch.autograd.grad(s[1], s[0])[0]

    def both(leaf):
        loss, mean_kl = forward(leaf)
        return torch.autograd.grad(loss, leaf)[0], mean_kl

    return (lambda: lp.detach().requires_grad_(True)), both


def op_generation_step(c, rows, dt):
    logits = c.logits(2 * rows, dt)  # cond / uncond interleaved, as the official CFG batch
    return None, lambda _: generation_step_official(c.torch, logits, c.cfg_scale)


# --- conformance: the official computations against the float64 vectors ----------------------------


def check_conformance(torch, paths):
    """Runs the functions above in float64 on the CPU on each Janus case of tests/data/conformance
    (files or folders) and compares with the expected values (spec section 8 tolerances; masks
    exact). Returns the number of mismatching fields."""
    import glob
    import os

    files = []
    for p in paths:
        files += sorted(glob.glob(os.path.join(p, "*.json"))) if os.path.isdir(p) else [p]
    bad = 0
    f64 = torch.float64
    for path in files:
        with open(path) as f:
            d = json.load(f)
        params, shape = d["params"], d["shape"]
        if d.get("variant") != "janus" or params["weight_clip"] != 0.5 or params["adv_eps"] != 1e-4 or any(
                params[k] != v for k, v in (("initial_frac", 0.1), ("gradient_frac", 0.1), ("similarity_frac", 0.1),
                                            ("window_start_frac", 0.1), ("window_frac", 0.8))) or (
                shape["height"] != shape["width"]):
            print("conformance: %s: skipped (not the official Janus settings on a square grid)" % path)
            continue
        G = shape["group"]
        R, N, V, D = shape["prompts"] * G, shape["height"] * shape["width"], shape["vocab"], shape["embed_dim"]
        inp = d["inputs"]

        def t(name, *dims, dtype=f64):
            return torch.tensor(inp[name], dtype=dtype).view(*dims)

        sample, policy = t("sample_logits", R, N, V), t("policy_logits", R, N, V)
        tokens, ref, emb, rewards = t("tokens", R, N, dtype=torch.int64), t("ref_logp", R, N), t("embeddings", R, N, D), t("rewards", R)
        leaf = policy.clone().requires_grad_(True)
        with torch.enable_grad():
            lp = logps_official(torch, leaf, tokens)
            entropy = entropy_official(torch, sample)
            mean_map = smoothed_official(torch, entropy)
            grad_mag = gradient_official(torch, mean_map)
            similarity = similarity_official(torch, lambda s: emb[:, s, :], N, G)
            first = initial_official(torch, R, N, "cpu")
            gmask = gradient_topk_official(torch, grad_mag).bool()
            smask = low_similarity_official(torch, similarity, gmask | first, int(N * 0.1))
            final = gmask | smask | first
            adv = advantages_official(torch, rewards, G)
            weight = weight_official(torch, lp, ref)
            kl = torch.exp(ref - lp) - (ref - lp) - 1
            loss, _ = loss_official(torch, lp, ref, adv, final, params["beta"])
            grad_lp, grad_logits = torch.autograd.grad(loss, [lp, leaf])
        got = {"entropy": entropy, "policy_logp": lp, "smoothed_entropy": mean_map, "entropy_gradient": grad_mag,
               "similarity": similarity, "initial_mask": first, "gradient_mask": gmask, "similarity_mask": smask,
               "critical_mask": final, "advantages": adv, "weight": weight, "kl": kl, "loss": loss,
               "grad_logp": grad_lp, "grad_policy_logits": grad_logits}
        for field, value in got.items():
            want = torch.tensor(d["expected"][field], dtype=f64).reshape(-1)
            have = value.detach().to(f64).reshape(-1)
            if field.endswith("_mask"):
                ok = torch.equal(have, want)
            else:
                atol, rtol = (1e-7, 1e-3) if field.startswith("grad") else (1e-5, 1e-4)
                ok = bool(((have - want).abs() <= atol + rtol * want.abs()).all())
            if not ok:
                bad += 1
                i = int(((have - want).abs()).argmax())
                print("conformance: %s: %s differs (element %d: got %r, want %r)" %
                      (os.path.basename(path), field, i, float(have[i]), float(want[i])))
        print("conformance: %s: %d fields checked" % (os.path.basename(path), len(got)))
    return bad


# --- timing ---------------------------------------------------------------------------------------


class Timer:
    def __init__(self, torch, device, flush_mib):
        self.torch, self.cuda = torch, device.startswith("cuda")
        self.flush_count = 0
        if self.cuda:
            n = flush_mib << 20
            self.flush_write = torch.empty(n, dtype=torch.uint8, device=device)
            self.flush_read = torch.ones(n // 4, dtype=torch.int32, device=device)
            self.start = torch.cuda.Event(enable_timing=True)
            self.stop = torch.cuda.Event(enable_timing=True)

    def sync(self):
        if self.cuda:
            self.torch.cuda.synchronize()

    def flush(self):
        if self.cuda:
            self.flush_count += 1
            self.flush_write.fill_(self.flush_count & 0xFF)
            self.flush_read.sum()

    def run(self, setup, fn, flush, warmup, reps, max_seconds):
        times = []
        t_begin = time.perf_counter()
        for i in range(warmup + reps):
            state = setup() if setup is not None else None
            if flush:
                self.flush()
            self.sync()
            if self.cuda:
                self.start.record()
                out = fn(state)
                self.stop.record()
                self.stop.synchronize()
                us = self.start.elapsed_time(self.stop) * 1e3
            else:
                t0 = time.perf_counter()
                out = fn(state)
                us = (time.perf_counter() - t0) * 1e6
            del out, state
            if i >= warmup:
                times.append(us)
                if len(times) >= 3 and time.perf_counter() - t_begin > max_seconds:
                    break
        return times


# --- main -------------------------------------------------------------------------------------------


def parse_args(argv):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--device", default="cuda", help="cuda (default), cuda:N or cpu")
    p.add_argument("--R", type=int, nargs="+", default=[8, 32], help="rollouts (default 8 32)")
    p.add_argument("--N", type=int, nargs="+", default=[576, 1024], help="tokens per rollout (default 576 1024)")
    p.add_argument("--V", type=int, default=16384, help="codebook size (default 16384)")
    p.add_argument("--D", type=int, default=2048, help="embedding dimension (default 2048)")
    p.add_argument("--G", type=int, nargs="+", default=[4, 8], help="group sizes (default 4 8)")
    p.add_argument("--gen-rows", type=int, default=16, help="images per generation step (default 16)")
    p.add_argument("--dtypes", nargs="+", default=["bf16", "fp32"], choices=["bf16", "fp32", "fp16"])
    p.add_argument("--ops", nargs="+", help="only these operators")
    p.add_argument("--warmup", type=int, default=1, help="untimed calls first (default 1)")
    p.add_argument("--reps", type=int, default=5, help="timed calls (default 5; median reported)")
    p.add_argument("--max-seconds-per-case", type=float, default=2.0,
                   help="stop repeating a case after this long, once 3 calls are timed (default 2)")
    p.add_argument("--budget-s", type=float, default=0.0,
                   help="skip the remaining cases once this many seconds have passed (0: no limit)")
    p.add_argument("--flush-mib", type=int, default=128, help="L2 flush buffer size (default 128)")
    p.add_argument("--out", help="also append the JSON lines to this file")
    p.add_argument("--list", action="store_true", help="print the case names and exit (no torch needed)")
    p.add_argument("--check-conformance", nargs="+", metavar="PATH",
                   help="instead of timing: check the official computations against these conformance "
                        "files or folders (float64, CPU) and exit non-zero on a mismatch")
    args = p.parse_args(argv)
    for name in ("R", "N", "G"):
        if any(x < 1 for x in getattr(args, name)):
            p.error("--%s values must be >= 1" % name)
    if args.V < 1 or args.D < 1 or args.gen_rows < 1 or args.reps < 1 or args.warmup < 0:
        p.error("--V, --D, --gen-rows, --reps must be >= 1 and --warmup >= 0")
    if any(g < 2 for g in args.G):
        p.error("--G values must be >= 2")
    return args


def emit(record, out_file):
    line = json.dumps(record, sort_keys=False)
    print(line, flush=True)
    if out_file is not None:
        out_file.write(line + "\n")
        out_file.flush()


def main(argv=None):
    args = parse_args(sys.argv[1:] if argv is None else argv)
    cases = build_cases(args)
    if args.list:
        for c in cases:
            print(c.name)
        return 0

    import torch  # imported late so that --help and --list work without it

    if args.check_conformance:
        return 1 if check_conformance(torch, args.check_conformance) else 0

    device = args.device
    if device.startswith("cuda") and not torch.cuda.is_available():
        print("torch_baseline: torch.cuda.is_available() is False: no GPU to time on", file=sys.stderr)
        return 2
    if device.startswith("cuda"):
        torch.cuda.set_device(torch.device(device))
        gpu = torch.cuda.get_device_name()
    else:
        gpu = "cpu"
    torch.manual_seed(0)
    print("torch_baseline: torch %s on %s, %d cases" % (torch.__version__, gpu, len(cases)), file=sys.stderr)

    ctx = Context(torch, device, args)
    timer = Timer(torch, device, args.flush_mib)
    out_file = open(args.out, "a") if args.out else None
    failures = 0
    t_start = time.perf_counter()
    for case in cases:
        base = {"name": case.name, "op": case.op, "dtype": case.dtype, "dims": case.dims}
        if args.budget_s > 0 and time.perf_counter() - t_start > args.budget_s:
            emit(dict(base, skipped="budget"), out_file)
            continue
        t0 = time.perf_counter()
        try:
            with torch.no_grad():
                setup, fn = case.make(ctx)
            grad_needed = case.op in ("token_stats_backward",) or case.op.startswith("gcpo_loss")
            with torch.enable_grad() if grad_needed else torch.no_grad():
                times = timer.run(setup, fn, case.memory_bound, args.warmup, args.reps, args.max_seconds_per_case)
        except Exception as e:  # report and go on: one failing case must not lose the others
            failures += 1
            emit(dict(base, error="%s: %s" % (type(e).__name__, e)), out_file)
            print("torch_baseline: %s failed: %s" % (case.name, e), file=sys.stderr)
            continue
        finally:
            if device.startswith("cuda"):
                torch.cuda.empty_cache()
        rec = dict(base, median_us=statistics.median(times), min_us=min(times), mean_us=statistics.fmean(times),
                   reps=len(times), warmup=args.warmup, l2_flushed=bool(case.memory_bound and timer.cuda),
                   device=gpu, torch=torch.__version__, impl="torch-eager")
        emit(rec, out_file)
        print("torch_baseline: %-70s %12.1f us  (%.1f s)" % (case.name, rec["median_us"], time.perf_counter() - t0),
              file=sys.stderr)
    if out_file is not None:
        out_file.close()
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
