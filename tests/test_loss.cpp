// Unit tests of gcpo/loss.hpp (host twin): gcpo_loss_forward and gcpo_loss_backward.
//
// A double-precision reference of the loss is written here from the spec (sections 5 and 6),
// not from the library: its analytic gradient is checked against central finite differences of
// its forward, then the library's forward and backward are checked against it. Small cases are
// computed by hand.
#include <catch2/catch.hpp>

#include <gcpo/gcpo.hpp>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <random>
#include <string>
#include <vector>

#include "unit_support.hpp"

using namespace gcpo_test;
using u8 = std::uint8_t;

namespace {

/// One loss problem: per-token inputs [R, N] and advantages [R]; `old` empty means on-policy,
/// `mask` empty means every token.
struct problem {
  std::int64_t R = 0, N = 0;
  std::vector<float> lp, ref, old, adv;
  std::vector<u8> mask;
};

struct ref_result {
  double loss = 0, kl_mean = 0, clip_fraction = 0, weight_mean = 0, count = 0, denominator = 0;
  std::vector<double> w, kl;
};

bool in_mask(const problem& p, std::int64_t i) { return p.mask.empty() || p.mask[static_cast<std::size_t>(i)] != 0; }

/// Z_r of rollout r (0: the rollout contributes nothing).
double normaliser(const problem& p, const gcpo::loss_options& o, std::int64_t r, double count) {
  switch (o.aggregation) {
    case gcpo::loss_aggregation::token_mean: return count;
    case gcpo::loss_aggregation::sequence_mean: {
      double c = 0;
      for (std::int64_t t = 0; t < p.N; ++t) c += in_mask(p, r * p.N + t) ? 1 : 0;
      return static_cast<double>(p.R) * c;
    }
    case gcpo::loss_aggregation::constant: return static_cast<double>(p.R) * (o.max_tokens > 0 ? o.max_tokens : static_cast<double>(p.N));
    case gcpo::loss_aggregation::external: return o.denominator;
  }
  return 0;
}

/// The loss of the spec in double. `lp` is the variable; `lp_w` feeds the dynamic weight (lp
/// itself, or a constant copy when the weight is detached); `old` is the sampling log-prob (a
/// constant copy of lp when on-policy: rho = exp(lp - stop_gradient(lp))).
ref_result ref_forward(const problem& p, const std::vector<double>& lp, const std::vector<double>& lp_w, const std::vector<double>& old,
                       const gcpo::loss_options& o) {
  ref_result out;
  const std::int64_t R = p.R, N = p.N;
  out.w.assign(static_cast<std::size_t>(R * N), 1.0);
  out.kl.assign(static_cast<std::size_t>(R * N), 0.0);
  for (std::int64_t i = 0; i < R * N; ++i) out.count += in_mask(p, i) ? 1 : 0;
  const double c = o.weight_clip;
  for (std::int64_t r = 0; r < R; ++r) {
    const double Z = normaliser(p, o, r, out.count);
    const double A = p.adv[static_cast<std::size_t>(r)];
    double prefix = 0, row = 0;
    for (std::int64_t t = 0; t < N; ++t) {
      const std::size_t i = static_cast<std::size_t>(r * N + t);
      const double ref = p.ref[i];
      prefix += std::exp(std::min(std::max(lp_w[i] - ref, -c), c));
      const double w = o.algo == gcpo::algorithm::gcpo ? prefix / static_cast<double>(t + 1) : 1.0;
      const double rho = std::exp(lp[i] - old[i]);
      double pg = -rho * A;
      bool clip_active = false;
      if (o.clipping == gcpo::ratio_clipping::ppo) {
        const double lo = 1.0 - o.eps_low, hi = 1.0 + o.eps_high;
        pg = -std::min(rho * A, std::min(std::max(rho, lo), hi) * A);
        clip_active = (rho > hi && A > 0) || (rho < lo && A < 0);
      }
      const double kl = std::exp(ref - lp[i]) - (ref - lp[i]) - 1;
      out.w[i] = w;
      out.kl[i] = kl;
      if (!in_mask(p, static_cast<std::int64_t>(i))) continue;
      row += pg * w + static_cast<double>(o.beta) * kl;
      out.kl_mean += kl;
      out.clip_fraction += clip_active ? 1 : 0;
      out.weight_mean += w;
    }
    if (Z > 0) out.loss += row / Z;
  }
  if (out.count > 0) {
    out.kl_mean /= out.count;
    out.clip_fraction /= out.count;
    out.weight_mean /= out.count;
  }
  switch (o.aggregation) {
    case gcpo::loss_aggregation::token_mean: out.denominator = out.count; break;
    case gcpo::loss_aggregation::sequence_mean: out.denominator = static_cast<double>(R); break;
    case gcpo::loss_aggregation::constant: out.denominator = normaliser(p, o, 0, out.count); break;
    case gcpo::loss_aggregation::external: out.denominator = o.denominator; break;
  }
  return out;
}

std::vector<double> to_double(const std::vector<float>& v) { return std::vector<double>(v.begin(), v.end()); }

/// The forward at the problem's own point.
ref_result ref_forward(const problem& p, const gcpo::loss_options& o) {
  const std::vector<double> lp = to_double(p.lp);
  return ref_forward(p, lp, lp, p.old.empty() ? lp : to_double(p.old), o);
}

/// dL/dlp in closed form (derived from the spec by hand):
///   dL/dlp_u = (1/Z) [ m_u (dpg_u w_u + beta (1 - e^(ref_u - lp_u)))
///                     + [weight not detached] e_u [|lp_u - ref_u| <= c] sum_{t >= u} m_t pg_t / (t + 1) ]
/// with dpg = -rho A, or 0 where the PPO clipped branch is the smaller one (the clamp is then
/// saturated).
std::vector<double> ref_backward(const problem& p, const gcpo::loss_options& o) {
  const std::int64_t R = p.R, N = p.N;
  std::vector<double> g(static_cast<std::size_t>(R * N), 0.0);
  double count = 0;
  for (std::int64_t i = 0; i < R * N; ++i) count += in_mask(p, i) ? 1 : 0;
  const double c = o.weight_clip;
  const bool through_w = o.algo == gcpo::algorithm::gcpo && !o.detach_weight;
  for (std::int64_t r = 0; r < R; ++r) {
    const double Z = normaliser(p, o, r, count);
    if (!(Z > 0)) continue;
    const double A = p.adv[static_cast<std::size_t>(r)];
    std::vector<double> pg(static_cast<std::size_t>(N)), dpg(static_cast<std::size_t>(N)), e(static_cast<std::size_t>(N));
    double prefix = 0;
    for (std::int64_t t = 0; t < N; ++t) {
      const std::size_t i = static_cast<std::size_t>(r * N + t);
      const double lp = p.lp[i], ref = p.ref[i], old = p.old.empty() ? lp : p.old[i];
      const double d = lp - ref;
      e[t] = std::exp(std::min(std::max(d, -c), c));
      prefix += e[t];
      const double w = o.algo == gcpo::algorithm::gcpo ? prefix / static_cast<double>(t + 1) : 1.0;
      const double rho = std::exp(lp - old);
      pg[t] = -rho * A;
      dpg[t] = -rho * A;
      if (o.clipping == gcpo::ratio_clipping::ppo) {
        const double lo = 1.0 - o.eps_low, hi = 1.0 + o.eps_high, rc = std::min(std::max(rho, lo), hi);
        if (rc * A < rho * A) {
          pg[t] = -rc * A;
          dpg[t] = 0;
        }
      }
      if (in_mask(p, r * N + t)) g[i] = (dpg[t] * w + static_cast<double>(o.beta) * (1 - std::exp(ref - lp))) / Z;
    }
    if (!through_w) continue;
    double suffix = 0;
    for (std::int64_t u = N - 1; u >= 0; --u) {
      const std::size_t i = static_cast<std::size_t>(r * N + u);
      if (in_mask(p, r * N + u)) suffix += pg[u] / static_cast<double>(u + 1);
      const double d = static_cast<double>(p.lp[i]) - p.ref[i];
      if (d >= -c && d <= c) g[i] += e[u] * suffix / Z;
    }
  }
  return g;
}

/// Central differences of the reference forward in lp (the weight follows lp unless detached;
/// `old` stays at the problem's point, which is stop_gradient when on-policy).
std::vector<double> finite_differences(const problem& p, const gcpo::loss_options& o, double h) {
  const std::vector<double> base = to_double(p.lp);
  const std::vector<double> old = p.old.empty() ? base : to_double(p.old);
  std::vector<double> lp = base, g(base.size());
  const bool detached = o.detach_weight;
  for (std::size_t i = 0; i < base.size(); ++i) {
    lp[i] = base[i] + h;
    const double up = ref_forward(p, lp, detached ? base : lp, old, o).loss;
    lp[i] = base[i] - h;
    const double dn = ref_forward(p, lp, detached ? base : lp, old, o).loss;
    lp[i] = base[i];
    g[i] = (up - dn) / (2 * h);
  }
  return g;
}

struct lib_result {
  std::vector<float> stats, w, kl, grad;
};

gcpo::loss_inputs inputs_of(const problem& p) {
  gcpo::loss_inputs in;
  in.logp = cview(p.lp, {p.R, p.N});
  in.ref_logp = cview(p.ref, {p.R, p.N});
  if (!p.old.empty()) in.old_logp = cview(p.old, {p.R, p.N});
  in.advantages = cview(p.adv, {p.R});
  if (!p.mask.empty()) in.mask = cview(p.mask, {p.R, p.N});
  return in;
}

lib_result run_lib(const problem& p, const gcpo::loss_options& o, const std::vector<float>& grad_loss = {}) {
  lib_result res;
  res.stats.assign(gcpo::loss_stat_count, -99.0f);
  res.w.assign(static_cast<std::size_t>(p.R * p.N), -99.0f);
  res.kl.assign(static_cast<std::size_t>(p.R * p.N), -99.0f);
  res.grad.assign(static_cast<std::size_t>(p.R * p.N), -99.0f);
  const gcpo::loss_inputs in = inputs_of(p);
  gcpo::loss_outputs out;
  out.stats = view(res.stats, {gcpo::loss_stat_count});
  out.weight = view(res.w, {p.R, p.N});
  out.kl = view(res.kl, {p.R, p.N});
  GCPO_REQUIRE_OK(gcpo::host::gcpo_loss_forward(in, out, o));
  GCPO_REQUIRE_OK(gcpo::host::gcpo_loss_backward(in, grad_loss.empty() ? gcpo::const_tensor_view{} : cview(grad_loss, {1}),
                                                 view(res.grad, {p.R, p.N}), o));
  return res;
}

double max_abs(const std::vector<double>& v) {
  double m = 0;
  for (double x : v) m = std::max(m, std::fabs(x));
  return m;
}

/// A random problem away from the kinks of the clamps (so finite differences are valid).
problem random_problem(std::mt19937_64& rng, std::int64_t R, std::int64_t N, bool with_old, bool with_mask, const gcpo::loss_options& o) {
  problem p;
  p.R = R;
  p.N = N;
  p.lp = uniform(rng, static_cast<std::size_t>(R * N), -6.0, -0.05);
  p.ref = p.lp;
  const std::vector<float> dref = normal(rng, p.lp.size(), 0.0, 0.6);
  for (std::size_t i = 0; i < p.ref.size(); ++i) {
    float d = dref[i];
    // keep |lp - ref| away from the weight clip c
    if (std::fabs(std::fabs(d) - o.weight_clip) < 0.02f) d += 0.05f;
    p.ref[i] = p.lp[i] - d;
  }
  if (with_old) {
    p.old = p.lp;
    const std::vector<float> dold = normal(rng, p.lp.size(), 0.0, 0.3);
    for (std::size_t i = 0; i < p.old.size(); ++i) {
      float d = dold[i];
      const double rho = std::exp(static_cast<double>(d));
      if (std::fabs(rho - (1 - o.eps_low)) < 0.02 || std::fabs(rho - (1 + o.eps_high)) < 0.02) d += 0.05f;
      p.old[i] = p.lp[i] - d;
    }
  }
  p.adv = normal(rng, static_cast<std::size_t>(R), 0.0, 1.0);
  if (with_mask) {
    p.mask.resize(static_cast<std::size_t>(R * N));
    for (auto& m : p.mask) m = rng() % 2 ? 1 : 0;
  }
  return p;
}

const char* agg_name(gcpo::loss_aggregation a) {
  switch (a) {
    case gcpo::loss_aggregation::token_mean: return "token_mean";
    case gcpo::loss_aggregation::sequence_mean: return "sequence_mean";
    case gcpo::loss_aggregation::constant: return "constant";
    case gcpo::loss_aggregation::external: return "external";
  }
  return "?";
}

}  // namespace

