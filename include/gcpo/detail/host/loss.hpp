// gcpo/detail/host/loss.hpp - host twin of the loss (see gcpo/loss.hpp).
#pragma once

#include <cmath>
#include <cstdint>

#include "../../loss.hpp"

namespace gcpo {
namespace detail {
namespace host_impl {

/// Per-rollout mask counts, the total, and the factor 1/Z_r of every rollout.
struct loss_norm {
  double total = 0.0;      ///< sum of the mask
  double denominator = 0;  ///< the Z reported in the stats
};

inline double mask_count(const std::uint8_t* m, std::int64_t r, std::int64_t N) noexcept {
  if (!m) return static_cast<double>(N);
  std::int64_t c = 0;
  for (std::int64_t t = 0; t < N; ++t) c += m[r * N + t] ? 1 : 0;
  return static_cast<double>(c);
}

/// 1 / Z_r for rollout r (0 when Z_r is 0: an empty mask contributes nothing).
inline double row_factor(const loss_options& opt, std::int64_t R, std::int64_t N, double total, double row_count) noexcept {
  double Z = 0.0;
  switch (opt.aggregation) {
    case loss_aggregation::token_mean: Z = total; break;
    case loss_aggregation::sequence_mean: Z = static_cast<double>(R) * row_count; break;
    case loss_aggregation::constant: Z = static_cast<double>(R) * (opt.max_tokens > 0 ? opt.max_tokens : static_cast<double>(N)); break;
    case loss_aggregation::external: Z = opt.denominator; break;
  }
  return Z > 0.0 ? 1.0 / Z : 0.0;
}

inline double reported_denominator(const loss_options& opt, std::int64_t R, std::int64_t N, double total) noexcept {
  switch (opt.aggregation) {
    case loss_aggregation::token_mean: return total;
    case loss_aggregation::sequence_mean: return static_cast<double>(R);
    case loss_aggregation::constant: return static_cast<double>(R) * (opt.max_tokens > 0 ? opt.max_tokens : static_cast<double>(N));
    case loss_aggregation::external: return opt.denominator;
  }
  return 0.0;
}

}  // namespace host_impl
}  // namespace detail

namespace host {

inline status gcpo_loss_forward(const loss_inputs& in, const loss_outputs& out, const loss_options& opt) noexcept {
  GCPO_TRY(detail::validate_loss_forward(in, out, opt, memory_space::host));
  const std::int64_t R = in.logp.shape[0], N = in.logp.shape[1];
  const float* lp = in.logp.as<const float>();
  const float* rf = in.ref_logp.as<const float>();
  const float* old = in.old_logp.present() ? in.old_logp.as<const float>() : nullptr;
  const float* adv = in.advantages.as<const float>();
  const std::uint8_t* m = in.mask.present() ? in.mask.as<const std::uint8_t>() : nullptr;
  float* w_out = out.weight.present() ? out.weight.as<float>() : nullptr;
  float* kl_out = out.kl.present() ? out.kl.as<float>() : nullptr;
  const bool gcpo = opt.algo == algorithm::gcpo;

  double total = 0.0;
  for (std::int64_t r = 0; r < R; ++r) total += detail::host_impl::mask_count(m, r, N);
  double loss = 0.0, kl_sum = 0.0, clip_sum = 0.0, w_sum = 0.0;
  for (std::int64_t r = 0; r < R; ++r) {
    const double f = detail::host_impl::row_factor(opt, R, N, total, detail::host_impl::mask_count(m, r, N));
    float run = 0.0f;
    double row = 0.0;
    for (std::int64_t t = 0; t < N; ++t) {
      const std::int64_t i = r * N + t;
      float w = 1.0f;
      if (gcpo) {
        run += detail::clipped_ratio_term(lp[i], rf[i], opt.weight_clip).value;
        w = run / static_cast<float>(t + 1);
      }
      float kl, dkl;
      detail::kl_term(lp[i], rf[i], kl, dkl);
      if (w_out) w_out[i] = w;
      if (kl_out) kl_out[i] = kl;
      if (m && !m[i]) continue;
      const detail::policy_term pg = detail::policy_term_of(lp[i], old ? old[i] : 0.0f, old != nullptr, adv[r], opt);
      row += static_cast<double>(pg.value) * w + static_cast<double>(opt.beta) * kl;
      kl_sum += kl;
      clip_sum += pg.clipped ? 1.0 : 0.0;
      w_sum += w;
    }
    loss += row * f;
  }
  float* s = out.stats.as<float>();
  const double inv = total > 0 ? 1.0 / total : 0.0;
  s[loss_stat_loss] = static_cast<float>(loss);
  s[loss_stat_kl_mean] = static_cast<float>(kl_sum * inv);
  s[loss_stat_clip_fraction] = static_cast<float>(clip_sum * inv);
  s[loss_stat_weight_mean] = static_cast<float>(w_sum * inv);
  s[loss_stat_token_count] = static_cast<float>(total);
  s[loss_stat_denominator] = static_cast<float>(detail::host_impl::reported_denominator(opt, R, N, total));
  return ok();
}

inline status gcpo_loss_backward(const loss_inputs& in, const_tensor_view grad_loss, tensor_view grad_logp,
                                 const loss_options& opt) noexcept {
  GCPO_TRY(detail::validate_loss_backward(in, grad_loss, grad_logp, opt, memory_space::host));
  const std::int64_t R = in.logp.shape[0], N = in.logp.shape[1];
  const float* lp = in.logp.as<const float>();
  const float* rf = in.ref_logp.as<const float>();
  const float* old = in.old_logp.present() ? in.old_logp.as<const float>() : nullptr;
  const float* adv = in.advantages.as<const float>();
  const std::uint8_t* m = in.mask.present() ? in.mask.as<const std::uint8_t>() : nullptr;
  const double gl = grad_loss.present() ? static_cast<double>(grad_loss.as<const float>()[0]) : 1.0;
  float* g = grad_logp.as<float>();
  const bool gcpo = opt.algo == algorithm::gcpo;
  const bool through_weight = gcpo && !opt.detach_weight;

  double total = 0.0;
  for (std::int64_t r = 0; r < R; ++r) total += detail::host_impl::mask_count(m, r, N);
  for (std::int64_t r = 0; r < R; ++r) {
    const double f = detail::host_impl::row_factor(opt, R, N, total, detail::host_impl::mask_count(m, r, N));
    // Forward along t: the direct term, which needs the prefix-mean weight.
    float run = 0.0f;
    for (std::int64_t t = 0; t < N; ++t) {
      const std::int64_t i = r * N + t;
      float w = 1.0f;
      if (gcpo) {
        run += detail::clipped_ratio_term(lp[i], rf[i], opt.weight_clip).value;
        w = run / static_cast<float>(t + 1);
      }
      if (m && !m[i]) {
        g[i] = 0.0f;
        continue;
      }
      float kl, dkl;
      detail::kl_term(lp[i], rf[i], kl, dkl);
      const detail::policy_term pg = detail::policy_term_of(lp[i], old ? old[i] : 0.0f, old != nullptr, adv[r], opt);
      g[i] = static_cast<float>(gl * f * (static_cast<double>(pg.dvalue) * w + static_cast<double>(opt.beta) * dkl));
    }
    if (!through_weight) continue;
    // Backward along t: the suffix sum of m_t * pg_t / (t + 1) carries the path through w.
    double suffix = 0.0;
    for (std::int64_t t = N - 1; t >= 0; --t) {
      const std::int64_t i = r * N + t;
      if (!m || m[i]) {
        const detail::policy_term pg = detail::policy_term_of(lp[i], old ? old[i] : 0.0f, old != nullptr, adv[r], opt);
        suffix += static_cast<double>(pg.value) / static_cast<double>(t + 1);
      }
      const detail::weight_term e = detail::clipped_ratio_term(lp[i], rf[i], opt.weight_clip);
      if (e.passes) g[i] = static_cast<float>(g[i] + gl * f * e.value * suffix);
    }
  }
  return ok();
}

inline status gcpo_loss_forward_backward(const loss_inputs& in, const loss_outputs& out, const_tensor_view grad_loss,
                                         tensor_view grad_logp, const loss_options& opt) noexcept {
  GCPO_TRY(detail::validate_loss_forward_backward(in, out, grad_loss, grad_logp, opt, memory_space::host));
  GCPO_TRY(gcpo_loss_forward(in, out, opt));
  return gcpo_loss_backward(in, grad_loss, grad_logp, opt);
}

}  // namespace host
}  // namespace gcpo
