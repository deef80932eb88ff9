"""gcpo.official (drop-ins for the official Janus-Pro GCPO trainer's blocks) against plain-PyTorch
renderings of the official computations, written here from the trainer's description
(spec janus-trainer.md sections 2.5, 2.6, 2.8, 2.10, 2.11, 2.12), without library code.
Masks are compared exactly, values with 1e-5 + 1e-4|x| (float32), gradients with 1e-7 + 1e-3|x|."""
import pytest
import torch

import gcpo
import gcpo.official as off
from official_reference import (official_advantages, official_cos_sim_step, official_entropy,
                                official_entropy_gradient_mask, official_gradient_magnitude, official_logps,
                                official_loss, official_mask_block)


def close(got, want, atol=1e-5, rtol=1e-4):
    torch.testing.assert_close(got.to(torch.float64), want.to(torch.float64), atol=atol, rtol=rtol)


# ---- the official computations, plain PyTorch -----------------------------------------------

def gradient_top_k_is_clear(entropy, topk_frac=0.1, rel_gap=1e-4):
    """True when, in float64, the k-th and (k+1)-th largest gradient magnitudes of the window
    are apart by rel_gap (so float32 rounding cannot reorder the official top-k)."""
    B, N = entropy.shape
    g = official_gradient_magnitude(entropy.to(torch.float64))
    n_valid, offset = int(N * 0.8), int(N * 0.1)
    k = min(int(N * topk_frac), n_valid)
    if k == 0 or k >= n_valid:
        return True
    v, _ = torch.sort(g[:, offset:offset + n_valid], dim=1, descending=True)
    gap = (v[:, k - 1] - v[:, k]) / v[:, k - 1].abs().clamp_min(1e-30)
    return bool((gap >= rel_gap).all())


def draw_entropy(B, N, seed):
    for s in range(seed, seed + 100):
        e = torch.rand(B, N, generator=torch.Generator().manual_seed(s)) * 5
        if gradient_top_k_is_clear(e):
            return e
    raise AssertionError("no draw without near-ties")


SHAPES = [(2, 16, 32), (4, 100, 50), (8, 576, 64), (3, 576, 300)]  # (B, N, V); N = 576 is Janus-Pro's 24x24


# ---- entropy and log-probs ----------------------------------------------------------------

@pytest.mark.parametrize("B,N,V", SHAPES)
def test_entropy_matches_official(B, N, V):
    logits = torch.randn(B, N, V, generator=torch.Generator().manual_seed(N + V)) * 3
    got = off.entropy_from_logits(logits)
    assert got.dtype == torch.float32 and got.shape == (B, N) and not got.requires_grad
    close(got, official_entropy(logits.to(torch.float64)))
    close(got, official_entropy(logits))


def test_entropy_bf16_keeps_the_dtype_and_is_closer_than_bf16_arithmetic():
    logits = (torch.randn(2, 36, 128, generator=torch.Generator().manual_seed(5)) * 3).to(torch.bfloat16)
    got = off.entropy_from_logits(logits)
    assert got.dtype == torch.bfloat16 and got.shape == (2, 36)
    exact = official_entropy(logits.to(torch.float64))
    # float32 accumulation, then one bf16 rounding (relative 2^-8)
    torch.testing.assert_close(got.to(torch.float64), exact, atol=1e-3, rtol=2 ** -8)


@pytest.mark.parametrize("B,N,V", SHAPES)
def test_logps_and_gradient_match_official(B, N, V):
    g = torch.Generator().manual_seed(B * N + V)
    image_logits = torch.randn(B, N + 1, V, generator=g) * 2  # gen-head output, one extra position
    ids = torch.randint(0, V, (B, N), generator=g)
    weights = torch.randn(B, N, generator=g, dtype=torch.float64)

    x = image_logits.clone().requires_grad_(True)
    got = off.per_token_logps(x[:, :-1], ids)  # strided slice, as the official caller takes it
    assert got.dtype == torch.float32 and got.shape == (B, N)
    (got.to(torch.float64) * weights).sum().backward()

    x64 = image_logits.to(torch.float64).requires_grad_(True)
    want = official_logps(x64[:, :-1], ids)
    (want * weights).sum().backward()
    close(got, want.detach())
    close(x.grad, x64.grad, atol=1e-7, rtol=1e-3)


