// gcpo/detail/host/token_stats.hpp - host twin of token_stats (see gcpo/token_stats.hpp).
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>

#include "../../token_stats.hpp"
#include "../dispatch.hpp"
#include "../math.hpp"
#include "cpu_dispatch.hpp"

namespace gcpo {
namespace detail {
namespace host_impl {

// The two hot loops (the statistics of each row of logits, and the backward to the logits) are
// written so that GCC and Clang vectorise them at plain -O2 / -O3 without -ffast-math:
// - rows are processed in chunks of `stats_chunk` elements staged in a float buffer in L1, each
//   chunk in two passes with fixed trip counts (widen + scale + max; then exp + accumulate);
// - `stats_lanes` independent partial sums, so no floating-point reduction has to be reordered;
// - clamps are written as `a > b ? a : b` (maxps) against a bound the optimiser cannot see as a
//   constant (otherwise it specialises exp(-87) on one branch and the loop keeps a branch);
// - 16-bit loads and stores are widened / narrowed with integer operations only.
// The arithmetic is the same on every path, so results do not depend on the vector width: on
// x86-64 with GCC or Clang, when the translation unit is not already compiled for AVX2, the same
// loops are also compiled for AVX2 (function-level target attribute, no FMA contraction possible)
// and chosen at run time when the CPU has AVX2; results are bitwise identical either way (up to
// the sign of a NaN output with Clang, whose default -ffp-contract=on treats the two differently).
// The code stays right under -ffast-math for finite inputs (no infinity sentinels in control
// flow; exp_nonpos takes n from bits); NaN / inf handling then follows the user's promise.


// With GCC or Clang both passes over a full chunk are written with vector extensions
// (`vector_size`), W floats wide: 8 in the AVX2 clone, 4 otherwise. GCC does not vectorise the
// scalar max reduction of pass 1 at all without -ffast-math, and keeps the 16 lane sums of pass 2
// in memory, where the store-to-load latency of the dependency chain bounds the loop; the vector
// code (about 1.4x faster at Janus shapes) keeps the 16 lanes in registers for the whole chunk
// and does the same operations on the same lanes in the same order, so every path, scalar
// fallback included, gives the same bits. Vectors never cross a function boundary by value (that
// would change the ABI in a translation unit compiled without AVX): the helpers take references
// and are always inlined. `GCPO_NO_HOST_VECTOR_EXT` selects the scalar loops.
#if !defined(GCPO_NO_HOST_VECTOR_EXT) && !defined(__CUDACC__) && (defined(__GNUC__) || defined(__clang__))
#define GCPO_HOST_VECTOR_EXT 1
#endif

/// Per-row state of the one-pass softmax statistics: m = running max; lane l sums
/// s = sum exp(x - m) and t = sum exp(x - m) * (x - m) over the elements v = l (mod 16).
constexpr int stats_lanes = 16;
constexpr int stats_chunk = 256;

struct row_stats {
  float lse;      ///< log sum exp(x)
  float entropy;  ///< lse - sum p x
  float max = std::numeric_limits<float>::quiet_NaN();      ///< m = max x (NaN when the row has none)
  float log_sum = std::numeric_limits<float>::quiet_NaN();  ///< log sum exp(x - m), so lse = m + log_sum
};

/// Exact widening to float with no branch (the library's to_float for float16 loops over
/// subnormals, which keeps a loop from vectorising). Same values as to_float.
GCPO_FORCEINLINE float widen(float x) noexcept { return x; }
GCPO_FORCEINLINE float widen(bfloat16 x) noexcept { return x.to_float(); }
GCPO_FORCEINLINE float widen(float16 h) noexcept {
  const std::uint32_t u = h.bits;
  const std::uint32_t em = (u & 0x7fffu) << 13;  // exponent and mantissa at float's position
  const std::uint32_t e = em & 0x0f800000u;
  const std::uint32_t normal = em + (112u << 23);   // rebias 15 -> 127
  const std::uint32_t special = em + (224u << 23);  // inf / NaN: exponent 255, payload kept
  // subnormal (and zero): 2^-14 * (1 + m / 1024) - 2^-14 = m * 2^-24, exact and never subnormal
  const std::uint32_t sub = float_to_bits(bits_to_float(em + (113u << 23)) - 6.103515625e-05f);
  // masks rather than ?: so that the subtraction is not sunk into a branch
  const std::uint32_t is_special = 0u - static_cast<std::uint32_t>(e == 0x0f800000u);
  const std::uint32_t is_sub = 0u - static_cast<std::uint32_t>(e == 0u);
  const std::uint32_t mag = (special & is_special) | (sub & is_sub) | (normal & ~(is_special | is_sub));
  return bits_to_float(mag | ((u & 0x8000u) << 16));
}

/// Narrowing store, round to nearest even; bfloat16 without a branch (same bits as from_float).
template <class G>
GCPO_FORCEINLINE G narrow(float x) noexcept {
  return from_float<G>(x);
}
template <>
GCPO_FORCEINLINE bfloat16 narrow<bfloat16>(float x) noexcept {
  const std::uint32_t u = float_to_bits(x);
  const std::uint32_t rounded = (u + 0x7fffu + ((u >> 16) & 1u)) >> 16;
  const std::uint32_t quiet = (u >> 16) | 0x40u;
  return bfloat16{static_cast<std::uint16_t>((u & 0x7fffffffu) > 0x7f800000u ? quiet : rounded)};
}
template <>
GCPO_FORCEINLINE float16 narrow<float16>(float x) noexcept {
  const std::uint32_t u = float_to_bits(x);
  const std::uint32_t a = u & 0x7fffffffu;
  // normal result: rebias and round the 13 dropped bits to nearest even (a carry into the
  // exponent gives the next binade, or infinity from 65520 on)
  const std::uint32_t normal = (a + 0xC8000FFFu + ((a >> 13) & 1u)) >> 13;  // 0xC8000FFF = (15 - 127) << 23 + 0xfff
  // subnormal or zero result (|x| < 2^-14): adding 0.5 rounds to the 2^-24 grid in the low bits
  const std::uint32_t sub = float_to_bits(bits_to_float(a) + 0.5f) - 0x3F000000u;
  const std::uint32_t special = a > 0x7f800000u ? 0x7e00u : 0x7c00u;  // NaN -> quiet NaN, else inf
  const std::uint32_t is_special = 0u - static_cast<std::uint32_t>(a >= 0x47800000u);  // |x| >= 65536
  const std::uint32_t is_sub = 0u - static_cast<std::uint32_t>(a < 0x38800000u);       // |x| < 2^-14
  const std::uint32_t h = (special & is_special) | (sub & is_sub) | (normal & ~(is_special | is_sub));
  return float16{static_cast<std::uint16_t>(h | ((u >> 16) & 0x8000u))};
}

#if defined(GCPO_HOST_VECTOR_EXT)
/// W floats, W 32-bit unsigned and signed integers, as GCC/Clang vector extensions.
template <int W>
struct vec {
  typedef float f __attribute__((vector_size(4 * W)));
  typedef std::uint32_t u __attribute__((vector_size(4 * W)));
  typedef std::int32_t i __attribute__((vector_size(4 * W)));
};

/// Lane-wise `exp_nonpos` (math.hpp): the same operations in the same order, so every lane
/// rounds exactly as the scalar function does (a copy that must stay in step with it:
/// tests/test_host_paths.cpp compares this path with the scalar one bit for bit).
template <int W>
GCPO_FORCEINLINE void exp_nonpos_lanes(const typename vec<W>::f& d, typename vec<W>::f& out) noexcept {
  using F = typename vec<W>::f;
  using U = typename vec<W>::u;
  using I = typename vec<W>::i;
  const F y = d * 1.44269504088896341f + 12582912.0f;
  U nbits;
  std::memcpy(&nbits, &y, sizeof nbits);
  nbits -= 0x4B400000u;
  const F n = __builtin_convertvector((I)nbits, F);  // vector cast: same bits
  const F r = (d - n * 0.693359375f) - n * -2.12194440e-4f;
  F p = r * 1.9875691500e-4f + 1.3981999507e-3f;
  p = p * r + 8.3334519073e-3f;
  p = p * r + 4.1665795894e-2f;
  p = p * r + 1.6666665459e-1f;
  p = p * r + 5.0000001201e-1f;
  p = p * r * r + r + 1.0f;
  const U scale_bits = (nbits + 127u) << 23;
  F scale;
  std::memcpy(&scale, &scale_bits, sizeof scale);
  out = p * scale;
}

/// Pass 1 of a full chunk (`stats_chunk` staged floats x): mx[l] = the largest non-NaN element
/// j = l (mod stats_lanes), -inf if none, scanning each lane in order as the scalar loop does
/// (`v > m ? v : m`, which skips NaN and keeps the first of equal values).
template <int W>
GCPO_FORCEINLINE void chunk_max(const float* x, float* mx) noexcept {
  using F = typename vec<W>::f;
  constexpr int K = stats_lanes / W;
  F mv[K];
  for (int k = 0; k < K; ++k) mv[k] = F{} - std::numeric_limits<float>::infinity();
  for (int j = 0; j < stats_chunk; j += stats_lanes)
    for (int k = 0; k < K; ++k) {
      F v;
      std::memcpy(&v, x + j + k * W, sizeof(F));
      mv[k] = v > mv[k] ? v : mv[k];
    }
  for (int k = 0; k < K; ++k) std::memcpy(mx + k * W, &mv[k], sizeof(F));
}

/// Pass 2 of a full chunk (`stats_chunk` staged floats x): lane l of the sums s, t gets
/// exp(d) and exp(d) * d for d = max(lo, x - m) of the elements j = l (mod stats_lanes).
template <int W>
GCPO_FORCEINLINE void accumulate_chunk(const float* x, float m, float lo, float* s, float* t) noexcept {
  using F = typename vec<W>::f;
  constexpr int K = stats_lanes / W;  // vectors per group of 16 lanes
  F sv[K], tv[K];
  for (int k = 0; k < K; ++k) {
    std::memcpy(&sv[k], s + k * W, sizeof(F));
    std::memcpy(&tv[k], t + k * W, sizeof(F));
  }
  const F lov = F{} + lo, mv = F{} + m;
  for (int j = 0; j < stats_chunk; j += stats_lanes)
    for (int k = 0; k < K; ++k) {
      F xv;
      std::memcpy(&xv, x + j + k * W, sizeof(F));
      const F d0 = xv - mv;
      const F d = lov > d0 ? lov : d0;
      F e;
      exp_nonpos_lanes<W>(d, e);
      sv[k] += e;
      tv[k] += e * d;
    }
  for (int k = 0; k < K; ++k) {
    std::memcpy(s + k * W, &sv[k], sizeof(F));
    std::memcpy(t + k * W, &tv[k], sizeof(F));
  }
}
#endif

/// Softmax statistics of one row of V elements, read once (see the comment above). W: the
/// vector width of the full-chunk pass where vector extensions are available.
template <int W, class T>
GCPO_FORCEINLINE row_stats softmax_row_stats(const T* row, std::int64_t V, float inv_t) noexcept {
  constexpr int L = stats_lanes, C = stats_chunk;
  constexpr float inf = std::numeric_limits<float>::infinity();
  constexpr float qnan = std::numeric_limits<float>::quiet_NaN();
  const float lo = -87.0f + 0.0f * inv_t;  // -87 (inv_t is finite), opaque to constant folding
  float m = 0.0f;     // running max, once `have`
  bool have = false;  // some chunk had a finite max
  float s[L] = {}, t[L] = {};
  alignas(64) float x[C];
  for (std::int64_t base = 0; base < V; base += C) {
    const int len = static_cast<int>(V - base < C ? V - base : C);
    const T* src = row + base;
#if defined(GCPO_HOST_VECTOR_EXT)
    // Ask for the logits 4 KB ahead (into the next row at the end of this one): the hardware
    // prefetcher alone left the arithmetic waiting for memory on part of the 302 MB of a Janus step.
    for (int q = 0; q < C * static_cast<int>(sizeof(T)); q += 64)
      __builtin_prefetch(reinterpret_cast<const void*>(reinterpret_cast<std::uintptr_t>(src) + 4096u + q));
#endif
    // Pass 1: widen, scale, chunk max (NaN is skipped here and caught by the sums).
    float cm = -inf;
    if (len == C) {
      float mx[L];
#if defined(GCPO_HOST_VECTOR_EXT)
      for (int j = 0; j < C; ++j) x[j] = widen(src[j]) * inv_t;  // a map: vectorises by itself
      chunk_max<W>(x, mx);
#else
      for (int l = 0; l < L; ++l) mx[l] = -inf;
      for (int j = 0; j < C; j += L)
        for (int l = 0; l < L; ++l) {
          const float v = widen(src[j + l]) * inv_t;
          x[j + l] = v;
          mx[l] = v > mx[l] ? v : mx[l];
        }
#endif
      for (int l = 0; l < L; ++l) cm = mx[l] > cm ? mx[l] : cm;
    } else {
      for (int i = 0; i < len; ++i) {
        x[i] = widen(src[i]) * inv_t;
        cm = x[i] > cm ? x[i] : cm;
      }
    }
    if (!(cm > -inf)) {  // nothing but -inf and NaN: -inf contributes 0
      for (int i = 0; i < len; ++i)
        if (x[i] != x[i]) return row_stats{qnan, qnan};
      continue;
    }
    if (cm == inf) return row_stats{qnan, qnan};
    if (!have) {
      m = cm;
      have = true;
    } else if (cm > m) {
      const float delta = m - cm;  // < 0
      const float scale = std::exp(delta);
      for (int l = 0; l < L; ++l) {
        t[l] = (t[l] + s[l] * delta) * scale;
        s[l] *= scale;
      }
      m = cm;
    }
    // Pass 2: d = x - m in [-inf, 0] clamped to -87 (NaN passes through and makes the sums NaN).
    if (len == C) {
#if defined(GCPO_HOST_VECTOR_EXT)
      accumulate_chunk<W>(x, m, lo, s, t);
#else
      for (int j = 0; j < C; j += L)
        for (int l = 0; l < L; ++l) {
          const float d0 = x[j + l] - m;
          const float d = lo > d0 ? lo : d0;
          const float e = exp_nonpos(d);
          s[l] += e;
          t[l] += e * d;
        }
#endif
    } else {
      for (int i = 0; i < len; ++i) {
        const float d0 = x[i] - m;
        const float d = lo > d0 ? lo : d0;
        const float e = exp_nonpos(d);
        s[i % L] += e;
        t[i % L] += e * d;
      }
    }
  }
  if (!have) return row_stats{-inf, qnan};
  float S = 0.0f, Tt = 0.0f;
  for (int l = 0; l < L; ++l) {
    S += s[l];
    Tt += t[l];
  }
  const float log_s = std::log(S);
  return row_stats{m + log_s, log_s - Tt / S, m, log_s};
}

template <int W, class T, class I>
GCPO_FORCEINLINE status token_stats_rows(const_tensor_view logits, const_tensor_view tokens, tensor_view entropy,
                                         tensor_view logprob, tensor_view lse, float inv_t) noexcept {
  const std::int64_t R = logits.shape[0], N = logits.shape[1], V = logits.shape[2];
  const T* base = logits.as<const T>();
  const I* tok = tokens.present() ? tokens.as<const I>() : nullptr;
  float* ent = entropy.present() ? entropy.as<float>() : nullptr;
  float* lp = logprob.present() ? logprob.as<float>() : nullptr;
  float* ls = lse.present() ? lse.as<float>() : nullptr;
  for (std::int64_t r = 0; r < R; ++r)
    for (std::int64_t n = 0; n < N; ++n) {
      const T* row = base + r * logits.strides[0] + n * logits.strides[1];
      const std::int64_t i = r * N + n;
      if (lp) {
        const std::int64_t k = static_cast<std::int64_t>(tok[i]);
        if (k < 0 || k >= V)
          return status::error(status_code::invalid_argument, "`tokens[%lld, %lld]` (%lld) must be in [0, V = %lld)",
                               static_cast<long long>(r), static_cast<long long>(n), static_cast<long long>(k),
                               static_cast<long long>(V));
      }
      const row_stats st = softmax_row_stats<W>(row, V, inv_t);
      if (ent) ent[i] = st.entropy;
      if (ls) ls[i] = st.lse;
      // (x - m) - log_sum, not x - lse: lse rounds to the ulp of m (5e-4 at |x| = 1e4).
      if (lp) lp[i] = (to_float(row[tok[i]]) * inv_t - st.max) - st.log_sum;
    }
  return ok();
}

template <class T, class I>
status token_stats_generic(const_tensor_view logits, const_tensor_view tokens, tensor_view entropy,
                           tensor_view logprob, tensor_view lse, float inv_t) noexcept {
  return token_stats_rows<4, T, I>(logits, tokens, entropy, logprob, lse, inv_t);
}

#if defined(GCPO_HOST_AVX2_DISPATCH)
template <class T, class I>
GCPO_HOST_TARGET_AVX2 status token_stats_avx2(const_tensor_view logits, const_tensor_view tokens, tensor_view entropy,
                                              tensor_view logprob, tensor_view lse, float inv_t) noexcept {
  return token_stats_rows<8, T, I>(logits, tokens, entropy, logprob, lse, inv_t);
}

#endif

template <class T, class I>
status token_stats_typed(const_tensor_view logits, const_tensor_view tokens, tensor_view entropy, tensor_view logprob,
                         tensor_view lse, float inv_t) noexcept {
#if defined(GCPO_HOST_AVX2_DISPATCH)
  if (host_has_avx2()) return token_stats_avx2<T, I>(logits, tokens, entropy, logprob, lse, inv_t);
#endif
  return token_stats_generic<T, I>(logits, tokens, entropy, logprob, lse, inv_t);
}

/// Bounds and constants of `backward_prob`, built from a run-time value so that the optimiser
/// cannot specialise the loop on them (see the top of the file).
struct backward_bounds {
  float lo, hi, cut, zero, one;
  explicit backward_bounds(float opaque) noexcept
      : lo(-87.0f + 0.0f * opaque), hi(88.0f + 0.0f * opaque), cut(-88.0f + 0.0f * opaque), zero(0.0f * opaque),
        one(1.0f + 0.0f * opaque) {}
};

/// The softmax probability exp(d) of d = x - lse for the backward: exp on d clamped to [-87, 88],
/// and exactly 0 below -88 (exp < 7e-39 there; a -inf logit has probability 0). NaN stays NaN.
GCPO_FORCEINLINE float backward_prob(float d, const backward_bounds& b) noexcept {
  const float c0 = b.lo > d ? b.lo : d;
  const float c = b.hi < c0 ? b.hi : c0;
  return exp_nonpos(c) * (d < b.cut ? b.zero : b.one);
}

/// `dst[j] = g * (0 - p_j)` for one chunk of a row; fixed trip count when n == stats_chunk.
template <class T, class G>
GCPO_FORCEINLINE void backward_chunk(const T* src, G* dst, int n, float inv_t, float l, float g,
                                     const backward_bounds& b, float* d) noexcept {
  for (int j = 0; j < n; ++j) d[j] = widen(src[j]) * inv_t - l;
  for (int j = 0; j < n; ++j) dst[j] = narrow<G>(g * (b.zero - backward_prob(d[j], b)));
}

/// grad_logits of every row, from the saved lse, one read of the logits and one write.
template <class T, class G, class I>
GCPO_FORCEINLINE void token_stats_backward_rows(const_tensor_view logits, const_tensor_view tokens,
                                                const_tensor_view lse, const_tensor_view grad_logprob,
                                                tensor_view grad_logits, float inv_t) noexcept {
  constexpr int C = stats_chunk;
  const std::int64_t R = logits.shape[0], N = logits.shape[1], V = logits.shape[2];
  const T* lbase = logits.as<const T>();
  G* gbase = grad_logits.as<G>();
  const I* tok = tokens.as<const I>();
  const float* ls = lse.as<const float>();
  const float* go = grad_logprob.as<const float>();
  const backward_bounds b(inv_t);
  alignas(64) float d[C];
  for (std::int64_t r = 0; r < R; ++r)
    for (std::int64_t n = 0; n < N; ++n) {
      const std::int64_t i = r * N + n;
      const T* row = lbase + r * logits.strides[0] + n * logits.strides[1];
      G* grow = gbase + r * grad_logits.strides[0] + n * grad_logits.strides[1];
      const float g = go[i] * inv_t;
      const float l = ls[i];
      const std::int64_t k = static_cast<std::int64_t>(tok[i]);
      const float pk = backward_prob(widen(row[k]) * inv_t - l, b);  // read before an in-place overwrite
      std::int64_t base = 0;
      for (; base + C <= V; base += C) backward_chunk(row + base, grow + base, C, inv_t, l, g, b, d);
      if (base < V) backward_chunk(row + base, grow + base, static_cast<int>(V - base), inv_t, l, g, b, d);
      grow[k] = narrow<G>(g * (1.0f - pk));
    }
}

template <class T, class G, class I>
void token_stats_backward_generic(const_tensor_view logits, const_tensor_view tokens, const_tensor_view lse,
                                  const_tensor_view grad_logprob, tensor_view grad_logits, float inv_t) noexcept {
  token_stats_backward_rows<T, G, I>(logits, tokens, lse, grad_logprob, grad_logits, inv_t);
}

#if defined(GCPO_HOST_AVX2_DISPATCH)
template <class T, class G, class I>
GCPO_HOST_TARGET_AVX2 void token_stats_backward_avx2(const_tensor_view logits, const_tensor_view tokens,
                                                     const_tensor_view lse, const_tensor_view grad_logprob,
                                                     tensor_view grad_logits, float inv_t) noexcept {
  token_stats_backward_rows<T, G, I>(logits, tokens, lse, grad_logprob, grad_logits, inv_t);
}
#endif

template <class T, class G, class I>
void token_stats_backward_typed(const_tensor_view logits, const_tensor_view tokens, const_tensor_view lse,
                                const_tensor_view grad_logprob, tensor_view grad_logits, float inv_t) noexcept {
#if defined(GCPO_HOST_AVX2_DISPATCH)
  if (host_has_avx2()) return token_stats_backward_avx2<T, G, I>(logits, tokens, lse, grad_logprob, grad_logits, inv_t);
#endif
  token_stats_backward_generic<T, G, I>(logits, tokens, lse, grad_logprob, grad_logits, inv_t);
}

}  // namespace host_impl
}  // namespace detail

namespace host {

inline status token_stats(const_tensor_view logits, const_tensor_view tokens, tensor_view entropy, tensor_view logprob,
                          tensor_view lse, const token_stats_options& options) noexcept {
  GCPO_TRY(detail::validate_token_stats(logits, tokens, entropy, logprob, lse, options, memory_space::host));
  const float inv_t = 1.0f / options.temperature;
  status result;
  const dtype index_type = tokens.present() ? tokens.type : dtype::int32;
  detail::dispatch_float(logits.type, [&](auto t) {
    detail::dispatch_index(index_type, [&](auto i) {
      result = detail::host_impl::token_stats_typed<decltype(t), decltype(i)>(logits, tokens, entropy, logprob, lse,
                                                                               inv_t);
    });
  });
  return result;
}

inline status token_stats_backward(const_tensor_view logits, const_tensor_view tokens, const_tensor_view lse,
                                   const_tensor_view grad_logprob, tensor_view grad_logits,
                                   const token_stats_options& options) noexcept {
  GCPO_TRY(detail::validate_token_stats_backward(logits, tokens, lse, grad_logprob, grad_logits, options,
                                                 memory_space::host));
  const std::int64_t R = logits.shape[0], N = logits.shape[1], V = logits.shape[2];
  // Tokens are checked before anything is written, so a failure leaves grad_logits untouched.
  bool bad = false;
  std::int64_t bad_i = 0, bad_k = 0;
  detail::dispatch_index(tokens.type, [&](auto i) {
    using I = decltype(i);
    const I* tok = tokens.as<const I>();
    for (std::int64_t j = 0; j < R * N && !bad; ++j)
      if (tok[j] < 0 || static_cast<std::int64_t>(tok[j]) >= V) {
        bad = true;
        bad_i = j;
        bad_k = static_cast<std::int64_t>(tok[j]);
      }
  });
  if (bad)
    return status::error(status_code::invalid_argument, "`tokens[%lld, %lld]` (%lld) must be in [0, V = %lld)",
                         static_cast<long long>(bad_i / N), static_cast<long long>(bad_i % N),
                         static_cast<long long>(bad_k), static_cast<long long>(V));
  const float inv_t = 1.0f / options.temperature;
  detail::dispatch_float(logits.type, [&](auto t) {
    detail::dispatch_float(grad_logits.type, [&](auto g) {
      detail::dispatch_index(tokens.type, [&](auto i) {
        detail::host_impl::token_stats_backward_typed<decltype(t), decltype(g), decltype(i)>(
            logits, tokens, lse, grad_logprob, grad_logits, inv_t);
      });
    });
  });
  return ok();
}

}  // namespace host
}  // namespace gcpo
