"""Times each gcpo.official drop-in against a plain-PyTorch rendering of the official Janus-Pro
trainer's block (written from spec janus-trainer.md section 2, the same renderings as
python/tests/test_official.py), at the Janus-Pro shapes: R = 8 images (2 prompts x 4),
N = 576 (24 x 24), V = 16384, D = 2048 (Janus-Pro-1B aligner width), float32 on the CPU by
default; on a GPU with --device cuda (CUDA-synchronised timings; --dtype bfloat16 runs both in
bf16, as the released runs hold logits, embeddings and entropies; log-probs and the loss stay
float32 for gcpo, which computes them in float32).

Usage: PYTHONPATH=<build>/python python3 python/bench/bench_official.py [--threads 1 2] [--repeats 5]
                                                                      [--device cuda] [--dtype bfloat16]
Prints one Markdown table row per block and thread count: official ms, gcpo ms (medians), speed-up.
"""
import argparse
import os
import statistics
import sys
import time

import torch

import gcpo
import gcpo.official as off

# the official renderings the tests check the drop-ins against (python/tests/official_reference.py)
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests"))
from official_reference import (official_cos_sim_list, official_entropy, official_entropy_gradient_mask,  # noqa: E402
                                official_logps, official_loss, official_mask_block)


def median_ms(fn, repeats, sync):
    fn()  # warm-up
    sync()
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        sync()
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
    ap.add_argument("--device", default="cpu", help="cpu (default) or cuda")
    ap.add_argument("--dtype", default="float32", choices=["float32", "bfloat16"],
                    help="logits, embeddings and entropies (log-probs and the loss stay float32)")
    a = ap.parse_args()
    R, N, V, D, G = a.R, a.N, a.V, a.D, a.G
    dev = torch.device(a.device)
    if dev.type == "cuda" and not torch.cuda.is_available():
        sys.exit("bench_official.py: --device cuda but torch.cuda.is_available() is False")
    if dev.type == "cuda" and not gcpo.cuda_enabled():
        sys.exit("bench_official.py: --device cuda but this gcpo extension was built without gcpo::cuda")
    sync = torch.cuda.synchronize if dev.type == "cuda" else (lambda: None)
    dt = getattr(torch, a.dtype)

    g = torch.Generator().manual_seed(0)
    logits = (torch.randn(R, N, V, generator=g) * 2).to(dev, dt)
    tokens = torch.randint(0, V, (R, N), generator=g).to(dev)
    emb = torch.randn(R, N, D, generator=g).to(dev, dt)
    entropy = (torch.rand(R, N, generator=g) * 5).to(dev, dt)
    cos_sim = torch.rand(R // G, N, generator=g).repeat_interleave(G, 0).to(dev, dt)
    ones = torch.ones(R, N, dtype=torch.int64, device=dev)
    s = (-torch.rand(R, N, generator=g) * 4).to(dev)
    r = s + (torch.rand(R, N, generator=g) - 0.5).to(dev)
    adv = torch.randn(R, generator=g).to(dev)
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
    where = torch.cuda.get_device_name(dev) if dev.type == "cuda" else "CPU"
    print(f"R = {R}, N = {N}, V = {V}, D = {D}, G = {G}, {a.dtype}, {where}, median of {a.repeats}; "
          f"torch {torch.__version__}")
    print("| block | threads | official (ms) | gcpo (ms) | speed-up |")
    print("|---|---|---|---|---|")
    for threads in a.threads:
        torch.set_num_threads(threads)
        for name, official, ours in cases:
            t_off = median_ms(official, a.repeats, sync)
            t_ours = median_ms(ours, a.repeats, sync)
            print(f"| {name} | {threads} | {t_off:.2f} | {t_ours:.2f} | {t_off / t_ours:.1f}x |", flush=True)


if __name__ == "__main__":
    main()
