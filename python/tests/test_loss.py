"""gcpo.gcpo_loss against the float64 autograd reference written from the spec (sections 5-6):
value, metrics, gradient to logp (through the non-detached weight), options, errors."""
import pytest
import torch

import gcpo
import reference as ref


def make(R=4, N=12, seed=0, p_mask=0.4):
    g = torch.Generator().manual_seed(seed)
    logp = -torch.rand(R, N, generator=g) * 3
    ref_logp = logp + (torch.rand(R, N, generator=g) - 0.5) * 1.6  # some |lp - ref| beyond 0.5
    old_logp = logp + (torch.rand(R, N, generator=g) - 0.5) * 0.8
    adv = torch.randn(R, generator=g)
    mask = torch.rand(R, N, generator=g) < p_mask
    mask[:, 0] = True
    return logp, ref_logp, old_logp, adv, mask


def check(opts, seed=0, mask_kind="bool"):
    logp, ref_logp, old_logp, adv, mask = make(seed=seed)
    if not opts.pop("use_old", False):
        old_logp = None
    m = {"bool": mask, "uint8": mask.to(torch.uint8), "none": None}[mask_kind]
    x = logp.clone().requires_grad_(True)
    loss, stats = gcpo.gcpo_loss(x, ref_logp, adv, m, old_logp=old_logp, **opts)
    upstream = 1.7
    (loss * upstream).backward()

    x64 = logp.to(torch.float64).requires_grad_(True)
    L, want = ref.loss(x64, ref_logp.double(), adv.double(), m, old_logp=None if old_logp is None else old_logp.double(),
                       **opts)
    (L * upstream).backward()
    assert loss.dim() == 0 and loss.dtype == torch.float32
    # Spec section 8: values 1e-5 + 1e-4 |want|, gradients 1e-7 + 1e-3 |want|.
    torch.testing.assert_close(loss.detach().double(), L.detach(), atol=1e-5, rtol=1e-4)
    for name in gcpo.LOSS_STATS + ("weight", "kl"):
        torch.testing.assert_close(stats[name].double(), want[name].double(), atol=1e-5, rtol=1e-4, msg=name)
        assert not stats[name].requires_grad
    torch.testing.assert_close(x.grad.double(), x64.grad, atol=1e-7, rtol=1e-3)
    return x.grad


@pytest.mark.parametrize("mask_kind", ["bool", "uint8", "none"])
def test_official_gcpo_loss(mask_kind):
    check(dict(beta=0.04, weight_clip=0.5), mask_kind=mask_kind)


def test_detached_weight_and_grpo():
    g_live = check(dict(beta=0.01, weight_clip=0.5))
    g_det = check(dict(beta=0.01, weight_clip=0.5, detach_weight=True))
    assert not torch.allclose(g_live, g_det)  # the weight's path carries gradient
    check(dict(algo="grpo", beta=0.02))


@pytest.mark.parametrize("eps", [(0.2, 0.2), (0.1, 0.3)])
def test_ppo_clipping(eps):
    check(dict(clipping="ppo", eps_low=eps[0], eps_high=eps[1], use_old=True, beta=0.01), seed=3)


@pytest.mark.parametrize("agg", [dict(aggregation="sequence_mean"), dict(aggregation="constant"),
                                 dict(aggregation="constant", max_tokens=20.0),
                                 dict(aggregation="external", denominator=37.0)])
def test_aggregations(agg):
    check(dict(beta=0.01, **agg), seed=5)


def test_empty_mask_gives_zero_loss_and_zero_gradient():
    logp, ref_logp, _, adv, _ = make()
    x = logp.clone().requires_grad_(True)
    loss, stats = gcpo.gcpo_loss(x, ref_logp, adv, torch.zeros(4, 12, dtype=torch.bool))
    loss.backward()
    assert loss.item() == 0.0 and stats["token_count"].item() == 0.0 and stats["kl_mean"].item() == 0.0
    assert torch.equal(x.grad, torch.zeros(4, 12))


def test_grad_against_finite_differences_float32():
    """float32 only: central differences along random directions, step 1e-3 on log-probs of
    scale 1 (rounding ~1e-4 relative on the loss differences); tolerance 1e-4 + 2e-2 rel."""
    logp, ref_logp, _, adv, mask = make(seed=11)
    x = logp.clone().requires_grad_(True)
    gcpo.gcpo_loss(x, ref_logp, adv, mask, beta=0.05)[0].backward()
    g = torch.Generator().manual_seed(12)
    h = 1e-3
    for _ in range(4):
        d = torch.randn(logp.shape, generator=g)
        # The on-policy ratio is 1 with gradient 1: the value at lp + h d does not see that path,
        # so compare with old_logp fixed at lp (same gradient: rho = exp(lp - old) = 1 at lp).
        f = lambda z: gcpo.gcpo_loss(z, ref_logp, adv, mask, beta=0.05, old_logp=logp)[0].item()  # noqa: E731
        fd = (f(logp + h * d) - f(logp - h * d)) / (2 * h)
        an = (x.grad * d).sum().item()
        assert abs(fd - an) <= 1e-4 + 2e-2 * abs(an), (fd, an)


