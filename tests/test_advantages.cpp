// Unit tests of gcpo/advantages.hpp (host twin): group-normalised advantages (spec section 4).
// Expected values are hand-computed or come from a double-precision reference written here.
#include <catch2/catch.hpp>

#include <gcpo/gcpo.hpp>

#include <cmath>
#include <cstdint>
#include <random>
#include <vector>

#include "unit_support.hpp"

using namespace gcpo_test;

namespace {

std::vector<double> reference(const std::vector<float>& rewards, std::int64_t G, gcpo::advantage_std mode, double eps) {
  std::vector<double> out(rewards.size());
  for (std::size_t p = 0; p < rewards.size() / static_cast<std::size_t>(G); ++p) {
    double mean = 0;
    for (std::int64_t g = 0; g < G; ++g) mean += rewards[p * G + g];
    mean /= static_cast<double>(G);
    double ss = 0;
    for (std::int64_t g = 0; g < G; ++g) ss += (rewards[p * G + g] - mean) * (rewards[p * G + g] - mean);
    double den = 1;
    if (mode == gcpo::advantage_std::unbiased) den = std::sqrt(ss / static_cast<double>(G - 1)) + eps;
    if (mode == gcpo::advantage_std::biased) den = std::sqrt(ss / static_cast<double>(G)) + eps;
    for (std::int64_t g = 0; g < G; ++g) {
      const double d = rewards[p * G + g] - mean;
      out[p * G + g] = d == 0 ? 0.0 : d / den;  // equal rewards give 0 (also with eps = 0)
    }
  }
  return out;
}

gcpo::advantage_options opt(std::int64_t G, gcpo::advantage_std s = gcpo::advantage_std::unbiased, float eps = 1e-4f) {
  gcpo::advantage_options o;
  o.group = G;
  o.std = s;
  o.eps = eps;
  return o;
}

std::vector<float> run(const std::vector<float>& rewards, const gcpo::advantage_options& o) {
  std::vector<float> adv(rewards.size(), 123.0f);
  const auto R = static_cast<std::int64_t>(rewards.size());
  GCPO_REQUIRE_OK(gcpo::host::group_advantages(cview(rewards, {R}), view(adv, {R}), o));
  return adv;
}

}  // namespace

TEST_CASE("group_advantages: hand-computed, G = 2", "[advantages]") {
  const std::vector<float> r{1.0f, 3.0f};
  // mean 2, deviations -+1: unbiased std sqrt(2), biased std 1, none: -+1
  const double eps = static_cast<double>(1e-4f);
  check_close(run(r, opt(2)), std::vector<double>{-1 / (std::sqrt(2.0) + eps), 1 / (std::sqrt(2.0) + eps)}, 1e-7, 1e-6, "unbiased");
  check_close(run(r, opt(2, gcpo::advantage_std::biased)), std::vector<double>{-1 / (1 + eps), 1 / (1 + eps)}, 1e-7, 1e-6, "biased");
  check_close(run(r, opt(2, gcpo::advantage_std::none)), std::vector<double>{-1, 1}, 0, 0, "none");
  // eps = 0.5
  check_close(run(r, opt(2, gcpo::advantage_std::biased, 0.5f)), std::vector<double>{-1 / 1.5, 1 / 1.5}, 1e-7, 1e-6, "eps 0.5");
  check_close(run(r, opt(2, gcpo::advantage_std::unbiased, 0.0f)), std::vector<double>{-1 / std::sqrt(2.0), 1 / std::sqrt(2.0)}, 1e-7,
              1e-6, "eps 0");
}

