"""The extension's CUDA kernels (gcpo::cuda through torch.ops.gcpo) on a GPU: every operator and
drop-in against the float64 references and the CPU twins, on PyTorch's current stream, under
the tensors' device, with the caching allocator, inside a CUDA graph, deterministic.

Skipped as a whole where there is no GPU or the extension was built without gcpo::cuda (the CI
machine); the device check (scripts/device-check.sh, stage `python`) runs it on the GPU machine.
Tolerances as the CPU tests (spec section 8): values 1e-5 + 1e-4|x|, gradients 1e-6 + 1e-3|x|;
masks exactly (the selection's tie rule is the same in both twins)."""
import pytest
import torch

import gcpo
import gcpo.official as off
import reference as ref
from official_reference import official_entropy, official_logps, official_loss, official_mask_block

pytestmark = pytest.mark.skipif(not (torch.cuda.is_available() and gcpo.cuda_enabled()),
                                reason="needs a GPU and an extension built with gcpo::cuda")

DEV = "cuda"


def close(got, want, atol=1e-5, rtol=1e-4):
    torch.testing.assert_close(got.cpu().to(torch.float64), want.cpu().to(torch.float64), atol=atol, rtol=rtol)


def gen(seed):
    return torch.Generator().manual_seed(seed)


def logits_and_tokens(R, N, V, seed=0, scale=3.0):
    g = gen(seed)
    return torch.randn(R, N, V, generator=g) * scale, torch.randint(0, V, (R, N), generator=g)


# ---- token statistics ------------------------------------------------------------------------

@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16, torch.float16])
@pytest.mark.parametrize("R,N,V", [(2, 5, 37), (4, 64, 16384), (8, 576, 4096)])
def test_token_stats_match_the_reference_and_the_cpu_twin(dtype, R, N, V):
    logits, tokens = logits_and_tokens(R, N, V, seed=V)
    low = logits.to(dtype)
    got = gcpo.token_stats(low.to(DEV), tokens.to(DEV), 0.8)
    want = ref.token_stats(low.to(torch.float64), tokens, 0.8)
    cpu = gcpo.token_stats(low, tokens, 0.8)
    for g, w, c in zip(got, want, cpu):
        assert g.device.type == "cuda" and g.dtype == torch.float32 and g.shape == (R, N)
        close(g, w)
        close(g, c)


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_token_stats_gradient_matches_float64_autograd(dtype):
    logits, tokens = logits_and_tokens(3, 7, 301, seed=2)
    x = logits.to(dtype).to(DEV).clone().requires_grad_(True)
    _, lp, _ = gcpo.token_stats(x, tokens.to(DEV), 0.7)
    up = torch.randn(3, 7, generator=gen(5))
    (lp * up.to(DEV)).sum().backward()
    assert x.grad.dtype == dtype and x.grad.device.type == "cuda"
    x64 = logits.to(dtype).to(torch.float64).requires_grad_(True)
    _, lp64, _ = ref.token_stats(x64, tokens, 0.7)
    (lp64 * up.to(torch.float64)).sum().backward()
    if dtype == torch.float32:
        torch.testing.assert_close(x.grad.cpu().to(torch.float64), x64.grad, atol=1e-6, rtol=1e-3)
    else:  # the gradient is rounded to bf16 on the way out: one bf16 ulp
        torch.testing.assert_close(x.grad.cpu().to(torch.float64), x64.grad, atol=1e-6, rtol=2 ** -7)


def test_token_stats_strided_logits_on_the_gpu():
    logits, tokens = logits_and_tokens(4, 6, 129, seed=3)
    wide = torch.zeros(4, 12, 140, device=DEV)
    wide[:, ::2, 5:134] = logits.to(DEV)
    strided = wide[:, ::2, 5:134]
    assert not strided.is_contiguous() and strided.stride(-1) == 1
    for g, c in zip(gcpo.token_stats(strided, tokens.to(DEV)), gcpo.token_stats(logits.to(DEV), tokens.to(DEV))):
        assert torch.equal(g, c)


# ---- advantages, similarity, selection ---------------------------------------------------------

