// gcpo/detail/host/selection.hpp - host twins of the selection operators (see gcpo/selection.hpp).
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <new>

#include "../../selection.hpp"
#include "cpu_dispatch.hpp"
#include "similarity.hpp"

#if (defined(__SSE__) || defined(_M_X64)) && !defined(__CUDACC__) && !defined(GCPO_NO_HOST_SSE_SQRT)
#include <xmmintrin.h>
#define GCPO_HOST_SSE_SQRT 1
#endif

namespace gcpo {
namespace detail {
namespace host_impl {

// Performance notes (R = 8, N = 576: the whole selection takes a few microseconds per rollout):
// - the maps handle borders separately so that the interior loops have no branches and
//   vectorise; every value is computed with the same operations in the same order as the
//   definition (spec 3.2), so results are bit-identical to the plain loops;
// - the top-k is a most-significant-digit radix select on an order-preserving integer key: no
//   data-dependent branches (a comparison sort mispredicts about every other comparison here);
// - sqrt: std::sqrt never vectorises while errno is honoured (the default), so on x86 the
//   gradient magnitude uses SSE's sqrtps, the same correctly rounded IEEE square root.

/// Causal 5-point local mean of one H x W map: sum of self, left, upper-left, up, upper-right
/// (those that exist, in that order) divided by their count.
GCPO_FORCEINLINE void smooth_map(const float* E, float* M, std::int64_t H, std::int64_t W) noexcept {
  if (H < 1 || W < 1) return;
  M[0] = E[0] / 1.0f;
  for (std::int64_t j = 1; j < W; ++j) M[j] = (E[j] + E[j - 1]) / 2.0f;
  if (W == 1) {
    for (std::int64_t i = 1; i < H; ++i) M[i] = (E[i] + E[i - 1]) / 2.0f;
    return;
  }
  // Rows 1..H-1 as one flat loop with the interior formula; its values in columns 0 and W-1
  // (read across the row ends) are then overwritten with theirs.
  const std::int64_t N = H * W;
  for (std::int64_t t = W + 1; t + 1 < N; ++t)
    M[t] = ((((E[t] + E[t - 1]) + E[t - W - 1]) + E[t - W]) + E[t - W + 1]) / 5.0f;
  for (std::int64_t i = 1; i < H; ++i) {
    const float* e = E + i * W;
    const float* u = e - W;
    float* m = M + i * W;
    m[0] = ((e[0] + u[0]) + u[1]) / 3.0f;
    m[W - 1] = (((e[W - 1] + e[W - 2]) + u[W - 2]) + u[W - 1]) / 4.0f;
  }
}

/// In-place IEEE square root of n values (vectorised where the compiler would not).
inline void sqrt_in_place(float* x, std::int64_t n) noexcept {
  std::int64_t i = 0;
#if defined(GCPO_HOST_SSE_SQRT)
  for (; i + 4 <= n; i += 4) _mm_storeu_ps(x + i, _mm_sqrt_ps(_mm_loadu_ps(x + i)));
#endif
  for (; i < n; ++i) x[i] = std::sqrt(x[i]);
}

/// Central-difference gradient magnitude of one H x W map: dx = (M[i,j+1] - M[i,j-1]) / 2 inside,
/// one-sided at the borders, 0 when W = 1; dy the same along columns; sqrt(dx^2 + dy^2).
GCPO_FORCEINLINE void gradient_map(const float* M, float* Gm, std::int64_t H, std::int64_t W) noexcept {
  if (H < 1 || W < 1) return;
  if (H == 1 || W == 1) {  // degenerate grids: the definition, element by element
    for (std::int64_t i = 0; i < H; ++i)
      for (std::int64_t j = 0; j < W; ++j) {
        float dx = 0.0f, dy = 0.0f;
        if (W > 1) {
          if (j == 0) dx = M[i * W + 1] - M[i * W];
          else if (j == W - 1) dx = M[i * W + j] - M[i * W + j - 1];
          else dx = (M[i * W + j + 1] - M[i * W + j - 1]) * 0.5f;
        }
        if (H > 1) {
          if (i == 0) dy = M[W + j] - M[j];
          else if (i == H - 1) dy = M[i * W + j] - M[(i - 1) * W + j];
          else dy = (M[(i + 1) * W + j] - M[(i - 1) * W + j]) * 0.5f;
        }
        Gm[i * W + j] = dx * dx + dy * dy;
      }
    sqrt_in_place(Gm, H * W);
    return;
  }
  // Interior rows as one flat loop with the central differences; columns 0 and W-1 (read across
  // the row ends) and rows 0 and H-1 are then written with their one-sided differences.
  const std::int64_t N = H * W;
  for (std::int64_t t = W + 1; t + 1 < N - W; ++t) {
    const float dx = (M[t + 1] - M[t - 1]) * 0.5f;
    const float dy = (M[t + W] - M[t - W]) * 0.5f;
    Gm[t] = dx * dx + dy * dy;
  }
  for (std::int64_t i = 0; i < H; ++i) {
    const float* m = M + i * W;
    float* g = Gm + i * W;
    // dy = (a - b) * sy: one-sided rows use sy = 1, and multiplying by 1 is exact
    const float* a = i + 1 < H ? m + W : m;
    const float* b = i > 0 ? m - W : m;
    const float sy = (i > 0 && i + 1 < H) ? 0.5f : 1.0f;
    {
      const float dx = m[1] - m[0], dy = (a[0] - b[0]) * sy;
      g[0] = dx * dx + dy * dy;
    }
    if (i == 0 || i + 1 == H)
      for (std::int64_t j = 1; j + 1 < W; ++j) {
        const float dx = (m[j + 1] - m[j - 1]) * 0.5f;
        const float dy = a[j] - b[j];
        g[j] = dx * dx + dy * dy;
      }
    {
      const float dx = m[W - 1] - m[W - 2], dy = (a[W - 1] - b[W - 1]) * sy;
      g[W - 1] = dx * dx + dy * dy;
    }
  }
  sqrt_in_place(Gm, H * W);
}

/// Order of the selection top-k (spec 3.5): better value first (larger, or smaller when `flip`
/// is all ones), then the lower index; NaN after every number. This is the key of the value
/// part: an order-preserving map of the float to uint32, larger key first; -0 and +0 share a
/// key (they tie); NaN gets 0.
GCPO_FORCEINLINE std::uint32_t topk_key(float f, std::uint32_t flip) noexcept {
  std::uint32_t b = float_to_bits(f);
  b = b == 0x80000000u ? 0u : b;
  const std::uint32_t u = (b & 0x80000000u) ? ~b : (b | 0x80000000u);
  return (b & 0x7fffffffu) > 0x7f800000u ? 0u : (u ^ flip);
}

/// Index of the highest set bit of x, -1 for 0.
GCPO_FORCEINLINE int highest_bit(std::uint32_t x) noexcept {
#if defined(__GNUC__) || defined(__clang__)
  return x == 0u ? -1 : 31 - __builtin_clz(x);
#else
  int n = -1;
  for (; x != 0u; x >>= 1) ++n;
  return n;
#endif
}

/// Count-trailing-zeros of a nonzero 64-bit word.
GCPO_FORCEINLINE int ctz64(std::uint64_t x) noexcept {
#if defined(__GNUC__) || defined(__clang__)
  return __builtin_ctzll(x);
#else
  int n = 0;
  for (; (x & 1u) == 0; x >>= 1) ++n;
  return n;
#endif
}

/// The digit (0..255) that holds the need-th largest key, from two histograms of it, and in
/// `above` the number of keys with a larger digit.
GCPO_FORCEINLINE std::uint32_t find_digit(const std::uint32_t (*h)[256], std::int64_t need, std::int64_t& above) noexcept {
  above = 0;
  std::uint32_t d = 255;
  for (;; --d) {
    const std::int64_t c = static_cast<std::int64_t>(h[0][d]) + h[1][d];
    if (above + c >= need) break;
    above += c;
  }
  return d;
}

/// The same from 16-bit histograms of fewer than 2^16 keys, scanning from the top four bins at a
/// time (the sum of four 16-bit counts with one multiply).
GCPO_FORCEINLINE std::uint32_t find_digit(const std::uint16_t (*h)[256], std::int64_t need, std::int64_t& above) noexcept {
  above = 0;
  int b = 63;
  for (; b > 0; --b) {
    std::uint64_t x, y;
    std::memcpy(&x, h[0] + 4 * b, 8);
    std::memcpy(&y, h[1] + 4 * b, 8);
    const std::int64_t s = static_cast<std::int64_t>(((x + y) * 0x0001000100010001ull) >> 48);
    if (above + s >= need) break;
    above += s;
  }
  std::uint32_t d = 4u * static_cast<std::uint32_t>(b) + 3u;
  for (;; --d) {
    const std::int64_t c = static_cast<std::int64_t>(h[0][d]) + h[1][d];
    if (above + c >= need) break;
    above += c;
  }
  return d;
}

/// Radix select over the candidates `idx[0..m)` (positions in increasing order), keys from
/// `key_at(position)`: marks `mask[idx]` for the k with the largest key, ties to the lower
/// position. 8 bits per pass: the histogram of the digit gives the digit of the k-th key; the
/// candidates whose digit is above it are taken, those equal are kept (in order) for the next
/// pass; whatever still ties after the last digit is taken in index order. Two interleaved
/// histograms halve the store-to-load chains when many keys share a digit. `Count` holds m.
template <class Count, class KeyAt>
GCPO_FORCEINLINE void radix_passes(KeyAt key_at, std::int32_t* idx, std::int64_t m, std::int64_t need, int shift,
                  std::uint8_t* mask) noexcept {
  // Digits at shift, shift - 8, ..., the last one at 0 (it may overlap bits that an earlier
  // pass already found equal among the candidates, which changes nothing).
  for (; shift >= 0 && need < m; shift = shift >= 8 || shift == 0 ? shift - 8 : 0) {
    Count hist[2][256] = {};
    std::int64_t i = 0;
    for (; i + 2 <= m; i += 2) {
      ++hist[0][(key_at(idx[i]) >> shift) & 0xffu];
      ++hist[1][(key_at(idx[i + 1]) >> shift) & 0xffu];
    }
    if (i < m) ++hist[0][(key_at(idx[i]) >> shift) & 0xffu];
    std::int64_t above = 0;
    const std::uint32_t digit = find_digit(hist, need, above);
    std::int64_t kept = 0;
    for (std::int64_t j = 0; j < m; ++j) {
      const std::int32_t t = idx[j];
      const std::uint32_t d = (key_at(t) >> shift) & 0xffu;
      mask[t] = static_cast<std::uint8_t>(mask[t] | (d > digit ? 1 : 0));
      idx[kept] = t;
      kept += d == digit ? 1 : 0;
    }
    need -= above;
    m = kept;
  }
  for (std::int64_t i = 0; i < need; ++i) mask[idx[i]] = 1;
}

/// Marks in `mask` (already zeroed) the k first positions in that order among the eligible ones
/// in [lo, lo + n). `idx` is scratch of n entries. For n <= 2048 (any Janus-Pro or LlamaGen
/// grid) the keys go to a stack buffer (vectorised), 0 for an ineligible position, and the first
/// pass works on positions directly: one histogram loop, then vectorised loops that mark the
/// candidates above the k-th key's top digit and flag those at it, gathered 8 flags at a time.
/// Larger n: the same select with keys computed on the fly.
template <class Eligible>
GCPO_FORCEINLINE void topk_mark(const float* key, std::int64_t lo, std::int64_t n, std::int64_t k, bool largest, Eligible eligible,
               std::uint8_t* mask, std::int32_t* idx) noexcept {
  if (k <= 0 || n <= 0) return;
  const std::uint32_t flip = largest ? 0u : 0xffffffffu;
  const float* kw = key + lo;
  std::uint8_t* mk = mask + lo;
  constexpr std::int64_t buffered = 2048;
  if (n > buffered) {
    std::int64_t m = 0;
    for (std::int64_t i = 0; i < n; ++i) {
      idx[m] = static_cast<std::int32_t>(i);
      m += eligible(lo + i) ? 1 : 0;
    }
    if (m == 0) return;
    radix_passes<std::uint32_t>([kw, flip](std::int32_t t) { return topk_key(kw[t], flip); }, idx, m, k < m ? k : m, 24,
                                mk);
    return;
  }
  std::uint32_t kb[buffered];  // 1 + key of an eligible position, 0 otherwise
  for (std::int64_t i = 0; i < n; ++i) kb[i] = topk_key(kw[i], flip) + 1u;
  std::int64_t zeros = 0;  // ineligible positions
  for (std::int64_t i = 0; i < n; ++i) {
    const bool e = eligible(lo + i);
    kb[i] = e ? kb[i] : 0u;
    zeros += e ? 0 : 1;
  }
  const std::int64_t m = n - zeros;
  if (m == 0) return;
  if (k >= m) {
    for (std::int64_t i = 0; i < n; ++i) mk[i] = static_cast<std::uint8_t>(mk[i] | (kb[i] != 0u ? 1 : 0));
    return;
  }
  // The eligible keys all agree on every bit above the highest bit in which any two of them
  // differ (the highest bit of OR ^ AND over them): the first digit is the 8 bits ending there.
  // (Similarities and entropy gradients cluster in a binade or two: a fixed top byte would leave
  // nearly all of them tied after the first pass.) Ineligible keys (0) land in digit 0 there
  // too and come out of its count; an eligible key's digit 0 is still told apart by kb != 0.
  std::uint32_t any = 0, all = 0xffffffffu;
  for (std::int64_t i = 0; i < n; ++i) {
    any |= kb[i];
    all &= kb[i] != 0u ? kb[i] : 0xffffffffu;
  }
  const int top = highest_bit(any ^ all);  // -1 when every eligible key is equal
  const int shift = top > 7 ? top - 7 : 0;
  // First pass, on positions.
  std::uint16_t hist[2][256] = {};  // n <= 2048: 16-bit counts
  std::int64_t i = 0;
  for (; i + 2 <= n; i += 2) {
    ++hist[0][(kb[i] >> shift) & 0xffu];
    ++hist[1][(kb[i + 1] >> shift) & 0xffu];
  }
  if (i < n) ++hist[0][(kb[i] >> shift) & 0xffu];
  hist[0][0] = static_cast<std::uint16_t>(hist[0][0] + hist[1][0] - zeros);
  hist[1][0] = 0;
  std::int64_t above = 0;
  const std::uint32_t digit = find_digit(hist, k, above);
  std::uint8_t at[buffered + 8];  // 1 where an eligible key has the threshold's first digit
  for (std::int64_t j = 0; j < n; ++j) {
    const std::uint32_t d = (kb[j] >> shift) & 0xffu;
    mk[j] = static_cast<std::uint8_t>(mk[j] | (d > digit ? 1 : 0));
    at[j] = static_cast<std::uint8_t>((d == digit) & (kb[j] != 0u));
  }
  std::memset(at + n, 0, 8);
  std::int64_t count = 0;
  for (std::int64_t w = 0; w < n; w += 8) {
    std::uint64_t bits;
    std::memcpy(&bits, at + w, 8);
    for (; bits != 0; bits &= bits - 1) idx[count++] = static_cast<std::int32_t>(w + (ctz64(bits) >> 3));
  }
  if (shift > 0)
    radix_passes<std::uint16_t>([&kb](std::int32_t t) { return kb[t]; }, idx, count, k - above, shift >= 8 ? shift - 8 : 0,
                                mk);
  else
    for (std::int64_t j = 0; j < k - above; ++j) mk[idx[j]] = 1;  // all bits seen: ties in index order
}

/// Index scratch of the standalone top-k operators: on the stack up to 2048 positions (N of
/// Janus-Pro and LlamaGen), allocated beyond.
class index_scratch {
 public:
  explicit index_scratch(std::int64_t n) noexcept
      : p_(n <= small ? local_ : new (std::nothrow) std::int32_t[static_cast<std::size_t>(n)]) {}
  ~index_scratch() {
    if (p_ != local_) delete[] p_;
  }
  index_scratch(const index_scratch&) = delete;
  index_scratch& operator=(const index_scratch&) = delete;
  std::int32_t* get() const noexcept { return p_; }

