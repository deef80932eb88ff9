// gcpo/weight.hpp - the dynamic advantage weight (spec section 5).
#pragma once

#include <cmath>
#include <cstdint>

#include "config.hpp"
#include "detail/host/cpu_dispatch.hpp"
#include "detail/math.hpp"
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

/// The clip bound up to which the host computes exp with exp_nonpos (plain arithmetic that
/// vectorises, about 2e-7 relative) rather than libm's expf; the CUDA twin uses expf throughout.
constexpr float weight_fast_exp_clip = 87.0f;

/// exp(clip(d, -c, c)) on the host for c <= weight_fast_exp_clip: exp_nonpos, NaN for NaN.
GCPO_HOST_DEVICE GCPO_FORCEINLINE float clipped_exp_fast(float d, float c) noexcept {
  // two plain selects (a NaN fails both comparisons and passes through): vectorisable
  float cl = d < -c ? -c : d;
  cl = cl > c ? c : cl;
  return exp_nonpos(cl);
}

namespace host_impl {
/// advantage_weight's host loop for c <= weight_fast_exp_clip, in three passes over `w`, each
/// value computed as a one-pass loop would (the same terms, each row's sum in position order,
/// the same division): the terms (vectorised), the running sums of 8 rows side by side (the
/// rows' dependent adds overlap instead of waiting on each other), the divisions
/// (vectorised). Compiled out of line for the translation unit's target and, where
/// cpu_dispatch.hpp allows, for AVX2 (no FMA, so both clones round identically), chosen at run
/// time. `lp`, `rf`, `w` do not overlap (validated).
#if defined(__GNUC__) && !defined(__clang__) && !defined(__CUDACC__)
#define GCPO_UNROLL8 _Pragma("GCC unroll 8")
#else
#define GCPO_UNROLL8
#endif
#define GCPO_WEIGHT_ROWS(NAME, ATTR)                                                                            \
  ATTR GCPO_NOINLINE inline void NAME(const float* GCPO_RESTRICT lp, const float* GCPO_RESTRICT rf,           \
                                      float* GCPO_RESTRICT w, std::int64_t R, std::int64_t N, float c) noexcept { \
    for (std::int64_t i = 0; i < R * N; ++i) w[i] = clipped_exp_fast(lp[i] - rf[i], c);                   \
    std::int64_t r0 = 0;                                                                                    \
    for (; r0 + 8 <= R; r0 += 8) { /* 8 rows side by side, the sums in registers */                         \
      float run[8] = {};                                                                                    \
      float* base = w + r0 * N;                                                                             \
      for (std::int64_t t = 0; t < N; ++t) {                                                                \
        GCPO_UNROLL8 for (int k = 0; k < 8; ++k) {                                                          \
          run[k] += base[k * N + t];                                                                        \
          base[k * N + t] = run[k];                                                                         \
        }                                                                                                   \
      }                                                                                                     \
    }                                                                                                       \
    for (; r0 < R; ++r0) {                                                                                  \
      float run = 0.0f;                                                                                     \
      for (std::int64_t t = 0; t < N; ++t) w[r0 * N + t] = run += w[r0 * N + t];                            \
    }                                                                                                       \
    /* (t + 1) converted from 32 bits: a 64-bit integer has no vector conversion before AVX-512 */         \
    const std::int32_t n32 = N < INT32_MAX ? static_cast<std::int32_t>(N) : INT32_MAX - 1;                    \
    for (std::int64_t r = 0; r < R; ++r) {                                                                  \
      float* row = w + r * N;                                                                               \
      for (std::int32_t t = 0; t < n32; ++t) row[t] = row[t] / static_cast<float>(t + 1);                   \
      for (std::int64_t t = n32; t < N; ++t) row[t] = row[t] / static_cast<float>(t + 1);                   \
    }                                                                                                       \
  }
GCPO_WEIGHT_ROWS(weight_rows_base, )
#if defined(GCPO_HOST_AVX2_DISPATCH)
GCPO_WEIGHT_ROWS(weight_rows_avx2, GCPO_HOST_TARGET_AVX2)
#endif
#undef GCPO_WEIGHT_ROWS
#undef GCPO_UNROLL8
inline void weight_rows(const float* lp, const float* rf, float* w, std::int64_t R, std::int64_t N, float c) noexcept {
#if defined(GCPO_HOST_AVX2_DISPATCH)
  if (host_has_avx2()) return weight_rows_avx2(lp, rf, w, R, N, c);
#endif
  weight_rows_base(lp, rf, w, R, N, c);
}
}  // namespace host_impl

GCPO_HOST_DEVICE inline weight_term clipped_ratio_term(float lp, float ref, float c) noexcept {
  const float d = lp - ref;
  const float cl = d < -c ? -c : (d > c ? c : d);
  const bool nan = d != d;
#if defined(__CUDA_ARCH__)
  const float e = std::exp(cl);
#else
  const float e = c <= weight_fast_exp_clip ? clipped_exp_fast(d, c) : std::exp(cl);
#endif
  return weight_term{nan ? d : e, !(d < -c) && !(d > c) && !nan};
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
  if (options.clip <= detail::weight_fast_exp_clip) {
    detail::host_impl::weight_rows(lp, rf, w, R, N, options.clip);
    return ok();
  }
  for (std::int64_t r = 0; r < R; ++r) {  // a clip past exp_nonpos's range: libm's expf
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
