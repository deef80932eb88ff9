// tests/sim/include/cuda_fp16.h - the __half conversions gcpo's kernels use, under the gcpo SIMT
// simulator: exact IEEE binary16 <-> binary32 (round to nearest even, as the device's _rn forms).
#pragma once

#include "gcpo_sim/device.hpp"

struct __half {
  unsigned short __x;
};

inline __half __ushort_as_half(unsigned short v) { return __half{v}; }
inline unsigned short __half_as_ushort(__half h) { return h.__x; }

inline float __half2float(__half h) {
  const unsigned int sign = static_cast<unsigned int>(h.__x & 0x8000u) << 16;
  const unsigned int e = (h.__x >> 10) & 0x1fu, m = h.__x & 0x3ffu;
  if (e == 0) {  // zero or subnormal: m * 2^-24, exact in float
    const float v = static_cast<float>(m) * 5.9604644775390625e-8f;
    return sign ? -v : v;
  }
  if (e == 31) return __uint_as_float(sign | 0x7f800000u | (m << 13));
  return __uint_as_float(sign | ((e + 112u) << 23) | (m << 13));
}

inline __half __float2half_rn(float f) {
  const unsigned int x = __float_as_uint(f);
  const unsigned short sign = static_cast<unsigned short>((x >> 16) & 0x8000u);
  const unsigned int ax = x & 0x7fffffffu;
  if (ax > 0x7f800000u) return __half{0x7fffu};                              // NaN: the device's canonical NaN
  if (ax >= 0x477ff000u) return __half{static_cast<unsigned short>(sign | 0x7c00u)};  // >= 65520 rounds to inf
  if (ax >= 0x38800000u) {                                                  // normal half
    unsigned int r = ax - 0x38000000u;                                      // rebias the exponent
    r += 0xfffu + ((r >> 13) & 1u);                                         // round to nearest even
    return __half{static_cast<unsigned short>(sign | (r >> 13))};
  }
  // Subnormal or zero: adding 0.5 (ulp 2^-24 in [0.5, 1)) rounds |f| to a multiple of 2^-24, RNE.
  volatile float a = __uint_as_float(ax);
  const float s = a + 0.5f;
  return __half{static_cast<unsigned short>(sign | (__float_as_uint(s) - 0x3f000000u))};
}