def test_logps_bf16_keeps_the_dtype():
    logits = (torch.randn(2, 16, 40, generator=torch.Generator().manual_seed(9))).to(torch.bfloat16)
    ids = torch.randint(0, 40, (2, 16), generator=torch.Generator().manual_seed(10))
    got = off.per_token_logps(logits, ids)
    assert got.dtype == torch.bfloat16
    torch.testing.assert_close(got.to(torch.float64), official_logps(logits.to(torch.float64), ids),
                               atol=1e-2, rtol=2 ** -8)


# ---- selection ----------------------------------------------------------------------------

@pytest.mark.parametrize("B,N", [(2, 16), (3, 100), (8, 576), (2, 1024)])
@pytest.mark.parametrize("topk_frac", [0.1, 0.05, 0.2])
def test_entropy_gradient_mask_matches_official(B, N, topk_frac):
    e = draw_entropy(B, N, seed=N)
    assert gradient_top_k_is_clear(e, topk_frac) or pytest.skip("near-tie at this fraction")
    got = off.select_high_entropy_gradient_tokens_batch(e, topk_frac=topk_frac)
    want = official_entropy_gradient_mask(e.to(torch.float64), topk_frac).to(torch.float32)
    assert got.dtype == torch.float32 and got.shape == (B, N)
    assert torch.equal(got, want)
    assert torch.equal(got, official_entropy_gradient_mask(e, topk_frac))  # the float32 official too
    assert int(got.sum()) == B * min(int(N * topk_frac), int(N * 0.8))


def test_entropy_gradient_mask_refuses_a_non_square_n():
    with pytest.raises(ValueError, match="square"):
        off.select_high_entropy_gradient_tokens_batch(torch.rand(2, 20))


