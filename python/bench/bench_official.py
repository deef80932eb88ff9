"""Times each gcpo.official drop-in against a plain-PyTorch rendering of the official Janus-Pro
trainer's block (written from spec janus-trainer.md section 2, the same renderings as
python/tests/test_official.py), on CPU, at the Janus-Pro shapes: R = 8 images (2 prompts x 4),
N = 576 (24 x 24), V = 16384, D = 2048 (Janus-Pro-1B aligner width), float32.

Usage: PYTHONPATH=<build>/python python3 python/bench/bench_official.py [--threads 1 2] [--repeats 5]
Prints one Markdown table row per block and thread count: official ms, gcpo ms (medians), speed-up.
"""
import argparse
import statistics
import time

import torch
import torch.nn.functional as F

import gcpo.official as off


def official_entropy(logits_list):
    probs = torch.softmax(logits_list, dim=-1)
    return -(probs * torch.log(probs + 1e-12)).sum(dim=-1)


def official_logps(logits, ids):
    rows = []
    for lg, t in zip(logits, ids):
        rows.append(lg.log_softmax(dim=-1).gather(1, t.unsqueeze(1)).squeeze(1))
    return torch.stack(rows)


def official_entropy_gradient_mask(entropy_seq, topk_frac=0.1):
    B, N = entropy_seq.shape
    h = w = int(N ** 0.5)
    e = entropy_seq.view(B, h, w)
    mean = torch.zeros_like(e)
    for i in range(h):
        for j in range(w):
            vals = [e[:, i, j]]
            if j > 0:
                vals.append(e[:, i, j - 1])
            if i > 0 and j > 0:
                vals.append(e[:, i - 1, j - 1])
            if i > 0:
                vals.append(e[:, i - 1, j])
            if i > 0 and j < w - 1:
                vals.append(e[:, i - 1, j + 1])
            mean[:, i, j] = torch.stack(vals, -1).mean(-1)
    dx = torch.zeros_like(mean)
    dy = torch.zeros_like(mean)
    dx[:, :, 1:-1] = (mean[:, :, 2:] - mean[:, :, :-2]) / 2
    dx[:, :, 0] = mean[:, :, 1] - mean[:, :, 0]
    dx[:, :, -1] = mean[:, :, -1] - mean[:, :, -2]
    dy[:, 1:-1, :] = (mean[:, 2:, :] - mean[:, :-2, :]) / 2
    dy[:, 0, :] = mean[:, 1, :] - mean[:, 0, :]
    dy[:, -1, :] = mean[:, -1, :] - mean[:, -2, :]
    g = torch.sqrt(dx ** 2 + dy ** 2).view(B, N)
    n_valid, offset = int(N * 0.8), int(N * 0.1)
    k = min(int(N * topk_frac), n_valid)
    out = torch.zeros_like(g)
    for b in range(B):
        _, idx = torch.topk(g[b, offset:offset + n_valid], k)
        out[b, offset + idx] = 1
    return out


def official_cos_sim_list(emb, G):
    steps = []
    for k in range(emb.shape[1]):  # one call per sampling step, as the official loop
        x = emb[:, k].reshape(-1, G, emb.shape[-1])
        c = F.cosine_similarity(x.unsqueeze(2), x.unsqueeze(1), dim=-1)
        m = ~torch.eye(G, dtype=torch.bool)
        steps.append(torch.repeat_interleave(c[:, m].mean(dim=1), G, dim=0))
    return torch.stack(steps, dim=1)


def official_mask_block(entropys, cos_sim_list, completion_mask):
    B, N = entropys.shape
    k = int(N * 0.1)
    first = torch.zeros_like(completion_mask, dtype=torch.bool)
    first[:, :k] = True
    ent = official_entropy_gradient_mask(entropys, 0.1).bool()
    cs = cos_sim_list.clone()
    cs[ent | first] = float("inf")
    _, idx = torch.topk(cs, k=k, dim=1, largest=False)
    low = torch.zeros_like(completion_mask, dtype=torch.bool)
    low[torch.arange(B).unsqueeze(1).expand_as(idx), idx] = True
    cm = completion_mask.clone()
    cm[ent | low | first] = 0
    return 1 - cm


