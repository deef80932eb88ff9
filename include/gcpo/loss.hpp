// gcpo/loss.hpp - the GCPO / GRPO policy loss, its metrics and its backward (spec section 6).
//
// Shapes: `R` rollouts, `N` tokens. Per token, with A = advantages[r], w the dynamic weight:
//   rho = exp(lp - old)          (old absent: on-policy, old = stop_gradient(lp), rho = 1)
//   pg  = -rho * A               (clipping none, official Janus)
//   pg  = -min(rho * A, clip(rho, 1 - eps_low, 1 + eps_high) * A)   (clipping ppo)
//   kl  = exp(ref - lp) - (ref - lp) - 1                             (k3)
//   l   = pg * w + beta * kl     (GRPO: w = 1)
//   L   = sum(m * l) / Z         (Z by aggregation; m the mask)
#pragma once

#include <cmath>

#include "config.hpp"
#include "detail/validate.hpp"
#include "status.hpp"
#include "tensor_view.hpp"
#include "weight.hpp"

namespace gcpo {

/// GCPO weighs the policy term by the dynamic weight; GRPO does not (w = 1).
enum class algorithm { gcpo, grpo };

/// Ratio clipping of the policy term.
enum class ratio_clipping {
  none,  ///< pg = -rho * A (official Janus)
  ppo,   ///< pg = -min(rho * A, clip(rho, 1 - eps_low, 1 + eps_high) * A) (official LlamaGen)
};

/// How the masked sum is normalised.
enum class loss_aggregation {
  token_mean,     ///< Z = sum of the mask over the whole batch (official)
  sequence_mean,  ///< mean over rollouts of each rollout's masked token mean
  constant,       ///< Z = R * max_tokens (Dr. GRPO; max_tokens 0 means N)
  external,       ///< Z = `denominator` (e.g. a data-parallel all-reduced token count)
};

/// Options of `gcpo_loss_forward` / `gcpo_loss_backward` (shared by both twins).
struct loss_options {
  algorithm algo = algorithm::gcpo;
  ratio_clipping clipping = ratio_clipping::none;
  float eps_low = 0.2f;    ///< PPO lower clip, in [0, 1)
  float eps_high = 0.2f;   ///< PPO upper clip, >= 0
  float beta = 0.01f;      ///< KL coefficient (official Janus run: 0.01), finite >= 0
  float weight_clip = 0.5f;  ///< c of the dynamic weight, finite >= 0
  bool detach_weight = false;  ///< true: no gradient through the weight (the paper's wording)
  loss_aggregation aggregation = loss_aggregation::token_mean;
  double max_tokens = 0.0;   ///< for `constant`: tokens per rollout, 0 = N
  double denominator = 0.0;  ///< for `external`: Z, > 0
};

/// Indices into the `stats` output of `gcpo_loss_forward` (float32 `[loss_stat_count]`).
enum loss_stat : int {
  loss_stat_loss = 0,       ///< L
  loss_stat_kl_mean,        ///< masked mean of kl (0 when the mask is empty)
  loss_stat_clip_fraction,  ///< masked fraction of tokens where the PPO clip is active
  loss_stat_weight_mean,    ///< masked mean of w (1 for GRPO)
  loss_stat_token_count,    ///< sum of the mask (exact below 2^24)
  loss_stat_denominator,    ///< Z actually used (R for sequence_mean)
  loss_stat_count
};

/// Inputs of the loss. `old_logp` and `mask` are optional (absent views).
struct loss_inputs {
  const_tensor_view logp;        ///< `[R, N]` float32: policy log-probs (token_stats.logprob)
  const_tensor_view ref_logp;    ///< `[R, N]` float32: reference-model log-probs
  const_tensor_view old_logp;    ///< `[R, N]` float32 sampling-policy log-probs, or absent (on-policy)
  const_tensor_view advantages;  ///< `[R]` float32 (group_advantages)
  const_tensor_view mask;        ///< `[R, N]` uint8 (critical tokens, AND validity), or absent (all)
};

/// Outputs of `gcpo_loss_forward`. Only `stats` is required.
struct loss_outputs {
  tensor_view stats;   ///< `[loss_stat_count]` float32, see `loss_stat`
  tensor_view weight;  ///< `[R, N]` float32 per-token w, or absent
  tensor_view kl;      ///< `[R, N]` float32 per-token kl, or absent
};

namespace detail {

inline status validate_loss_inputs(const loss_inputs& in, const loss_options& opt, memory_space space) noexcept {
  GCPO_TRY(check_rank(in.logp, "inputs.logp", 2, "[R, N]"));
  const std::int64_t R = in.logp.shape[0], N = in.logp.shape[1];
  const char* rn = "`inputs.logp.shape[0]`";
  GCPO_TRY(check_token_map(in.logp, "inputs.logp", R, N, space, rn));
  GCPO_TRY(check_token_map(in.ref_logp, "inputs.ref_logp", R, N, space, rn));
  if (in.old_logp.present()) GCPO_TRY(check_token_map(in.old_logp, "inputs.old_logp", R, N, space, rn));
  GCPO_TRY(check_rank(in.advantages, "inputs.advantages", 1, "[R]"));
  GCPO_TRY(check_space(in.advantages, "inputs.advantages", space));
  GCPO_TRY(check_dtype(in.advantages, "inputs.advantages", {dtype::float32}));
  GCPO_TRY(check_extent(in.advantages, "inputs.advantages", 0, R, rn));
  GCPO_TRY(check_contiguous(in.advantages, "inputs.advantages"));
  if (in.mask.present()) {
    GCPO_TRY(check_rank(in.mask, "inputs.mask", 2, "[R, N]"));
    GCPO_TRY(check_space(in.mask, "inputs.mask", space));
    GCPO_TRY(check_dtype(in.mask, "inputs.mask", {dtype::uint8}));
    GCPO_TRY(check_extent(in.mask, "inputs.mask", 0, R, rn));
    GCPO_TRY(check_extent(in.mask, "inputs.mask", 1, N, "N"));
    GCPO_TRY(check_contiguous(in.mask, "inputs.mask"));
  }
  GCPO_TRY(check_enum(opt.algo, 2, "options.algo", "gcpo::algorithm"));
  GCPO_TRY(check_enum(opt.clipping, 2, "options.clipping", "gcpo::ratio_clipping"));
  GCPO_TRY(check_enum(opt.aggregation, 4, "options.aggregation", "gcpo::loss_aggregation"));
  if (opt.clipping == ratio_clipping::ppo) {
    if (!(opt.eps_low >= 0.0f && opt.eps_low < 1.0f))
      return status::error(status_code::invalid_argument, "`options.eps_low` (%g) must be in [0, 1)",
                           static_cast<double>(opt.eps_low));
    if (!(opt.eps_high >= 0.0f) || !std::isfinite(opt.eps_high))
      return status::error(status_code::invalid_argument, "`options.eps_high` (%g) must be finite and >= 0",
                           static_cast<double>(opt.eps_high));
  }
  if (!(opt.beta >= 0.0f) || !std::isfinite(opt.beta))
    return status::error(status_code::invalid_argument, "`options.beta` (%g) must be finite and >= 0",
                         static_cast<double>(opt.beta));
  GCPO_TRY(check_weight_clip(opt.weight_clip, "options.weight_clip"));
  if (opt.aggregation == loss_aggregation::constant && !(opt.max_tokens >= 0.0 && std::isfinite(opt.max_tokens)))
    return status::error(status_code::invalid_argument, "`options.max_tokens` (%g) must be finite and >= 0 (0 means N)",
                         opt.max_tokens);
  if (opt.aggregation == loss_aggregation::external && !(opt.denominator > 0.0 && std::isfinite(opt.denominator)))
    return status::error(status_code::invalid_argument,
                         "`options.denominator` (%g) must be finite and > 0 with loss_aggregation::external",
                         opt.denominator);
  return ok();
}

inline status validate_loss_forward(const loss_inputs& in, const loss_outputs& out, const loss_options& opt,
                                    memory_space space) noexcept {
  GCPO_TRY(validate_loss_inputs(in, opt, space));
  const std::int64_t R = in.logp.shape[0], N = in.logp.shape[1];
  GCPO_TRY(check_rank(out.stats, "outputs.stats", 1, "[loss_stat_count]"));
  GCPO_TRY(check_space(out.stats, "outputs.stats", space));
  GCPO_TRY(check_dtype(out.stats, "outputs.stats", {dtype::float32}));
  GCPO_TRY(check_extent(out.stats, "outputs.stats", 0, loss_stat_count, "loss_stat_count"));
  GCPO_TRY(check_contiguous(out.stats, "outputs.stats"));
  if (out.weight.present()) GCPO_TRY(check_token_map(out.weight, "outputs.weight", R, N, space, "`inputs.logp.shape[0]`"));
  if (out.kl.present()) GCPO_TRY(check_token_map(out.kl, "outputs.kl", R, N, space, "`inputs.logp.shape[0]`"));
  const char* in_names[5] = {"inputs.logp", "inputs.ref_logp", "inputs.old_logp", "inputs.advantages", "inputs.mask"};
  const const_tensor_view ins[5] = {in.logp, in.ref_logp, in.old_logp, in.advantages, in.mask};
  const char* out_names[3] = {"outputs.stats", "outputs.weight", "outputs.kl"};
  const tensor_view outs[3] = {out.stats, out.weight, out.kl};
  for (int i = 0; i < 3; ++i) {
    for (int j = 0; j < 5; ++j) GCPO_TRY(check_no_overlap(outs[i], out_names[i], ins[j], in_names[j]));
    for (int j = 0; j < i; ++j) GCPO_TRY(check_no_overlap(outs[i], out_names[i], outs[j], out_names[j]));
  }
  return ok();
}

inline status validate_loss_backward(const loss_inputs& in, const_tensor_view grad_loss, const_tensor_view grad_logp,
                                     const loss_options& opt, memory_space space) noexcept {
  GCPO_TRY(validate_loss_inputs(in, opt, space));
  const std::int64_t R = in.logp.shape[0], N = in.logp.shape[1];
  if (grad_loss.present()) {
    GCPO_TRY(check_rank(grad_loss, "grad_loss", 1, "[1]"));
    GCPO_TRY(check_space(grad_loss, "grad_loss", space));
    GCPO_TRY(check_dtype(grad_loss, "grad_loss", {dtype::float32}));
    GCPO_TRY(check_extent(grad_loss, "grad_loss", 0, 1, "1"));
  }
  GCPO_TRY(check_token_map(grad_logp, "grad_logp", R, N, space, "`inputs.logp.shape[0]`"));
  const char* in_names[6] = {"inputs.logp", "inputs.ref_logp", "inputs.old_logp", "inputs.advantages", "inputs.mask",
                             "grad_loss"};
  const const_tensor_view ins[6] = {in.logp, in.ref_logp, in.old_logp, in.advantages, in.mask, grad_loss};
  for (int j = 0; j < 6; ++j) GCPO_TRY(check_no_overlap(grad_logp, "grad_logp", ins[j], in_names[j]));
  return ok();
}

/// gcpo_loss_forward_backward: each half's checks, and the gradient and `grad_loss` against the
/// forward's outputs (the CUDA twin computes both in one pass: no output may feed another).
inline status validate_loss_forward_backward(const loss_inputs& in, const loss_outputs& out, const_tensor_view grad_loss,
                                             const_tensor_view grad_logp, const loss_options& opt,
                                             memory_space space) noexcept {
  GCPO_TRY(validate_loss_forward(in, out, opt, space));
  GCPO_TRY(validate_loss_backward(in, grad_loss, grad_logp, opt, space));
  const char* out_names[3] = {"outputs.stats", "outputs.weight", "outputs.kl"};
  const tensor_view outs[3] = {out.stats, out.weight, out.kl};
  for (int i = 0; i < 3; ++i) {
    GCPO_TRY(check_no_overlap(grad_logp, "grad_logp", outs[i], out_names[i]));
    GCPO_TRY(check_no_overlap(outs[i], out_names[i], grad_loss, "grad_loss"));
  }
  return ok();
}

/// Value and derivative (w.r.t. lp, at fixed w) of the policy term, and whether the PPO clip
/// is active. Shared by the host and CUDA twins.
struct policy_term {
  float value;
  float dvalue;
  bool clipped;
};

GCPO_HOST_DEVICE inline policy_term policy_term_of(float lp, float old, bool has_old, float A,
                                                   const loss_options& opt) noexcept {
  const float rho = has_old ? std::exp(lp - old) : 1.0f;
  if (opt.clipping == ratio_clipping::none) return policy_term{-rho * A, -rho * A, false};
  const float lo = 1.0f - opt.eps_low, hi = 1.0f + opt.eps_high;
  const float rc = rho < lo ? lo : (rho > hi ? hi : rho);
  const float a = rho * A, b = rc * A;
  const bool in_bounds = rho >= lo && rho <= hi;
  // torch.min splits the gradient on ties; both branches then have the same gradient
  // unless the clamp is active, where A must be 0 for a tie.
  const bool clipped = b < a;
  return policy_term{-(clipped ? b : a), (!clipped || in_bounds) ? -rho * A : 0.0f, clipped};
}

/// k3 KL estimate and its derivative w.r.t. lp.
GCPO_HOST_DEVICE inline void kl_term(float lp, float ref, float& kl, float& dkl) noexcept {
  const float d = ref - lp;
  const float e = std::exp(d);
  kl = e - d - 1.0f;
  dkl = 1.0f - e;
}

}  // namespace detail

/// Workspace bytes the loss needs (CUDA, gcpo_loss_forward, gcpo_loss_backward and
/// gcpo_loss_forward_backward: 8 double partial sums per rollout; its contents on entry do not
/// matter; the host twin needs none). SIZE_MAX when the size does not fit in size_t; negative
/// extents count as 0.
inline std::size_t gcpo_loss_workspace_bytes(std::int64_t R, std::int64_t N) noexcept {
  (void)N;
  return detail::carved_bytes({detail::saturating_mul(detail::extent_size(R), 8 * sizeof(double))});
}

namespace detail {

/// The workspace of the CUDA loss forward / backward: large enough, in `space`, and its used
/// bytes overlap no input or output (`grad_loss`, `grad_logp` absent for the forward, `out`
/// null for the backward).
inline status check_loss_workspace(const loss_inputs& in, const loss_outputs* out, const_tensor_view grad_loss,
                                   const_tensor_view grad_logp, const workspace& ws, memory_space space) noexcept {
  const loss_outputs none{};
  const loss_outputs& o = out ? *out : none;
  return check_workspace(ws, gcpo_loss_workspace_bytes(in.logp.shape[0], in.logp.shape[1]), space,
                         "gcpo_loss_workspace_bytes(R, N)",
                         {{in.logp, "inputs.logp"}, {in.ref_logp, "inputs.ref_logp"}, {in.old_logp, "inputs.old_logp"},
                          {in.advantages, "inputs.advantages"}, {in.mask, "inputs.mask"}, {o.stats, "outputs.stats"},
                          {o.weight, "outputs.weight"}, {o.kl, "outputs.kl"}, {grad_loss, "grad_loss"},
                          {grad_logp, "grad_logp"}});
}

}  // namespace detail

namespace host {

/// Forward of the loss: `stats` (loss and metrics, see `loss_stat`) and optionally the
/// per-token weight and kl. Sums run in double, in order. An empty mask gives loss 0.
/// Outputs are overwritten and shall not overlap the inputs.
inline status gcpo_loss_forward(const loss_inputs& inputs, const loss_outputs& outputs,
                                const loss_options& options) noexcept;

/// Backward of the loss: `grad_logp[r, t] = grad_loss * dL/dlp[r, t]` for every token (dense),
/// including the path through the dynamic weight unless `options.detach_weight` (or GRPO):
/// `dL/dlp_u += e_u * [|lp_u - ref_u| <= c] * sum_{t >= u} m_t * pg_t / (Z * (t + 1))`.
/// `grad_loss` `[1]` float32 or absent (1). `grad_logp` `[R, N]` float32 contiguous is
/// **overwritten** (`=`), shall not overlap the inputs. Chain to the logits with
/// `token_stats_backward`.
inline status gcpo_loss_backward(const loss_inputs& inputs, const_tensor_view grad_loss, tensor_view grad_logp,
                                 const loss_options& options) noexcept;

/// Forward and backward of one step in one call, for a trainer that has `grad_loss` (or uses 1)
/// when it computes the loss: the same results as `gcpo_loss_forward(inputs, outputs, options)`
/// then `gcpo_loss_backward(inputs, grad_loss, grad_logp, options)` (host: exactly those two
/// calls). The CUDA twin reads the inputs once and counts the mask once for both: for N <= 1024,
/// two launches where the two calls take three (one more each when token_mean's mask has more
/// than 32768 bytes: it is then counted by a launch of its own). Besides both calls' preconditions,
/// `grad_logp` and `grad_loss` shall not overlap `outputs` (`status_code::aliasing`).
inline status gcpo_loss_forward_backward(const loss_inputs& inputs, const loss_outputs& outputs,
                                         const_tensor_view grad_loss, tensor_view grad_logp,
                                         const loss_options& options) noexcept;

}  // namespace host
}  // namespace gcpo

#include "detail/host/loss.hpp"
