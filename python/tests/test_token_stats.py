"""gcpo.token_stats against the float64 reference (spec section 2), its gradient to the logits,
layouts, dtypes, errors and determinism."""
import pytest
import torch

import gcpo
import reference as ref


def close(got, want, atol=1e-5, rtol=1e-4):
    """Spec section 8: |got - want| <= 1e-5 + 1e-4 * |want| (values)."""
    torch.testing.assert_close(got.to(torch.float64), want.to(torch.float64), atol=atol, rtol=rtol)


def make(R=3, N=10, V=37, seed=0, scale=3.0):
    g = torch.Generator().manual_seed(seed)
    logits = torch.randn(R, N, V, generator=g) * scale
    tokens = torch.randint(0, V, (R, N), generator=g)
    return logits, tokens


@pytest.mark.parametrize("temperature", [1.0, 0.7, 2.5])
def test_values_match_reference(temperature):
    logits, tokens = make()
    entropy, logprob, lse = gcpo.token_stats(logits, tokens, temperature=temperature)
    e, lp, s = ref.token_stats(logits, tokens, temperature)
    assert entropy.dtype == logprob.dtype == lse.dtype == torch.float32
    assert entropy.shape == logprob.shape == lse.shape == (3, 10)
    close(entropy, e)
    close(logprob, lp)
    close(lse, s)


def test_minus_inf_logits_contribute_nothing():
    logits, tokens = make(V=9)
    logits[:, :, 0] = float("-inf")
    logits[0, 0, 1:5] = float("-inf")
    tokens[tokens == 0] = 1
    tokens[0, 0] = 6
    entropy, logprob, lse = gcpo.token_stats(logits, tokens)
    e, lp, s = ref.token_stats(logits, tokens)
    assert torch.isfinite(entropy).all() and torch.isfinite(logprob).all()
    close(entropy, e)
    close(logprob, lp)
    close(lse, s)


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_half_precision_logits_accumulate_in_float32(dtype):
    logits, tokens = make()
    low = logits.to(dtype)
    entropy, logprob, lse = gcpo.token_stats(low, tokens)
    e, lp, s = ref.token_stats(low.to(torch.float64), tokens)  # the same (rounded) values
    close(entropy, e)
    close(logprob, lp)
    close(lse, s)


def test_int32_tokens():
    logits, tokens = make()
    a = gcpo.token_stats(logits, tokens)
    b = gcpo.token_stats(logits, tokens.to(torch.int32))
    for x, y in zip(a, b):
        assert torch.equal(x, y)


def test_strided_logits_and_tokens_give_the_same_results():
    logits, tokens = make(R=4, N=6, V=11)
    want = gcpo.token_stats(logits, tokens)
    # Rows of V contiguous but R and N strided: a slice of a wider buffer, and a transpose.
    wide = torch.zeros(4, 12, 16)
    wide[:, ::2, 3:14] = logits
    strided = wide[:, ::2, 3:14]
    assert not strided.is_contiguous() and strided.stride(-1) == 1
    got = gcpo.token_stats(strided, tokens)
    for x, y in zip(got, want):
        assert torch.equal(x, y)
    t_logits = logits.transpose(0, 1).contiguous().transpose(0, 1)
    assert not t_logits.is_contiguous()
    got = gcpo.token_stats(t_logits, tokens.t().contiguous().t())
    for x, y in zip(got, want):
        assert torch.equal(x, y)
    # Innermost dimension not contiguous: documented copy, same values.
    v_strided = logits.transpose(1, 2).contiguous().transpose(1, 2)
    assert v_strided.stride(-1) != 1
    got = gcpo.token_stats(v_strided, tokens)
    for x, y in zip(got, want):
        assert torch.equal(x, y)


def test_deterministic():
    logits, tokens = make(R=2, N=50, V=300, seed=3)
    a = gcpo.token_stats(logits, tokens, 0.9)
    b = gcpo.token_stats(logits, tokens, 0.9)
    for x, y in zip(a, b):
        assert torch.equal(x, y)


