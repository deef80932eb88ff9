// gcpo/sampling.hpp - the fused generation step: classifier-free guidance, temperature,
// top-k / top-p, a counter-based draw, and the log-prob and entropy of the sampled-from
// distribution, for one decoding step of R rows (spec section 7).
//
// The draw is reproducible across host and device: with
//   x_v = fma(s, cond_v - uncond_v, uncond_v) / T        (x_v = cond_v / T without uncond)
// the token is the Gumbel-max `argmax_{v in K} x_v + g_v`, `g_v = -log(-log(u_v))`, where
// `u_v` comes from Philox-4x32-10 (key = seed; counter = {v / 4, first_row + row, step low,
// step high}, word v % 4) and `K` is the set kept by top-k / top-p. Every operation that decides the
// token is an IEEE-rounded add, fma or division, or `repro_exp` / `repro_log` (fma only), and
// ties go to the lower index, so the host and CUDA twins draw bit-identical tokens.
//
// Top-p keeps the smallest prefix of the tokens in (x descending, index ascending) order whose
// mass reaches `top_p` of the total, masses being sums of `repro_exp(x_v - max)` in a fixed
// order: lane j of 256 sums the v = j (mod 256) in increasing v, then lanes are added as a
// binary tree (lane j += lane j + h for h = 128, 64, ..., 1).
#pragma once

#include <cstdint>

#include "detail/math.hpp"
#include "detail/validate.hpp"
#include "status.hpp"
#include "tensor_view.hpp"

