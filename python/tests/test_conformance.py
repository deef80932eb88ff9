"""The conformance cases (float64 vectors of the official implementation, format
tests/data/conformance/README.md) through the Python API, with the tolerances of spec
section 8. GCPO_CONFORMANCE_DIR adds a folder of further cases."""
import os

import pytest
import torch

import gcpo
from conftest import conformance_files

CASES = conformance_files()


def t(x, shape, dtype=torch.float32):
    return torch.tensor(x, dtype=torch.float64).reshape(shape).to(dtype)


def values(got, want):
    torch.testing.assert_close(got.double(), want, atol=1e-5, rtol=1e-4)


def grads(got, want):
    torch.testing.assert_close(got.double(), want, atol=1e-7, rtol=1e-3)


def test_there_are_cases():
    assert len(CASES) >= 5, CASES


@pytest.mark.parametrize("path", CASES, ids=[os.path.basename(p) for p in CASES])
def test_case(path, load_case):
    c = load_case(path)
    assert c["format"] == "gcpo-conformance/1"
    s, p, i, e = c["shape"], c["params"], c["inputs"], c["expected"]
    G, H, W, V, D = s["group"], s["height"], s["width"], s["vocab"], s["embed_dim"]
    R, N = s["prompts"] * G, H * W
    f64 = lambda x, shape: torch.tensor(x, dtype=torch.float64).reshape(shape)  # noqa: E731

    tokens = t(i["tokens"], (R, N), torch.int64)
    entropy, _, _ = gcpo.token_stats(t(i["sample_logits"], (R, N, V)), tokens)
    values(entropy, f64(e["entropy"], (R, N)))

    similarity = gcpo.group_similarity(t(i["embeddings"], (R, N, D)), G)
    values(similarity, f64(e["similarity"], (R, N)))

    fr = {k: p[k] for k in ("initial_frac", "gradient_frac", "similarity_frac", "window_start_frac", "window_frac")}
    # Selection from the library's own float32 entropy and similarity, as a trainer would.
    mask, counts = gcpo.select_critical_tokens(entropy, similarity, grid=(H, W), return_counts=True, **fr)
    want_mask = f64(e["critical_mask"], (R, N)).bool()
    assert torch.equal(mask, want_mask)
    assert torch.equal(counts, want_mask.sum(1).to(torch.int32))

    assert p["adv_std"] == "unbiased"
    adv = gcpo.group_advantages(t(i["rewards"], (R,)), G, std="unbiased", eps=p["adv_eps"])
    values(adv, f64(e["advantages"], (R,)))

    assert p["loss_aggregation"] == "token_mean_over_batch"
    ref_logp = t(i["ref_logp"], (R, N))
    old_logp = None if i["old_logp"] is None else t(i["old_logp"], (R, N))
    kw = dict(beta=p["beta"], weight_clip=p["weight_clip"], old_logp=old_logp)
    if c["variant"] == "llamagen":
        kw.update(clipping="ppo", eps_low=p["ppo_clip"], eps_high=p["ppo_clip"])
    else:
        assert c["variant"] == "janus" and old_logp is None

    logits = t(i["policy_logits"], (R, N, V)).requires_grad_(True)
    _, logp, _ = gcpo.token_stats(logits, tokens)
    values(logp, f64(e["policy_logp"], (R, N)))
    logp.retain_grad()
    loss, stats = gcpo.gcpo_loss(logp, ref_logp, adv, mask, **kw)
    values(loss, torch.tensor(e["loss"], dtype=torch.float64))
    values(stats["weight"], f64(e["weight"], (R, N)))
    values(stats["kl"], f64(e["kl"], (R, N)))
    loss.backward()
    grads(logp.grad, f64(e["grad_logp"], (R, N)))
    grads(logits.grad, f64(e["grad_policy_logits"], (R, N, V)))

    lp = logp.detach().clone().requires_grad_(True)
    gcpo.gcpo_loss(lp, ref_logp, adv, mask, detach_weight=True, **kw)[0].backward()
    grads(lp.grad, f64(e["grad_logp_weight_detached"], (R, N)))