# ---- gradient ------------------------------------------------------------------------------

@pytest.mark.parametrize("temperature", [1.0, 0.6])
def test_grad_of_logprob_matches_float64_autograd(temperature):
    logits, tokens = make(R=2, N=5, V=13, seed=4)
    x = logits.clone().requires_grad_(True)
    _, logprob, _ = gcpo.token_stats(x, tokens, temperature)
    upstream = torch.randn(2, 5, generator=torch.Generator().manual_seed(9))
    (logprob * upstream).sum().backward()

    x64 = logits.to(torch.float64).requires_grad_(True)
    _, lp64, _ = ref.token_stats(x64, tokens, temperature)
    (lp64 * upstream.to(torch.float64)).sum().backward()
    # Spec section 8 gradient tolerance, with float32 accumulation: 1e-6 + 1e-3 |want|.
    torch.testing.assert_close(x.grad.to(torch.float64), x64.grad, atol=1e-6, rtol=1e-3)


def test_grad_against_finite_differences_float32():
    """The operator has no float64 path (float32/bf16/fp16 logits), so torch.autograd.gradcheck
    cannot run; instead central differences of the float32 forward along random directions.
    Step 1e-2 on logits of scale 1: truncation ~1e-5, rounding ~1e-5; tolerance 2e-3 + 1e-2 rel."""
    logits, tokens = make(R=2, N=4, V=7, seed=5, scale=1.0)
    upstream = torch.randn(2, 4, generator=torch.Generator().manual_seed(6))
    x = logits.clone().requires_grad_(True)
    (gcpo.token_stats(x, tokens)[1] * upstream).sum().backward()
    g = torch.Generator().manual_seed(7)
    h = 1e-2
    for _ in range(5):
        d = torch.randn(logits.shape, generator=g)
        f = lambda z: (gcpo.token_stats(z, tokens)[1] * upstream).sum().item()  # noqa: E731
        fd = (f(logits + h * d) - f(logits - h * d)) / (2 * h)
        an = (x.grad * d).sum().item()
        assert abs(fd - an) <= 2e-3 + 1e-2 * abs(an), (fd, an)


def test_grad_for_half_precision_logits_has_their_dtype():
    logits, tokens = make(R=2, N=3, V=8)
    x = logits.to(torch.bfloat16).requires_grad_(True)
    gcpo.token_stats(x, tokens)[1].sum().backward()
    assert x.grad.dtype == torch.bfloat16
    x64 = x.detach().to(torch.float64).requires_grad_(True)
    ref.token_stats(x64, tokens)[1].sum().backward()
    torch.testing.assert_close(x.grad.to(torch.float64), x64.grad, atol=1e-2, rtol=1e-2)


def test_grad_through_strided_logits():
    logits, tokens = make(R=3, N=4, V=6, seed=8)
    wide = torch.zeros(3, 8, 6)
    wide[:, ::2] = logits
    wide.requires_grad_(True)
    gcpo.token_stats(wide[:, ::2], tokens)[1].sum().backward()
    x64 = logits.to(torch.float64).requires_grad_(True)
    ref.token_stats(x64, tokens)[1].sum().backward()
    torch.testing.assert_close(wide.grad[:, ::2].to(torch.float64), x64.grad, atol=1e-6, rtol=1e-3)
    assert torch.equal(wide.grad[:, 1::2], torch.zeros(3, 4, 6))


def test_entropy_and_lse_carry_no_gradient():
    logits, tokens = make()
    x = logits.clone().requires_grad_(True)
    entropy, logprob, lse = gcpo.token_stats(x, tokens)
    assert logprob.requires_grad
    assert not entropy.requires_grad and not lse.requires_grad


# ---- errors --------------------------------------------------------------------------------