// ---- hand-computed ----------------------------------------------------------------------

TEST_CASE("loss: GRPO and GCPO by hand (on-policy, one rollout of two tokens)", "[loss]") {
  // A = 2, lp = ref (w = 1, kl = 0), beta = 0: pg = -2 per token, L = -2.
  problem p;
  p.R = 1;
  p.N = 2;
  p.lp = {-1.0f, -2.0f};
  p.ref = p.lp;
  p.adv = {2.0f};
  gcpo::loss_options o;
  o.beta = 0.0f;
  o.algo = gcpo::algorithm::grpo;
  lib_result g = run_lib(p, o);
  CHECK(g.stats[gcpo::loss_stat_loss] == Approx(-2.0));
  // dL/dlp = -A / Z = -1 (rho = 1 with gradient 1)
  check_close(g.grad, std::vector<double>{-1, -1}, 1e-7, 1e-6, "GRPO grad");
  check_close(g.w, std::vector<double>{1, 1}, 0, 0, "GRPO weight");
  CHECK(g.stats[gcpo::loss_stat_weight_mean] == 1.0f);
  CHECK(g.stats[gcpo::loss_stat_token_count] == 2.0f);
  CHECK(g.stats[gcpo::loss_stat_denominator] == 2.0f);
  CHECK(g.stats[gcpo::loss_stat_kl_mean] == 0.0f);
  CHECK(g.stats[gcpo::loss_stat_clip_fraction] == 0.0f);

  o.algo = gcpo::algorithm::gcpo;
  g = run_lib(p, o);
  CHECK(g.stats[gcpo::loss_stat_loss] == Approx(-2.0));
  // direct -1 each; through w: u = 0: (pg_0 / 1 + pg_1 / 2) / Z = (-2 - 1) / 2 = -1.5, u = 1: (pg_1 / 2) / Z = -0.5
  check_close(g.grad, std::vector<double>{-2.5, -1.5}, 1e-7, 1e-6, "GCPO grad");
  o.detach_weight = true;
  g = run_lib(p, o);
  check_close(g.grad, std::vector<double>{-1, -1}, 1e-7, 1e-6, "GCPO grad, weight detached");
  CHECK(g.stats[gcpo::loss_stat_loss] == Approx(-2.0));
}

