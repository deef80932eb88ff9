// gcpo/detail/host/sampling.hpp - host twin of generation_step (see gcpo/sampling.hpp).
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <limits>

#include "../../sampling.hpp"
#include "../dispatch.hpp"
#include "cpu_dispatch.hpp"

namespace gcpo {
namespace detail {
namespace host_impl {

/// The canonical sum of repro_exp(x_v - mx) over the top-m prefix whose last candidate is
/// (thresh_x, thresh_i) (v is in it when x_v > thresh_x, or x_v == thresh_x and v <= thresh_i):
/// 256 lanes in index order, then a binary tree over the lanes (see gcpo/sampling.hpp). Compiled
/// for the translation unit's target and, where the CPU has them, with AVX2 and FMA (repro_exp's
/// explicit fmas in hardware, the same results; nothing here the compiler could contract).
#define GCPO_PREFIX_MASS(NAME, ATTR)                                                                          \
  ATTR GCPO_NOINLINE inline float NAME(const float* x, std::int64_t V, float mx, float thresh_x,              \
                                       std::int32_t thresh_i) noexcept {                                      \
    float lanes[sampling_sum_lanes];                                                                          \
    for (int j = 0; j < sampling_sum_lanes; ++j) {                                                            \
      float s = 0.0f;                                                                                         \
      for (std::int64_t v = j; v < V; v += sampling_sum_lanes) {                                              \
        const float xv = x[v];                                                                                \
        if (xv > thresh_x || (xv == thresh_x && v <= thresh_i)) s = s + repro_exp(xv - mx);                   \
      }                                                                                                       \
      lanes[j] = s;                                                                                           \
    }                                                                                                         \
    for (int h = sampling_sum_lanes / 2; h >= 1; h /= 2)                                                      \
      for (int j = 0; j < h; ++j) lanes[j] = lanes[j] + lanes[j + h];                                         \
    return lanes[0];                                                                                          \
  }
GCPO_PREFIX_MASS(prefix_mass_base, )
#if defined(GCPO_HOST_AVX2_DISPATCH)
GCPO_PREFIX_MASS(prefix_mass_fma, __attribute__((target("avx2,fma"))))
#endif
#undef GCPO_PREFIX_MASS

/// Order of candidates: larger x first, then lower index; NaN after every number.
struct logit_order {
  const float* x;
  bool operator()(std::int32_t a, std::int32_t b) const noexcept {
    const float xa = x[a], xb = x[b];
    const bool na = xa != xa, nb = xb != xb;
    if (na || nb) return (na == nb) ? a < b : nb;
    if (xa != xb) return xa > xb;
    return a < b;
  }
};

/// Membership of v in the kept set, from the last kept candidate in (x descending, index
/// ascending) order (the order is strict); everything when not filtering.
struct kept_set {
  bool filter;
  float last_x;
  std::int32_t last_i;
  bool operator()(const float* x, std::int64_t v) const noexcept {
    if (!filter) return true;
    const float xv = x[v];
    if (xv != xv) return last_x != last_x && v <= last_i;  // NaN ranks last
    if (last_x != last_x) return true;
    return xv > last_x || (xv == last_x && v <= last_i);
  }
};

/// The Gumbel-max scan of one row: the first kept v (ascending) with the largest key x_v + g_v,
/// computing the noise only for the entries that can reach `floor_key` (see generation_step).
/// Written once, compiled for the translation unit's target and, where the CPU has them, with
/// AVX2 and FMA: repro_log's explicit fmas then run in hardware instead of through libm's
/// software fma, with the same correctly rounded results, and the loop holds no a * b + c the
/// compiler could contract, so both clones draw the same token.
#define GCPO_GUMBEL_SCAN(NAME, ATTR)                                                                           \
  ATTR GCPO_NOINLINE inline std::int64_t NAME(const float* x, std::int64_t V, kept_set in_kept, float floor_key, \
                                              std::uint64_t seed, std::uint64_t step, std::uint32_t row) noexcept { \
    std::int64_t best = -1;                                                                                   \
    float best_key = -std::numeric_limits<float>::infinity();                                                 \
    std::int64_t block = -1;                                                                                  \
    philox_out words{};                                                                                       \
    for (std::int64_t v = 0; v < V; ++v) {                                                                    \
      if (!in_kept(x, v)) continue;                                                                           \
      if (best < 0) best = v;                                                                                 \
      if (x[v] + gumbel_noise_bound < floor_key) continue; /* cannot reach the floor */                       \
      if ((v >> 2) != block) {                                                                                \
        block = v >> 2;                                                                                       \
        words = gumbel_block(seed, step, row, static_cast<std::uint32_t>(block));                             \
      }                                                                                                       \
      const float key = x[v] + gumbel_of_bits(words.v[v & 3]);                                                \
      if (key > best_key) {                                                                                   \
        best_key = key;                                                                                       \
        best = v;                                                                                             \
      }                                                                                                       \
    }                                                                                                         \
    return best;                                                                                              \
  }
GCPO_GUMBEL_SCAN(gumbel_scan_base, )
#if defined(GCPO_HOST_AVX2_DISPATCH)
GCPO_GUMBEL_SCAN(gumbel_scan_fma, __attribute__((target("avx2,fma"))))
/// True when the CPU (and OS) support AVX2 and FMA.
inline bool host_has_avx2_fma() noexcept { return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma"); }
#endif
#undef GCPO_GUMBEL_SCAN

inline float prefix_mass(const float* x, std::int64_t V, float mx, float thresh_x, std::int32_t thresh_i) noexcept {
#if defined(GCPO_HOST_AVX2_DISPATCH)
  if (host_has_avx2_fma()) return prefix_mass_fma(x, V, mx, thresh_x, thresh_i);
#endif
  return prefix_mass_base(x, V, mx, thresh_x, thresh_i);
}

inline std::int64_t gumbel_scan(const float* x, std::int64_t V, kept_set in_kept, float floor_key, std::uint64_t seed,
                                std::uint64_t step, std::uint32_t row) noexcept {
#if defined(GCPO_HOST_AVX2_DISPATCH)
  if (host_has_avx2_fma()) return gumbel_scan_fma(x, V, in_kept, floor_key, seed, step, row);
#endif
  return gumbel_scan_base(x, V, in_kept, floor_key, seed, step, row);
}

}  // namespace host_impl
}  // namespace detail

namespace host {

inline status generation_step(const_tensor_view cond, const_tensor_view uncond, tensor_view tokens, tensor_view logprob,
                              tensor_view entropy, const sampling_options& opt, workspace ws) noexcept {
  GCPO_TRY(detail::validate_generation_step(cond, uncond, tokens, logprob, entropy, opt, memory_space::host));
  const std::int64_t R = cond.shape[0], V = cond.shape[1];
  GCPO_TRY(detail::check_generation_step_workspace(cond, uncond, tokens, logprob, entropy, ws, memory_space::host));
  GCPO_TRY(detail::check_generation_step_rows(cond, opt));
  detail::workspace_carver carve(ws);
  float* x = carve.take<float>(static_cast<std::size_t>(V));
  std::int32_t* order = carve.take<std::int32_t>(static_cast<std::size_t>(V));
  const bool has_uncond = uncond.present();
  const std::int64_t k = (opt.top_k > 0 && opt.top_k < V) ? opt.top_k : V;

  detail::dispatch_float(cond.type, [&](auto tag) {
    using T = decltype(tag);
    for (std::int64_t r = 0; r < R; ++r) {
      const T* c = cond.as<const T>() + r * cond.strides[0];
      const T* u = has_uncond ? uncond.as<const T>() + r * uncond.strides[0] : nullptr;
      for (std::int64_t v = 0; v < V; ++v)
        x[v] = detail::guided_logit(to_float(c[v]), u ? to_float(u[v]) : 0.0f, has_uncond, opt.cfg_scale,
                                    opt.temperature);
      // Kept set: the first `kept` entries of `order` once it is sorted (only when filtering).
      std::int64_t kept = V;
      const bool filter = k < V || opt.top_p < 1.0f;
      if (filter) {
        for (std::int64_t v = 0; v < V; ++v) order[v] = static_cast<std::int32_t>(v);
        detail::host_impl::logit_order cmp{x};
        if (k < V) std::nth_element(order, order + k, order + V, cmp);
        std::sort(order, order + k, cmp);
        kept = k;
        if (opt.top_p < 1.0f) {
          const float mx = x[order[0]];
          // Membership of the top-m prefix follows from its last element, as the order is strict.
          auto mass_of_prefix = [&](std::int64_t m) {
            return detail::host_impl::prefix_mass(x, V, mx, x[order[m - 1]], order[m - 1]);
          };
          const float total = mass_of_prefix(k);
          const float target = detail::fmaf_(opt.top_p, total, 0.0f);
          std::int64_t lo = 1, hi = k;  // smallest m with mass(m) >= target
          while (lo < hi) {
            const std::int64_t mid = lo + (hi - lo) / 2;
            if (mass_of_prefix(mid) >= target) hi = mid;
            else lo = mid + 1;
          }
          kept = lo;
        }
      }
      // Membership of v in the kept set, from the last kept candidate (order is strict).
      const detail::host_impl::kept_set kept_of{filter, filter ? x[order[kept - 1]] : 0.0f,
                                                filter ? order[kept - 1] : 0};
      auto in_kept = [&](std::int64_t v) { return kept_of(x, v); };
      // Gumbel-max draw over the kept set: the first kept v (ascending) with the largest key
      // x_v + g_v. The same token is found with noise for few entries: the key of the largest
      // kept logit is a floor `floor_key` for the winner's key, and an entry whose logit plus
      // the noise's upper bound stays below it can neither win nor tie (gumbel_noise_bound),
      // so it is passed over. Each Philox block serves its four entries.
      const auto row_ctr = static_cast<std::uint32_t>(opt.first_row + r);
      std::int64_t top = -1;  // the first kept entry with the largest logit (NaN: none)
      for (std::int64_t v = 0; v < V; ++v)
        if (in_kept(v) && x[v] == x[v] && (top < 0 || x[v] > x[top])) top = v;
      const float floor_key =
          top < 0 ? -std::numeric_limits<float>::infinity()
                  : x[top] + detail::gumbel_noise(opt.seed, opt.step, row_ctr, static_cast<std::uint32_t>(top));
      const std::int64_t best = detail::host_impl::gumbel_scan(x, V, kept_of, floor_key, opt.seed, opt.step, row_ctr);
      // Log-prob and entropy of the renormalised kept distribution (float32, ordinary exp/log).
      float mx = -std::numeric_limits<float>::infinity();
      bool nan = false;
      for (std::int64_t v = 0; v < V; ++v)
        if (in_kept(v)) {
          nan = nan || x[v] != x[v];
          mx = x[v] > mx ? x[v] : mx;
        }
      float lp = std::numeric_limits<float>::quiet_NaN(), ent = lp;
      if (!nan && mx > -std::numeric_limits<float>::infinity()) {
        float s = 0.0f, t = 0.0f;
        for (std::int64_t v = 0; v < V; ++v)
          if (in_kept(v) && x[v] > -std::numeric_limits<float>::infinity()) {
            const float d = x[v] - mx;
            const float e = std::exp(d);
            s += e;
            t += e * d;
          }
        const float log_s = std::log(s);
        lp = x[best] - mx - log_s;
        ent = log_s - t / s;
      }
      if (tokens.type == dtype::int32) tokens.as<std::int32_t>()[r] = static_cast<std::int32_t>(best);
      else tokens.as<std::int64_t>()[r] = best;
      if (logprob.present()) logprob.as<float>()[r] = lp;
      if (entropy.present()) entropy.as<float>()[r] = ent;
    }
  });
  return ok();
}

}  // namespace host
}  // namespace gcpo