TEST_CASE("group_advantages: hand-computed, G = 4, several prompts", "[advantages]") {
  // prompt 0: [0, 1, 2, 3]: mean 1.5, sum of squares 5: unbiased std sqrt(5/3), biased sqrt(5/4)
  // prompt 1: [10, 10, 10, 14]: mean 11, squares 1+1+1+9 = 12: unbiased std 2
  const std::vector<float> r{0, 1, 2, 3, 10, 10, 10, 14};
  const double eps = static_cast<double>(1e-4f), su = std::sqrt(5.0 / 3) + eps, sb = std::sqrt(5.0 / 4) + eps;
  check_close(run(r, opt(4)), std::vector<double>{-1.5 / su, -0.5 / su, 0.5 / su, 1.5 / su, -1 / (2 + eps), -1 / (2 + eps), -1 / (2 + eps), 3 / (2 + eps)},
              1e-7, 1e-6, "unbiased");
  check_close(run(r, opt(4, gcpo::advantage_std::biased)),
              std::vector<double>{-1.5 / sb, -0.5 / sb, 0.5 / sb, 1.5 / sb, -1 / (std::sqrt(3.0) + eps), -1 / (std::sqrt(3.0) + eps),
                                  -1 / (std::sqrt(3.0) + eps), 3 / (std::sqrt(3.0) + eps)},
              1e-7, 1e-6, "biased");
  check_close(run(r, opt(4, gcpo::advantage_std::none)), std::vector<double>{-1.5, -0.5, 0.5, 1.5, -1, -1, -1, 3}, 0, 0, "none");
  // the same rewards as two groups of 2 and eight groups of 1 (biased / none allow G = 1)
  check_close(run(r, opt(2, gcpo::advantage_std::none)), std::vector<double>{-0.5, 0.5, -0.5, 0.5, 0, 0, -2, 2}, 0, 0, "G = 2");
  check_close(run(r, opt(1, gcpo::advantage_std::biased)), std::vector<double>(8, 0.0), 0, 0, "G = 1 biased");
  check_close(run(r, opt(1, gcpo::advantage_std::none)), std::vector<double>(8, 0.0), 0, 0, "G = 1 none");
}

TEST_CASE("group_advantages: equal rewards give 0, whatever eps", "[advantages]") {
  const std::vector<float> r{0.7f, 0.7f, 0.7f, 0.7f, -3.0f, -3.0f, -3.0f, -3.0f};
  for (auto mode : {gcpo::advantage_std::unbiased, gcpo::advantage_std::biased, gcpo::advantage_std::none})
    for (float eps : {1e-4f, 0.0f, 1.0f}) {
      CAPTURE(static_cast<int>(mode), eps);
      check_close(run(r, opt(4, mode, eps)), std::vector<double>(8, 0.0), 0, 0, "equal rewards");
    }
  // one equal group beside a varied one: only the equal group is 0
  const std::vector<float> mixed{1, 1, 0, 2};
  check_close(run(mixed, opt(2, gcpo::advantage_std::unbiased, 0.0f)), std::vector<double>{0, 0, -1 / std::sqrt(2.0), 1 / std::sqrt(2.0)},
              1e-7, 1e-6, "mixed");
}

TEST_CASE("group_advantages: randomised against the reference, G = 2 .. 16", "[advantages]") {
  for (std::int64_t G : {2, 3, 5, 8, 16}) {
    for (auto mode : {gcpo::advantage_std::unbiased, gcpo::advantage_std::biased, gcpo::advantage_std::none}) {
      const std::uint64_t seed = static_cast<std::uint64_t>(G * 10 + static_cast<int>(mode));
      CAPTURE(G, static_cast<int>(mode), seed);
      std::mt19937_64 rng(seed);
      const std::int64_t P = 5;
      std::vector<float> r = uniform(rng, static_cast<std::size_t>(P * G), 0.0, 1.0);
      // binary rewards in one prompt (the GenEval case), a large offset in another
      for (std::int64_t g = 0; g < G; ++g) r[G + g] = static_cast<float>(rng() % 2);
      for (std::int64_t g = 0; g < G; ++g) r[2 * G + g] += 1000.0f;
      for (float eps : {1e-4f, 0.01f}) {
        const std::vector<float> got = run(r, opt(G, mode, eps));
        check_close(got, reference(r, G, mode, eps), 1e-6, 1e-5, "advantages");
      }
    }
  }
}