TEST_CASE("loss: KL term by hand", "[loss]") {
  // lp - ref = ln 2, A = 0, beta = 0.5: kl = e^(-ln 2) + ln 2 - 1 = 0.5 + ln 2 - 1, dkl/dlp = 1 - 0.5
  problem p;
  p.R = 1;
  p.N = 1;
  p.ref = {-1.0f};
  p.lp = {-1.0f + static_cast<float>(std::log(2.0))};
  p.adv = {0.0f};
  gcpo::loss_options o;
  o.beta = 0.5f;
  const lib_result g = run_lib(p, o);
  const double kl = 0.5 + std::log(2.0) - 1;
  CHECK(g.kl[0] == Approx(kl).epsilon(1e-5));
  CHECK(g.stats[gcpo::loss_stat_kl_mean] == Approx(kl).epsilon(1e-5));
  CHECK(g.stats[gcpo::loss_stat_loss] == Approx(0.5 * kl).epsilon(1e-5));
  CHECK(g.grad[0] == Approx(0.25).epsilon(1e-5));
  // |lp - ref| = ln 2 > c = 0.5: w = e^0.5
  CHECK(g.w[0] == Approx(std::exp(0.5)).epsilon(1e-6));
  CHECK(g.stats[gcpo::loss_stat_weight_mean] == Approx(std::exp(0.5)).epsilon(1e-6));
}

