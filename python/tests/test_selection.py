"""gcpo.group_advantages, gcpo.group_similarity[_from_tokens] and gcpo.select_critical_tokens
against the float64 references written from the spec (sections 3 and 4)."""
import math

import pytest
import torch

import gcpo
import reference as ref


def close(got, want, atol=1e-5, rtol=1e-4):
    torch.testing.assert_close(got.to(torch.float64), want.to(torch.float64), atol=atol, rtol=rtol)


# ---- advantages ----------------------------------------------------------------------------

@pytest.mark.parametrize("std", ["unbiased", "biased", "none"])
@pytest.mark.parametrize("eps", [1e-4, 0.0, 0.5])
def test_advantages_match_reference(std, eps):
    rewards = torch.rand(12, generator=torch.Generator().manual_seed(1))
    got = gcpo.group_advantages(rewards, 4, std=std, eps=eps)
    assert got.dtype == torch.float32 and got.shape == (12,)
    close(got, ref.group_advantages(rewards, 4, std, eps))


def test_advantages_of_equal_rewards_are_zero():
    rewards = torch.tensor([0.5, 0.5, 0.5, 1.0, 0.0, 1.0])
    got = gcpo.group_advantages(rewards, 3, eps=0.0)
    assert torch.equal(got[:3], torch.zeros(3))
    close(got[3:], ref.group_advantages(rewards[3:], 3, "unbiased", 0.0))


def test_advantages_of_strided_rewards():
    rewards = torch.rand(16, generator=torch.Generator().manual_seed(2))
    got = gcpo.group_advantages(rewards[::2], 4)  # made contiguous (documented)
    close(got, ref.group_advantages(rewards[::2], 4))


def test_advantages_errors():
    with pytest.raises(ValueError, match=r"`rewards.shape\[0\]` \(R = 6\) must be a multiple of `options.group` \(4\)"):
        gcpo.group_advantages(torch.rand(6), 4)
    with pytest.raises(ValueError, match="`rewards.dtype` is float64|`rewards` has dtype Double"):
        gcpo.group_advantages(torch.rand(8, dtype=torch.float64), 4)
    with pytest.raises(ValueError, match="group"):
        gcpo.group_advantages(torch.rand(8), 1)
    with pytest.raises(ValueError, match="`std` must be"):
        gcpo.group_advantages(torch.rand(8), 4, std="population")


# ---- similarity ----------------------------------------------------------------------------

@pytest.mark.parametrize("group", [2, 3, 5])
def test_similarity_matches_reference(group):
    g = torch.Generator().manual_seed(group)
    emb = torch.randn(2 * group, 7, 6, generator=g)
    got = gcpo.group_similarity(emb, group)
    assert got.dtype == torch.float32 and got.shape == (2 * group, 7)
    close(got, ref.group_similarity(emb, group))


def test_similarity_with_zero_vectors_and_identical_vectors():
    emb = torch.randn(4, 3, 5, generator=torch.Generator().manual_seed(3))
    emb[1, 0] = 0.0                 # cos with a zero vector is 0 (clamped denominator)
    emb[2, 1] = emb[3, 1] * 2.0     # parallel vectors: cos 1
    emb[0, 2] = emb[1, 2] = 0.0     # a whole group of zeros
    got = gcpo.group_similarity(emb, 2)
    want = ref.group_similarity(emb, 2)
    close(got, want)
    assert got[0, 0].item() == 0.0
    assert abs(got[2, 1].item() - 1.0) < 1e-6


def test_similarity_strided_and_half():
    emb = torch.randn(6, 5, 8, generator=torch.Generator().manual_seed(4))
    wide = torch.zeros(6, 10, 12)
    wide[:, ::2, 2:10] = emb
    got = gcpo.group_similarity(wide[:, ::2, 2:10], 3)
    assert torch.equal(got, gcpo.group_similarity(emb, 3))
    close(got, ref.group_similarity(emb, 3))
    h = emb.to(torch.bfloat16)
    close(gcpo.group_similarity(h, 3), ref.group_similarity(h.to(torch.float64), 3))


def test_similarity_from_tokens_equals_gathered_embeddings():
    g = torch.Generator().manual_seed(5)
    table = torch.randn(11, 6, generator=g)
    tokens = torch.randint(0, 11, (8, 9), generator=g)
    got = gcpo.group_similarity_from_tokens(tokens, table, 4)
    close(got, ref.group_similarity(table[tokens], 4))
    assert torch.equal(got, gcpo.group_similarity_from_tokens(tokens.t().contiguous().t(), table, 4))


def test_similarity_errors():
    emb = torch.randn(6, 4, 3)
    with pytest.raises(ValueError, match=r"must be a multiple of `options.group` \(4\)"):
        gcpo.group_similarity(emb, 4)
    with pytest.raises(ValueError, match=r"`options.group` \(1\) must be in \[2, 1024\]"):
        gcpo.group_similarity(emb, 1)
    with pytest.raises(ValueError, match="`embeddings` has dtype Double"):
        gcpo.group_similarity(emb.double(), 2)
    with pytest.raises(ValueError, match="`table` is on meta"):
        gcpo.group_similarity_from_tokens(torch.zeros(2, 3, dtype=torch.long), emb[0].to("meta"), 2)


