"""Independent pure-PyTorch references of the GCPO operators, written from the specification
(/work/shared/spec/gcpo-operators.md, sections 2-6) in float64. They share no code with the
library and are what the extension is tested against."""
import math

import torch

F64 = torch.float64


def token_stats(logits, tokens, temperature=1.0):
    """(entropy, logprob, lse) in float64: x = logits / T, lse = logsumexp(x),
    logprob = x[token] - lse, entropy = lse - sum softmax(x) * x (-inf logits contribute 0)."""
    x = logits.to(F64) / temperature
    lse = torch.logsumexp(x, dim=-1)
    p = torch.exp(x - lse.unsqueeze(-1))
    px = torch.where(p > 0, p * x, torch.zeros_like(x))
    entropy = lse - px.sum(-1)
    logprob = x.gather(-1, tokens.long().unsqueeze(-1)).squeeze(-1) - lse
    return entropy, logprob, lse


def group_advantages(rewards, group, std="unbiased", eps=1e-4):
    r = rewards.to(F64).reshape(-1, group)
    mean = r.mean(dim=1, keepdim=True)
    if std == "none":
        return (r - mean).reshape(-1)
    s = r.std(dim=1, unbiased=(std == "unbiased"), keepdim=True)
    return ((r - mean) / (s + eps)).reshape(-1)