TEST_CASE("loss: PPO clipping and clip fraction by hand", "[loss]") {
  // four rollouts of one token, GRPO, beta 0, eps 0.2: rho = [1.5, 1.5, 0.5, 0.5], A = [1, -1, 1, -1]
  //   pg = -min(rho A, clip(rho) A) = [-1.2 (clipped), 1.5, -0.5, 0.8 (clipped)], L = 0.6 / 4 = 0.15
  //   dL/dlp = [0, 1.5, -0.5, 0] / 4; clip fraction 2 / 4
  problem p;
  p.R = 4;
  p.N = 1;
  p.lp = {-1.0f, -1.0f, -1.0f, -1.0f};
  p.ref = p.lp;
  p.old = {-1.0f - static_cast<float>(std::log(1.5)), -1.0f - static_cast<float>(std::log(1.5)),
           -1.0f - static_cast<float>(std::log(0.5)), -1.0f - static_cast<float>(std::log(0.5))};
  p.adv = {1.0f, -1.0f, 1.0f, -1.0f};
  gcpo::loss_options o;
  o.algo = gcpo::algorithm::grpo;
  o.clipping = gcpo::ratio_clipping::ppo;
  o.beta = 0.0f;
  lib_result g = run_lib(p, o);
  CHECK(g.stats[gcpo::loss_stat_loss] == Approx(0.15).epsilon(1e-5));
  CHECK(g.stats[gcpo::loss_stat_clip_fraction] == Approx(0.5));
  check_close(g.grad, std::vector<double>{0, 0.375, -0.125, 0}, 1e-6, 1e-5, "PPO grad");
  // eps_high 0.6: the first token is no longer clipped
  o.eps_high = 0.6f;
  g = run_lib(p, o);
  CHECK(g.stats[gcpo::loss_stat_loss] == Approx(0.075).epsilon(1e-5));
  CHECK(g.stats[gcpo::loss_stat_clip_fraction] == Approx(0.25));
  check_close(g.grad, std::vector<double>{-0.375, 0.375, -0.125, 0}, 1e-6, 1e-5, "PPO grad, eps_high 0.6");
  // eps_low 0.6: the last token is not clipped either (0.5 > 0.4)
  o.eps_low = 0.6f;
  g = run_lib(p, o);
  CHECK(g.stats[gcpo::loss_stat_loss] == Approx((-1.5 + 1.5 - 0.5 + 0.5) / 4).margin(1e-6));
  CHECK(g.stats[gcpo::loss_stat_clip_fraction] == 0.0f);
  check_close(g.grad, std::vector<double>{-0.375, 0.375, -0.125, 0.125}, 1e-6, 1e-5, "PPO grad, unclipped");
  // without clipping the same ratios give -rho A
  o.clipping = gcpo::ratio_clipping::none;
  o.eps_low = o.eps_high = 0.2f;
  g = run_lib(p, o);
  CHECK(g.stats[gcpo::loss_stat_clip_fraction] == 0.0f);
  check_close(g.grad, std::vector<double>{-0.375, 0.375, -0.125, 0.125}, 1e-6, 1e-5, "no clipping");
  // PPO on-policy: rho = 1 is never clipped
  p.old.clear();
  o.clipping = gcpo::ratio_clipping::ppo;
  g = run_lib(p, o);
  CHECK(g.stats[gcpo::loss_stat_clip_fraction] == 0.0f);
  check_close(g.grad, std::vector<double>{-0.25, 0.25, -0.25, 0.25}, 1e-7, 1e-6, "PPO on-policy");
}

TEST_CASE("loss: every aggregation by hand", "[loss]") {
  // R = 2, N = 2, GRPO, on-policy, beta 0, A = [1, 2], mask [[1, 0], [1, 1]]: pg = [-1, -1 | -2, -2]
  problem p;
  p.R = 2;
  p.N = 2;
  p.lp = {-1, -1, -1, -1};
  p.ref = p.lp;
  p.adv = {1, 2};
  p.mask = {1, 0, 1, 1};
  gcpo::loss_options o;
  o.algo = gcpo::algorithm::grpo;
  o.beta = 0.0f;
  struct row {
    gcpo::loss_aggregation agg;
    double max_tokens, denominator;
    double loss, z;
    std::vector<double> grad;
  };
  const std::vector<row> rows{
      {gcpo::loss_aggregation::token_mean, 0, 0, -5.0 / 3, 3, {-1.0 / 3, 0, -2.0 / 3, -2.0 / 3}},
      {gcpo::loss_aggregation::sequence_mean, 0, 0, (-1.0 - 2.0) / 2, 2, {-0.5, 0, -0.5, -0.5}},
      {gcpo::loss_aggregation::constant, 0, 0, -5.0 / 4, 4, {-0.25, 0, -0.5, -0.5}},
      {gcpo::loss_aggregation::constant, 10, 0, -5.0 / 20, 20, {-0.05, 0, -0.1, -0.1}},
      {gcpo::loss_aggregation::external, 0, 8, -5.0 / 8, 8, {-0.125, 0, -0.25, -0.25}},
  };
  for (const row& rw : rows) {
    CAPTURE(agg_name(rw.agg), rw.max_tokens);
    o.aggregation = rw.agg;
    o.max_tokens = rw.max_tokens;
    o.denominator = rw.denominator;
    const lib_result g = run_lib(p, o);
    CHECK(g.stats[gcpo::loss_stat_loss] == Approx(rw.loss).epsilon(1e-6));
    CHECK(g.stats[gcpo::loss_stat_denominator] == Approx(rw.z));
    CHECK(g.stats[gcpo::loss_stat_token_count] == 3.0f);
    CHECK(g.stats[gcpo::loss_stat_weight_mean] == 1.0f);
    check_close(g.grad, rw.grad, 1e-7, 1e-6, "grad");
    // grad_loss scales the gradient
    const lib_result g3 = run_lib(p, o, {3.0f});
    std::vector<double> scaled = rw.grad;
    for (auto& x : scaled) x *= 3;
    check_close(g3.grad, scaled, 1e-7, 1e-6, "grad * grad_loss");
    const lib_result gm = run_lib(p, o, {-0.5f});
    for (auto& x : scaled) x *= -0.5 / 3;
    check_close(gm.grad, scaled, 1e-7, 1e-6, "grad * -0.5");
  }
}