def official_loss(s, r, adv, m, beta=0.01):
    per_token = torch.exp(s - s.detach()) * adv.unsqueeze(1)
    c = torch.exp(torch.clamp(s - r, -0.5, 0.5))
    c = c.cumsum(dim=-1) / torch.arange(1, c.size(1) + 1, dtype=c.dtype)
    kl = torch.exp(r - s) - (r - s) - 1
    per_token = -(per_token * c - beta * kl)
    return (per_token * m).sum() / m.sum(), (kl * m).sum() / m.sum()


def median_ms(fn, repeats):
    fn()  # warm-up
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return 1e3 * statistics.median(times)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("-R", type=int, default=8)
    ap.add_argument("-N", type=int, default=576)
    ap.add_argument("-V", type=int, default=16384)
    ap.add_argument("-D", type=int, default=2048)
    ap.add_argument("-G", type=int, default=4)
    a = ap.parse_args()
    R, N, V, D, G = a.R, a.N, a.V, a.D, a.G

    g = torch.Generator().manual_seed(0)
    logits = torch.randn(R, N, V, generator=g) * 2
    tokens = torch.randint(0, V, (R, N), generator=g)
    emb = torch.randn(R, N, D, generator=g)
    entropy = torch.rand(R, N, generator=g) * 5
    cos_sim = torch.rand(R // G, N, generator=g).repeat_interleave(G, 0)
    ones = torch.ones(R, N, dtype=torch.int64)
    s = -torch.rand(R, N, generator=g) * 4
    r = s + (torch.rand(R, N, generator=g) - 0.5)
    adv = torch.randn(R, generator=g)
    m = official_mask_block(entropy, cos_sim, ones)

    def logps_step(fn):
        def run():
            x = logits.detach().requires_grad_(True)
            fn(x, tokens).sum().backward()
        return run

    def loss_step(fn):
        def run():
            x = s.detach().requires_grad_(True)
            fn(x, r, adv, m)[0].backward()
        return run

    cases = [
        ("entropy of the CFG logits [R,N,V]", lambda: official_entropy(logits), lambda: off.entropy_from_logits(logits)),
        ("teacher-forced log-probs, forward + backward", logps_step(official_logps), logps_step(off.per_token_logps)),
        ("select_high_entropy_gradient_tokens_batch", lambda: official_entropy_gradient_mask(entropy),
         lambda: off.select_high_entropy_gradient_tokens_batch(entropy)),
        (f"group cos-sim, all N steps (D = {D})", lambda: official_cos_sim_list(emb, G), lambda: off.group_cos_sim(emb, G)),
        ("GCPO mask block (initial, gradient, low-sim)", lambda: official_mask_block(entropy, cos_sim, ones),
         lambda: off.critical_completion_mask(entropy, cos_sim, ones)),
        ("loss block, forward + backward", loss_step(official_loss), loss_step(off.gcpo_loss_block)),
    ]
    print(f"R = {R}, N = {N}, V = {V}, D = {D}, G = {G}, float32, CPU, median of {a.repeats}; torch {torch.__version__}")
    print("| block | threads | official (ms) | gcpo (ms) | speed-up |")
    print("|---|---|---|---|---|")
    for threads in a.threads:
        torch.set_num_threads(threads)
        for name, official, ours in cases:
            t_off = median_ms(official, a.repeats)
            t_ours = median_ms(ours, a.repeats)
            print(f"| {name} | {threads} | {t_off:.2f} | {t_ours:.2f} | {t_off / t_ours:.1f}x |", flush=True)


if __name__ == "__main__":
    main()
