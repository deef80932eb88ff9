// gcpo/advantages.hpp - group-normalised advantages (spec section 4).
#pragma once

#include "detail/validate.hpp"
#include "status.hpp"
#include "tensor_view.hpp"

namespace gcpo {

/// How the group's spread scales the advantage.
enum class advantage_std {
  unbiased,  ///< divide by (std over G - 1) + eps: the official GRPO/GCPO
  biased,    ///< divide by (std over G) + eps
  none,      ///< no scaling: A = reward - mean (Dr. GRPO)
};

/// Options of `group_advantages`.
struct advantage_options {
  std::int64_t group = 0;                    ///< G >= 1 (>= 2 for unbiased); R a multiple of G
  advantage_std std = advantage_std::unbiased;
  float eps = 1e-4f;                         ///< added to the std; finite, >= 0
};

namespace detail {

inline status validate_group_advantages(const_tensor_view rewards, const_tensor_view advantages,
                                        const advantage_options& opt, memory_space space) noexcept {
  GCPO_TRY(check_rank(rewards, "rewards", 1, "[R]"));
  GCPO_TRY(check_space(rewards, "rewards", space));
  GCPO_TRY(check_dtype(rewards, "rewards", {dtype::float32}));
  GCPO_TRY(check_contiguous(rewards, "rewards"));
  const std::int64_t R = rewards.shape[0];
  GCPO_TRY(check_rank(advantages, "advantages", 1, "[R]"));
  GCPO_TRY(check_space(advantages, "advantages", space));
  GCPO_TRY(check_dtype(advantages, "advantages", {dtype::float32}));
  GCPO_TRY(check_extent(advantages, "advantages", 0, R, "`rewards.shape[0]`"));
  GCPO_TRY(check_contiguous(advantages, "advantages"));
  GCPO_TRY(check_no_overlap_unless_exact(advantages, "advantages", rewards, "rewards", advantages.data == rewards.data));
  GCPO_TRY(check_enum(opt.std, 3, "options.std", "gcpo::advantage_std"));
  const std::int64_t min_group = opt.std == advantage_std::unbiased ? 2 : 1;
  if (opt.group < min_group)
    return status::error(status_code::invalid_argument, "`options.group` (%lld) must be at least %lld%s",
                         static_cast<long long>(opt.group), static_cast<long long>(min_group),
                         min_group == 2 ? " for the unbiased std" : "");
  if (R % opt.group != 0)
    return status::error(status_code::invalid_argument, "`rewards.shape[0]` (R = %lld) must be a multiple of `options.group` (%lld)",
                         static_cast<long long>(R), static_cast<long long>(opt.group));
  if (!(opt.eps >= 0.0f) || !std::isfinite(opt.eps))
    return status::error(status_code::invalid_argument, "`options.eps` (%g) must be finite and >= 0",
                         static_cast<double>(opt.eps));
  return ok();
}

}  // namespace detail

namespace host {

/// `advantages[r] = (rewards[r] - mean_g) / (std_g + eps)` over the group of r (rollouts
/// `p*G .. p*G + G - 1`), std per `options.std`; mean and std are accumulated in double.
/// Equal rewards in a group give 0. `rewards`, `advantages`: `[R]` float32 contiguous;
/// `advantages` overwritten, may be exactly `rewards` (in place). NaN rewards make their group NaN.
inline status group_advantages(const_tensor_view rewards, tensor_view advantages,
                               const advantage_options& options) noexcept {
  GCPO_TRY(detail::validate_group_advantages(rewards, advantages, options, memory_space::host));
  const std::int64_t R = rewards.shape[0], G = options.group;
  const float* in = rewards.as<const float>();
  float* out = advantages.as<float>();
  for (std::int64_t p = 0; p < R / G; ++p) {
    double mean = 0.0;
    for (std::int64_t g = 0; g < G; ++g) mean += in[p * G + g];
    mean /= static_cast<double>(G);
    double scale = 1.0;
    if (options.std != advantage_std::none) {
      double ss = 0.0;
      for (std::int64_t g = 0; g < G; ++g) {
        const double d = in[p * G + g] - mean;
        ss += d * d;
      }
      const double var = ss / static_cast<double>(options.std == advantage_std::unbiased ? G - 1 : G);
      const double den = std::sqrt(var) + static_cast<double>(options.eps);
      // den is 0 only for equal rewards with eps = 0: every deviation is 0, and so is A (not 0/0).
      scale = den > 0.0 ? 1.0 / den : 0.0;
    }
    for (std::int64_t g = 0; g < G; ++g) out[p * G + g] = static_cast<float>((in[p * G + g] - mean) * scale);
  }
  return ok();
}

}  // namespace host
}  // namespace gcpo