TEST_CASE("loss: an empty mask gives loss 0 and zero gradients", "[loss]") {
  std::mt19937_64 rng(4);
  for (auto agg : {gcpo::loss_aggregation::token_mean, gcpo::loss_aggregation::sequence_mean, gcpo::loss_aggregation::constant}) {
    CAPTURE(agg_name(agg));
    gcpo::loss_options o;
    o.aggregation = agg;
    problem p = random_problem(rng, 2, 5, true, true, o);
    std::fill(p.mask.begin(), p.mask.end(), u8{0});
    const lib_result g = run_lib(p, o);
    CHECK(g.stats[gcpo::loss_stat_loss] == 0.0f);
    CHECK(g.stats[gcpo::loss_stat_kl_mean] == 0.0f);
    CHECK(g.stats[gcpo::loss_stat_clip_fraction] == 0.0f);
    CHECK(g.stats[gcpo::loss_stat_weight_mean] == 0.0f);
    CHECK(g.stats[gcpo::loss_stat_token_count] == 0.0f);
    check_close(g.grad, std::vector<double>(10, 0.0), 0, 0, "grad");
    // weight and kl are still written for every token
    const ref_result want = ref_forward(p, o);
    check_close(g.w, want.w, 1e-6, 1e-5, "weight");
    check_close(g.kl, want.kl, 1e-6, 1e-5, "kl");
  }
  // sequence_mean with one empty rollout: it contributes 0 and still counts in the R of the mean
  gcpo::loss_options o;
  o.aggregation = gcpo::loss_aggregation::sequence_mean;
  o.algo = gcpo::algorithm::grpo;
  o.beta = 0.0f;
  problem p;
  p.R = 2;
  p.N = 2;
  p.lp = {-1, -1, -1, -1};
  p.ref = p.lp;
  p.adv = {1, 2};
  p.mask = {0, 0, 1, 1};
  const lib_result g = run_lib(p, o);
  CHECK(g.stats[gcpo::loss_stat_loss] == Approx(-2.0 / 2));
  check_close(g.grad, std::vector<double>{0, 0, -0.5, -0.5}, 1e-7, 1e-6, "grad");
}

// ---- the reference against finite differences, the library against the reference ----------

TEST_CASE("loss: reference gradient matches finite differences, library matches the reference", "[loss]") {
  int combo = 0;
  for (auto algo : {gcpo::algorithm::gcpo, gcpo::algorithm::grpo})
    for (auto clipping : {gcpo::ratio_clipping::none, gcpo::ratio_clipping::ppo})
      for (auto agg : {gcpo::loss_aggregation::token_mean, gcpo::loss_aggregation::sequence_mean, gcpo::loss_aggregation::constant,
                       gcpo::loss_aggregation::external})
        for (int variant = 0; variant < 4; ++variant) {
          const bool with_old = variant & 1, detach = (variant & 2) != 0;
          const std::uint64_t seed = static_cast<std::uint64_t>(1000 + combo++);
          gcpo::loss_options o;
          o.algo = algo;
          o.clipping = clipping;
          o.aggregation = agg;
          o.detach_weight = detach;
          o.beta = variant == 2 ? 0.0f : 0.04f;
          o.weight_clip = variant == 3 ? 0.3f : 0.5f;
          o.eps_low = 0.2f;
          o.eps_high = variant == 1 ? 0.28f : 0.2f;
          o.max_tokens = variant == 1 ? 11.0 : 0.0;
          o.denominator = 17.5;
          CAPTURE(seed, static_cast<int>(algo), static_cast<int>(clipping), agg_name(agg), with_old, detach, o.beta, o.weight_clip);
          std::mt19937_64 rng(seed);
          const std::int64_t R = 3, N = 1 + static_cast<std::int64_t>(rng() % 9);
          const problem p = random_problem(rng, R, N, with_old, seed % 3 != 0, o);

          const ref_result want = ref_forward(p, o);
          const std::vector<double> grad = ref_backward(p, o);
          const std::vector<double> fd = finite_differences(p, o, 1e-6);
          const double scale = std::max(max_abs(grad), 1e-3);
          check_close(grad, fd, 1e-6 * scale, 1e-5, "reference gradient vs finite differences");

          const lib_result got = run_lib(p, o);
          CHECK(got.stats[gcpo::loss_stat_loss] == Approx(want.loss).epsilon(1e-5).margin(1e-6));
          CHECK(got.stats[gcpo::loss_stat_kl_mean] == Approx(want.kl_mean).epsilon(1e-5).margin(1e-7));
          CHECK(got.stats[gcpo::loss_stat_clip_fraction] == Approx(want.clip_fraction).margin(1e-7));
          CHECK(got.stats[gcpo::loss_stat_weight_mean] == Approx(want.weight_mean).epsilon(1e-5));
          CHECK(got.stats[gcpo::loss_stat_token_count] == static_cast<float>(want.count));
          CHECK(got.stats[gcpo::loss_stat_denominator] == Approx(want.denominator));
          check_close(got.w, want.w, 1e-6, 1e-5, "weight");
          check_close(got.kl, want.kl, 1e-6, 1e-5, "kl");
          check_close(got.grad, grad, 1e-5 * scale, 1e-4, "library gradient vs reference");
          // grad_loss scales it
          const lib_result g2 = run_lib(p, o, {2.5f});
          std::vector<double> g25 = grad;
          for (auto& x : g25) x *= 2.5;
          check_close(g2.grad, g25, 2.5e-5 * scale, 1e-4, "grad_loss 2.5");
        }
}