def group_similarity(embeddings, group, eps=1e-8):
    """Mean over ordered pairs g != h of cos(e_g, e_h) = e_g.e_h / max(|e_g||e_h|, eps), pairwise."""
    e = embeddings.to(F64)
    R, N, D = e.shape
    e = e.reshape(R // group, group, N, D)
    norms = e.norm(dim=-1)                                     # [P, G, N]
    dots = torch.einsum("pgnd,phnd->pghn", e, e)               # [P, G, G, N]
    den = torch.clamp(norms.unsqueeze(2) * norms.unsqueeze(1), min=eps)
    cos = dots / den
    off = ~torch.eye(group, dtype=torch.bool).reshape(1, group, group, 1)
    sim = (cos * off).sum(dim=(1, 2)) / (group * (group - 1))  # [P, N]
    return sim.unsqueeze(1).expand(R // group, group, N).reshape(R, N)


def smoothed_entropy(entropy, H, W):
    """Causal local mean over the existing ones of self, left, upper-left, up, upper-right."""
    E = entropy.to(F64).reshape(-1, H, W)
    M = torch.empty_like(E)
    for i in range(H):
        for j in range(W):
            vals = [E[:, i, j]]
            if j - 1 >= 0:
                vals.append(E[:, i, j - 1])
            if i - 1 >= 0:
                vals.append(E[:, i - 1, j])
                if j - 1 >= 0:
                    vals.append(E[:, i - 1, j - 1])
                if j + 1 < W:
                    vals.append(E[:, i - 1, j + 1])
            M[:, i, j] = torch.stack(vals).mean(0)
    return M.reshape(entropy.shape)


def entropy_gradient(smoothed, H, W):
    M = smoothed.to(F64).reshape(-1, H, W)
    dx = torch.zeros_like(M)
    dy = torch.zeros_like(M)
    if W > 1:
        dx[:, :, 1:-1] = (M[:, :, 2:] - M[:, :, :-2]) / 2
        dx[:, :, 0] = M[:, :, 1] - M[:, :, 0]
        dx[:, :, -1] = M[:, :, -1] - M[:, :, -2]
    if H > 1:
        dy[:, 1:-1, :] = (M[:, 2:, :] - M[:, :-2, :]) / 2
        dy[:, 0, :] = M[:, 1, :] - M[:, 0, :]
        dy[:, -1, :] = M[:, -1, :] - M[:, -2, :]
    return torch.sqrt(dx * dx + dy * dy).reshape(smoothed.shape)


def _ranked(values, candidates, largest):
    """Positions of `candidates` sorted by value (largest or smallest first), ties to the lower position."""
    key = [(-float(values[t]) if largest else float(values[t]), t) for t in candidates]
    return [t for _, t in sorted(key)]


def select(entropy, similarity, H, W, initial_frac=0.1, gradient_frac=0.1, similarity_frac=0.1,
           window_start_frac=0.1, window_frac=0.8):
    """(initial, gradient, low_similarity, critical) bool masks [R, N], and the gradient map."""
    R, N = entropy.shape
    k_init = math.floor(N * initial_frac)
    k_grad = math.floor(N * gradient_frac)
    k_sim = math.floor(N * similarity_frac)
    lo = math.floor(N * window_start_frac)
    n = math.floor(N * window_frac)
    grad = entropy_gradient(smoothed_entropy(entropy, H, W), H, W)
    init = torch.zeros(R, N, dtype=torch.bool)
    init[:, :k_init] = True
    gm = torch.zeros(R, N, dtype=torch.bool)
    sm = torch.zeros(R, N, dtype=torch.bool)
    sim = similarity.to(F64)
    for r in range(R):
        for t in _ranked(grad[r], range(lo, lo + n), largest=True)[:min(k_grad, n)]:
            gm[r, t] = True
        free = [t for t in range(N) if not (init[r, t] or gm[r, t])]
        for t in _ranked(sim[r], free, largest=False)[:k_sim]:
            sm[r, t] = True
    return init, gm, sm, init | gm | sm, grad


def loss(logp, ref_logp, advantages, mask, beta=0.01, weight_clip=0.5, old_logp=None, algo="gcpo",
         clipping="none", eps_low=0.2, eps_high=0.2, detach_weight=False, aggregation="token_mean",
         max_tokens=0.0, denominator=0.0):
    """The loss of spec section 6, differentiable to `logp` by torch autograd (float64 if given so).
    Returns (loss, stats dict)."""
    R, N = logp.shape
    lp = logp
    ref = ref_logp.to(lp.dtype)
    A = advantages.to(lp.dtype).unsqueeze(1)
    m = torch.ones(R, N, dtype=lp.dtype) if mask is None else mask.to(lp.dtype)
    if old_logp is None:
        rho = torch.exp(lp - lp.detach())
    else:
        rho = torch.exp(lp - old_logp.to(lp.dtype))
    if clipping == "none":
        pg = -rho * A
        clipped = torch.zeros(R, N, dtype=torch.bool)
    else:
        unclipped = rho * A
        clipped_term = torch.clamp(rho, 1 - eps_low, 1 + eps_high) * A
        pg = -torch.min(unclipped, clipped_term)
        clipped = clipped_term < unclipped
    if algo == "gcpo":
        e = torch.exp(torch.clamp(lp - ref, -weight_clip, weight_clip))
        w = torch.cumsum(e, dim=1) / torch.arange(1, N + 1, dtype=lp.dtype)
        if detach_weight:
            w = w.detach()
    else:
        w = torch.ones(R, N, dtype=lp.dtype)
    d = ref - lp
    kl = torch.exp(d) - d - 1
    l = pg * w + beta * kl
    count = m.sum()
    if aggregation == "token_mean":
        Z = count
        L = (m * l).sum() / Z if Z > 0 else (m * l).sum() * 0
    elif aggregation == "sequence_mean":
        rows = m.sum(1)
        per = torch.where(rows > 0, (m * l).sum(1) / torch.clamp(rows, min=1), torch.zeros_like(rows))
        Z = torch.tensor(float(R), dtype=lp.dtype)
        L = per.sum() / R
    elif aggregation == "constant":
        Z = torch.tensor(R * (max_tokens if max_tokens > 0 else N), dtype=lp.dtype)
        L = (m * l).sum() / Z
    else:
        Z = torch.tensor(denominator, dtype=lp.dtype)
        L = (m * l).sum() / Z
    safe = count if count > 0 else torch.ones((), dtype=lp.dtype)
    stats = {
        "loss": L.detach(),
        "kl_mean": ((m * kl).sum() / safe).detach() if count > 0 else torch.zeros((), dtype=lp.dtype),
        "clip_fraction": (m * clipped.to(lp.dtype)).sum() / safe if count > 0 else torch.zeros((), dtype=lp.dtype),
        "weight_mean": ((m * w).sum() / safe).detach() if count > 0 else torch.zeros((), dtype=lp.dtype),
        "token_count": count.detach(),
        "denominator": Z.detach() if isinstance(Z, torch.Tensor) else torch.tensor(Z),
        "weight": w.detach(),
        "kl": kl.detach(),
    }
    return L, stats
