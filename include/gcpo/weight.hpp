// gcpo/weight.hpp - the dynamic advantage weight (spec section 5).
#pragma once

#include <cmath>

#include "config.hpp"
#include "detail/validate.hpp"
#include "status.hpp"
#include "tensor_view.hpp"

namespace gcpo {

/// Options of `advantage_weight` (the loss carries the same fields in `loss_options`).
struct weight_options {
  /// Clip c of the log-ratio to the reference: exp(clip(lp - ref, -c, c)); finite, >= 0.
  float clip = 0.5f;
};

namespace detail {

/// One term of the running mean: exp(clip(lp - ref, -c, c)), and whether the clamp passes the
/// gradient (closed interval, as torch.clamp).
struct weight_term {
  float value;
  bool passes;
};

GCPO_HOST_DEVICE inline weight_term clipped_ratio_term(float lp, float ref, float c) noexcept {
  const float d = lp - ref;
  const float cl = d < -c ? -c : (d > c ? c : d);
  const bool nan = d != d;
  return weight_term{nan ? d : std::exp(cl), !(d < -c) && !(d > c) && !nan};
}

inline status check_token_map(const_tensor_view v, const char* name, std::int64_t R, std::int64_t N,
                              memory_space space, const char* r_name) noexcept {
  GCPO_TRY(check_rank(v, name, 2, "[R, N]"));
  GCPO_TRY(check_space(v, name, space));
  GCPO_TRY(check_dtype(v, name, {dtype::float32}));
  GCPO_TRY(check_extent(v, name, 0, R, r_name));
  GCPO_TRY(check_extent(v, name, 1, N, "N"));
  GCPO_TRY(check_contiguous(v, name));
  return ok();
}

inline status check_weight_clip(float clip, const char* name) noexcept {
  if (!(clip >= 0.0f) || !std::isfinite(clip))
    return status::error(status_code::invalid_argument, "`%s` (%g) must be finite and >= 0", name,
                         static_cast<double>(clip));
  return ok();
}

inline status validate_advantage_weight(const_tensor_view logp, const_tensor_view ref_logp, const_tensor_view weight,
                                        const weight_options& opt, memory_space space) noexcept {
  GCPO_TRY(check_rank(logp, "logp", 2, "[R, N]"));
  const std::int64_t R = logp.shape[0], N = logp.shape[1];
  GCPO_TRY(check_token_map(logp, "logp", R, N, space, "`logp.shape[0]`"));
  GCPO_TRY(check_token_map(ref_logp, "ref_logp", R, N, space, "`logp.shape[0]`"));
  GCPO_TRY(check_token_map(weight, "weight", R, N, space, "`logp.shape[0]`"));
  GCPO_TRY(check_no_overlap(weight, "weight", logp, "logp"));
  GCPO_TRY(check_no_overlap(weight, "weight", ref_logp, "ref_logp"));
  GCPO_TRY(check_weight_clip(opt.clip, "options.clip"));
  return ok();
}

}  // namespace detail

namespace host {

/// `weight[r, t] = (1 / (t + 1)) * sum_{j <= t} exp(clip(logp[r, j] - ref_logp[r, j], -c, c))`,
/// a prefix mean along each rollout over all positions (float32 running sum, in order).
/// `logp`, `ref_logp`, `weight`: `[R, N]` float32 contiguous; `weight` overwritten, shall not
/// overlap the inputs. NaN in position j makes every weight from j on NaN.
inline status advantage_weight(const_tensor_view logp, const_tensor_view ref_logp, tensor_view weight,
                               const weight_options& options = {}) noexcept {
  GCPO_TRY(detail::validate_advantage_weight(logp, ref_logp, weight, options, memory_space::host));
  const std::int64_t R = logp.shape[0], N = logp.shape[1];
  const float* lp = logp.as<const float>();
  const float* rf = ref_logp.as<const float>();
  float* w = weight.as<float>();
  for (std::int64_t r = 0; r < R; ++r) {
    float run = 0.0f;
    for (std::int64_t t = 0; t < N; ++t) {
      run += detail::clipped_ratio_term(lp[r * N + t], rf[r * N + t], options.clip).value;
      w[r * N + t] = run / static_cast<float>(t + 1);
    }
  }
  return ok();
}

}  // namespace host
}  // namespace gcpo