# ---- selection -----------------------------------------------------------------------------

def _clear_boundaries(entropy, similarity, H, W, **fr):
    """True when no top-k boundary of the reference is a near-tie (relative gap >= 1e-3), so the
    float32 operator must select exactly what the float64 reference does."""
    init, gm, sm, crit, grad = ref.select(entropy, similarity, H, W, **fr)
    R, N = entropy.shape
    lo = math.floor(N * fr.get("window_start_frac", 0.1))
    n = math.floor(N * fr.get("window_frac", 0.8))
    for r in range(R):
        w = grad[r, lo:lo + n]
        sel, rest = w[gm[r, lo:lo + n]], w[~gm[r, lo:lo + n]]
        if len(sel) and len(rest) and sel.min() - rest.max() < 1e-3 * max(abs(sel.min().item()), 1e-6):
            return False
        free = ~(init[r] | gm[r])
        s_sel, s_rest = similarity[r][sm[r]].double(), similarity[r][free & ~sm[r]].double()
        if len(s_sel) and len(s_rest) and s_rest.min() - s_sel.max() < 1e-4 * max(abs(s_sel.max().item()), 1e-6):
            return False
    return True


def _draw(R, H, W, seed, **fr):
    for s in range(seed, seed + 50):
        g = torch.Generator().manual_seed(s)
        entropy = torch.rand(R, H * W, generator=g) * 4
        similarity = torch.rand(R, H * W, generator=g) * 2 - 1
        if _clear_boundaries(entropy, similarity, H, W, **fr):
            return entropy, similarity
    raise AssertionError("no draw without near-ties")


@pytest.mark.parametrize("H,W", [(8, 8), (6, 10), (10, 5), (1, 20), (20, 1)])
def test_selection_matches_reference(H, W):
    entropy, similarity = _draw(4, H, W, seed=10 * H + W)
    grid = None if H == W else (H, W)
    mask, counts = gcpo.select_critical_tokens(entropy, similarity, grid=grid, return_counts=True)
    _, _, _, crit, _ = ref.select(entropy, similarity, H, W)
    assert mask.dtype == torch.bool and mask.shape == (4, H * W)
    assert torch.equal(mask, crit)
    assert torch.equal(counts, crit.sum(1).to(torch.int32))


def test_selection_fractions_and_window():
    fr = dict(initial_frac=0.05, gradient_frac=0.2, similarity_frac=0.15, window_start_frac=0.2, window_frac=0.5)
    entropy, similarity = _draw(3, 12, 12, seed=99, **fr)
    mask = gcpo.select_critical_tokens(entropy, similarity, **fr)
    assert torch.equal(mask, ref.select(entropy, similarity, 12, 12, **fr)[3])
    N = 144
    assert (mask.sum(1) == math.floor(N * 0.05) + math.floor(N * 0.2) + math.floor(N * 0.15)).all()


def test_selection_ties_go_to_the_lower_position():
    # Constant entropy: gradient 0 everywhere, so the window's first k positions; constant
    # similarity: the first k positions not already selected. Hand-computed for N = 100:
    # initial 0..9, gradient [10, 20), window [10, 90); low similarity 20..29.
    entropy = torch.full((2, 100), 0.3)
    similarity = torch.full((2, 100), 0.25)
    mask = gcpo.select_critical_tokens(entropy, similarity)
    want = torch.zeros(2, 100, dtype=torch.bool)
    want[:, :30] = True
    assert torch.equal(mask, want)


def test_selection_strided_inputs():
    entropy, similarity = _draw(4, 8, 8, seed=7)
    want = gcpo.select_critical_tokens(entropy, similarity)
    e2 = torch.zeros(4, 128)
    e2[:, ::2] = entropy
    s2 = similarity.t().contiguous().t()
    assert torch.equal(gcpo.select_critical_tokens(e2[:, ::2], s2), want)


def test_selection_deterministic():
    entropy, similarity = _draw(6, 16, 16, seed=3)
    assert torch.equal(gcpo.select_critical_tokens(entropy, similarity),
                       gcpo.select_critical_tokens(entropy, similarity))


def test_selection_errors():
    e = torch.rand(2, 64)
    with pytest.raises(ValueError, match=r"similarity.*shape\[1\]"):
        gcpo.select_critical_tokens(e, torch.rand(2, 63))
    with pytest.raises(ValueError, match="similarity"):
        gcpo.select_critical_tokens(e, torch.rand(2, 64, dtype=torch.float64))
    with pytest.raises(ValueError, match="grid"):
        gcpo.select_critical_tokens(e, torch.rand(2, 64), grid=(7, 9))
    with pytest.raises(ValueError, match="`similarity` is on meta"):
        gcpo.select_critical_tokens(e, torch.rand(2, 64, device="meta"))
    with pytest.raises(ValueError, match="window"):
        gcpo.select_critical_tokens(e, torch.rand(2, 64), window_start_frac=0.5, window_frac=0.6)
