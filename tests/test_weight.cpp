// Unit tests of gcpo/weight.hpp (host twin): the dynamic advantage weight (spec section 5),
// w[r, t] = (1 / (t + 1)) * sum_{j <= t} exp(clip(lp[r, j] - ref[r, j], -c, c)).
// Expected values are hand-computed or come from a double-precision reference written here.
#include <catch2/catch.hpp>

#include <gcpo/gcpo.hpp>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <random>
#include <vector>

#include "unit_support.hpp"

using namespace gcpo_test;

namespace {

std::vector<double> reference(const std::vector<float>& lp, const std::vector<float>& ref, std::int64_t R, std::int64_t N, double c) {
  std::vector<double> w(lp.size());
  for (std::int64_t r = 0; r < R; ++r) {
    double run = 0;
    for (std::int64_t t = 0; t < N; ++t) {
      const double d = static_cast<double>(lp[r * N + t]) - ref[r * N + t];
      run += std::exp(std::min(std::max(d, -c), c));
      w[r * N + t] = run / static_cast<double>(t + 1);
    }
  }
  return w;
}

std::vector<float> run(const std::vector<float>& lp, const std::vector<float>& ref, std::int64_t R, std::int64_t N, float c) {
  std::vector<float> w(lp.size(), -1.0f);
  gcpo::weight_options o;
  o.clip = c;
  GCPO_REQUIRE_OK(gcpo::host::advantage_weight(cview(lp, {R, N}), cview(ref, {R, N}), view(w, {R, N}), o));
  return w;
}

}  // namespace

TEST_CASE("advantage_weight: hand-computed prefix means", "[weight]") {
  // lp - ref = [0, 0.2, -0.3, 1.0, -1.0], c = 0.5: terms e^0, e^0.2, e^-0.3, e^0.5, e^-0.5
  const std::vector<float> ref{-2.0f, -2.0f, -2.0f, -2.0f, -2.0f};
  const std::vector<float> lp{-2.0f, -1.8f, -2.3f, -1.0f, -3.0f};
  const std::vector<float> w = run(lp, ref, 1, 5, 0.5f);
  const double e0 = 1, e1 = std::exp(static_cast<double>(lp[1]) + 2), e2 = std::exp(static_cast<double>(lp[2]) + 2), e3 = std::exp(0.5),
               e4 = std::exp(-0.5);
  check_close(w, std::vector<double>{e0, (e0 + e1) / 2, (e0 + e1 + e2) / 3, (e0 + e1 + e2 + e3) / 4, (e0 + e1 + e2 + e3 + e4) / 5}, 1e-7,
              1e-6, "w");
  // the default clip is 0.5
  std::vector<float> wd(5);
  GCPO_REQUIRE_OK(gcpo::host::advantage_weight(cview(lp, {1, 5}), cview(ref, {1, 5}), view(wd, {1, 5})));
  check_close(wd, w, 0, 0, "default clip");
  // clip 0: every term is 1
  check_close(run(lp, ref, 1, 5, 0.0f), std::vector<double>(5, 1.0), 0, 0, "c = 0");
  // lp == ref: 1
  check_close(run(ref, ref, 1, 5, 0.5f), std::vector<double>(5, 1.0), 0, 0, "lp == ref");
  // a large clip: no clipping, w_0 = e^(lp_0 - ref_0)
  const std::vector<float> w10 = run(lp, ref, 1, 5, 10.0f);
  CHECK(w10[3] == Approx((e0 + e1 + e2 + std::exp(1.0)) / 4).epsilon(1e-6));
  CHECK(w10[4] == Approx((e0 + e1 + e2 + std::exp(1.0) + std::exp(-1.0)) / 5).epsilon(1e-6));
}

TEST_CASE("advantage_weight: clip boundaries", "[weight]") {
  // d exactly +-c (exact in float: lp - ref = +-0.5), and just beyond
  const std::vector<float> ref{-1.5f, -1.0f, -1.5f, -1.0f};
  const std::vector<float> lp{-1.0f, -1.5f, std::nextafter(-1.0f, 0.0f), std::nextafter(-1.5f, -2.0f)};
  const std::vector<float> w = run(lp, ref, 4, 1, 0.5f);  // four rollouts of one token: w = the term
  check_close(w, std::vector<double>{std::exp(0.5), std::exp(-0.5), std::exp(0.5), std::exp(-0.5)}, 1e-7, 1e-6, "boundaries");
  // the gradient passes the clamp on the closed interval (as torch.clamp)
  CHECK(gcpo::detail::clipped_ratio_term(-1.0f, -1.5f, 0.5f).passes);
  CHECK(gcpo::detail::clipped_ratio_term(-1.5f, -1.0f, 0.5f).passes);
  CHECK_FALSE(gcpo::detail::clipped_ratio_term(std::nextafter(-1.0f, 0.0f), -1.5f, 0.5f).passes);
  CHECK_FALSE(gcpo::detail::clipped_ratio_term(std::nextafter(-1.5f, -2.0f), -1.0f, 0.5f).passes);
  CHECK(gcpo::detail::clipped_ratio_term(0.0f, 0.0f, 0.0f).passes);
  CHECK_FALSE(gcpo::detail::clipped_ratio_term(1e-3f, 0.0f, 0.0f).passes);
  CHECK_FALSE(gcpo::detail::clipped_ratio_term(nan_f, 0.0f, 0.5f).passes);
  CHECK(std::isnan(gcpo::detail::clipped_ratio_term(nan_f, 0.0f, 0.5f).value));
  CHECK(gcpo::detail::clipped_ratio_term(-inf_f, 0.0f, 0.5f).value == Approx(std::exp(-0.5)));
}

