"""gcpo from Python: the GCPO operators as PyTorch custom operators (``torch.ops.gcpo.*``).

Importing this package loads the extension ``_gcpo_ops.so`` (built by CMake with
``-DGCPO_BUILD_PYTHON=ON`` into ``<build>/python/gcpo`` next to this file; the environment
variable ``GCPO_OPS_LIBRARY`` names another copy). CPU tensors run the library's host twins, CUDA
tensors its CUDA twins on the current stream (when the extension was built with ``gcpo::cuda``).

Tensors are handed to the library as views: nothing is copied, except where a function's
docstring says which argument is made contiguous when it is not. Bad arguments raise
``ValueError`` with the library's message naming the argument (for example
``gcpo.token_stats: invalid_argument: `tokens.shape[1]` (5) must equal `logits.shape[1]` (6)``).
Shapes: ``R`` rollouts (``P`` prompts times group ``G``, prompt-major), ``N = H*W`` tokens,
``V`` codebook entries, ``D`` embedding width.
"""
from __future__ import annotations

import glob
import os
from typing import Dict, Optional, Sequence, Tuple

import torch
from torch.autograd.function import once_differentiable

__all__ = [
    "LOSS_STATS",
    "cuda_enabled",
    "gcpo_loss",
    "group_advantages",
    "group_similarity",
    "group_similarity_from_tokens",
    "select_critical_tokens",
    "token_stats",
]


def _load_library() -> str:
    path = os.environ.get("GCPO_OPS_LIBRARY")
    if not path:
        here = os.path.dirname(os.path.abspath(__file__))
        found = sorted(glob.glob(os.path.join(here, "_gcpo_ops*.so")))
        if not found:
            raise ImportError(
                f"gcpo: the extension _gcpo_ops.so is not in {here}: build it with CMake "
                "(-DGCPO_BUILD_PYTHON=ON) and put <build>/python on PYTHONPATH, or set GCPO_OPS_LIBRARY"
            )
        path = found[0]
    torch.ops.load_library(path)
    return path


_LIBRARY_PATH = _load_library()
_ops = torch.ops.gcpo

#: Names of the entries of the loss statistics, in the order of the library's ``loss_stat``.
LOSS_STATS = ("loss", "kl_mean", "clip_fraction", "weight_mean", "token_count", "denominator")


def cuda_enabled() -> bool:
    """True when the extension was built with gcpo's CUDA twins (``gcpo::cuda``)."""
    return bool(_ops.cuda_enabled())


def _check_devices(op: str, **tensors: Optional[torch.Tensor]) -> None:
    """Every given tensor is a tensor, on cpu or cuda, and on the device of the first one."""
    first_name, first = None, None
    for name, t in tensors.items():
        if t is None:
            continue
        if not isinstance(t, torch.Tensor):
            raise TypeError(f"gcpo.{op}: `{name}` must be a torch.Tensor, got {type(t).__name__}")
        if t.device.type not in ("cpu", "cuda"):
            raise ValueError(f"gcpo.{op}: `{name}` is on {t.device}; gcpo runs on cpu and cuda tensors")
        if t.device.type == "cuda" and not cuda_enabled():
            raise ValueError(f"gcpo.{op}: `{name}` is on {t.device} but this gcpo extension was built without "
                             "gcpo::cuda (CPU only)")
        if first is None:
            first_name, first = name, t
        elif t.device != first.device:
            raise ValueError(f"gcpo.{op}: `{name}` is on {t.device} but `{first_name}` is on {first.device}")


def _rows_contiguous(t: torch.Tensor) -> torch.Tensor:
    """``t`` itself when its innermost dimension is contiguous (other strides free), else a copy."""
    return t if t.dim() == 0 or t.stride(-1) == 1 or t.size(-1) == 1 else t.contiguous()


# ---- token statistics ----------------------------------------------------------------------

class _TokenStats(torch.autograd.Function):
    @staticmethod
    def forward(ctx, logits, tokens, temperature):
        entropy, logprob, lse = _ops.token_stats(logits, tokens, temperature)
        ctx.temperature = temperature
        ctx.save_for_backward(logits, tokens, lse)
        ctx.mark_non_differentiable(entropy, lse)
        return entropy, logprob, lse

    @staticmethod
    @once_differentiable
    def backward(ctx, grad_entropy, grad_logprob, grad_lse):
        if grad_logprob is None or not ctx.needs_input_grad[0]:
            return None, None, None
        logits, tokens, lse = ctx.saved_tensors
        g = grad_logprob.to(torch.float32).contiguous()
        grad_logits = _ops.token_stats_backward(logits, tokens, lse, g, ctx.temperature)
        return grad_logits, None, None