@pytest.mark.parametrize("B,N", [(2, 16), (4, 100), (8, 576)])
def test_completion_mask_block_matches_official(B, N):
    e = draw_entropy(B, N, seed=3 * N)
    cs = torch.rand(B // 2, N, generator=torch.Generator().manual_seed(N)).repeat_interleave(2, 0)  # shared per group
    ones = torch.ones(B, N, dtype=torch.int64)
    want = official_mask_block(e, cs, ones)
    got = off.critical_completion_mask(e, cs, ones)
    assert got.dtype == torch.int64 and torch.equal(got, want)
    assert torch.equal(off.critical_completion_mask(e, cs), want)
    assert (got.sum(1) == 3 * int(N * 0.1)).all()


def draw_entropy_bf16(B, N, seed):
    """A bf16 entropy map whose gradient top-k is clear of near-ties in float64 (bf16 has 8
    significant bits, so exact ties are common: the draw skips those)."""
    for s in range(seed, seed + 200):
        e = (torch.rand(B, N, generator=torch.Generator().manual_seed(s)) * 5).to(torch.bfloat16)
        if gradient_top_k_is_clear(e.to(torch.float64)):
            return e
    raise AssertionError("no bf16 draw without near-ties")


def distinct_bf16_similarities(B, N, G, seed):
    """[B, N] bf16 similarities, the same for every rollout of a group, all distinct within a row:
    a random choice of the bf16 numbers in [1/32, 1) (640 of them), so the lowest-k is unique."""
    pool = torch.arange(0x3D00, 0x3F80, dtype=torch.int32).to(torch.int16).view(torch.bfloat16)  # [2^-5, 1)
    assert pool.numel() == 640 and N <= 640
    g = torch.Generator().manual_seed(seed)
    rows = [pool[torch.randperm(pool.numel(), generator=g)[:N]] for _ in range(B // G)]
    return torch.stack(rows).repeat_interleave(G, 0)


@pytest.mark.parametrize("B,N", [(2, 16), (4, 100), (8, 576)])
def test_entropy_gradient_mask_of_bf16_entropy(B, N):
    """bf16 in, bf16 0/1 mask out; equal to the official computation on the same (widened) values
    in float64, and to the float32 call: the widening is exact, the selection in float32."""
    e = draw_entropy_bf16(B, N, seed=7 * N)
    got = off.select_high_entropy_gradient_tokens_batch(e)
    assert got.dtype == torch.bfloat16 and got.shape == (B, N)
    assert torch.equal(got.to(torch.float64), official_entropy_gradient_mask(e.to(torch.float64)).to(torch.float64))
    assert torch.equal(got.float(), off.select_high_entropy_gradient_tokens_batch(e.float()))
    assert int(got.float().sum()) == B * int(N * 0.1)


@pytest.mark.parametrize("B,N", [(4, 16), (4, 100), (8, 576)])
def test_completion_mask_block_of_bf16_inputs(B, N):
    """The mask block with the entropy and similarity in bf16 (as the official code holds them):
    equal to the official block on the widened values, in the given completion mask's dtype."""
    e = draw_entropy_bf16(B, N, seed=11 * N)
    cs = distinct_bf16_similarities(B, N, G=2, seed=N)
    ones = torch.ones(B, N, dtype=torch.int64)
    want = official_mask_block(e.to(torch.float64), cs.to(torch.float64), ones)
    got = off.critical_completion_mask(e, cs, ones)
    assert got.dtype == torch.int64 and torch.equal(got, want)
    assert (got.sum(1) == 3 * int(N * 0.1)).all()
    got_bf16_mask = off.critical_completion_mask(e, cs, torch.ones(B, N, dtype=torch.bfloat16))
    assert got_bf16_mask.dtype == torch.bfloat16 and torch.equal(got_bf16_mask.to(torch.int64), want)


def test_select_critical_tokens_refuses_bf16_with_the_argument_named():
    """The operator itself takes float32 entropy and similarity (the drop-ins widen); a bf16
    tensor passed to it directly is refused by name, not reinterpreted."""
    e = torch.rand(2, 16).to(torch.bfloat16)
    with pytest.raises(ValueError, match="entropy"):
        gcpo.select_critical_tokens(e, torch.rand(2, 16))
    with pytest.raises(ValueError, match="similarity"):
        gcpo.select_critical_tokens(torch.rand(2, 16), torch.rand(2, 16).to(torch.bfloat16))


# ---- similarity and advantages ------------------------------------------------------------

@pytest.mark.parametrize("G,D", [(4, 8), (4, 64), (8, 16)])
def test_group_cos_sim_matches_official(G, D):
    g = torch.Generator().manual_seed(G * D)
    B, N = 2 * G, 36
    emb = torch.randn(B, N, D, generator=g)
    steps = torch.stack([official_cos_sim_step(emb[:, k], G) for k in range(N)], dim=1)
    got_all = off.group_cos_sim(emb, G)
    assert got_all.dtype == torch.float32 and got_all.shape == (B, N)
    close(got_all, steps)
    got_step = off.group_cos_sim(emb[:, 5], G)  # one sampling step, [B, D] (strided)
    assert got_step.shape == (B,)
    close(got_step, steps[:, 5])


def test_group_cos_sim_of_identical_tokens_is_one():
    emb = torch.randn(1, 3).repeat(8, 1)
    close(off.group_cos_sim(emb, 4), torch.ones(8))


@pytest.mark.parametrize("G", [4, 8])
def test_advantages_match_official(G):
    rewards = torch.rand(4 * G, generator=torch.Generator().manual_seed(G))
    close(off.grouped_advantages(rewards, G), official_advantages(rewards.to(torch.float64), G))
    binary = (torch.rand(4 * G, generator=torch.Generator().manual_seed(G + 1)) > 0.5).to(torch.float32)
    close(off.grouped_advantages(binary, G), official_advantages(binary.to(torch.float64), G))


# ---- the loss block -----------------------------------------------------------------------

@pytest.mark.parametrize("B,N", [(4, 16), (8, 100), (8, 576)])
@pytest.mark.parametrize("beta", [0.01, 0.04])
def test_loss_block_matches_official(B, N, beta):
    g = torch.Generator().manual_seed(B + N)
    s = -torch.rand(B, N, generator=g) * 4
    r = s + (torch.rand(B, N, generator=g) - 0.5) * 1.6  # both sides of the +-0.5 clamp
    adv = torch.randn(B, generator=g)
    m = (torch.rand(B, N, generator=g) < 0.3).to(torch.int64)

    x = s.clone().requires_grad_(True)
    loss, kl = off.gcpo_loss_block(x, r, adv, m, beta=beta)
    loss.backward()
    x64 = s.to(torch.float64).requires_grad_(True)
    want, want_kl = official_loss(x64, r.to(torch.float64), adv.to(torch.float64), m.to(torch.float64), beta)
    want.backward()
    assert loss.shape == () and kl.shape == ()
    close(loss.detach(), want.detach())
    close(kl, want_kl.detach())
    close(x.grad, x64.grad, atol=1e-7, rtol=1e-3)


def test_loss_block_gradient_differs_from_a_detached_weight():
    # the official running-mean weight is not detached: its path changes the gradient
    g = torch.Generator().manual_seed(3)
    s = -torch.rand(2, 16, generator=g)
    r = s + 0.1
    adv = torch.tensor([1.0, -2.0])
    m = torch.ones(2, 16, dtype=torch.int64)
    x = s.clone().requires_grad_(True)
    off.gcpo_loss_block(x, r, adv, m)[0].backward()
    y = s.clone().requires_grad_(True)
    gcpo.gcpo_loss(y, r, adv, m.bool(), detach_weight=True)[0].backward()
    assert not torch.allclose(x.grad, y.grad, atol=1e-6)


def test_the_official_step_end_to_end_at_the_janus_shape():
    """Entropy -> mask block -> log-probs -> loss -> gradient to the logits, at R = 8, N = 576."""
    B, N, V, G = 8, 576, 64, 4
    g = torch.Generator().manual_seed(576)
    for _ in range(50):
        cfg_logits = torch.randn(B, N, V, generator=g) * 2
        if gradient_top_k_is_clear(official_entropy(cfg_logits.to(torch.float64))):
            break
    else:
        raise AssertionError("no draw without near-ties")
    tokens = torch.randint(0, V, (B, N), generator=g)
    table = torch.randn(V, 16, generator=g)
    policy = torch.randn(B, N + 1, V, generator=g)
    ref_lp = official_logps(policy[:, :-1] + 0.1 * torch.randn(B, N, V, generator=g), tokens)
    rewards = torch.rand(B, generator=g)

    ent = off.entropy_from_logits(cfg_logits)
    cs = off.group_cos_sim(table[tokens], G)
    cm = off.critical_completion_mask(ent, cs, torch.ones(B, N, dtype=torch.int64))
    x = policy.clone().requires_grad_(True)
    lp = off.per_token_logps(x[:, :-1], tokens)
    loss, _ = off.gcpo_loss_block(lp, ref_lp, off.grouped_advantages(rewards, G), cm)
    loss.backward()

    ent_o = official_entropy(cfg_logits.to(torch.float64))
    cs_o = torch.stack([official_cos_sim_step(table[tokens[:, k]].to(torch.float64), G) for k in range(N)], 1)
    cm_o = official_mask_block(ent_o, cs_o, torch.ones(B, N, dtype=torch.int64))
    assert torch.equal(cm, cm_o)
    x64 = policy.to(torch.float64).requires_grad_(True)
    lp_o = official_logps(x64[:, :-1], tokens)
    loss_o, _ = official_loss(lp_o, ref_lp.to(torch.float64),
                              official_advantages(rewards.to(torch.float64), G), cm_o.to(torch.float64))
    loss_o.backward()
    close(loss.detach(), loss_o.detach())
    close(x.grad, x64.grad, atol=1e-7, rtol=1e-3)
