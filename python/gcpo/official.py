"""Drop-ins for the official Janus-Pro GCPO trainer's computations (``JanusGCPOTrainer``).

Each function takes the inputs of one block of the official trainer's ``compute_loss`` and
returns what that block produces (shape, dtype, meaning), computed with gcpo's operators
instead of the official plain-PyTorch code. A trainer swaps the block for the call.
Section numbers refer to the trainer's description (spec ``janus-trainer.md`` section 2).

Where the official arithmetic and ours differ the docstring says so; in short: gcpo
accumulates in float32 whatever the input dtype (the official code computes in the tensors'
dtype, bf16 in the released runs), the entropy is the exact Shannon entropy (the official
``-sum p log(p + 1e-12)`` differs by at most ``V * 1e-12``), and top-k ties go to the lower
position (``torch.topk``'s tie order is unspecified).
"""
from __future__ import annotations

from typing import Optional, Tuple

import torch

from . import gcpo_loss, group_advantages, group_similarity, select_critical_tokens, token_stats

__all__ = [
    "critical_completion_mask",
    "entropy_from_logits",
    "gcpo_loss_block",
    "group_cos_sim",
    "grouped_advantages",
    "per_token_logps",
    "select_high_entropy_gradient_tokens_batch",
]


def _square_side(n: int) -> int:
    side = int(n ** 0.5)
    if side * side != n:
        raise ValueError(f"gcpo.official: the official code needs a square token grid; N = {n} is not a square")
    return side


def entropy_from_logits(logits: torch.Tensor) -> torch.Tensor:
    """The official per-token entropy of the stored sampling-time (CFG) logits (section 2.5).

    Official: ``probs = softmax(logits_list, -1); entropys = -(probs * log(probs + 1e-12)).sum(-1)``
    on ``logits_list`` ``[B, N, V]``. Here: ``gcpo.token_stats`` (one pass, float32
    accumulation), returned in the logits' dtype, shape ``[B, N]``, without gradient (the
    official entropy is computed under ``no_grad``).

    Differences: the exact entropy ``lse - sum p x`` instead of ``p log(p + 1e-12)`` (at most
    ``V * 1e-12`` apart); float32 accumulation then a cast, where the official code does every
    step in the logits' dtype (bf16 in the released runs, so it is less accurate than this).
    """
    if logits.dim() != 3:
        raise ValueError(f"gcpo.official.entropy_from_logits: `logits` must be [B, N, V], got {tuple(logits.shape)}")
    tokens = torch.zeros(logits.shape[:2], dtype=torch.int64, device=logits.device)
    with torch.no_grad():
        entropy, _, _ = token_stats(logits, tokens)
    return entropy.to(logits.dtype)


def per_token_logps(logits: torch.Tensor, img_ids: torch.Tensor) -> torch.Tensor:
    """The official teacher-forced log-probs of the image tokens (section 2.8).

    Official (``_get_per_token_logps`` for images): for each row,
    ``log_softmax(logits_row, -1)`` gathered at the token, where ``logits_row`` is the gen-head
    output at the positions that predict image tokens ``0..N-1``. Give the ``[B, N, V]`` logits
    aligned with ``img_ids`` ``[B, N]`` (official: ``image_logits[:, :-1]``; a strided slice is
    taken as it is). Returns ``[B, N]`` in the logits' dtype, differentiable to the logits
    (gcpo's ``token_stats_backward``, one pass, no ``[B, N, V]`` log-softmax stored).

    Differences: float32 accumulation then a cast to the logits' dtype (the official
    ``log_softmax`` runs in that dtype); the official code left-pads the result with zeros to the
    prompt length and the caller slices them off again, which this skips.
    """
    if logits.dim() != 3:
        raise ValueError(f"gcpo.official.per_token_logps: `logits` must be [B, N, V], got {tuple(logits.shape)}")
    _, logp, _ = token_stats(logits, img_ids)
    return logp if logits.dtype == torch.float32 else logp.to(logits.dtype)


def select_high_entropy_gradient_tokens_batch(entropy_seq: torch.Tensor, topk_frac: float = 0.1) -> torch.Tensor:
    """The official ``select_high_entropy_gradient_tokens_batch(entropy_seq, topk_frac=0.1)``.

    ``entropy_seq`` ``[B, N]`` with ``N`` a square (``h = w = sqrt(N)``). Causal 5-neighbour mean
    of the entropy map, central-difference gradient magnitude, and the ``min(int(N * topk_frac),
    int(N * 0.8))`` largest magnitudes inside the fixed window ``[int(N * 0.1), + int(N * 0.8))``.
    Returns, as official, a 0/1 mask ``[B, N]`` of ``entropy_seq``'s dtype (a float tensor;
    the official caller converts it with ``.bool()``).

    Here: one ``gcpo.select_critical_tokens`` call with only the gradient subset
    (``initial_frac = similarity_frac = 0``), computed in float32. Differences: ties go to the
    lower position (``torch.topk``'s order is unspecified); a bf16 entropy is widened to float32
    exactly, but the official code computes the mean map and gradient in bf16, so near-ties may
    be ordered differently from the bf16 arithmetic.
    """
    if entropy_seq.dim() != 2:
        raise ValueError("gcpo.official.select_high_entropy_gradient_tokens_batch: `entropy_seq` must be [B, N], "
                         f"got {tuple(entropy_seq.shape)}")
    side = _square_side(entropy_seq.shape[1])
    e = entropy_seq.to(torch.float32)
    mask = select_critical_tokens(e, torch.zeros_like(e), grid=(side, side), initial_frac=0.0,
                                  gradient_frac=float(topk_frac), similarity_frac=0.0,
                                  window_start_frac=0.1, window_frac=0.8)
    return mask.to(entropy_seq.dtype)