TEST_CASE("advantage_weight: randomised against the reference", "[weight]") {
  for (std::uint64_t seed = 1; seed <= 6; ++seed) {
    std::mt19937_64 rng(seed);
    const std::int64_t R = 1 + static_cast<std::int64_t>(rng() % 5), N = 1 + static_cast<std::int64_t>(rng() % 600);
    const float c = seed == 6 ? 0.0f : static_cast<float>(0.1 * static_cast<double>(seed));
    CAPTURE(seed, R, N, c);
    const std::vector<float> ref = uniform(rng, static_cast<std::size_t>(R * N), -9.0, -0.01);
    std::vector<float> lp = ref;
    const std::vector<float> delta = normal(rng, lp.size(), 0.0, 0.6);
    for (std::size_t i = 0; i < lp.size(); ++i) lp[i] += delta[i];
    check_close(run(lp, ref, R, N, c), reference(lp, ref, R, N, c), 1e-6, 1e-5, "w");
  }
}

TEST_CASE("advantage_weight: NaN at j makes the weights from j on NaN", "[weight]") {
  std::vector<float> lp{0, 0, nan_f, 0, 0, 0, 0, 0}, ref(8, 0.0f);
  const std::vector<float> w = run(lp, ref, 2, 4, 0.5f);
  CHECK(w[0] == 1.0f);
  CHECK(w[1] == 1.0f);
  CHECK(std::isnan(w[2]));
  CHECK(std::isnan(w[3]));
  for (int t = 4; t < 8; ++t) CHECK(w[t] == 1.0f);  // the next rollout is unaffected
}

TEST_CASE("advantage_weight: preconditions", "[weight]") {
  const std::int64_t R = 2, N = 3;
  std::vector<float> lp(R * N), ref(R * N), w(R * N), big(20);
  using sc = gcpo::status_code;
  using gcpo::host::advantage_weight;
  const auto L = cview(lp, {R, N});
  const auto F = cview(ref, {R, N});
  const auto W = view(w, {R, N});
  GCPO_REQUIRE_OK(advantage_weight(L, F, W));
  for (float c : {-0.1f, inf_f, nan_f}) {
    CAPTURE(c);
    gcpo::weight_options o;
    o.clip = c;
    GCPO_CHECK_ERROR(advantage_weight(L, F, W, o), sc::invalid_argument, "`options.clip` (");
    GCPO_CHECK_ERROR(advantage_weight(L, F, W, o), sc::invalid_argument, ") must be finite and >= 0");
  }
  GCPO_CHECK_ERROR(advantage_weight(cview(lp, {R * N}), F, W), sc::invalid_argument, "`logp` must have rank 2 ([R, N]) but has rank 1");
  GCPO_CHECK_ERROR(advantage_weight(L, cview(ref, {N, R}), W), sc::invalid_argument,
                   "`ref_logp.shape[0]` (3) must equal `logp.shape[0]` (2)");
  GCPO_CHECK_ERROR(advantage_weight(L, cview(ref, {R, 2}), W), sc::invalid_argument, "`ref_logp.shape[1]` (2) must equal N (3)");
  GCPO_CHECK_ERROR(advantage_weight(L, {}, W), sc::invalid_argument, "`ref_logp` is required but was not given");
  GCPO_CHECK_ERROR(advantage_weight(L, F, gcpo::make_view(reinterpret_cast<gcpo::float16*>(w.data()), {R, N})), sc::unsupported_dtype,
                   "`weight.dtype` is float16; expected one of: float32");
  GCPO_CHECK_ERROR(advantage_weight(L, F, gcpo::make_strided_view(big.data(), {R, N}, {4, 1})), sc::invalid_argument,
                   "`weight` must be contiguous");
  GCPO_CHECK_ERROR(advantage_weight(L, F, gcpo::make_view(w.data(), {R, N}, gcpo::memory_space::device)), sc::wrong_memory_space,
                   "`weight` is a device view");
  GCPO_CHECK_ERROR(advantage_weight(L, F, view(lp, {R, N})), sc::aliasing, "`weight` shall not overlap `logp`");
  GCPO_CHECK_ERROR(advantage_weight(L, F, view(ref, {R, N})), sc::aliasing, "`weight` shall not overlap `ref_logp`");
}
