// tests/unit_support.hpp - helpers of the unit tests (one test file per operator family):
// status assertions that print the message, seeded random inputs whose seed is printed on
// failure, independent decoders of the 16-bit float formats, and an element-wise check.
#pragma once

#include <catch2/catch.hpp>

#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>
#include <random>
#include <string>
#include <vector>

#include "support.hpp"

/// Requires `expr` (a gcpo::status) to be ok; prints its message otherwise.
#define GCPO_REQUIRE_OK(expr)                         \
  do {                                                \
    const ::gcpo::status gcpo_st_ = (expr);           \
    INFO("status message: " << gcpo_st_.message());   \
    REQUIRE(gcpo_st_.ok());                           \
  } while (0)

/// Checks that `expr` fails with `want_code` and a message that contains `want_text`.
#define GCPO_CHECK_ERROR(expr, want_code, want_text)                                      \
  do {                                                                                    \
    const ::gcpo::status gcpo_st_ = (expr);                                               \
    INFO("status message: " << gcpo_st_.message());                                       \
    CHECK(gcpo_st_.code() == (want_code));                                                \
    CHECK_THAT(std::string(gcpo_st_.message()), Catch::Matchers::Contains(want_text));    \
  } while (0)

namespace gcpo_test {

constexpr float inf_f = std::numeric_limits<float>::infinity();
constexpr double inf_d = std::numeric_limits<double>::infinity();
const float nan_f = std::numeric_limits<float>::quiet_NaN();

/// The loss inputs from views in the order logp, ref_logp, old_logp, advantages, mask (the
/// order the hostile-input and fuzz tests list the loss's arguments in).
inline gcpo::loss_inputs loss_inputs_from(const std::vector<gcpo::tensor_view>& v) {
  gcpo::loss_inputs in;
  in.logp = v.at(0);
  in.ref_logp = v.at(1);
  in.old_logp = v.at(2);
  in.advantages = v.at(3);
  in.mask = v.at(4);
  return in;
}

/// Element-wise check through `compare` (support.hpp); prints the first mismatches.
template <class A, class B>
void check_close(const A& got, const B& want, double atol, double rtol, const std::string& what) {
  const comparison c = compare(got, want, atol, rtol, what);
  INFO(c.report);
  CHECK(c.ok());
}

/// Uniform floats in [lo, hi) from a seeded engine.
inline std::vector<float> uniform(std::mt19937_64& rng, std::size_t n, double lo, double hi) {
  std::uniform_real_distribution<double> d(lo, hi);
  std::vector<float> v(n);
  for (auto& x : v) x = static_cast<float>(d(rng));
  return v;
}

/// Normal floats.
inline std::vector<float> normal(std::mt19937_64& rng, std::size_t n, double mean, double sd) {
  std::normal_distribution<double> d(mean, sd);
  std::vector<float> v(n);
  for (auto& x : v) x = static_cast<float>(d(rng));
  return v;
}

/// bfloat16 bits -> value, written independently of the library (top half of a float).
inline double bf16_value(std::uint16_t bits) {
  const std::uint32_t u = static_cast<std::uint32_t>(bits) << 16;
  float f;
  std::memcpy(&f, &u, 4);
  return f;
}

/// IEEE binary16 bits -> value, written independently of the library (from the definition).
inline double fp16_value(std::uint16_t bits) {
  const int sign = (bits & 0x8000u) ? -1 : 1;
  const int exp = (bits >> 10) & 0x1f;
  const int mant = bits & 0x3ff;
  if (exp == 0x1f) return mant ? std::numeric_limits<double>::quiet_NaN() : sign * inf_d;
  if (exp == 0) return sign * std::ldexp(static_cast<double>(mant), -24);
  return sign * std::ldexp(1.0 + mant / 1024.0, exp - 15);
}

inline double value_of(float x) { return x; }
inline double value_of(gcpo::bfloat16 x) { return bf16_value(x.bits); }
inline double value_of(gcpo::float16 x) { return fp16_value(x.bits); }

/// A vector of float inputs stored as T (rounded by the library's from_float, which
/// test_views checks); `values` receives the exact stored values for a reference.
template <class T>
std::vector<T> stored_as(const std::vector<float>& in, std::vector<double>& values) {
  std::vector<T> out(in.size());
  values.resize(in.size());
  for (std::size_t i = 0; i < in.size(); ++i) {
    out[i] = gcpo::from_float<T>(in[i]);
    values[i] = value_of(out[i]);
  }
  return out;
}

}  // namespace gcpo_test