TEST_CASE("group_advantages: in place and NaN", "[advantages]") {
  std::vector<float> r{1, 2, 3, 4, 5, 6, 7, 9};
  const std::vector<double> want = reference(r, 4, gcpo::advantage_std::unbiased, 1e-4f);
  GCPO_REQUIRE_OK(gcpo::host::group_advantages(cview(r, {8}), view(r, {8}), opt(4)));
  check_close(r, want, 1e-7, 1e-6, "in place");

  std::vector<float> n{1, nan_f, 3, 4, 5, 6};
  const std::vector<float> a = run(n, opt(2));
  CHECK(std::isnan(a[0]));
  CHECK(std::isnan(a[1]));
  check_close(std::vector<float>(a.begin() + 2, a.end()), reference({3, 4, 5, 6}, 2, gcpo::advantage_std::unbiased, 1e-4f), 1e-7, 1e-6,
              "other groups");
}

TEST_CASE("group_advantages: preconditions", "[advantages]") {
  std::vector<float> r(6, 1.0f), a(6), big(20);
  using sc = gcpo::status_code;
  using gcpo::host::group_advantages;
  GCPO_REQUIRE_OK(group_advantages(cview(r, {6}), view(a, {6}), opt(3)));
  GCPO_CHECK_ERROR(group_advantages(cview(r, {6}), view(a, {6}), opt(1)), sc::invalid_argument,
                   "`options.group` (1) must be at least 2 for the unbiased std");
  GCPO_CHECK_ERROR(group_advantages(cview(r, {6}), view(a, {6}), opt(0, gcpo::advantage_std::biased)), sc::invalid_argument,
                   "`options.group` (0) must be at least 1");
  GCPO_CHECK_ERROR(group_advantages(cview(r, {6}), view(a, {6}), opt(-2, gcpo::advantage_std::none)), sc::invalid_argument,
                   "`options.group` (-2) must be at least 1");
  GCPO_CHECK_ERROR(group_advantages(cview(r, {6}), view(a, {6}), opt(4)), sc::invalid_argument,
                   "`rewards.shape[0]` (R = 6) must be a multiple of `options.group` (4)");
  for (float eps : {-1e-4f, inf_f, nan_f}) {
    CAPTURE(eps);
    GCPO_CHECK_ERROR(group_advantages(cview(r, {6}), view(a, {6}), opt(3, gcpo::advantage_std::unbiased, eps)), sc::invalid_argument,
                     ") must be finite and >= 0");
  }
  GCPO_CHECK_ERROR(group_advantages(cview(r, {2, 3}), view(a, {6}), opt(3)), sc::invalid_argument,
                   "`rewards` must have rank 1 ([R]) but has rank 2");
  GCPO_CHECK_ERROR(group_advantages({}, view(a, {6}), opt(3)), sc::invalid_argument, "`rewards` is required but was not given");
  GCPO_CHECK_ERROR(group_advantages(gcpo::make_view(reinterpret_cast<const std::int32_t*>(r.data()), {6}), view(a, {6}), opt(3)),
                   sc::unsupported_dtype, "`rewards.dtype` is int32; expected one of: float32");
  GCPO_CHECK_ERROR(group_advantages(gcpo::make_strided_view(static_cast<const float*>(big.data()), {6}, {2}), view(a, {6}), opt(3)),
                   sc::invalid_argument, "`rewards` must be contiguous");
  GCPO_CHECK_ERROR(group_advantages(gcpo::make_view(r.data(), {6}, gcpo::memory_space::device), view(a, {6}), opt(3)),
                   sc::wrong_memory_space, "`rewards` is a device view");
  GCPO_CHECK_ERROR(group_advantages(cview(r, {6}), view(a, {5}), opt(3)), sc::invalid_argument,
                   "`advantages.shape[0]` (5) must equal `rewards.shape[0]` (6)");
  GCPO_CHECK_ERROR(group_advantages(cview(r, {6}), gcpo::make_view(reinterpret_cast<gcpo::bfloat16*>(a.data()), {6}), opt(3)),
                   sc::unsupported_dtype, "`advantages.dtype` is bfloat16; expected one of: float32");
  GCPO_CHECK_ERROR(group_advantages(cview(r, {6}), gcpo::tensor_view{}, opt(3)), sc::invalid_argument,
                   "`advantages` is required but was not given");
  GCPO_CHECK_ERROR(group_advantages(cview(big, {6}), gcpo::make_view(big.data() + 2, {6}), opt(3)), sc::aliasing,
                   "`advantages` shall not overlap `rewards` unless it is exactly `rewards` (in place)");
}