TEST_CASE("loss: long rollouts (N = 576) against the reference", "[loss]") {
  for (auto agg : {gcpo::loss_aggregation::token_mean, gcpo::loss_aggregation::sequence_mean}) {
    const std::uint64_t seed = 576;
    CAPTURE(seed, agg_name(agg));
    std::mt19937_64 rng(seed);
    gcpo::loss_options o;
    o.aggregation = agg;
    o.clipping = gcpo::ratio_clipping::ppo;
    const problem p = random_problem(rng, 4, 576, true, true, o);
    const ref_result want = ref_forward(p, o);
    const std::vector<double> grad = ref_backward(p, o);
    const lib_result got = run_lib(p, o);
    CHECK(got.stats[gcpo::loss_stat_loss] == Approx(want.loss).epsilon(1e-5).margin(1e-6));
    check_close(got.w, want.w, 1e-6, 1e-5, "weight");
    check_close(got.grad, grad, 1e-5 * max_abs(grad), 1e-4, "gradient");
  }
}

// ---- preconditions ------------------------------------------------------------------------

TEST_CASE("loss: preconditions", "[loss]") {
  const std::int64_t R = 2, N = 3;
  std::vector<float> lp(R * N, -1.0f), ref(R * N, -1.0f), old(R * N, -1.0f), adv(R, 1.0f), stats(gcpo::loss_stat_count), w(R * N),
      kl(R * N), grad(R * N), gl{1.0f}, big(40);
  std::vector<u8> mask(R * N, 1);
  using sc = gcpo::status_code;
  using gcpo::host::gcpo_loss_backward;
  using gcpo::host::gcpo_loss_forward;
  CHECK(gcpo::loss_stat_count == 6);
  CHECK(gcpo::gcpo_loss_workspace_bytes(R, N) >= R * 8 * sizeof(float));

  gcpo::loss_inputs in;
  in.logp = cview(lp, {R, N});
  in.ref_logp = cview(ref, {R, N});
  in.old_logp = cview(old, {R, N});
  in.advantages = cview(adv, {R});
  in.mask = cview(mask, {R, N});
  gcpo::loss_outputs out;
  out.stats = view(stats, {gcpo::loss_stat_count});
  out.weight = view(w, {R, N});
  out.kl = view(kl, {R, N});
  const gcpo::loss_options o;
  GCPO_REQUIRE_OK(gcpo_loss_forward(in, out, o));
  GCPO_REQUIRE_OK(gcpo_loss_backward(in, cview(gl, {1}), view(grad, {R, N}), o));

  auto fwd_in = [&](gcpo::loss_inputs x) { return gcpo_loss_forward(x, out, o); };
  auto bwd_in = [&](gcpo::loss_inputs x) { return gcpo_loss_backward(x, {}, view(grad, {R, N}), o); };
  {
    gcpo::loss_inputs x = in;
    x.logp = cview(lp, {R * N});
    GCPO_CHECK_ERROR(fwd_in(x), sc::invalid_argument, "`inputs.logp` must have rank 2 ([R, N]) but has rank 1");
    GCPO_CHECK_ERROR(bwd_in(x), sc::invalid_argument, "`inputs.logp` must have rank 2 ([R, N]) but has rank 1");
    x.logp = {};
    GCPO_CHECK_ERROR(fwd_in(x), sc::invalid_argument, "`inputs.logp` is required but was not given");
    x = in;
    x.logp = gcpo::make_view(reinterpret_cast<const gcpo::bfloat16*>(lp.data()), {R, N});
    GCPO_CHECK_ERROR(fwd_in(x), sc::unsupported_dtype, "`inputs.logp.dtype` is bfloat16; expected one of: float32");
    x = in;
    x.logp = gcpo::make_strided_view(static_cast<const float*>(big.data()), {R, N}, {4, 1});
    GCPO_CHECK_ERROR(fwd_in(x), sc::invalid_argument, "`inputs.logp` must be contiguous");
    x = in;
    x.ref_logp = cview(ref, {R, 2});
    GCPO_CHECK_ERROR(fwd_in(x), sc::invalid_argument, "`inputs.ref_logp.shape[1]` (2) must equal N (3)");
    x.ref_logp = {};
    GCPO_CHECK_ERROR(bwd_in(x), sc::invalid_argument, "`inputs.ref_logp` is required but was not given");
    x = in;
    x.old_logp = cview(old, {1, N});
    GCPO_CHECK_ERROR(fwd_in(x), sc::invalid_argument, "`inputs.old_logp.shape[0]` (1) must equal `inputs.logp.shape[0]` (2)");
    x = in;
    x.advantages = cview(adv, {1, R});
    GCPO_CHECK_ERROR(fwd_in(x), sc::invalid_argument, "`inputs.advantages` must have rank 1 ([R]) but has rank 2");
    x.advantages = cview(old, {R + 1});
    GCPO_CHECK_ERROR(fwd_in(x), sc::invalid_argument, "`inputs.advantages.shape[0]` (3) must equal `inputs.logp.shape[0]` (2)");
    x.advantages = gcpo::make_view(reinterpret_cast<const std::int32_t*>(adv.data()), {R});
    GCPO_CHECK_ERROR(fwd_in(x), sc::unsupported_dtype, "`inputs.advantages.dtype` is int32; expected one of: float32");
    x.advantages = {};
    GCPO_CHECK_ERROR(bwd_in(x), sc::invalid_argument, "`inputs.advantages` is required but was not given");
    x = in;
    x.mask = cview(lp, {R, N});
    GCPO_CHECK_ERROR(fwd_in(x), sc::unsupported_dtype, "`inputs.mask.dtype` is float32; expected one of: uint8");
    x.mask = cview(mask, {R, 2});
    GCPO_CHECK_ERROR(fwd_in(x), sc::invalid_argument, "`inputs.mask.shape[1]` (2) must equal N (3)");
    x.mask = gcpo::make_view(mask.data(), {R, N}, gcpo::memory_space::device);
    GCPO_CHECK_ERROR(bwd_in(x), sc::wrong_memory_space, "`inputs.mask` is a device view");
  }
  {  // options
    auto check_opt = [&](const gcpo::loss_options& bad, const std::string& text) {
      GCPO_CHECK_ERROR(gcpo_loss_forward(in, out, bad), sc::invalid_argument, text);
      GCPO_CHECK_ERROR(gcpo_loss_backward(in, {}, view(grad, {R, N}), bad), sc::invalid_argument, text);
    };
    gcpo::loss_options b;
    b.clipping = gcpo::ratio_clipping::ppo;
    b.eps_low = 1.0f;
    check_opt(b, "`options.eps_low` (1) must be in [0, 1)");
    b.eps_low = -0.1f;
    check_opt(b, "`options.eps_low` (-0.1) must be in [0, 1)");
    b.eps_low = 0.2f;
    b.eps_high = -1.0f;
    check_opt(b, "`options.eps_high` (-1) must be finite and >= 0");
    b.eps_high = inf_f;
    check_opt(b, "`options.eps_high` (inf) must be finite and >= 0");
    // the clip bounds are not used (nor checked) without PPO clipping
    b.clipping = gcpo::ratio_clipping::none;
    GCPO_REQUIRE_OK(gcpo_loss_forward(in, out, b));
    b = gcpo::loss_options{};
    b.beta = -0.01f;
    check_opt(b, "`options.beta` (-0.01) must be finite and >= 0");
    b.beta = nan_f;
    check_opt(b, "`options.beta` (nan) must be finite and >= 0");
    b = gcpo::loss_options{};
    b.weight_clip = -1.0f;
    check_opt(b, "`options.weight_clip` (-1) must be finite and >= 0");
    b = gcpo::loss_options{};
    b.aggregation = gcpo::loss_aggregation::constant;
    b.max_tokens = -1;
    check_opt(b, "`options.max_tokens` (-1) must be finite and >= 0 (0 means N)");
    b.aggregation = gcpo::loss_aggregation::external;
    b.denominator = 0;
    check_opt(b, "`options.denominator` (0) must be finite and > 0 with loss_aggregation::external");
    b.denominator = std::nan("");
    check_opt(b, "must be finite and > 0 with loss_aggregation::external");
  }
  {  // forward outputs
    gcpo::loss_outputs x = out;
    x.stats = {};
    GCPO_CHECK_ERROR(gcpo_loss_forward(in, x, o), sc::invalid_argument, "`outputs.stats` is required but was not given");
    x.stats = view(stats, {gcpo::loss_stat_count - 1});
    GCPO_CHECK_ERROR(gcpo_loss_forward(in, x, o), sc::invalid_argument, "`outputs.stats.shape[0]` (5) must equal loss_stat_count (6)");
    x.stats = gcpo::make_view(reinterpret_cast<std::int32_t*>(stats.data()), {gcpo::loss_stat_count});
    GCPO_CHECK_ERROR(gcpo_loss_forward(in, x, o), sc::unsupported_dtype, "`outputs.stats.dtype` is int32; expected one of: float32");
    x = out;
    x.weight = view(w, {R, N - 1});
    GCPO_CHECK_ERROR(gcpo_loss_forward(in, x, o), sc::invalid_argument, "`outputs.weight.shape[1]` (2) must equal N (3)");
    x = out;
    x.kl = view(lp, {R, N});
    GCPO_CHECK_ERROR(gcpo_loss_forward(in, x, o), sc::aliasing, "`outputs.kl` shall not overlap `inputs.logp`");
    x = out;
    x.weight = gcpo::make_view(reinterpret_cast<float*>(mask.data()), {1, 1});
    GCPO_CHECK_ERROR(gcpo_loss_forward(in, x, o), sc::invalid_argument, "`outputs.weight.shape[0]` (1) must equal `inputs.logp.shape[0]` (2)");
    x = out;
    x.stats = view(w, {gcpo::loss_stat_count});
    GCPO_CHECK_ERROR(gcpo_loss_forward(in, x, o), sc::aliasing, "`outputs.weight` shall not overlap `outputs.stats`");
    x = out;
    x.kl = view(adv, {R, 1});
    GCPO_CHECK_ERROR(gcpo_loss_forward(in, x, o), sc::invalid_argument, "`outputs.kl.shape[1]` (1) must equal N (3)");
    x = out;
    x.kl = gcpo::make_view(old.data() + 1, {R, N - 1});
    GCPO_CHECK_ERROR(gcpo_loss_forward(in, x, o), sc::invalid_argument, "`outputs.kl.shape[1]` (2) must equal N (3)");
    x.kl = gcpo::make_view(old.data(), {R, N});
    GCPO_CHECK_ERROR(gcpo_loss_forward(in, x, o), sc::aliasing, "`outputs.kl` shall not overlap `inputs.old_logp`");
    x = out;
    x.stats = gcpo::make_view(stats.data(), {gcpo::loss_stat_count}, gcpo::memory_space::device);
    GCPO_CHECK_ERROR(gcpo_loss_forward(in, x, o), sc::wrong_memory_space, "`outputs.stats` is a device view");
  }
  {  // backward
    GCPO_CHECK_ERROR(gcpo_loss_backward(in, cview(big, {2}), view(grad, {R, N}), o), sc::invalid_argument,
                     "`grad_loss.shape[0]` (2) must equal 1 (1)");
    GCPO_CHECK_ERROR(gcpo_loss_backward(in, cview(big, {1, 1}), view(grad, {R, N}), o), sc::invalid_argument,
                     "`grad_loss` must have rank 1 ([1]) but has rank 2");
    GCPO_CHECK_ERROR(gcpo_loss_backward(in, gcpo::make_view(reinterpret_cast<const std::int32_t*>(gl.data()), {1}), view(grad, {R, N}), o),
                     sc::unsupported_dtype, "`grad_loss.dtype` is int32; expected one of: float32");
    GCPO_CHECK_ERROR(gcpo_loss_backward(in, {}, gcpo::tensor_view{}, o), sc::invalid_argument, "`grad_logp` is required but was not given");
    GCPO_CHECK_ERROR(gcpo_loss_backward(in, {}, view(grad, {N, R}), o), sc::invalid_argument,
                     "`grad_logp.shape[0]` (3) must equal `inputs.logp.shape[0]` (2)");
    GCPO_CHECK_ERROR(gcpo_loss_backward(in, {}, view(lp, {R, N}), o), sc::aliasing, "`grad_logp` shall not overlap `inputs.logp`");
    GCPO_CHECK_ERROR(gcpo_loss_backward(in, {}, gcpo::make_view(reinterpret_cast<float*>(mask.data()), {1, 1}), o), sc::invalid_argument,
                     "`grad_logp.shape[0]` (1)");
    std::vector<float> joint(R * N + 1);
    GCPO_CHECK_ERROR(gcpo_loss_backward(in, gcpo::make_view(static_cast<const float*>(joint.data() + R * N - 1), {1}),
                                        gcpo::make_view(joint.data(), {R, N}), o),
                     sc::aliasing, "`grad_logp` shall not overlap `grad_loss`");
    GCPO_CHECK_ERROR(gcpo_loss_backward(in, {}, view(ref, {R, N}), o), sc::aliasing, "`grad_logp` shall not overlap `inputs.ref_logp`");
    GCPO_CHECK_ERROR(gcpo_loss_backward(in, {}, view(adv, {R, 1}), o), sc::invalid_argument, "`grad_logp.shape[1]` (1) must equal N (3)");
  }
}

