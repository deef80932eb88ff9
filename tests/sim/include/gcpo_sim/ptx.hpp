// gcpo_sim/ptx.hpp - host models of the PTX instructions that gcpo's kernels write as inline
// assembly (a kernel header calls gcpo_sim::ptx::<name> under GCPO_CUDA_SIMULATOR and the `asm`
// statement otherwise). Each model follows the PTX ISA's definition of the instruction; where the
// ISA gives an error bound instead of a result (ex2.approx), the model uses the whole bound.
#pragma once

#include <cmath>
#include <cstdint>
#include <cstring>

namespace gcpo_sim {
namespace ptx {

namespace detail {
inline std::uint32_t bits(float x) {
  std::uint32_t u;
  std::memcpy(&u, &x, 4);
  return u;
}
inline float from_bits(std::uint32_t u) {
  float x;
  std::memcpy(&x, &u, 4);
  return x;
}
/// A fixed scramble of the input bits (splitmix32-like): the model's error is a function of
/// the input, as the hardware's is, and takes every value of the bound over a row of inputs.
inline std::uint32_t scramble(std::uint32_t u) {
  u ^= u >> 16;
  u *= 0x7feb352du;
  u ^= u >> 15;
  u *= 0x846ca68bu;
  u ^= u >> 16;
  return u;
}
/// Round-to-nearest-even of a finite or infinite float to the upper 16 bits (bfloat16).
inline std::uint16_t bf16_rn(float x) {
  const std::uint32_t u = bits(x);
  if ((u & 0x7fffffffu) > 0x7f800000u) return 0x7fffu;  // NaN: the canonical NaN (cvt.rn.bf16x2.f32)
  return static_cast<std::uint16_t>((u + 0x7fffu + ((u >> 16) & 1u)) >> 16);
}
/// Round-to-nearest-even of a float to binary16 (subnormals kept, overflow to infinity).
inline std::uint16_t f16_rn(float x) {
  const std::uint32_t u = bits(x);
  const std::uint16_t sign = static_cast<std::uint16_t>((u >> 16) & 0x8000u);
  const std::uint32_t a = u & 0x7fffffffu;
  if (a > 0x7f800000u) return 0x7fffu;                                  // NaN: canonical NaN
  if (a >= 0x477ff000u) return static_cast<std::uint16_t>(sign | 0x7c00u);  // >= 65520: infinity
  if (a >= 0x38800000u) {                                               // normal binary16
    std::uint32_t r = a - 0x38000000u;
    r += 0xfffu + ((r >> 13) & 1u);
    return static_cast<std::uint16_t>(sign | (r >> 13));
  }
  // |x| < 2^-14: a multiple of 2^-24, rounded to nearest even (exact in double)
  const double q = std::nearbyint(static_cast<double>(from_bits(a)) * 16777216.0);  // FE_TONEAREST
  return static_cast<std::uint16_t>(sign | static_cast<std::uint16_t>(q));
}
inline float bf16_to_f32(std::uint16_t h) { return from_bits(static_cast<std::uint32_t>(h) << 16); }
inline float f16_to_f32(std::uint16_t h) {
  const std::uint32_t sign = static_cast<std::uint32_t>(h & 0x8000u) << 16;
  const std::uint32_t e = (h >> 10) & 0x1fu, m = h & 0x3ffu;
  if (e == 0) {
    const float v = static_cast<float>(m) * 5.9604644775390625e-8f;
    return sign ? -v : v;
  }
  if (e == 31) return from_bits(sign | 0x7f800000u | (m << 13));
  return from_bits(sign | ((e + 112u) << 23) | (m << 13));
}
/// max of two 16-bit floats as max.{bf16,f16}x2 without .NaN: NaN loses to a number; two
/// NaNs give the canonical NaN; -0 < +0.
inline std::uint16_t max16(std::uint16_t a, std::uint16_t b, float fa, float fb) {
  if (fa != fa && fb != fb) return 0x7fffu;
  if (fa != fa) return b;
  if (fb != fb) return a;
  if (fa == fb) return (a & 0x8000u) ? b : a;  // equal values: +0 over -0
  return fa > fb ? a : b;
}
}  // namespace detail

/// ex2.approx.ftz.f32: 2^x. Subnormal inputs count as zero, subnormal results are flushed to
/// +0; 2^-inf = +0, 2^+inf = +inf, NaN stays NaN. The ISA bounds the error by 2 ulp (CUDA's
/// exp2f, the same instruction, documents 2 ulp); the model returns the correctly rounded
/// value moved by -2..+2 ulp, chosen by a scramble of the input bits, so that the simulated
/// kernels see errors of the full documented size rather than none. Integer inputs are
/// modelled exact (2^0 = 1: a lane already at the row's maximum is not rescaled); the
/// kernels' results depend on that in the last bits at most.
inline float ex2_approx_ftz_f32(float x) {
  if (x != x) return x;
  if (std::fabs(x) < 1.17549435e-38f) x = 0.0f;  // .ftz on the input
  const double y = std::exp2(static_cast<double>(x));
  if (y < 1.17549435082228751e-38) return 0.0f;  // .ftz on the result (and -inf -> +0)
  float r = static_cast<float>(y);              // correctly rounded (or +inf)
  if (std::isinf(r) || x == std::nearbyint(x)) return r;
  const int k = static_cast<int>(detail::scramble(detail::bits(x)) % 5u) - 2;  // -2..2 ulp
  std::uint32_t u = detail::bits(r);
  u = static_cast<std::uint32_t>(static_cast<std::int64_t>(u) + k);
  r = detail::from_bits(u);
  if (std::isinf(r)) return 3.40282347e38f;  // the last step down from below infinity cannot reach it
  if (r < 1.17549435e-38f) return 0.0f;
  return r;
}

/// cvt.rn.bf16x2.f32 d, a, b: d = {bf16(a) in bits 31..16, bf16(b) in bits 15..0}, each
/// rounded to nearest even (subnormals kept, overflow to infinity, NaN -> 0x7fff).
inline std::uint32_t cvt_rn_bf16x2_f32(float a, float b) {
  return (static_cast<std::uint32_t>(detail::bf16_rn(a)) << 16) | detail::bf16_rn(b);
}

/// cvt.rn.f16x2.f32 d, a, b: d = {f16(a) in bits 31..16, f16(b) in bits 15..0}, round to
/// nearest even (NaN -> 0x7fff).
inline std::uint32_t cvt_rn_f16x2_f32(float a, float b) {
  return (static_cast<std::uint32_t>(detail::f16_rn(a)) << 16) | detail::f16_rn(b);
}

/// max.bf16x2 d, a, b (no .NaN): lane-wise maximum of two packed bfloat16 pairs.
inline std::uint32_t max_bf16x2(std::uint32_t a, std::uint32_t b) {
  const std::uint16_t lo = detail::max16(static_cast<std::uint16_t>(a), static_cast<std::uint16_t>(b),
                                         detail::bf16_to_f32(static_cast<std::uint16_t>(a)),
                                         detail::bf16_to_f32(static_cast<std::uint16_t>(b)));
  const std::uint16_t hi =
      detail::max16(static_cast<std::uint16_t>(a >> 16), static_cast<std::uint16_t>(b >> 16),
                    detail::bf16_to_f32(static_cast<std::uint16_t>(a >> 16)),
                    detail::bf16_to_f32(static_cast<std::uint16_t>(b >> 16)));
  return (static_cast<std::uint32_t>(hi) << 16) | lo;
}

/// max.f16x2 d, a, b (no .NaN): lane-wise maximum of two packed binary16 pairs.
inline std::uint32_t max_f16x2(std::uint32_t a, std::uint32_t b) {
  const std::uint16_t lo = detail::max16(static_cast<std::uint16_t>(a), static_cast<std::uint16_t>(b),
                                         detail::f16_to_f32(static_cast<std::uint16_t>(a)),
                                         detail::f16_to_f32(static_cast<std::uint16_t>(b)));
  const std::uint16_t hi =
      detail::max16(static_cast<std::uint16_t>(a >> 16), static_cast<std::uint16_t>(b >> 16),
                    detail::f16_to_f32(static_cast<std::uint16_t>(a >> 16)),
                    detail::f16_to_f32(static_cast<std::uint16_t>(b >> 16)));
  return (static_cast<std::uint32_t>(hi) << 16) | lo;
}

}  // namespace ptx
}  // namespace gcpo_sim