def token_stats(logits: torch.Tensor, tokens: torch.Tensor,
                temperature: float = 1.0) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Entropy, log-prob of the sampled token and logsumexp of every row of ``logits``.

    With ``x = logits[r, t, :] / temperature``: ``lse = log(sum exp x)``,
    ``logprob = x[tokens[r, t]] - lse``, ``entropy = lse - sum softmax(x) * x`` (nats).

    - ``logits`` ``[R, N, V]`` float32 / bfloat16 / float16; rows of ``V`` contiguous, the ``R``
      and ``N`` strides free (a copy is made only when the innermost stride is not 1).
    - ``tokens`` ``[R, N]`` int32 / int64, each in ``[0, V)`` (made contiguous when it is not).
    - Returns ``(entropy, logprob, lse)``, float32 ``[R, N]``, accumulated in float32.

    Autograd: ``logprob`` is differentiable to ``logits`` (the library's ``token_stats_backward``,
    one pass from the saved ``lse``); ``entropy`` and ``lse`` are returned without gradient
    (the library has no backward for them; GCPO uses the entropy only to select tokens).
    """
    _check_devices("token_stats", logits=logits, tokens=tokens)
    logits = _rows_contiguous(logits)
    tokens = tokens.contiguous()
    return _TokenStats.apply(logits, tokens, float(temperature))


# ---- advantages and similarity -------------------------------------------------------------

def group_advantages(rewards: torch.Tensor, group: int, std: str = "unbiased", eps: float = 1e-4) -> torch.Tensor:
    """Group-normalised advantages ``(reward - mean_g) / (std_g + eps)`` over groups of ``group``.

    ``rewards`` ``[R]`` float32 (``R`` a multiple of ``group``; made contiguous when it is not);
    ``std`` ``"unbiased"`` (official, needs ``group >= 2``), ``"biased"`` or ``"none"``
    (Dr. GRPO: no scaling). Returns float32 ``[R]``; equal rewards give 0. No gradient.
    """
    _check_devices("group_advantages", rewards=rewards)
    return _ops.group_advantages(rewards.contiguous(), int(group), str(std), float(eps))


def group_similarity(embeddings: torch.Tensor, group: int, eps: float = 1e-8) -> torch.Tensor:
    """Mean pairwise cosine similarity of each position across its group.

    ``embeddings`` ``[R, N, D]`` float32 / bfloat16 / float16, vectors of ``D`` contiguous, ``R``
    and ``N`` strides free (a copy only when the innermost stride is not 1); ``group`` = G in
    ``[2, 1024]``. ``cos(a, b) = a.b / max(|a||b|, eps)``. Returns float32 ``[R, N]``, the same value
    for every rollout of a prompt. No gradient.
    """
    _check_devices("group_similarity", embeddings=embeddings)
    return _ops.group_similarity(_rows_contiguous(embeddings), int(group), float(eps))


def group_similarity_from_tokens(tokens: torch.Tensor, table: torch.Tensor, group: int,
                                 eps: float = 1e-8) -> torch.Tensor:
    """``group_similarity`` of ``table[tokens]`` without materialising ``[R, N, D]``.

    ``tokens`` ``[R, N]`` int32 / int64 (made contiguous when it is not), ``table`` ``[V, D]``
    float32 / bfloat16 / float16 (rows contiguous, a copy only when the innermost stride is not 1).
    """
    _check_devices("group_similarity_from_tokens", tokens=tokens, table=table)
    return _ops.group_similarity_from_tokens(tokens.contiguous(), _rows_contiguous(table), int(group), float(eps))


# ---- selection -----------------------------------------------------------------------------

def select_critical_tokens(entropy: torch.Tensor, similarity: torch.Tensor,
                           grid: Optional[Sequence[int]] = None, initial_frac: float = 0.1,
                           gradient_frac: float = 0.1, similarity_frac: float = 0.1,
                           window_start_frac: float = 0.1, window_frac: float = 0.8,
                           return_counts: bool = False):
    """The official critical-token selection: initial | entropy-gradient | low-similarity tokens.

    - ``entropy``, ``similarity``: float32 ``[R, N]`` (made contiguous when they are not).
    - ``grid``: ``(H, W)`` with ``H * W = N``; ``None``: square.
    - Counts are ``floor(N * frac)``; the gradient top-k runs in the window
      ``[floor(N * window_start_frac), + floor(N * window_frac))``; ties go to the lower position.

    Returns the mask, bool ``[R, N]``; with ``return_counts=True`` ``(mask, counts)``, counts int32
    ``[R]`` (critical tokens per rollout).
    """
    _check_devices("select_critical_tokens", entropy=entropy, similarity=similarity)
    g = [] if grid is None else [int(x) for x in grid]
    mask, counts = _ops.select_critical_tokens(entropy.contiguous(), similarity.contiguous(), g,
                                               float(initial_frac), float(gradient_frac), float(similarity_frac),
                                               float(window_start_frac), float(window_frac))
    return (mask, counts) if return_counts else mask


# ---- the loss ------------------------------------------------------------------------------

class _GcpoLoss(torch.autograd.Function):
    @staticmethod
    def forward(ctx, logp, ref_logp, old_logp, advantages, mask, options):
        stats, weight, kl = _ops.gcpo_loss_forward(logp, ref_logp, old_logp, advantages, mask, *options)
        ctx.options = options
        ctx.save_for_backward(logp, ref_logp, old_logp, advantages, mask)
        loss = stats[0].clone()
        ctx.mark_non_differentiable(stats, weight, kl)
        return loss, stats, weight, kl

    @staticmethod
    @once_differentiable
    def backward(ctx, grad_loss, grad_stats, grad_weight, grad_kl):
        if grad_loss is None or not ctx.needs_input_grad[0]:
            return None, None, None, None, None, None
        logp, ref_logp, old_logp, advantages, mask = ctx.saved_tensors
        g = grad_loss.to(torch.float32).reshape(1).contiguous()
        grad_logp = _ops.gcpo_loss_backward(logp, ref_logp, old_logp, advantages, mask, g, *ctx.options)
        return grad_logp, None, None, None, None, None


def gcpo_loss(logp: torch.Tensor, ref_logp: torch.Tensor, advantages: torch.Tensor,
              mask: Optional[torch.Tensor] = None, beta: float = 0.01, weight_clip: float = 0.5, *,
              old_logp: Optional[torch.Tensor] = None, algo: str = "gcpo", clipping: str = "none",
              eps_low: float = 0.2, eps_high: float = 0.2, detach_weight: bool = False,
              aggregation: str = "token_mean", max_tokens: float = 0.0,
              denominator: float = 0.0) -> Tuple[torch.Tensor, Dict[str, torch.Tensor]]:
    """The GCPO / GRPO policy loss (spec section 6) and its metrics.

    Per token, with ``A = advantages[r]``: ``rho = exp(logp - old_logp)`` (``old_logp=None``:
    on-policy, ``rho = 1`` with gradient 1); ``pg = -rho * A`` (``clipping="none"``) or the PPO
    form (``"ppo"``, ``eps_low``, ``eps_high``); ``w`` the dynamic weight, the prefix mean of
    ``exp(clip(logp - ref_logp, -weight_clip, weight_clip))`` (``algo="grpo"``: ``w = 1``);
    ``kl = exp(ref - logp) - (ref - logp) - 1``; ``l = pg * w + beta * kl``;
    ``loss = sum(mask * l) / Z`` with ``Z`` by ``aggregation``: ``"token_mean"`` (official, the
    mask's sum), ``"sequence_mean"``, ``"constant"`` (``R * max_tokens``, 0 means N), ``"external"``
    (``denominator``).

    - ``logp``, ``ref_logp``, ``old_logp``: float32 ``[R, N]``; ``advantages`` float32 ``[R]``;
      ``mask`` bool / uint8 ``[R, N]`` or ``None`` (every token). Each is made contiguous when
      it is not.
    - Returns ``(loss, stats)``: ``loss`` a 0-d float32 tensor, differentiable to ``logp``
      (including the path through the non-detached weight, as official, unless
      ``detach_weight``); ``stats`` a dict of tensors without gradient: the 0-d entries of
      ``LOSS_STATS`` and the per-token ``weight`` and ``kl`` ``[R, N]``. No gradient flows to
      ``ref_logp``, ``old_logp``, ``advantages``.
    """
    _check_devices("gcpo_loss", logp=logp, ref_logp=ref_logp, old_logp=old_logp, advantages=advantages, mask=mask)
    options = (str(algo), str(clipping), float(eps_low), float(eps_high), float(beta), float(weight_clip),
               bool(detach_weight), str(aggregation), float(max_tokens), float(denominator))
    contiguous = lambda t: None if t is None else t.contiguous()  # noqa: E731
    loss, stats, weight, kl = _GcpoLoss.apply(logp.contiguous(), contiguous(ref_logp), contiguous(old_logp),
                                              contiguous(advantages), contiguous(mask), options)
    out = {name: stats[i] for i, name in enumerate(LOSS_STATS)}
    out["weight"] = weight
    out["kl"] = kl
    return loss, out
from . import official  # noqa: E402,F401  (drop-ins for the official trainer: gcpo.official)