def group_cos_sim(img_embeds: torch.Tensor, new_generations_image: int, eps: float = 1e-8) -> torch.Tensor:
    """The official group cosine similarity of the sampled tokens' embeddings (section 2.6).

    Official, at each sampling step on the conditional rows' embeddings ``[B, D]``: view as
    ``[B/G, G, D]``, ``F.cosine_similarity`` of every pair, mean of the ``G*(G-1)`` off-diagonal
    entries, ``repeat_interleave(G)`` -> ``[B]``; stacked over the steps -> ``cos_sim_list``
    ``[B, N]``. This takes either one step's ``[B, D]`` (returns ``[B]``) or all steps' ``[B, N, D]``
    (returns ``cos_sim_list`` ``[B, N]`` at once), in the embeddings' dtype.

    Here: ``gcpo.group_similarity`` (``O(G*D)`` per position instead of ``O(G^2*D)``, float32
    accumulation). Differences: ``cos = a.b / max(|a||b|, eps)``; torch's cosine_similarity clamps
    differently only for vectors of norm below ``sqrt(eps)``.
    """
    if img_embeds.dim() == 2:
        return group_similarity(img_embeds.unsqueeze(1), int(new_generations_image), eps)[:, 0].to(img_embeds.dtype)
    if img_embeds.dim() == 3:
        return group_similarity(img_embeds, int(new_generations_image), eps).to(img_embeds.dtype)
    raise ValueError(f"gcpo.official.group_cos_sim: `img_embeds` must be [B, D] or [B, N, D], got {tuple(img_embeds.shape)}")


def critical_completion_mask(entropys: torch.Tensor, cos_sim_list: torch.Tensor,
                             completion_mask: Optional[torch.Tensor] = None) -> torch.Tensor:
    """The official GCPO mask block (section 2.11): initial, entropy-gradient and low-similarity tokens.

    Official: ``first_10_mask`` (the first ``int(N * 0.1)`` tokens), ``entropy_mask =
    select_high_entropy_gradient_tokens_batch(entropys, 0.1).bool()``, ``cos_sim_mask`` = the
    ``int(N * 0.1)`` lowest ``cos_sim_list`` entries after setting the other two sets to ``+inf``,
    then ``completion_mask[final] = 0; completion_mask = 1 - completion_mask``. With the official
    all-ones ``completion_mask`` the result is 1 exactly on the critical tokens.

    ``entropys``, ``cos_sim_list``: ``[B, N]``, ``N`` a square; ``completion_mask``: ``[B, N]``
    (``None``: the official ``ones_like(tokens)``, int64). Returns the new completion mask in
    ``completion_mask``'s dtype, like the official ``1 - completion_mask`` (which also turns
    any 0 entry of the given mask outside the critical set into 1, as official).

    Here: one ``gcpo.select_critical_tokens`` call in float32; ties go to the lower position.
    """
    if entropys.dim() != 2:
        raise ValueError(f"gcpo.official.critical_completion_mask: `entropys` must be [B, N], got {tuple(entropys.shape)}")
    side = _square_side(entropys.shape[1])
    final = select_critical_tokens(entropys.to(torch.float32), cos_sim_list.to(torch.float32), grid=(side, side))
    if completion_mask is None:
        return final.to(torch.int64)
    out = completion_mask.clone()
    out[final] = 0
    return 1 - out


def grouped_advantages(rewards: torch.Tensor, group: int) -> torch.Tensor:
    """The official advantages (section 2.10): per group of ``group`` consecutive rewards,
    ``(r - mean) / (std + 1e-4)`` with the unbiased std. ``rewards`` float32 ``[B]``; returns ``[B]``.
    Here: ``gcpo.group_advantages``."""
    return group_advantages(rewards, int(group), std="unbiased", eps=1e-4)


def gcpo_loss_block(per_token_logps: torch.Tensor, ref_per_token_logps: torch.Tensor, advantages: torch.Tensor,
                    completion_mask: torch.Tensor, beta: float = 0.01,
                    clip: float = 0.5) -> Tuple[torch.Tensor, torch.Tensor]:
    """The official loss block (section 2.12); returns ``(loss, mean_kl)``, both 0-d.

    Official: ``per_token_loss = exp(s - s.detach()) * A``; ``coef_1`` = running mean over all
    positions of ``exp(clamp(s - ref, -0.5, 0.5))`` (not detached); times ``coef_1``;
    ``kl = exp(ref - s) - (ref - s) - 1``; ``per_token_loss = -(per_token_loss - beta * kl)``;
    ``loss = (per_token_loss * m).sum() / m.sum()``; ``mean_kl = (kl * m).sum() / m.sum()``.

    ``per_token_logps`` ``[B, N]`` (differentiable; the gradient flows, as official, through the
    non-detached running mean), ``ref_per_token_logps`` ``[B, N]``, ``advantages`` ``[B]``,
    ``completion_mask`` ``[B, N]`` 0/1 of any dtype (the official one is int64). Here:
    ``gcpo.gcpo_loss`` with the official options (``algo="gcpo"``, no clipping, ``token_mean``).

    Differences: float32 arithmetic (non-float32 log-probs are cast, with gradient); the
    official code returns NaN for an empty mask (0/0), gcpo returns 0.
    """
    s = per_token_logps if per_token_logps.dtype == torch.float32 else per_token_logps.to(torch.float32)
    r = ref_per_token_logps.to(torch.float32)
    a = advantages.to(torch.float32)
    m = completion_mask if completion_mask.dtype == torch.bool else completion_mask != 0
    loss, stats = gcpo_loss(s, r, a, m, beta=float(beta), weight_clip=float(clip))
    return loss, stats["kl_mean"]