namespace gcpo {

/// Options of `generation_step` (shared by both twins).
struct sampling_options {
  float cfg_scale = 1.0f;    ///< s in uncond + s * (cond - uncond); used only with `uncond` (finite)
  float temperature = 1.0f;  ///< T > 0, finite
  std::int64_t top_k = 0;    ///< keep the k largest (0: all); 0 <= k
  float top_p = 1.0f;        ///< nucleus mass in (0, 1]; 1: off
  std::uint64_t seed = 0;    ///< Philox key
  std::uint64_t step = 0;    ///< decoding step (token position); part of the Philox counter
  /// Philox row counter of row 0: row r draws with counter row `first_row + r`, so a batch split
  /// across processes (each with its global first row) draws exactly what one process drawing
  /// every row would. first_row + R <= 2^32.
  std::uint64_t first_row = 0;
};

/// Lanes of the canonical (host = device) summation order of the top-p masses.
constexpr int sampling_sum_lanes = 256;

/// Workspace bytes `generation_step` needs for R rows of V logits (host and CUDA): two float
/// arrays of max(R, 1) * V (the host twin uses one row's worth; the CUDA twin keeps every row's
/// guided logits and their exp in it when top-k / top-p filter, and otherwise, where a row is
/// split over several blocks, each chunk's partial result and each row's arrival counter). Its
/// contents on entry do not matter.
/// SIZE_MAX when the size does not fit in size_t (the operator then returns
/// `invalid_argument`); negative extents count as 0.
inline std::size_t generation_step_workspace_bytes(std::int64_t R, std::int64_t V) noexcept {
  const std::size_t rv = detail::saturating_mul(R < 1 ? 1 : static_cast<std::size_t>(R), detail::extent_size(V));
  const std::size_t bytes = detail::saturating_mul(rv, sizeof(float));
  return detail::carved_bytes({bytes, bytes});
}

namespace detail {

/// The Philox row counter of every row fits in 32 bits: first_row + R <= 2^32. Checked after the
/// workspace (a batch too large for its workspace is refused for that first).
inline status check_generation_step_rows(const_tensor_view cond, const sampling_options& opt) noexcept {
  const std::int64_t R = cond.shape[0];
  if (opt.first_row > (std::uint64_t{1} << 32) || static_cast<std::uint64_t>(R) > (std::uint64_t{1} << 32) - opt.first_row)
    return status::error(status_code::invalid_argument,
                         "`options.first_row` (%llu) + rows (R = %lld) must be <= 2^32 (the Philox row counter)",
                         static_cast<unsigned long long>(opt.first_row), static_cast<long long>(R));
  return ok();
}

inline status validate_generation_step(const_tensor_view cond, const_tensor_view uncond, const_tensor_view tokens,
                                       const_tensor_view logprob, const_tensor_view entropy,
                                       const sampling_options& opt, memory_space space) noexcept {
  GCPO_TRY(check_rank(cond, "cond_logits", 2, "[R, V]"));
  GCPO_TRY(check_space(cond, "cond_logits", space));
  GCPO_TRY(check_dtype(cond, "cond_logits", {dtype::float32, dtype::bfloat16, dtype::float16}));
  GCPO_TRY(check_inner_contiguous(cond, "cond_logits"));
  GCPO_TRY(check_positive_strides(cond, "cond_logits"));
  const std::int64_t R = cond.shape[0], V = cond.shape[1];
  if (V < 1 || V > (std::int64_t{1} << 31) - 1)
    return status::error(status_code::invalid_argument, "`cond_logits.shape[1]` (V = %lld) must be in [1, 2^31)",
                         static_cast<long long>(V));
  if (uncond.present()) {
    GCPO_TRY(check_rank(uncond, "uncond_logits", 2, "[R, V]"));
    GCPO_TRY(check_space(uncond, "uncond_logits", space));
    if (uncond.type != cond.type)
      return status::error(status_code::unsupported_dtype, "`uncond_logits.dtype` (%s) must equal `cond_logits.dtype` (%s)",
                           to_string(uncond.type), to_string(cond.type));
    GCPO_TRY(check_extent(uncond, "uncond_logits", 0, R, "`cond_logits.shape[0]`"));
    GCPO_TRY(check_extent(uncond, "uncond_logits", 1, V, "`cond_logits.shape[1]`"));
    GCPO_TRY(check_inner_contiguous(uncond, "uncond_logits"));
    GCPO_TRY(check_positive_strides(uncond, "uncond_logits"));
  }
  GCPO_TRY(check_rank(tokens, "tokens", 1, "[R]"));
  GCPO_TRY(check_space(tokens, "tokens", space));
  GCPO_TRY(check_dtype(tokens, "tokens", {dtype::int32, dtype::int64}));
  GCPO_TRY(check_extent(tokens, "tokens", 0, R, "`cond_logits.shape[0]`"));
  GCPO_TRY(check_contiguous(tokens, "tokens"));
  const char* names[2] = {"logprob", "entropy"};
  const const_tensor_view outs[2] = {logprob, entropy};
  for (int i = 0; i < 2; ++i) {
    if (outs[i].absent()) continue;
    GCPO_TRY(check_rank(outs[i], names[i], 1, "[R]"));
    GCPO_TRY(check_space(outs[i], names[i], space));
    GCPO_TRY(check_dtype(outs[i], names[i], {dtype::float32}));
    GCPO_TRY(check_extent(outs[i], names[i], 0, R, "`cond_logits.shape[0]`"));
    GCPO_TRY(check_contiguous(outs[i], names[i]));
  }
  const char* all_names[5] = {"tokens", "logprob", "entropy", "cond_logits", "uncond_logits"};
  const const_tensor_view all[5] = {tokens, logprob, entropy, cond, uncond};
  for (int i = 0; i < 3; ++i)
    for (int j = i + 1; j < 5; ++j) GCPO_TRY(check_no_overlap(all[i], all_names[i], all[j], all_names[j]));
  if (!std::isfinite(opt.cfg_scale))
    return status::error(status_code::invalid_argument, "`options.cfg_scale` (%g) must be finite",
                         static_cast<double>(opt.cfg_scale));
  if (!(opt.temperature > 0.0f) || !std::isfinite(opt.temperature))
    return status::error(status_code::invalid_argument, "`options.temperature` (%g) must be finite and > 0",
                         static_cast<double>(opt.temperature));
  if (opt.top_k < 0)
    return status::error(status_code::invalid_argument, "`options.top_k` (%lld) must be >= 0 (0: no top-k)",
                         static_cast<long long>(opt.top_k));
  if (!(opt.top_p > 0.0f && opt.top_p <= 1.0f))
    return status::error(status_code::invalid_argument, "`options.top_p` (%g) must be in (0, 1]",
                         static_cast<double>(opt.top_p));
  return ok();
}

/// The workspace of `generation_step` (host and CUDA): large enough, in `space`, and its used
/// bytes overlap no input or output.
inline status check_generation_step_workspace(const_tensor_view cond, const_tensor_view uncond,
                                              const_tensor_view tokens, const_tensor_view logprob,
                                              const_tensor_view entropy, const workspace& ws,
                                              memory_space space) noexcept {
  return check_workspace(ws, generation_step_workspace_bytes(cond.shape[0], cond.shape[1]), space,
                         "generation_step_workspace_bytes(R, V)",
                         {{cond, "cond_logits"}, {uncond, "uncond_logits"}, {tokens, "tokens"}, {logprob, "logprob"},
                          {entropy, "entropy"}});
}

/// The guided, tempered logit of one entry (bit-identical on host and device).
GCPO_HOST_DEVICE GCPO_FORCEINLINE float guided_logit(float c, float u, bool has_uncond, float s, float T) noexcept {
  const float mixed = has_uncond ? fmaf_(s, c - u, u) : c;
#if defined(__CUDA_ARCH__)
  return __fdiv_rn(mixed, T);
#else
  return mixed / T;
#endif
}

/// The Philox block of entries 4q .. 4q + 3 of a row at a step (entry v uses word v % 4 of
/// block v / 4).
GCPO_HOST_DEVICE GCPO_FORCEINLINE philox_out gumbel_block(std::uint64_t seed, std::uint64_t step, std::uint32_t row,
                                                         std::uint32_t q) noexcept {
  return philox4x32_10(q, row, static_cast<std::uint32_t>(step), static_cast<std::uint32_t>(step >> 32),
                       static_cast<std::uint32_t>(seed), static_cast<std::uint32_t>(seed >> 32));
}

/// The Gumbel noise of a Philox word: -log(-log(u)), u = uniform_open01(bits).
GCPO_HOST_DEVICE GCPO_FORCEINLINE float gumbel_of_bits(std::uint32_t bits) noexcept {
  return -repro_log(-repro_log(uniform_open01(bits)));
}

/// The Gumbel noise of entry v of a row at a step (bit-identical on host and device).
GCPO_HOST_DEVICE GCPO_FORCEINLINE float gumbel_noise(std::uint64_t seed, std::uint64_t step, std::uint32_t row,
                                                     std::uint32_t v) noexcept {
  return gumbel_of_bits(gumbel_block(seed, step, row, v >> 2).v[v & 3u]);
}

/// A strict upper bound of every value gumbel_of_bits() can return: the largest u is
/// 1 - 2^-24, whose noise is -log(-log(1 - 2^-24)) = 16.636 (tests/test_sampling.cpp checks the
/// bound against all 2^23 values of u). An entry v with fl(x_v + bound) below the key of another
/// entry cannot be drawn (rounding is monotone), so its noise need not be computed.
constexpr float gumbel_noise_bound = 17.0f;

}  // namespace detail

namespace host {

/// One decoding step for R rows: mixes `cond_logits` and `uncond_logits` (CFG), applies the
/// temperature, top-k and top-p, draws a token per row (see the file comment: identical to
/// the CUDA twin for the same seed and step), and writes its log-prob and the entropy of the
/// distribution sampled from (the renormalised kept set).
///
/// - `cond_logits`, `uncond_logits` `[R, V]` float32 / bfloat16 / float16 (same dtype), rows
///   contiguous, may be strided; `uncond_logits` absent: no guidance.
/// - `tokens` `[R]` int32 / int64 (overwritten); `logprob`, `entropy` `[R]` float32 or absent.
/// - `ws`: `generation_step_workspace_bytes(R, V)` bytes of host memory, not overlapping any
///   input or output (checked).
/// - NaN keys never win; a row whose kept keys are all NaN or -inf draws its lowest kept
///   index. A NaN among a row's kept logits makes its log-prob and entropy NaN (check with
///   `count_nonfinite` first where that matters).
inline status generation_step(const_tensor_view cond_logits, const_tensor_view uncond_logits, tensor_view tokens,
                              tensor_view logprob, tensor_view entropy, const sampling_options& options,
                              workspace ws) noexcept;

}  // namespace host
}  // namespace gcpo

#include "detail/host/sampling.hpp"
