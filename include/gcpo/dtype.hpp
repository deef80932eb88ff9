// gcpo/dtype.hpp - the element types gcpo views can hold, and the 16-bit float storage types.
//
// `bfloat16` and `float16` are plain 16-bit storage types with the same bit layout as CUDA's
// `__nv_bfloat16` and `__half`, so device buffers of those types can be viewed directly. Host
// code converts them to float exactly; float -> 16 bit rounds to nearest even.
#pragma once

#include <cstdint>
#include <cstring>

#include "config.hpp"

namespace gcpo {

/// Runtime element type of a view.
enum class dtype : std::uint8_t { float32, bfloat16, float16, int32, int64, uint8 };

/// Size of one element in bytes.
GCPO_HOST_DEVICE constexpr int dtype_size(dtype t) noexcept {
  return t == dtype::float32 ? 4
       : t == dtype::bfloat16 ? 2
       : t == dtype::float16 ? 2
       : t == dtype::int32 ? 4
       : t == dtype::int64 ? 8
       : 1;
}

/// Name of a dtype as used in messages ("float32", "bfloat16", ...).
inline const char* to_string(dtype t) noexcept {
  switch (t) {
    case dtype::float32: return "float32";
    case dtype::bfloat16: return "bfloat16";
    case dtype::float16: return "float16";
    case dtype::int32: return "int32";
    case dtype::int64: return "int64";
    case dtype::uint8: return "uint8";
  }
  return "unknown";
}

namespace detail {
GCPO_HOST_DEVICE GCPO_FORCEINLINE float bits_to_float(std::uint32_t u) noexcept {
#if defined(__CUDA_ARCH__)
  return __uint_as_float(u);
#else
  float f;
  std::memcpy(&f, &u, 4);
  return f;
#endif
}
GCPO_HOST_DEVICE GCPO_FORCEINLINE std::uint32_t float_to_bits(float f) noexcept {
#if defined(__CUDA_ARCH__)
  return __float_as_uint(f);
#else
  std::uint32_t u;
  std::memcpy(&u, &f, 4);
  return u;
#endif
}
}  // namespace detail

/// bfloat16 storage (1 sign, 8 exponent, 7 mantissa bits).
struct bfloat16 {
  std::uint16_t bits;

  /// Exact widening to float.
  GCPO_HOST_DEVICE GCPO_FORCEINLINE float to_float() const noexcept {
    return detail::bits_to_float(static_cast<std::uint32_t>(bits) << 16);
  }
  /// Round-to-nearest-even narrowing; NaN stays NaN.
  GCPO_HOST_DEVICE static bfloat16 from_float(float f) noexcept {
    std::uint32_t u = detail::float_to_bits(f);
    if ((u & 0x7fffffffu) > 0x7f800000u) return bfloat16{static_cast<std::uint16_t>((u >> 16) | 0x40u)};
    u += 0x7fffu + ((u >> 16) & 1u);
    return bfloat16{static_cast<std::uint16_t>(u >> 16)};
  }
};

/// IEEE binary16 storage (1 sign, 5 exponent, 10 mantissa bits).
struct float16 {
  std::uint16_t bits;

  /// Exact widening to float (subnormals, infinities and NaN included).
  GCPO_HOST_DEVICE float to_float() const noexcept {
    const std::uint32_t sign = static_cast<std::uint32_t>(bits & 0x8000u) << 16;
    const std::uint32_t exp = (bits >> 10) & 0x1fu;
    std::uint32_t mant = bits & 0x3ffu;
    std::uint32_t u;
    if (exp == 0x1fu) {
      u = sign | 0x7f800000u | (mant << 13);
    } else if (exp != 0) {
      u = sign | ((exp + 112u) << 23) | (mant << 13);
    } else if (mant == 0) {
      u = sign;
    } else {  // subnormal: normalise
      std::uint32_t e = 113u;
      while ((mant & 0x400u) == 0) { mant <<= 1; --e; }
      u = sign | (e << 23) | ((mant & 0x3ffu) << 13);
    }
    return detail::bits_to_float(u);
  }
  /// Round-to-nearest-even narrowing (overflow gives infinity; NaN stays NaN).
  GCPO_HOST_DEVICE static float16 from_float(float f) noexcept {
    const std::uint32_t u = detail::float_to_bits(f);
    const std::uint16_t sign = static_cast<std::uint16_t>((u >> 16) & 0x8000u);
    const std::uint32_t a = u & 0x7fffffffu;
    if (a > 0x7f800000u) return float16{static_cast<std::uint16_t>(sign | 0x7e00u)};
    if (a >= 0x477ff000u) return float16{static_cast<std::uint16_t>(sign | 0x7c00u)};  // rounds to >= 65520
    if (a < 0x38800000u) {  // result is subnormal or zero
      if (a < 0x33000000u) return float16{sign};  // below half the smallest subnormal
      const std::uint32_t e = a >> 23;
      const std::uint32_t m = (a & 0x7fffffu) | 0x800000u;
      const std::uint32_t shift = 126u - e;  // 14..24
      std::uint32_t h = m >> shift;
      const std::uint32_t rem = m & ((1u << shift) - 1u);
      const std::uint32_t half = 1u << (shift - 1u);
      if (rem > half || (rem == half && (h & 1u))) ++h;
      return float16{static_cast<std::uint16_t>(sign | h)};
    }
    std::uint32_t h = ((a >> 13) - (112u << 10));
    const std::uint32_t rem = a & 0x1fffu;
    if (rem > 0x1000u || (rem == 0x1000u && (h & 1u))) ++h;
    return float16{static_cast<std::uint16_t>(sign | h)};
  }
};

/// Compile-time mapping from a C++ element type to its dtype.
template <class T> struct dtype_of;
template <> struct dtype_of<float> { static constexpr dtype value = dtype::float32; };
template <> struct dtype_of<bfloat16> { static constexpr dtype value = dtype::bfloat16; };
template <> struct dtype_of<float16> { static constexpr dtype value = dtype::float16; };
template <> struct dtype_of<std::int32_t> { static constexpr dtype value = dtype::int32; };
template <> struct dtype_of<std::int64_t> { static constexpr dtype value = dtype::int64; };
template <> struct dtype_of<std::uint8_t> { static constexpr dtype value = dtype::uint8; };
template <class T> struct dtype_of<const T> : dtype_of<T> {};

/// Widening load of any floating element type to float.
GCPO_HOST_DEVICE GCPO_FORCEINLINE float to_float(float x) noexcept { return x; }
GCPO_HOST_DEVICE GCPO_FORCEINLINE float to_float(bfloat16 x) noexcept { return x.to_float(); }
GCPO_HOST_DEVICE GCPO_FORCEINLINE float to_float(float16 x) noexcept { return x.to_float(); }

/// Narrowing store of a float to any floating element type (round to nearest even).
template <class T> GCPO_HOST_DEVICE GCPO_FORCEINLINE T from_float(float x) noexcept;
template <> GCPO_HOST_DEVICE GCPO_FORCEINLINE float from_float<float>(float x) noexcept { return x; }
template <> GCPO_HOST_DEVICE GCPO_FORCEINLINE bfloat16 from_float<bfloat16>(float x) noexcept { return bfloat16::from_float(x); }
template <> GCPO_HOST_DEVICE GCPO_FORCEINLINE float16 from_float<float16>(float x) noexcept { return float16::from_float(x); }

}  // namespace gcpo