 private:
  static constexpr std::int64_t small = 2048;
  std::int32_t local_[small];
  std::int32_t* p_;
};

/// Everything the per-rollout loop of select_critical_tokens reads and writes.
struct selection_rows {
  const float* ent;
  const float* sim;
  float* smooth;
  float* grad;
  std::uint8_t* init;
  std::uint8_t* gmask;
  std::uint8_t* smask;
  std::uint8_t* crit;
  std::int32_t* counts;  ///< or null
  std::int32_t* idx;     ///< N entries of scratch
  std::int64_t R, N;
  grid_shape g;
  selection_counts c;
};

/// The per-rollout loop of select_critical_tokens (one body, compiled generic and AVX2).
GCPO_FORCEINLINE void select_rows_body(const selection_rows& a) noexcept {
  const std::int64_t N = a.N;
  for (std::int64_t r = 0; r < a.R; ++r) {
    const std::int64_t o = r * N;
    std::memset(a.gmask + o, 0, static_cast<std::size_t>(N));
    std::memset(a.smask + o, 0, static_cast<std::size_t>(N));
    for (std::int64_t t = 0; t < N; ++t) a.init[o + t] = t < a.c.initial ? 1 : 0;
    smooth_map(a.ent + o, a.smooth + o, a.g.height, a.g.width);
    gradient_map(a.smooth + o, a.grad + o, a.g.height, a.g.width);
    topk_mark(a.grad + o, a.c.window_start, a.c.window, a.c.gradient, true, [](std::int64_t) { return true; },
              a.gmask + o, a.idx);
    const std::uint8_t* ir = a.init + o;
    const std::uint8_t* gr = a.gmask + o;
    topk_mark(a.sim + o, 0, N, a.c.similarity, false, [ir, gr](std::int64_t t) { return (ir[t] | gr[t]) == 0; },
              a.smask + o, a.idx);
    std::int32_t cnt = 0;
    for (std::int64_t t = 0; t < N; ++t) {
      const std::uint8_t v = (a.init[o + t] | a.gmask[o + t] | a.smask[o + t]) ? 1 : 0;
      a.crit[o + t] = v;
      cnt += v;
    }
    if (a.counts) a.counts[r] = cnt;
  }
}

inline void select_rows_generic(const selection_rows& a) noexcept { select_rows_body(a); }
#if defined(GCPO_HOST_AVX2_DISPATCH)
GCPO_HOST_TARGET_AVX2 inline void select_rows_avx2(const selection_rows& a) noexcept { select_rows_body(a); }
#endif

}  // namespace host_impl
}  // namespace detail

namespace host {

inline status initial_mask(tensor_view mask, const selection_options& options) noexcept {
  GCPO_TRY(detail::check_rank(mask, "mask", 2, "[R, N]"));
  const std::int64_t R = mask.shape[0], N = mask.shape[1];
  GCPO_TRY(detail::check_map(mask, "mask", R, N, dtype::uint8, memory_space::host, "R"));
  grid_shape g;
  selection_counts c;
  GCPO_TRY(detail::resolve_selection(N, options, g, c));
  std::uint8_t* m = mask.as<std::uint8_t>();
  for (std::int64_t r = 0; r < R; ++r)
    for (std::int64_t t = 0; t < N; ++t) m[r * N + t] = t < c.initial ? 1 : 0;
  return ok();
}

inline status smoothed_entropy(const_tensor_view entropy, tensor_view smoothed, const selection_options& options) noexcept {
  GCPO_TRY(detail::validate_map_op(entropy, "entropy", dtype::float32, smoothed, "smoothed", dtype::float32,
                                   memory_space::host));
  const std::int64_t R = entropy.shape[0], N = entropy.shape[1];
  grid_shape g;
  GCPO_TRY(detail::resolve_grid(options.grid, N, g, "`entropy.shape[1]`"));
  for (std::int64_t r = 0; r < R; ++r)
    detail::host_impl::smooth_map(entropy.as<const float>() + r * N, smoothed.as<float>() + r * N, g.height, g.width);
  return ok();
}

inline status entropy_gradient(const_tensor_view smoothed, tensor_view gradient, const selection_options& options) noexcept {
  GCPO_TRY(detail::validate_map_op(smoothed, "smoothed", dtype::float32, gradient, "gradient", dtype::float32,
                                   memory_space::host));
  const std::int64_t R = smoothed.shape[0], N = smoothed.shape[1];
  grid_shape g;
  GCPO_TRY(detail::resolve_grid(options.grid, N, g, "`smoothed.shape[1]`"));
  for (std::int64_t r = 0; r < R; ++r)
    detail::host_impl::gradient_map(smoothed.as<const float>() + r * N, gradient.as<float>() + r * N, g.height, g.width);
  return ok();
}

inline status gradient_topk(const_tensor_view gradient, tensor_view mask, const selection_options& options) noexcept {
  GCPO_TRY(detail::validate_map_op(gradient, "gradient", dtype::float32, mask, "mask", dtype::uint8, memory_space::host));
  const std::int64_t R = gradient.shape[0], N = gradient.shape[1];
  grid_shape g;
  selection_counts c;
  GCPO_TRY(detail::resolve_selection(N, options, g, c));
  detail::host_impl::index_scratch scratch(N);
  std::int32_t* idx = scratch.get();
  if (!idx) return status::error(status_code::out_of_memory, "could not allocate %lld indices", static_cast<long long>(N));
  std::uint8_t* m = mask.as<std::uint8_t>();
  if (R * N > 0) std::memset(m, 0, static_cast<std::size_t>(R * N));  // an empty mask may have a null pointer
  for (std::int64_t r = 0; r < R; ++r)
    detail::host_impl::topk_mark(gradient.as<const float>() + r * N, c.window_start, c.window, c.gradient, true,
                                 [](std::int64_t) { return true; }, m + r * N, idx);
  return ok();
}

inline status low_similarity_mask(const_tensor_view similarity, const_tensor_view exclude, tensor_view mask,
                                  const selection_options& options) noexcept {
  GCPO_TRY(detail::validate_map_op(similarity, "similarity", dtype::float32, mask, "mask", dtype::uint8,
                                   memory_space::host));
  const std::int64_t R = similarity.shape[0], N = similarity.shape[1];
  if (exclude.present()) {
    GCPO_TRY(detail::check_map(exclude, "exclude", R, N, dtype::uint8, memory_space::host, "`similarity.shape[0]`"));
    GCPO_TRY(detail::check_no_overlap(mask, "mask", exclude, "exclude"));
  }
  grid_shape g;
  selection_counts c;
  GCPO_TRY(detail::resolve_selection(N, options, g, c));
  detail::host_impl::index_scratch scratch(N);
  std::int32_t* idx = scratch.get();
  if (!idx) return status::error(status_code::out_of_memory, "could not allocate %lld indices", static_cast<long long>(N));
  std::uint8_t* m = mask.as<std::uint8_t>();
  if (R * N > 0) std::memset(m, 0, static_cast<std::size_t>(R * N));  // an empty mask may have a null pointer
  const std::uint8_t* ex = exclude.present() ? exclude.as<const std::uint8_t>() : nullptr;
  for (std::int64_t r = 0; r < R; ++r) {
    const std::uint8_t* exr = ex ? ex + r * N : nullptr;
    detail::host_impl::topk_mark(similarity.as<const float>() + r * N, 0, N, c.similarity, false,
                                 [exr](std::int64_t t) { return exr == nullptr || exr[t] == 0; }, m + r * N, idx);
  }
  return ok();
}

inline status union_mask(const_tensor_view a, const_tensor_view b, const_tensor_view c, tensor_view critical,
                         tensor_view counts) noexcept {
  GCPO_TRY(detail::validate_union_mask(a, b, c, critical, counts, memory_space::host));
  const std::int64_t R = a.shape[0], N = a.shape[1];
  const std::uint8_t* pa = a.as<const std::uint8_t>();
  const std::uint8_t* pb = b.as<const std::uint8_t>();
  const std::uint8_t* pc = c.present() ? c.as<const std::uint8_t>() : nullptr;
  std::uint8_t* out = critical.as<std::uint8_t>();
  for (std::int64_t r = 0; r < R; ++r) {
    std::int32_t cnt = 0;
    for (std::int64_t t = 0; t < N; ++t) {
      const std::int64_t i = r * N + t;
      const std::uint8_t v = (pa[i] | pb[i] | (pc ? pc[i] : 0)) ? 1 : 0;
      out[i] = v;
      cnt += v;
    }
    if (counts.present()) counts.as<std::int32_t>()[r] = cnt;
  }
  return ok();
}

inline status select_critical_tokens(const selection_inputs& in, const selection_outputs& out,
                                     const selection_options& options, workspace ws) noexcept {
  grid_shape g;
  selection_counts c;
  GCPO_TRY(detail::validate_select_critical_tokens(in, out, options, memory_space::host, g, c));
  const std::int64_t R = in.entropy.shape[0], N = in.entropy.shape[1];
  GCPO_TRY(detail::check_select_critical_tokens_workspace(in, out, ws, memory_space::host));
  if (R * N == 0) {  // nothing to select; views and workspace may have null pointers
    if (out.counts.present())
      for (std::int64_t r = 0; r < R; ++r) out.counts.as<std::int32_t>()[r] = 0;
    return ok();
  }
  detail::workspace_carver carve(ws);
  const std::size_t rn = static_cast<std::size_t>(R * N);
  float* smooth_ws = carve.take<float>(rn);
  float* grad_ws = carve.take<float>(rn);
  float* sim_ws = carve.take<float>(rn);
  std::uint8_t* init_ws = carve.take<std::uint8_t>(rn);
  std::uint8_t* gmask_ws = carve.take<std::uint8_t>(rn);
  std::uint8_t* smask_ws = carve.take<std::uint8_t>(rn);
  std::int32_t* idx = carve.take<std::int32_t>(static_cast<std::size_t>(N));

  float* smooth = out.smoothed_entropy.present() ? out.smoothed_entropy.as<float>() : smooth_ws;
  float* grad = out.entropy_gradient.present() ? out.entropy_gradient.as<float>() : grad_ws;
  std::uint8_t* init = out.initial.present() ? out.initial.as<std::uint8_t>() : init_ws;
  std::uint8_t* gmask = out.gradient.present() ? out.gradient.as<std::uint8_t>() : gmask_ws;
  std::uint8_t* smask = out.low_similarity.present() ? out.low_similarity.as<std::uint8_t>() : smask_ws;

  // Similarity: given, or computed from embeddings / tokens + table.
  const float* sim = nullptr;
  if (in.similarity.present()) {
    sim = in.similarity.as<const float>();
    if (out.similarity.present()) std::memcpy(out.similarity.as<float>(), sim, rn * sizeof(float));
  } else {
    tensor_view sim_view = out.similarity.present()
                               ? out.similarity
                               : make_view(sim_ws, {R, N}, memory_space::host);
    // Validated above under the names the caller used (`inputs.embeddings`, ...).
    if (in.embeddings.present())
      detail::host_impl::group_similarity_unchecked(in.embeddings, sim_view, in.similarity_opts);
    else
      GCPO_TRY(detail::host_impl::group_similarity_from_tokens_unchecked(in.tokens, in.embedding_table, sim_view,
                                                                         in.similarity_opts, "inputs.tokens"));
    sim = sim_view.as<const float>();
  }

  const float* ent = in.entropy.as<const float>();
  std::uint8_t* crit = out.critical.as<std::uint8_t>();
  std::int32_t* counts = out.counts.present() ? out.counts.as<std::int32_t>() : nullptr;
  const detail::host_impl::selection_rows rows{ent, sim, smooth, grad, init, gmask, smask, crit, counts, idx, R, N, g, c};
#if defined(GCPO_HOST_AVX2_DISPATCH)
  if (detail::host_impl::host_has_avx2()) {
    detail::host_impl::select_rows_avx2(rows);
    return ok();
  }
#endif
  detail::host_impl::select_rows_generic(rows);
  return ok();
}

}  // namespace host
}  // namespace gcpo