// ---- forward and backward in one call --------------------------------------------------------

TEST_CASE("loss: forward_backward gives the two calls' results and keeps its outputs apart", "[loss]") {
  using sc = gcpo::status_code;
  for (auto agg : {gcpo::loss_aggregation::token_mean, gcpo::loss_aggregation::sequence_mean})
    for (const bool detach : {false, true}) {
      const std::uint64_t seed = 4242 + (detach ? 1 : 0) + (agg == gcpo::loss_aggregation::token_mean ? 0 : 2);
      CAPTURE(seed, agg_name(agg), detach);
      std::mt19937_64 rng(seed);
      gcpo::loss_options o;
      o.aggregation = agg;
      o.detach_weight = detach;
      const problem p = random_problem(rng, 3, 40, false, true, o);
      const std::vector<float> gl{0.75f};
      const lib_result two = run_lib(p, o, gl);
      lib_result one;
      one.stats.assign(gcpo::loss_stat_count, -99.0f);
      one.w.assign(static_cast<std::size_t>(p.R * p.N), -99.0f);
      one.kl.assign(one.w.size(), -99.0f);
      one.grad.assign(one.w.size(), -99.0f);
      const gcpo::loss_inputs in = inputs_of(p);
      gcpo::loss_outputs out;
      out.stats = view(one.stats, {gcpo::loss_stat_count});
      out.weight = view(one.w, {p.R, p.N});
      out.kl = view(one.kl, {p.R, p.N});
      GCPO_REQUIRE_OK(gcpo::host::gcpo_loss_forward_backward(in, out, cview(gl, {1}), view(one.grad, {p.R, p.N}), o));
      CHECK(one.stats == two.stats);
      CHECK(one.w == two.w);
      CHECK(one.kl == two.kl);
      CHECK(one.grad == two.grad);
      // and the float64 reference
      const ref_result want = ref_forward(p, o);
      std::vector<double> grad = ref_backward(p, o);
      for (auto& x : grad) x *= 0.75;
      CHECK(one.stats[gcpo::loss_stat_loss] == Approx(want.loss).epsilon(1e-5).margin(1e-6));
      check_close(one.grad, grad, 1e-5 * std::max(max_abs(grad), 1e-3), 1e-4, "gradient");

      // the gradient and grad_loss shall not overlap the forward's outputs
      std::vector<float> joint(static_cast<std::size_t>(p.R * p.N) + gcpo::loss_stat_count);
      gcpo::loss_outputs x = out;
      x.stats = gcpo::make_view(joint.data(), {gcpo::loss_stat_count});
      GCPO_CHECK_ERROR(gcpo::host::gcpo_loss_forward_backward(in, x, {}, gcpo::make_view(joint.data() + 3, {p.R, p.N}), o),
                       sc::aliasing, "`grad_logp` shall not overlap `outputs.stats`");
      GCPO_CHECK_ERROR(gcpo::host::gcpo_loss_forward_backward(in, out, {}, view(one.w, {p.R, p.N}), o), sc::aliasing,
                       "`grad_logp` shall not overlap `outputs.weight`");
      GCPO_CHECK_ERROR(gcpo::host::gcpo_loss_forward_backward(
                           in, x, gcpo::make_view(static_cast<const float*>(joint.data()), {1}), view(one.grad, {p.R, p.N}), o),
                       sc::aliasing, "`outputs.stats` shall not overlap `grad_loss`");
      // each half's own checks
      GCPO_CHECK_ERROR(gcpo::host::gcpo_loss_forward_backward(in, out, {}, view(one.grad, {p.R, p.N - 1}), o),
                       sc::invalid_argument, "`grad_logp.shape[1]` (39) must equal N (40)");
    }
}