@pytest.mark.parametrize("std", ["unbiased", "biased", "none"])
def test_group_advantages(std):
    r = torch.rand(32, generator=gen(1))
    got = gcpo.group_advantages(r.to(DEV), 4, std=std)
    close(got, ref.group_advantages(r.to(torch.float64), 4, std, 1e-4))
    close(got, gcpo.group_advantages(r, 4, std=std))


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
@pytest.mark.parametrize("G,D", [(4, 64), (8, 2048)])
def test_group_similarity(dtype, G, D):
    e = torch.randn(2 * G, 37, D, generator=gen(D)).to(dtype)
    got = gcpo.group_similarity(e.to(DEV), G)
    close(got, ref.group_similarity(e.to(torch.float64), G, 1e-8))
    close(got, gcpo.group_similarity(e, G))


def test_group_similarity_from_tokens():
    table = torch.randn(300, 96, generator=gen(4))
    tokens = torch.randint(0, 300, (8, 50), generator=gen(5))
    got = gcpo.group_similarity_from_tokens(tokens.to(DEV), table.to(DEV), 4)
    close(got, gcpo.group_similarity(table[tokens].to(DEV), 4))
    close(got, gcpo.group_similarity_from_tokens(tokens, table, 4))


@pytest.mark.parametrize("R,H,W", [(8, 24, 24), (4, 16, 16), (6, 12, 20)])
def test_selection_equals_the_cpu_twin_exactly(R, H, W):
    N = H * W
    e = torch.rand(R, N, generator=gen(N)) * 5
    s = torch.rand(R // 2, N, generator=gen(N + 1)).repeat_interleave(2, 0)
    got, counts = gcpo.select_critical_tokens(e.to(DEV), s.to(DEV), grid=(H, W), return_counts=True)
    want, want_counts = gcpo.select_critical_tokens(e, s, grid=(H, W), return_counts=True)
    assert got.device.type == "cuda" and got.dtype == torch.bool
    assert torch.equal(got.cpu(), want) and torch.equal(counts.cpu(), want_counts)
    assert torch.equal(got.cpu(), ref.select(e, s, H, W)[3])


# ---- the loss ----------------------------------------------------------------------------------

def loss_inputs(R, N, seed):
    """logp, ref_logp, advantages, mask (30% of the tokens) on the CPU."""
    g = gen(seed)
    logp = -torch.rand(R, N, generator=g) * 4
    ref_logp = logp + 0.3 * torch.randn(R, N, generator=g)
    return logp, ref_logp, torch.randn(R, generator=g), torch.rand(R, N, generator=g) < 0.3


@pytest.mark.parametrize("algo", ["gcpo", "grpo"])
def test_loss_value_and_gradient_match_the_cpu_twin(algo):
    logp, ref_logp, adv, mask = loss_inputs(8, 576, seed=8)
    grads, losses = [], []
    for dev in ("cpu", DEV):
        x = logp.to(dev).requires_grad_(True)
        loss, stats = gcpo.gcpo_loss(x, ref_logp.to(dev), adv.to(dev), mask.to(dev), algo=algo)
        loss.backward()
        losses.append((loss.detach().cpu(), {k: v.detach().cpu() for k, v in stats.items()}))
        grads.append(x.grad.cpu())
    close(losses[1][0], losses[0][0])
    for k in losses[0][1]:
        close(losses[1][1][k], losses[0][1][k])
    torch.testing.assert_close(grads[1].to(torch.float64), grads[0].to(torch.float64), atol=1e-7, rtol=1e-4)


def test_fused_loss_op_matches_forward_then_backward_on_the_gpu():
    """The one-pass gcpo_loss_forward_backward against the separate forward and backward
    kernels, and against the CPU twin."""
    logp, ref_logp, adv, mask = loss_inputs(32, 576, seed=10)
    args = ("gcpo", "none", 0.2, 0.2, 0.01, 0.5, False, "token_mean", 0.0, 0.0)
    ops = torch.ops.gcpo
    d = [t.to(DEV) for t in (logp, ref_logp, adv, mask)]
    fused = ops.gcpo_loss_forward_backward(d[0], d[1], None, d[2], d[3], *args)
    stats, weight, kl = ops.gcpo_loss_forward(d[0], d[1], None, d[2], d[3], *args)
    grad = ops.gcpo_loss_backward(d[0], d[1], None, d[2], d[3], torch.ones(1, device=DEV), *args)
    cpu = ops.gcpo_loss_forward_backward(logp, ref_logp, None, adv, mask, *args)
    for i, (got, sep, host) in enumerate(zip(fused, (stats, weight, kl, grad), cpu)):
        tol = dict(atol=1e-7, rtol=1e-4) if i == 3 else {}  # the gradient: the other loss test's bounds
        close(got, sep, **tol)
        close(got, host, **tol)


# ---- the drop-ins, on CUDA tensors ---------------------------------------------------------------

def test_drop_ins_on_cuda_match_the_official_computations():
    B, N, V = 8, 576, 512
    logits, ids = logits_and_tokens(B, N, V, seed=9)
    close(off.entropy_from_logits(logits.to(DEV)), official_entropy(logits.to(torch.float64)))
    x = logits.to(DEV).requires_grad_(True)
    lp = off.per_token_logps(x, ids.to(DEV))
    close(lp, official_logps(logits.to(torch.float64), ids))
    assert lp.device.type == "cuda"
    e = torch.rand(B, N, generator=gen(10)) * 5
    cs = torch.rand(B // 4, N, generator=gen(11)).repeat_interleave(4, 0)
    ones = torch.ones(B, N, dtype=torch.int64)
    got = off.critical_completion_mask(e.to(DEV), cs.to(DEV), ones.to(DEV))
    assert torch.equal(got.cpu(), off.critical_completion_mask(e, cs, ones))
    assert torch.equal(got.cpu(), official_mask_block(e.to(torch.float64), cs.to(torch.float64), ones))
    s = -torch.rand(B, N, generator=gen(12)) * 3
    r = s + 0.2 * torch.randn(B, N, generator=gen(13))
    a = torch.randn(B, generator=gen(14))
    loss, kl = off.gcpo_loss_block(s.to(DEV), r.to(DEV), a.to(DEV), got)
    want_loss, want_kl = official_loss(s.to(torch.float64), r.to(torch.float64), a.to(torch.float64),
                                       got.cpu().to(torch.float64))
    close(loss, want_loss)
    close(kl, want_kl)


# ---- streams, devices, allocator, graphs -------------------------------------------------------

def test_kernels_run_on_the_current_stream():
    """The input is written on a side stream after a ~0.1 s sleep kernel; the operator is called
    under that stream. On the current stream it reads the written values; on any other stream
    (the legacy default one included: PyTorch's side streams do not synchronise with it) it
    would read the zeros that were there before."""
    logits, tokens = logits_and_tokens(8, 576, 4096, seed=15)
    want = gcpo.token_stats(logits, tokens)
    x = torch.zeros(logits.shape, device=DEV)
    src = logits.to(DEV)
    t = tokens.to(DEV)
    e = torch.rand(8, 576, generator=gen(16)) * 5
    e_src, e_dst = e.to(DEV), torch.zeros(8, 576, device=DEV)
    want_mask = gcpo.select_critical_tokens(e, torch.ones_like(e), grid=(24, 24))
    torch.cuda.synchronize()
    side = torch.cuda.Stream()
    with torch.cuda.stream(side):
        torch.cuda._sleep(200_000_000)
        x.copy_(src)
        got = gcpo.token_stats(x, t)
        torch.cuda._sleep(200_000_000)
        e_dst.copy_(e_src)
        got_mask = gcpo.select_critical_tokens(e_dst, torch.ones_like(e_dst), grid=(24, 24))
    side.synchronize()
    for g, w in zip(got, want):
        close(g, w)
    assert torch.equal(got_mask.cpu(), want_mask)


@pytest.mark.skipif(torch.cuda.device_count() < 2, reason="needs two GPUs")
def test_tensors_on_another_device_than_the_current_one():
    logits, tokens = logits_and_tokens(2, 9, 77, seed=17)
    with torch.cuda.device(0):
        got = gcpo.token_stats(logits.to("cuda:1"), tokens.to("cuda:1"))
        assert torch.cuda.current_device() == 0
    for g, w in zip(got, gcpo.token_stats(logits, tokens)):
        assert g.device == torch.device("cuda:1")
        close(g, w)


def test_mixed_devices_are_refused_by_name():
    logits, tokens = logits_and_tokens(2, 3, 5)
    with pytest.raises(ValueError, match="tokens"):
        gcpo.token_stats(logits.to(DEV), tokens)
    with pytest.raises(ValueError, match="ref_logp"):
        gcpo.gcpo_loss(torch.zeros(2, 3, device=DEV), torch.zeros(2, 3), torch.zeros(2, device=DEV))


def test_workspace_comes_from_the_caching_allocator_and_is_returned():
    """Repeated calls leave the allocated bytes where they were (the workspace and outputs are
    freed to PyTorch's caching allocator, nothing leaks), and the selection's workspace shows
    up in the allocator's statistics (it is not a cudaMalloc of the library's own)."""
    e = torch.rand(64, 576, device=DEV) * 5
    s = torch.rand(64, 576, device=DEV)
    gcpo.select_critical_tokens(e, s, grid=(24, 24))
    torch.cuda.synchronize()
    before = torch.cuda.memory_allocated()
    allocs_before = torch.cuda.memory_stats()["allocation.all.allocated"]
    for _ in range(20):
        gcpo.select_critical_tokens(e, s, grid=(24, 24))
    torch.cuda.synchronize()
    assert torch.cuda.memory_allocated() == before
    # each call: the mask, the counts and the workspace through the allocator (>= 3 allocations)
    assert torch.cuda.memory_stats()["allocation.all.allocated"] - allocs_before >= 3 * 20


def test_selection_and_loss_inside_a_cuda_graph():
    """Captured in a CUDA graph (torch.cuda.graph) and replayed on new inputs: the same results
    as eager calls (no synchronisation, host allocation or cudaMalloc inside the operators)."""
    R, N = 8, 576
    e = torch.rand(R, N, device=DEV) * 5
    s = torch.rand(R, N, device=DEV)
    logp = -torch.rand(R, N, device=DEV) * 3
    ref_logp = logp + 0.1
    adv = torch.randn(R, device=DEV)
    side = torch.cuda.Stream()
    side.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(side):  # warm-up outside the capture, as PyTorch asks
        for _ in range(2):
            gcpo.select_critical_tokens(e, s, grid=(24, 24))
    torch.cuda.current_stream().wait_stream(side)
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        mask = gcpo.select_critical_tokens(e, s, grid=(24, 24))
        loss, stats = gcpo.gcpo_loss(logp, ref_logp, adv, mask)
    for seed in range(3):
        g = torch.Generator(device=DEV).manual_seed(seed)
        e.copy_(torch.rand(R, N, device=DEV, generator=g) * 5)
        s.copy_(torch.rand(R, N, device=DEV, generator=g))
        logp.copy_(-torch.rand(R, N, device=DEV, generator=g) * 3)
        graph.replay()
        torch.cuda.synchronize()
        want_mask = gcpo.select_critical_tokens(e, s, grid=(24, 24))
        want_loss, _ = gcpo.gcpo_loss(logp, ref_logp, adv, want_mask)
        assert torch.equal(mask, want_mask)
        assert torch.equal(loss, want_loss)


def test_deterministic_on_the_gpu():
    logits, tokens = logits_and_tokens(8, 576, 8192, seed=18)
    x, t = logits.to(DEV), tokens.to(DEV)
    a, b = gcpo.token_stats(x, t), gcpo.token_stats(x, t)
    for u, v in zip(a, b):
        assert torch.equal(u, v)
    e = torch.rand(8, 576, device=DEV)
    assert torch.equal(gcpo.select_critical_tokens(e, e), gcpo.select_critical_tokens(e, e))
