"""The official Janus-Pro trainer's blocks written in plain PyTorch from the trainer's description
(spec janus-trainer.md section 2): what gcpo.official's drop-ins must reproduce. Shared by
test_official.py and python/bench/bench_official.py (the same renderings tested and timed)."""
import torch
import torch.nn.functional as F


def official_entropy(logits_list):
    probs = torch.softmax(logits_list, dim=-1)
    return -(probs * torch.log(probs + 1e-12)).sum(dim=-1)


def official_logps(logits, ids):
    rows = []
    for lg, t in zip(logits, ids):  # row by row, as the official helper does
        rows.append(lg.log_softmax(dim=-1).gather(1, t.unsqueeze(1)).squeeze(1))
    return torch.stack(rows)


def official_gradient_magnitude(entropy_seq):
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
    return torch.sqrt(dx ** 2 + dy ** 2).view(B, N)


def official_entropy_gradient_mask(entropy_seq, topk_frac=0.1):
    B, N = entropy_seq.shape
    g = official_gradient_magnitude(entropy_seq)
    n_valid, offset = int(N * 0.8), int(N * 0.1)
    k = min(int(N * topk_frac), n_valid)
    out = torch.zeros_like(g)
    for b in range(B):
        _, idx = torch.topk(g[b, offset:offset + n_valid], k)
        out[b, offset + idx] = 1
    return out


def official_cos_sim_step(emb, G):
    x = emb.view(-1, G, emb.shape[-1])
    c = F.cosine_similarity(x.unsqueeze(2), x.unsqueeze(1), dim=-1)
    off_diag = ~torch.eye(G, dtype=torch.bool, device=emb.device)
    return torch.repeat_interleave(c[:, off_diag].mean(dim=1), G, dim=0)


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
    low[torch.arange(B, device=idx.device).unsqueeze(1).expand_as(idx), idx] = True
    cm = completion_mask.clone()
    cm[ent | low | first] = 0
    return 1 - cm


def official_loss(s, r, adv, m, beta=0.01):
    per_token = torch.exp(s - s.detach()) * adv.unsqueeze(1)
    c = torch.exp(torch.clamp(s - r, -0.5, 0.5))
    c = c.cumsum(dim=-1) / torch.arange(1, c.size(1) + 1, dtype=c.dtype, device=c.device)
    per_token = per_token * c
    kl = torch.exp(r - s) - (r - s) - 1
    per_token = -(per_token - beta * kl)
    loss = (per_token * m).sum() / m.sum()
    return loss, (kl * m).sum() / m.sum()


def official_advantages(rewards, G):
    g = rewards.view(-1, G)
    mean = g.mean(dim=1).repeat_interleave(G)
    std = g.std(dim=1).repeat_interleave(G)
    return (rewards - mean) / (std + 1e-4)


def official_cos_sim_list(emb, G):
    """The similarity of every sampling step, one official call per step (emb [B, N, D])."""
    return torch.stack([official_cos_sim_step(emb[:, k].contiguous(), G) for k in range(emb.shape[1])], dim=1)
