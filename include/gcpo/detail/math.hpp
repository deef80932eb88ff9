// gcpo/detail/math.hpp - numeric building blocks shared by the host twins and the kernels.
//
// * `exp_nonpos`: exp on [-87, 0] from plain arithmetic, so host loops over lanes vectorise
//   without -ffast-math (about 1 ulp; arguments below -87 give ~1e-38, i.e. nothing), and stay
//   right with it.
// * `repro_exp`, `repro_log`: built from fmaf alone, so host and device round identically and
//   the sampler draws bit-identical tokens on both (no compiler may contract or reorder them).
// * `philox4x32_10`: the counter-based generator (Salmon et al., SC'11) behind every draw.
#pragma once

#include <cmath>
#include <cstdint>
#include <limits>

#include "../config.hpp"
#include "../dtype.hpp"

namespace gcpo {
namespace detail {

GCPO_HOST_DEVICE GCPO_FORCEINLINE float fmaf_(float a, float b, float c) noexcept {
#if defined(__CUDA_ARCH__)
  return __fmaf_rn(a, b, c);
#else
  return std::fma(a, b, c);
#endif
}

/// exp(d) for d in [-87, 88] (clamp before calling; the host twins use [-87, 0]). Only + - *
/// and bit operations, so loops of it vectorise. Relative error about 2e-7.
/// The integer n = round(d / ln 2) is read from the bits of `d * log2(e) + 1.5 * 2^23` (its low
/// mantissa bits) rather than by subtracting the constant again and converting to int, so
/// - `-ffast-math` cannot fold `(y + c) - c` into `y` (which made every result wrong),
/// - a NaN argument gives NaN with no float -> int conversion (undefined behaviour in C++).
GCPO_HOST_DEVICE GCPO_FORCEINLINE float exp_nonpos(float d) noexcept {
  const float magic = 12582912.0f;  // 1.5 * 2^23: adding it rounds to an integer in the low bits
  const std::uint32_t nbits = float_to_bits(d * 1.44269504088896341f + magic) - 0x4B400000u;  // n mod 2^32
  const float n = static_cast<float>(static_cast<std::int32_t>(nbits));
  const float r = (d - n * 0.693359375f) - n * -2.12194440e-4f;
  float p = 1.9875691500e-4f;
  p = p * r + 1.3981999507e-3f;
  p = p * r + 8.3334519073e-3f;
  p = p * r + 4.1665795894e-2f;
  p = p * r + 1.6666665459e-1f;
  p = p * r + 5.0000001201e-1f;
  p = p * r * r + r + 1.0f;
  return p * bits_to_float((nbits + 127u) << 23);
}

/// exp(x) rounded identically on every IEEE machine (fmaf only). Relative error about 2e-7.
/// x <= -104 gives 0, x >= 88.7 gives +inf, NaN gives NaN.
GCPO_HOST_DEVICE inline float repro_exp(float x) noexcept {
  if (x != x) return x;
  if (x >= 88.72283935546875f) return std::numeric_limits<float>::infinity();
  if (x <= -103.97f) return 0.0f;
  const float n = fmaf_(fmaf_(x, 1.44269504088896341f, 12582912.0f), 1.0f, -12582912.0f);
  float r = fmaf_(n, -0.693359375f, x);
  r = fmaf_(n, 2.12194440e-4f, r);
  float p = 1.9875691500e-4f;
  p = fmaf_(p, r, 1.3981999507e-3f);
  p = fmaf_(p, r, 8.3334519073e-3f);
  p = fmaf_(p, r, 4.1665795894e-2f);
  p = fmaf_(p, r, 1.6666665459e-1f);
  p = fmaf_(p, r, 5.0000001201e-1f);
  const float r2 = fmaf_(r, r, 0.0f);
  p = fmaf_(p, r2, r);
  p = fmaf_(p, 1.0f, 1.0f);
  // 2^n in two steps so that n down to -150 stays representable (subnormal results).
  const std::int32_t ni = static_cast<std::int32_t>(n);
  const std::int32_t a = ni / 2, b = ni - a;
  const float sa = bits_to_float(static_cast<std::uint32_t>(a + 127) << 23);
  const float sb = bits_to_float(static_cast<std::uint32_t>(b + 127) << 23);
  return fmaf_(fmaf_(p, sa, 0.0f), sb, 0.0f);
}

/// log(x) rounded identically on every IEEE machine (fmaf only). Relative error about 2e-7.
/// log(0) = -inf, log(negative) = NaN, log(+inf) = +inf.
GCPO_HOST_DEVICE inline float repro_log(float x) noexcept {
  if (x != x || x < 0.0f) return std::numeric_limits<float>::quiet_NaN();
  if (x == 0.0f) return -std::numeric_limits<float>::infinity();
  if (x == std::numeric_limits<float>::infinity()) return x;
  std::int32_t e = 0;
  if (x < 1.17549435e-38f) {  // subnormal: scale up by 2^23
    x = fmaf_(x, 8388608.0f, 0.0f);
    e = -23;
  }
  std::uint32_t u = float_to_bits(x);
  e += static_cast<std::int32_t>((u >> 23) & 0xffu) - 127;
  u = (u & 0x007fffffu) | 0x3f800000u;  // mantissa in [1, 2)
  float m = bits_to_float(u);
  if (m > 1.41421356f) {  // keep m in [sqrt(2)/2, sqrt(2)]
    m = fmaf_(m, 0.5f, 0.0f);
    ++e;
  }
  const float f = fmaf_(m, 1.0f, -1.0f);
  const float z = fmaf_(f, f, 0.0f);
  // Cephes logf polynomial on [sqrt(2)/2 - 1, sqrt(2) - 1].
  float p = 7.0376836292e-2f;
  p = fmaf_(p, f, -1.1514610310e-1f);
  p = fmaf_(p, f, 1.1676998740e-1f);
  p = fmaf_(p, f, -1.2420140846e-1f);
  p = fmaf_(p, f, 1.4249322787e-1f);
  p = fmaf_(p, f, -1.6668057665e-1f);
  p = fmaf_(p, f, 2.0000714765e-1f);
  p = fmaf_(p, f, -2.4999993993e-1f);
  p = fmaf_(p, f, 3.3333331174e-1f);
  float y = fmaf_(fmaf_(p, f, 0.0f), z, 0.0f);  // f^3 * P(f)
  const float fe = static_cast<float>(e);
  y = fmaf_(fe, -2.12194440e-4f, y);
  y = fmaf_(z, -0.5f, y);
  float r = fmaf_(f, 1.0f, y);
  r = fmaf_(fe, 0.693359375f, r);
  return r;
}

/// Philox-4x32-10: four 32-bit outputs for a 128-bit counter and a 64-bit key.
struct philox_out {
  std::uint32_t v[4];
};

GCPO_HOST_DEVICE GCPO_FORCEINLINE void mulhilo32(std::uint32_t a, std::uint32_t b, std::uint32_t& hi,
                                                std::uint32_t& lo) noexcept {
  const std::uint64_t p = static_cast<std::uint64_t>(a) * b;
  hi = static_cast<std::uint32_t>(p >> 32);
  lo = static_cast<std::uint32_t>(p);
}

GCPO_HOST_DEVICE inline philox_out philox4x32_10(std::uint32_t c0, std::uint32_t c1, std::uint32_t c2,
                                                 std::uint32_t c3, std::uint32_t k0, std::uint32_t k1) noexcept {
  for (int round = 0; round < 10; ++round) {
    std::uint32_t hi0, lo0, hi1, lo1;
    mulhilo32(0xD2511F53u, c0, hi0, lo0);
    mulhilo32(0xCD9E8D57u, c2, hi1, lo1);
    const std::uint32_t n0 = hi1 ^ c1 ^ k0;
    const std::uint32_t n2 = hi0 ^ c3 ^ k1;
    c0 = n0;
    c1 = lo1;
    c2 = n2;
    c3 = lo0;
    k0 += 0x9E3779B9u;
    k1 += 0xBB67AE85u;
  }
  return philox_out{{c0, c1, c2, c3}};
}

/// A uniform float in the open interval (0, 1) from 32 random bits (23 bits used): (k + 0.5) * 2^-23
/// with k = bits >> 9 is exact in float, from 2^-24 to 1 - 2^-24. (With 24 bits, k + 0.5 rounds for
/// k >= 2^23 and the top value became 1.0, whose Gumbel noise -log(-log(1)) is +inf.)
GCPO_HOST_DEVICE GCPO_FORCEINLINE float uniform_open01(std::uint32_t bits) noexcept {
  return (static_cast<float>(bits >> 9) + 0.5f) * 1.1920928955078125e-7f;  // 2^-23
}

}  // namespace detail
}  // namespace gcpo