def test_float64_logits_are_refused_with_a_message():
    logits, tokens = make()
    with pytest.raises(ValueError, match="`logits` has dtype Double"):
        gcpo.token_stats(logits.double(), tokens)


def test_float_tokens_are_refused():
    logits, tokens = make()
    with pytest.raises(ValueError, match="unsupported_dtype: `tokens.dtype` is float32"):
        gcpo.token_stats(logits, tokens.float())


def test_shape_mismatch_names_the_argument():
    logits, tokens = make(N=10)
    with pytest.raises(ValueError, match=r"`tokens.shape\[1\]` \(9\) must equal `logits.shape\[1\]` \(10\)"):
        gcpo.token_stats(logits, tokens[:, :9])


def test_wrong_rank():
    logits, tokens = make()
    with pytest.raises(ValueError, match="`logits`"):
        gcpo.token_stats(logits[0], tokens)


def test_out_of_range_token():
    logits, tokens = make(V=37)
    tokens[1, 2] = 37
    with pytest.raises(ValueError, match=r"invalid_argument: .*tokens.*37"):
        gcpo.token_stats(logits, tokens)


def test_bad_temperature():
    logits, tokens = make()
    with pytest.raises(ValueError, match="temperature"):
        gcpo.token_stats(logits, tokens, temperature=0.0)


def test_mixed_devices_are_refused():
    logits, tokens = make()
    with pytest.raises(ValueError, match="`tokens` is on meta"):
        gcpo.token_stats(logits, tokens.to("meta"))


def test_raw_op_takes_strided_rows_without_a_copy_and_names_bad_layouts():
    """torch.ops.gcpo.token_stats makes no copies: rows inside a wider buffer go to the library as
    a strided view (and give the contiguous result); layouts it cannot take are named."""
    logits, tokens = make(R=2, N=4, V=5)
    wide = torch.zeros(2, 8, 9)
    wide[:, ::2, 2:7] = logits
    got = torch.ops.gcpo.token_stats(wide[:, ::2, 2:7], tokens, 1.0)
    for x, y in zip(got, torch.ops.gcpo.token_stats(logits, tokens, 1.0)):
        assert torch.equal(x, y)
    with pytest.raises(ValueError, match="`tokens`.*contiguous"):
        torch.ops.gcpo.token_stats(logits, tokens.t().contiguous().t(), 1.0)
    with pytest.raises(ValueError, match=r"`logits.strides\[2\]` \(4\) must be 1"):
        torch.ops.gcpo.token_stats(logits.transpose(1, 2).contiguous().transpose(1, 2), tokens, 1.0)


def test_grad_through_the_documented_copy():
    logits, tokens = make(R=2, N=3, V=6, seed=12)
    x = logits.transpose(1, 2).contiguous().transpose(1, 2).requires_grad_(True)  # innermost stride != 1
    gcpo.token_stats(x, tokens)[1].sum().backward()
    x64 = logits.double().requires_grad_(True)
    ref.token_stats(x64, tokens)[1].sum().backward()
    torch.testing.assert_close(x.grad.double(), x64.grad, atol=1e-6, rtol=1e-3)


def test_no_double_backward():
    logits, tokens = make(R=1, N=2, V=4)
    x = logits.clone().requires_grad_(True)
    lp = gcpo.token_stats(x, tokens)[1]
    (g,) = torch.autograd.grad(lp.sum(), x, create_graph=True)
    assert not g.requires_grad  # once_differentiable: the backward itself is not differentiated
    with pytest.raises(RuntimeError, match="does not require grad"):
        g.sum().backward()


def test_registered_op_is_callable_directly():
    logits, tokens = make()
    # torch.ops.gcpo.token_stats itself (no Python wrapper, no autograd): the CPU kernel.
    entropy, logprob, lse = torch.ops.gcpo.token_stats(logits, tokens, 1.0)
    close(logprob, ref.token_stats(logits, tokens)[1])