def test_strided_inputs_give_the_same_result():
    logp, ref_logp, _, adv, mask = make()
    want, _ = gcpo.gcpo_loss(logp, ref_logp, adv, mask)
    got, _ = gcpo.gcpo_loss(logp.t().contiguous().t(), ref_logp.t().contiguous().t(),
                            torch.stack([adv, adv], 1)[:, 0], mask.t().contiguous().t())
    assert torch.equal(got, want)


def test_chain_to_logits():
    """token_stats -> gcpo_loss: the gradient reaches the logits (float64 reference end to end)."""
    g = torch.Generator().manual_seed(21)
    logits = torch.randn(4, 6, 9, generator=g)
    tokens = torch.randint(0, 9, (4, 6), generator=g)
    ref_logp = -torch.rand(4, 6, generator=g) * 2
    adv = torch.randn(4, generator=g)
    mask = torch.rand(4, 6, generator=g) < 0.5
    x = logits.clone().requires_grad_(True)
    _, logp, _ = gcpo.token_stats(x, tokens)
    gcpo.gcpo_loss(logp, ref_logp, adv, mask)[0].backward()
    x64 = logits.double().requires_grad_(True)
    _, lp64, _ = ref.token_stats(x64, tokens)
    ref.loss(lp64, ref_logp.double(), adv.double(), mask)[0].backward()
    torch.testing.assert_close(x.grad.double(), x64.grad, atol=1e-7, rtol=1e-3)


FUSED_OPTIONS = [
    dict(),
    dict(algo="grpo"),
    dict(detach_weight=True, beta=0.05),
    dict(use_old=True, clipping="ppo", eps_low=0.1, eps_high=0.3),
    dict(aggregation="sequence_mean"),
    dict(aggregation="constant", max_tokens=20.0),
    dict(aggregation="external", denominator=7.0, weight_clip=0.2),
]


@pytest.mark.parametrize("opts", FUSED_OPTIONS, ids=lambda o: ",".join(f"{k}={v}" for k, v in o.items()) or "default")
def test_fused_op_equals_forward_then_backward(opts):
    """torch.ops.gcpo.gcpo_loss_forward_backward gives the same stats, weight, kl as
    gcpo_loss_forward and the same gradient as gcpo_loss_backward with an upstream gradient of 1,
    bit for bit on the CPU twin (which runs the two in turn)."""
    logp, ref_logp, old_logp, adv, mask = make(seed=5)
    opts = dict(opts)
    old = old_logp if opts.pop("use_old", False) else None
    o = dict(algo="gcpo", clipping="none", eps_low=0.2, eps_high=0.2, beta=0.01, weight_clip=0.5,
             detach_weight=False, aggregation="token_mean", max_tokens=0.0, denominator=0.0)
    o.update(opts)
    args = (o["algo"], o["clipping"], o["eps_low"], o["eps_high"], o["beta"], o["weight_clip"], o["detach_weight"],
            o["aggregation"], o["max_tokens"], o["denominator"])
    ops = torch.ops.gcpo
    stats, weight, kl, grad = ops.gcpo_loss_forward_backward(logp, ref_logp, old, adv, mask, *args)
    want_stats, want_weight, want_kl = ops.gcpo_loss_forward(logp, ref_logp, old, adv, mask, *args)
    want_grad = ops.gcpo_loss_backward(logp, ref_logp, old, adv, mask, torch.ones(1), *args)
    for got, want in ((stats, want_stats), (weight, want_weight), (kl, want_kl), (grad, want_grad)):
        assert torch.equal(got, want)
    assert grad.abs().sum() > 0


def test_loss_errors():
    logp, ref_logp, old_logp, adv, mask = make()
    with pytest.raises(ValueError, match=r"`inputs.advantages.shape\[0\]`"):
        gcpo.gcpo_loss(logp, ref_logp, adv[:3], mask)
    with pytest.raises(ValueError, match="ref_logp"):
        gcpo.gcpo_loss(logp, ref_logp.double(), adv, mask)
    with pytest.raises(ValueError, match="mask"):
        gcpo.gcpo_loss(logp, ref_logp, adv, mask[:, :5])
    with pytest.raises(ValueError, match=r"`options.beta` \(-1\) must be finite and >= 0"):
        gcpo.gcpo_loss(logp, ref_logp, adv, mask, beta=-1.0)
    with pytest.raises(ValueError, match="denominator"):
        gcpo.gcpo_loss(logp, ref_logp, adv, mask, aggregation="external")
    with pytest.raises(ValueError, match="`aggregation` must be"):
        gcpo.gcpo_loss(logp, ref_logp, adv, mask, aggregation="mean")
    with pytest.raises(ValueError, match="`advantages` is on meta"):
        gcpo.gcpo_loss(logp, ref_logp, adv.to("meta"), mask)
