// Unit tests of gcpo/sampling.hpp (host twin): generation_step and its building blocks
// (Philox-4x32-10, repro_exp, repro_log). Expected values: the Random123 known-answer vectors,
// std::exp / std::log in double, and a double-precision reference of the kept distribution
// (CFG, temperature, top-k by sorting, top-p as the smallest prefix reaching the mass) against
// which the sampler's frequencies are checked with a chi-square test at a fixed threshold.
#include <catch2/catch.hpp>

#include <gcpo/gcpo.hpp>

#include <algorithm>
#include <cfloat>
#include <cmath>
#include <cstdint>
#include <map>
#include <numeric>
#include <random>
#include <set>
#include <vector>

#include "unit_support.hpp"

using namespace gcpo_test;

namespace {

// ---- reference of the kept distribution ---------------------------------------------------

struct kept_dist {
  std::vector<double> p;       ///< probability of each of the V tokens (0 outside the kept set)
  std::vector<int> kept;       ///< kept indices
  double top_p_margin = 1.0;   ///< distance of the top-p target from the nearest prefix mass (relative)
};

kept_dist reference_dist(const std::vector<float>& cond, const std::vector<float>& uncond, const gcpo::sampling_options& o) {
  const std::size_t V = cond.size();
  std::vector<double> x(V);
  for (std::size_t v = 0; v < V; ++v) {
    const double c = cond[v];
    x[v] = (uncond.empty() ? c : uncond[v] + static_cast<double>(o.cfg_scale) * (c - uncond[v])) / static_cast<double>(o.temperature);
  }
  std::vector<int> order(V);
  std::iota(order.begin(), order.end(), 0);
  std::stable_sort(order.begin(), order.end(), [&](int a, int b) { return x[a] > x[b]; });  // ties: lower index first
  std::size_t k = (o.top_k > 0 && static_cast<std::size_t>(o.top_k) < V) ? static_cast<std::size_t>(o.top_k) : V;
  const double mx = x[order[0]];
  kept_dist d;
  if (o.top_p < 1.0f) {
    double total = 0;
    for (std::size_t i = 0; i < k; ++i) total += std::exp(x[order[i]] - mx);
    const double target = static_cast<double>(o.top_p) * total;
    double cum = 0;
    std::size_t m = k;
    for (std::size_t i = 0; i < k; ++i) {
      cum += std::exp(x[order[i]] - mx);
      d.top_p_margin = std::min(d.top_p_margin, std::fabs(cum - target) / total);
      if (cum >= target && m == k) m = i + 1;
    }
    k = m;
  }
  d.p.assign(V, 0.0);
  double s = 0;
  for (std::size_t i = 0; i < k; ++i) s += std::exp(x[order[i]] - mx);
  for (std::size_t i = 0; i < k; ++i) {
    d.p[order[i]] = std::exp(x[order[i]] - mx) / s;
    d.kept.push_back(order[i]);
  }
  return d;
}

/// Chi-square critical values at significance 0.001 for 1..9 degrees of freedom.
double chi2_critical_001(std::size_t df) {
  static const double table[] = {0, 10.828, 13.816, 16.266, 18.467, 20.515, 22.458, 24.322, 26.124, 27.877};
  REQUIRE(df >= 1);
  REQUIRE(df <= 9);
  return table[df];
}

template <class T = float>
struct step_io {
  std::vector<std::int64_t> tokens;
  std::vector<float> logprob, entropy;
};

/// One call of generation_step on R rows that all hold the same logits.
template <class T>
step_io<T> draw(const std::vector<T>& cond, const std::vector<T>& uncond, std::int64_t R, const gcpo::sampling_options& o) {
  const std::int64_t V = static_cast<std::int64_t>(cond.size());
  std::vector<T> c(static_cast<std::size_t>(R * V)), u(uncond.empty() ? 0 : static_cast<std::size_t>(R * V));
  for (std::int64_t r = 0; r < R; ++r) {
    std::copy(cond.begin(), cond.end(), c.begin() + r * V);
    if (!uncond.empty()) std::copy(uncond.begin(), uncond.end(), u.begin() + r * V);
  }
  step_io<T> io;
  io.tokens.assign(static_cast<std::size_t>(R), -1);
  io.logprob.assign(static_cast<std::size_t>(R), -99.0f);
  io.entropy.assign(static_cast<std::size_t>(R), -99.0f);
  host_workspace ws(gcpo::generation_step_workspace_bytes(R, V));
  GCPO_REQUIRE_OK(gcpo::host::generation_step(cview(c, {R, V}), uncond.empty() ? gcpo::const_tensor_view{} : cview(u, {R, V}),
                                              view(io.tokens, {R}), view(io.logprob, {R}), view(io.entropy, {R}), o, ws.get()));
  return io;
}

/// Draws `steps` x R tokens from one distribution and runs the chi-square test against the
/// reference; also checks that nothing outside the kept set is drawn and the log-prob and
/// entropy of every draw.
void chi_square_case(const std::vector<float>& cond, const std::vector<float>& uncond, const gcpo::sampling_options& base, int steps,
                     std::int64_t R = 64) {
  const kept_dist d = reference_dist(cond, uncond, base);
  INFO("kept set size " << d.kept.size() << ", top-p margin " << d.top_p_margin);
  REQUIRE(d.top_p_margin > 1e-3);  // the case is well posed: float rounding cannot move the top-p cut
  double entropy = 0;
  for (double p : d.p)
    if (p > 0) entropy -= p * std::log(p);
  std::vector<double> counts(cond.size(), 0.0);
  std::size_t bad_lp = 0, bad_ent = 0;
  gcpo::sampling_options o = base;
  for (int s = 0; s < steps; ++s) {
    o.step = base.step + static_cast<std::uint64_t>(s);
    const step_io<float> io = draw(cond, uncond, R, o);
    for (std::int64_t r = 0; r < R; ++r) {
      const std::int64_t t = io.tokens[static_cast<std::size_t>(r)];
      if (t < 0 || t >= static_cast<std::int64_t>(cond.size())) {
        FAIL_CHECK("token " << t << " out of range at step " << s << ", row " << r);
        continue;
      }
      counts[static_cast<std::size_t>(t)] += 1;
      const double want_lp = d.p[static_cast<std::size_t>(t)] > 0 ? std::log(d.p[static_cast<std::size_t>(t)]) : -inf_d;
      bad_lp += std::fabs(io.logprob[static_cast<std::size_t>(r)] - want_lp) <= 1e-5 + 1e-5 * std::fabs(want_lp) ? 0 : 1;
      bad_ent += std::fabs(io.entropy[static_cast<std::size_t>(r)] - entropy) <= 1e-5 + 1e-5 * entropy ? 0 : 1;
    }
  }
  CHECK(bad_lp == 0);
  CHECK(bad_ent == 0);
  const double n = static_cast<double>(steps) * static_cast<double>(R);
  double chi2 = 0, outside = 0;
  std::string table;
  for (std::size_t v = 0; v < cond.size(); ++v) {
    if (d.p[v] == 0) {
      outside += counts[v];
      continue;
    }
    const double e = n * d.p[v];
    REQUIRE(e >= 5);  // the chi-square approximation holds
    chi2 += (counts[v] - e) * (counts[v] - e) / e;
    table += "  token " + std::to_string(v) + ": observed " + std::to_string(static_cast<long long>(counts[v])) + ", expected " +
             std::to_string(e) + "\n";
  }
  CHECK(outside == 0);
  if (d.kept.size() >= 2) {
    INFO("chi2 = " << chi2 << " with " << d.kept.size() - 1 << " degrees of freedom\n" << table);
    CHECK(chi2 < chi2_critical_001(d.kept.size() - 1));
  }
}

}  // namespace

// ---- building blocks ----------------------------------------------------------------------

TEST_CASE("philox4x32_10: Random123 known answers", "[sampling]") {
  struct kat {
    std::uint32_t ctr[4], key[2], want[4];
  };
  const kat kats[] = {
      {{0, 0, 0, 0}, {0, 0}, {0x6627e8d5u, 0xe169c58du, 0xbc57ac4cu, 0x9b00dbd8u}},
      {{0xffffffffu, 0xffffffffu, 0xffffffffu, 0xffffffffu}, {0xffffffffu, 0xffffffffu}, {0x408f276du, 0x41c83b0eu, 0xa20bc7c6u, 0x6d5451fdu}},
      {{0x243f6a88u, 0x85a308d3u, 0x13198a2eu, 0x03707344u}, {0xa4093822u, 0x299f31d0u}, {0xd16cfe09u, 0x94fdccebu, 0x5001e420u, 0x24126ea1u}},
  };
  for (const kat& k : kats) {
    const gcpo::detail::philox_out o = gcpo::detail::philox4x32_10(k.ctr[0], k.ctr[1], k.ctr[2], k.ctr[3], k.key[0], k.key[1]);
    for (int i = 0; i < 4; ++i) {
      CAPTURE(i, k.ctr[0], k.key[0]);
      CHECK(o.v[i] == k.want[i]);
    }
  }
}

TEST_CASE("uniform_open01: strictly inside (0, 1), symmetric", "[sampling]") {
  // every value must be < 1: u = 1 gives Gumbel noise -log(-log(1)) = +inf, a token drawn whatever its logit
  CHECK(gcpo::detail::uniform_open01(0u) > 0.0f);
  CHECK(gcpo::detail::uniform_open01(0xffffffffu) < 1.0f);
  CHECK(gcpo::detail::uniform_open01(0u) == std::ldexp(1.0f, -24));
  CHECK(gcpo::detail::uniform_open01(0xffffffffu) == 1.0f - std::ldexp(1.0f, -24));
  CHECK(gcpo::detail::uniform_open01(0x80000000u) == 0.5f + std::ldexp(1.0f, -24));
  CHECK(gcpo::detail::uniform_open01(0x7fffffffu) == 0.5f - std::ldexp(1.0f, -24));
  // u(bits) + u(~bits) = 1 exactly, and u never decreases with bits
  std::mt19937_64 rng(1);
  std::size_t bad = 0;
  for (int i = 0; i < 100000; ++i) {
    const std::uint32_t b = static_cast<std::uint32_t>(rng());
    const float u = gcpo::detail::uniform_open01(b);
    bad += (u > 0.0f && u < 1.0f && u + gcpo::detail::uniform_open01(~b) == 1.0f &&
            gcpo::detail::uniform_open01(b | 0x1ffu) == u && (b == 0xffffffffu || gcpo::detail::uniform_open01(b + 1) >= u))
               ? 0
               : 1;
  }
  CHECK(bad == 0);
}

TEST_CASE("repro_exp: accuracy against std::exp over a sweep", "[sampling]") {
  double max_rel = 0, max_sub = 0;
  float worst = 0;
  const int n = 400000;
  for (int i = 0; i <= n; ++i) {
    const float x = -103.9f + (88.72f + 103.9f) * static_cast<float>(i) / static_cast<float>(n);
    const double got = gcpo::detail::repro_exp(x), want = std::exp(static_cast<double>(x));
    if (want >= FLT_MIN) {
      const double rel = std::fabs(got - want) / want;
      if (rel > max_rel) {
        max_rel = rel;
        worst = x;
      }
    } else {
      max_sub = std::max(max_sub, std::fabs(got - want) - 2.4e-7 * want);
    }
  }
  INFO("worst at x = " << worst);
  CHECK(max_rel < 2.4e-7);  // 2 ulp
  CHECK(max_sub <= 1.5 * FLT_TRUE_MIN);
  CHECK(gcpo::detail::repro_exp(0.0f) == 1.0f);
  CHECK(gcpo::detail::repro_exp(-0.0f) == 1.0f);
  CHECK(gcpo::detail::repro_exp(88.73f) == inf_f);
  CHECK(gcpo::detail::repro_exp(1000.0f) == inf_f);
  CHECK(gcpo::detail::repro_exp(inf_f) == inf_f);
  CHECK(gcpo::detail::repro_exp(-104.0f) == 0.0f);
  CHECK(gcpo::detail::repro_exp(-inf_f) == 0.0f);
  CHECK(std::isnan(gcpo::detail::repro_exp(nan_f)));
  CHECK(std::isfinite(gcpo::detail::repro_exp(88.72f)));
  CHECK(gcpo::detail::repro_exp(-103.0f) > 0.0f);  // subnormal, not flushed
}

TEST_CASE("repro_log: accuracy against std::log over a sweep", "[sampling]") {
  double max_rel = 0;
  float worst = 0;
  auto check_at = [&](float x) {
    const double got = gcpo::detail::repro_log(x), want = std::log(static_cast<double>(x));
    if (want == 0) {
      CHECK(got == 0);
      return;
    }
    const double rel = std::fabs(got - want) / std::fabs(want);
    if (rel > max_rel) {
      max_rel = rel;
      worst = x;
    }
  };
  // log-uniform over every binade, subnormals included
  const int n = 300000;
  for (int i = 0; i <= n; ++i) {
    const float x = static_cast<float>(std::exp2(-149.0 + 277.0 * i / n));
    if (x > 0 && std::isfinite(x)) check_at(x);
  }
  // around 1, where log x ~ x - 1 must keep its relative accuracy, and around sqrt(2)
  for (int i = -100000; i <= 100000; ++i) {
    check_at(1.0f + static_cast<float>(i) * 1e-6f);
    check_at(1.41421356f + static_cast<float>(i) * 1e-7f);
  }
  for (std::uint32_t b = 1; b < 64; ++b) check_at(std::nextafter(1.0f, 2.0f) + static_cast<float>(b - 1) * FLT_EPSILON);
  INFO("worst at x = " << worst);
  CHECK(max_rel < 2.4e-7);
  CHECK(gcpo::detail::repro_log(1.0f) == 0.0f);
  CHECK(gcpo::detail::repro_log(0.0f) == -inf_f);
  CHECK(std::isnan(gcpo::detail::repro_log(-1.0f)));
  CHECK(std::isnan(gcpo::detail::repro_log(-0.0f)) == false);  // -0 compares equal to 0: -inf
  CHECK(std::isnan(gcpo::detail::repro_log(nan_f)));
  CHECK(gcpo::detail::repro_log(inf_f) == inf_f);
  CHECK(gcpo::detail::repro_log(FLT_TRUE_MIN) == Approx(std::log(static_cast<double>(FLT_TRUE_MIN))).epsilon(2.4e-7));
  CHECK(gcpo::detail::repro_log(FLT_MAX) == Approx(std::log(static_cast<double>(FLT_MAX))).epsilon(2.4e-7));
}

// ---- the draw -----------------------------------------------------------------------------

TEST_CASE("generation_step: the draw is the documented Gumbel-max (double reference)", "[sampling]") {
  // token = argmax_v x_v - log(-log(u_v)) with u_v from Philox(counter {v / 4, row, step lo, step hi},
  // key {seed lo, seed hi}), word v % 4; compared with the key in double, except near-ties
  const std::int64_t R = 40, V = 50;
  const std::uint64_t seed = 0x1234567890abcdefull, step = 0x100000007ull;
  std::mt19937_64 rng(9);
  const std::vector<float> logits = normal(rng, static_cast<std::size_t>(R * V), 0.0, 1.5);
  std::vector<std::int32_t> tok(R);
  std::vector<float> lp(R), ent(R);
  gcpo::sampling_options o;
  o.seed = seed;
  o.step = step;
  host_workspace ws(gcpo::generation_step_workspace_bytes(R, V));
  GCPO_REQUIRE_OK(gcpo::host::generation_step(cview(logits, {R, V}), {}, view(tok, {R}), view(lp, {R}), view(ent, {R}), o, ws.get()));
  std::size_t agree = 0, near_tie = 0;
  for (std::int64_t r = 0; r < R; ++r) {
    double best = -inf_d, second = -inf_d;
    std::int64_t arg = -1;
    for (std::int64_t v = 0; v < V; ++v) {
      const auto out = gcpo::detail::philox4x32_10(static_cast<std::uint32_t>(v / 4), static_cast<std::uint32_t>(r),
                                                   static_cast<std::uint32_t>(step), static_cast<std::uint32_t>(step >> 32),
                                                   static_cast<std::uint32_t>(seed), static_cast<std::uint32_t>(seed >> 32));
      const double u = ((out.v[v % 4] >> 9) + 0.5) / 8388608.0;  // uniform_open01, 23 bits
      const double key = logits[r * V + v] - std::log(-std::log(u));
      if (key > best) {
        second = best;
        best = key;
        arg = v;
      } else if (key > second) {
        second = key;
      }
    }
    if (arg == tok[r]) ++agree;
    else if (best - second < 1e-4) ++near_tie;
  }
  CHECK(agree + near_tie == static_cast<std::size_t>(R));
  CHECK(agree >= static_cast<std::size_t>(R) - 1);
}

TEST_CASE("gumbel_noise_bound exceeds the noise of every possible uniform", "[sampling]") {
  // All 2^23 values uniform_open01 can return (its 23 high bits), through the same repro_log
  // arithmetic the draw uses: the host twin skips an entry whose logit plus this bound stays
  // below another entry's key, so the bound must hold for every one of them.
  float worst = -std::numeric_limits<float>::infinity();
  for (std::uint32_t k = 0; k < (1u << 23); ++k) worst = std::max(worst, gcpo::detail::gumbel_of_bits(k << 9));
  CHECK(worst < gcpo::detail::gumbel_noise_bound);
  CHECK(worst > 16.6f);  // -log(-log(1 - 2^-24)) = 16.636: the bound is not loose by much
  CHECK(gcpo::detail::gumbel_of_bits(0xFFFFFFFFu) == worst);
}

TEST_CASE("generation_step: the draw passes over entries that cannot win and still draws the full scan's token",
          "[sampling]") {
  // The full scan as the spec states it (every kept entry's key x_v + gumbel_noise, first
  // largest), in float like the twins, against the host twin, which computes noise only for the
  // entries that can reach the largest logit's key. Wide spreads (most entries passed over),
  // narrow ones (none), repeated maxima, -inf and NaN entries, and top-k.
  const std::int64_t V = 600;
  std::mt19937_64 rng(31);
  int rows = 0, skipped_rows = 0;
  for (const double spread : {0.5, 3.0, 20.0, 80.0})
    for (const std::int64_t top_k : {std::int64_t{0}, std::int64_t{7}, std::int64_t{300}})
      for (int variant = 0; variant < 4; ++variant) {
        const std::int64_t R = 6;
        std::vector<float> x = normal(rng, static_cast<std::size_t>(R * V), 0.0, spread);
        for (std::int64_t r = 0; r < R; ++r) {
          float* row = x.data() + r * V;
          if (variant == 1) {  // the maximum repeated at several places
            const float m = *std::max_element(row, row + V);
            for (std::int64_t v : {3, 250, 599}) row[v] = m;
          } else if (variant == 2) {  // -inf entries, the first one among them
            for (std::int64_t v = 0; v < V; v += 5) row[v] = -std::numeric_limits<float>::infinity();
          } else if (variant == 3) {  // NaN entries (never drawn)
            for (std::int64_t v = 1; v < V; v += 97) row[v] = std::numeric_limits<float>::quiet_NaN();
          }
        }
        gcpo::sampling_options o;
        o.seed = 77 + static_cast<std::uint64_t>(variant);
        o.step = 5;
        o.top_k = top_k;
        o.first_row = 1000;
        std::vector<std::int64_t> tok(R);
        host_workspace ws(gcpo::generation_step_workspace_bytes(R, V));
        GCPO_REQUIRE_OK(gcpo::host::generation_step(cview(x, {R, V}), {}, view(tok, {R}), {}, {}, o, ws.get()));
        for (std::int64_t r = 0; r < R; ++r) {
          const float* row = x.data() + r * V;
          // the kept set: top-k by (x descending, index ascending), NaN last
          std::vector<std::int64_t> idx(V);
          std::iota(idx.begin(), idx.end(), 0);
          std::stable_sort(idx.begin(), idx.end(), [&](std::int64_t a, std::int64_t b) {
            const bool na = row[a] != row[a], nb = row[b] != row[b];
            if (na || nb) return !na && nb;
            return row[a] > row[b];
          });
          std::vector<bool> kept(V, top_k == 0);
          for (std::int64_t i = 0; i < top_k; ++i) kept[static_cast<std::size_t>(idx[static_cast<std::size_t>(i)])] = true;
          std::int64_t best = -1, computed = 0;
          float best_key = -std::numeric_limits<float>::infinity();
          float top = -std::numeric_limits<float>::infinity();
          for (std::int64_t v = 0; v < V; ++v)
            if (kept[static_cast<std::size_t>(v)] && row[v] == row[v]) top = std::max(top, row[v]);
          for (std::int64_t v = 0; v < V; ++v) {
            if (!kept[static_cast<std::size_t>(v)]) continue;
            if (best < 0) best = v;
            const float key = row[v] + gcpo::detail::gumbel_noise(o.seed, o.step, static_cast<std::uint32_t>(o.first_row + r),
                                                                 static_cast<std::uint32_t>(v));
            if (row[v] + 17.0f >= top) ++computed;
            if (key > best_key) {
              best_key = key;
              best = v;
            }
          }
          INFO("spread " << spread << ", top-k " << top_k << ", variant " << variant << ", row " << r);
          CHECK(tok[static_cast<std::size_t>(r)] == best);
          ++rows;
          if (computed < V / 2) ++skipped_rows;
        }
      }
  CHECK(rows == 4 * 3 * 4 * 6);
  CHECK(skipped_rows >= rows / 3);  // the wide spreads do exercise the passing over
}

TEST_CASE("generation_step: chi-square of the sampled frequencies", "[sampling]") {
  const std::vector<float> cond{1.0f, 0.5f, 0.0f, -0.5f, 2.0f, -1.0f};
  const std::vector<float> uncond{0.2f, 0.9f, -0.3f, 0.0f, 1.0f, 0.5f};
  gcpo::sampling_options o;
  o.seed = 42;
  SECTION("plain softmax") { chi_square_case(cond, {}, o, 400); }
  SECTION("classifier-free guidance, s = 2.5") {
    o.cfg_scale = 2.5f;
    chi_square_case(cond, uncond, o, 400);
  }
  SECTION("temperature 0.7") {
    o.temperature = 0.7f;
    chi_square_case(cond, {}, o, 400);
  }
  SECTION("temperature 3") {
    o.temperature = 3.0f;
    chi_square_case(cond, uncond, o, 400);
  }
  SECTION("top-k 3") {
    o.top_k = 3;
    chi_square_case(cond, {}, o, 400);
  }
  SECTION("top-p 0.75 (keeps 3)") {
    o.top_p = 0.75f;
    chi_square_case(cond, {}, o, 400);
  }
  SECTION("CFG 1.5, temperature 1.3, top-k 4, top-p 0.8") {
    o.cfg_scale = 1.5f;
    o.temperature = 1.3f;
    o.top_k = 4;
    o.top_p = 0.8f;
    chi_square_case(cond, uncond, o, 400);
  }
  SECTION("another seed and a large step") {
    o.seed = 0xdeadbeefcafef00dull;
    o.step = (std::uint64_t{1} << 40) + 3;
    o.cfg_scale = 0.5f;
    chi_square_case(cond, uncond, o, 400);
  }
}

TEST_CASE("generation_step: top-p beyond 256 lanes keeps the right set", "[sampling]") {
  // V = 600: four leading tokens at 5.00, 4.99, 4.98, 4.97 (spread over the lanes), one at 4.96, the rest 0.
  // Masses e^x: 148.4, 146.9, 145.5, 144.0, 142.6 and 595 * 1 -> total 1322.4; top-p 0.4 targets 529:
  // the first four (584.8) are kept, three (440.8) are not enough.
  std::vector<float> cond(600, 0.0f);
  const int idx[5] = {517, 3, 300, 256, 599};
  for (int i = 0; i < 5; ++i) cond[static_cast<std::size_t>(idx[i])] = 5.0f - 0.01f * static_cast<float>(i);
  gcpo::sampling_options o;
  o.top_p = 0.4f;
  o.seed = 7;
  const kept_dist d = reference_dist(cond, {}, o);
  CHECK(std::set<int>(d.kept.begin(), d.kept.end()) == std::set<int>{517, 3, 300, 256});
  chi_square_case(cond, {}, o, 40, 32);
  // top-k 2 on top of it
  o.top_k = 2;
  chi_square_case(cond, {}, o, 40, 32);
}

TEST_CASE("generation_step: reproducible draws", "[sampling]") {
  const std::int64_t R = 64, V = 1000;
  const std::vector<float> flat(static_cast<std::size_t>(V), 0.0f);
  gcpo::sampling_options o;
  o.seed = 5;
  o.step = 17;
  const auto a = draw(flat, {}, R, o);
  const auto b = draw(flat, {}, R, o);
  CHECK(a.tokens == b.tokens);
  CHECK(a.logprob == b.logprob);
  // the rows of one step differ from each other
  CHECK(std::set<std::int64_t>(a.tokens.begin(), a.tokens.end()).size() > 40);
  o.step = 18;
  const auto c = draw(flat, {}, R, o);
  o.step = 17;
  o.seed = 6;
  const auto d = draw(flat, {}, R, o);
  o.seed = 5 + (std::uint64_t{1} << 32);  // the high word of the seed matters
  const auto e = draw(flat, {}, R, o);
  o.seed = 5;
  o.step = 17 + (std::uint64_t{1} << 32);  // and the high word of the step
  const auto f = draw(flat, {}, R, o);
  o.step = 17;
  std::size_t same_c = 0, same_d = 0, same_e = 0, same_f = 0;
  for (std::int64_t r = 0; r < R; ++r) {
    same_c += a.tokens[r] == c.tokens[r];
    same_d += a.tokens[r] == d.tokens[r];
    same_e += a.tokens[r] == e.tokens[r];
    same_f += a.tokens[r] == f.tokens[r];
  }
  CHECK(same_c < 5);
  CHECK(same_d < 5);
  CHECK(same_e < 5);
  CHECK(same_f < 5);
  // uniform over V: log-prob -log V, entropy log V
  for (std::int64_t r = 0; r < R; ++r) {
    CHECK(a.logprob[r] == Approx(-std::log(1000.0)).epsilon(1e-6));
    CHECK(a.entropy[r] == Approx(std::log(1000.0)).epsilon(1e-6));
  }
  // int32 tokens: the same draws
  std::vector<float> c2(static_cast<std::size_t>(R * V), 0.0f);
  std::vector<std::int32_t> t32(R);
  host_workspace ws(gcpo::generation_step_workspace_bytes(R, V));
  GCPO_REQUIRE_OK(gcpo::host::generation_step(cview(c2, {R, V}), {}, view(t32, {R}), {}, {}, o, ws.get()));
  for (std::int64_t r = 0; r < R; ++r) CHECK(t32[r] == a.tokens[r]);
}

TEST_CASE("generation_step: 16-bit and strided logits draw the same tokens as float", "[sampling]") {
  const std::int64_t R = 16, V = 90;
  std::mt19937_64 rng(12);
  std::vector<float> f = normal(rng, static_cast<std::size_t>(R * V), 0.0, 2.0);
  std::vector<float> fu = normal(rng, static_cast<std::size_t>(R * V), 0.0, 2.0);
  std::vector<double> exact;
  const std::vector<gcpo::bfloat16> b = stored_as<gcpo::bfloat16>(f, exact);
  for (std::size_t i = 0; i < f.size(); ++i) f[i] = static_cast<float>(exact[i]);  // bf16-representable
  const std::vector<gcpo::bfloat16> bu = stored_as<gcpo::bfloat16>(fu, exact);
  for (std::size_t i = 0; i < fu.size(); ++i) fu[i] = static_cast<float>(exact[i]);
  gcpo::sampling_options o;
  o.seed = 3;
  o.step = 4;
  o.cfg_scale = 2.0f;
  o.top_k = 20;
  o.top_p = 0.9f;
  host_workspace ws(gcpo::generation_step_workspace_bytes(R, V));
  std::vector<std::int64_t> t1(R), t2(R), t3(R);
  std::vector<float> l1(R), l2(R), l3(R), e1(R), e2(R), e3(R);
  GCPO_REQUIRE_OK(gcpo::host::generation_step(cview(f, {R, V}), cview(fu, {R, V}), view(t1, {R}), view(l1, {R}), view(e1, {R}), o, ws.get()));
  GCPO_REQUIRE_OK(gcpo::host::generation_step(cview(b, {R, V}), cview(bu, {R, V}), view(t2, {R}), view(l2, {R}), view(e2, {R}), o, ws.get()));
  // rows inside a larger buffer
  const std::int64_t s0 = V + 7;
  std::vector<float> fs(static_cast<std::size_t>(R * s0), nan_f), fus(static_cast<std::size_t>(R * s0), nan_f);
  for (std::int64_t r = 0; r < R; ++r)
    for (std::int64_t v = 0; v < V; ++v) {
      fs[r * s0 + v] = f[r * V + v];
      fus[r * s0 + v] = fu[r * V + v];
    }
  GCPO_REQUIRE_OK(gcpo::host::generation_step(gcpo::make_strided_view(static_cast<const float*>(fs.data()), {R, V}, {s0, 1}),
                                              gcpo::make_strided_view(static_cast<const float*>(fus.data()), {R, V}, {s0, 1}),
                                              view(t3, {R}), view(l3, {R}), view(e3, {R}), o, ws.get()));
  CHECK(t1 == t2);
  CHECK(t1 == t3);
  CHECK(l1 == l2);
  CHECK(l1 == l3);
  CHECK(e1 == e3);
  // and the log-prob / entropy of each row against the reference
  for (std::int64_t r = 0; r < R; ++r) {
    const std::vector<float> c(f.begin() + r * V, f.begin() + (r + 1) * V), u(fu.begin() + r * V, fu.begin() + (r + 1) * V);
    const kept_dist d = reference_dist(c, u, o);
    CAPTURE(r, d.top_p_margin);
    if (d.top_p_margin < 1e-4) continue;  // float rounding may legitimately move the cut
    REQUIRE(d.p[static_cast<std::size_t>(t1[r])] > 0);
    double h = 0;
    for (double p : d.p)
      if (p > 0) h -= p * std::log(p);
    CHECK(l1[r] == Approx(std::log(d.p[static_cast<std::size_t>(t1[r])])).epsilon(1e-5).margin(1e-5));
    CHECK(e1[r] == Approx(h).epsilon(1e-5).margin(1e-5));
  }
}

TEST_CASE("generation_step: greedy limits, -inf and NaN", "[sampling]") {
  const std::vector<float> cond{0.1f, 3.0f, -2.0f, 3.0f, 1.0f};
  gcpo::sampling_options o;
  SECTION("top-k 1 is the argmax, ties to the lower index; log-prob and entropy 0") {
    o.top_k = 1;
    for (std::uint64_t s = 0; s < 20; ++s) {
      o.step = s;
      const auto io = draw(cond, {}, 8, o);
      for (std::size_t r = 0; r < 8; ++r) {
        CHECK(io.tokens[r] == 1);
        CHECK(io.logprob[r] == 0.0f);
        CHECK(io.entropy[r] == 0.0f);
      }
    }
  }
  SECTION("a tiny top-p is the argmax") {
    o.top_p = 1e-6f;
    const auto io = draw(cond, {}, 32, o);
    for (auto t : io.tokens) CHECK(t == 1);
  }
  SECTION("top-k at or beyond V draws as without top-k") {
    const auto base = draw(cond, {}, 32, o);
    o.top_k = 5;
    CHECK(draw(cond, {}, 32, o).tokens == base.tokens);
    o.top_k = 1000;
    CHECK(draw(cond, {}, 32, o).tokens == base.tokens);
  }
  SECTION("-inf logits are never drawn") {
    const std::vector<float> c{-inf_f, 0.0f, -inf_f, 0.0f, -inf_f};
    for (std::uint64_t s = 0; s < 10; ++s) {
      o.step = s;
      const auto io = draw(c, {}, 32, o);
      for (std::size_t r = 0; r < 32; ++r) {
        CHECK((io.tokens[r] == 1 || io.tokens[r] == 3));
        CHECK(io.logprob[r] == Approx(std::log(0.5)));
        CHECK(io.entropy[r] == Approx(std::log(2.0)));
      }
    }
  }
  SECTION("a row of only -inf draws its lowest kept index; its log-prob and entropy are NaN") {
    const std::vector<float> c(4, -inf_f);
    const auto io = draw(c, {}, 4, o);
    for (std::size_t r = 0; r < 4; ++r) {
      CHECK(io.tokens[r] == 0);
      CHECK(std::isnan(io.logprob[r]));
      CHECK(std::isnan(io.entropy[r]));
    }
  }
  SECTION("NaN keys never win; NaN in the kept set makes log-prob and entropy NaN") {
    const std::vector<float> c{nan_f, 0.0f, nan_f, 0.0f};
    for (std::uint64_t s = 0; s < 10; ++s) {
      o.step = s;
      const auto io = draw(c, {}, 16, o);
      for (std::size_t r = 0; r < 16; ++r) {
        CHECK((io.tokens[r] == 1 || io.tokens[r] == 3));
        CHECK(std::isnan(io.logprob[r]));
        CHECK(std::isnan(io.entropy[r]));
      }
    }
    // top-k 2 keeps the two numbers (NaN ranks last): finite statistics
    o.top_k = 2;
    const auto io = draw(c, {}, 16, o);
    for (std::size_t r = 0; r < 16; ++r) {
      CHECK((io.tokens[r] == 1 || io.tokens[r] == 3));
      CHECK(io.logprob[r] == Approx(std::log(0.5)));
    }
  }
  SECTION("V = 1") {
    const auto io = draw(std::vector<float>{2.0f}, {}, 3, o);
    for (std::size_t r = 0; r < 3; ++r) {
      CHECK(io.tokens[r] == 0);
      CHECK(io.logprob[r] == 0.0f);
      CHECK(io.entropy[r] == 0.0f);
    }
  }
}

TEST_CASE("generation_step: first_row makes a split batch draw what the whole one does", "[sampling]") {
  // Rows [a, b) drawn alone with first_row = a are bitwise rows [a, b) of the whole batch: the
  // Philox row counter is first_row + r (data parallelism: each process draws its global rows).
  const std::int64_t R = 12, V = 300;
  std::mt19937_64 rng(21);
  const std::vector<float> cond = normal(rng, static_cast<std::size_t>(R * V), 0.0, 2.0);
  const std::vector<float> uncond = normal(rng, static_cast<std::size_t>(R * V), 0.0, 2.0);
  gcpo::sampling_options o;
  o.seed = 77;
  o.step = 5;
  o.cfg_scale = 3.0f;
  o.top_k = 40;
  o.top_p = 0.8f;
  auto run = [&](std::int64_t first, std::int64_t rows, std::uint64_t first_row) {
    step_io<float> io;
    io.tokens.assign(static_cast<std::size_t>(rows), -1);
    io.logprob.assign(static_cast<std::size_t>(rows), -99.0f);
    io.entropy.assign(static_cast<std::size_t>(rows), -99.0f);
    gcpo::sampling_options oo = o;
    oo.first_row = first_row;
    host_workspace ws(gcpo::generation_step_workspace_bytes(rows, V));
    GCPO_REQUIRE_OK(gcpo::host::generation_step(
        gcpo::make_view(cond.data() + first * V, {rows, V}), gcpo::make_view(uncond.data() + first * V, {rows, V}),
        view(io.tokens, {rows}), view(io.logprob, {rows}), view(io.entropy, {rows}), oo, ws.get()));
    return io;
  };
  const auto whole = run(0, R, 0);
  std::vector<std::int64_t> joined;
  std::vector<float> joined_lp;
  for (std::int64_t first : {0, 4, 8}) {
    const auto part = run(first, 4, static_cast<std::uint64_t>(first));
    joined.insert(joined.end(), part.tokens.begin(), part.tokens.end());
    joined_lp.insert(joined_lp.end(), part.logprob.begin(), part.logprob.end());
  }
  CHECK(joined == whole.tokens);
  CHECK(joined_lp == whole.logprob);
  // without the offset the parts draw with rows 0..3 each time: not the whole batch's tokens
  std::vector<std::int64_t> unshifted;
  for (std::int64_t first : {0, 4, 8}) {
    const auto part = run(first, 4, 0);
    unshifted.insert(unshifted.end(), part.tokens.begin(), part.tokens.end());
  }
  CHECK(unshifted != whole.tokens);
}

TEST_CASE("generation_step: preconditions", "[sampling]") {
  const std::int64_t R = 2, V = 5;
  std::vector<float> c(R * V, 0.0f), u(R * V, 0.0f), lp(R), ent(R), big(40);
  std::vector<std::int64_t> tok(R);
  using sc = gcpo::status_code;
  using gcpo::host::generation_step;
  const std::size_t bytes = gcpo::generation_step_workspace_bytes(R, V);
  host_workspace wsb(bytes);
  const gcpo::workspace ws = wsb.get();
  const auto C = cview(c, {R, V});
  const auto U = cview(u, {R, V});
  const auto T = view(tok, {R});
  const auto LP = view(lp, {R});
  const auto E = view(ent, {R});
  const gcpo::sampling_options o;
  GCPO_REQUIRE_OK(generation_step(C, U, T, LP, E, o, ws));
  GCPO_REQUIRE_OK(generation_step(C, {}, T, {}, {}, o, ws));
  {
    gcpo::sampling_options last = o;
    last.first_row = (std::uint64_t{1} << 32) - R;  // rows up to the counter's last value
    GCPO_REQUIRE_OK(generation_step(C, {}, T, {}, {}, last, ws));
    last.first_row += 1;
    GCPO_CHECK_ERROR(generation_step(C, {}, T, {}, {}, last, ws), sc::invalid_argument,
                     "`options.first_row` (4294967295) + rows (R = 2) must be <= 2^32 (the Philox row counter)");
    last.first_row = ~std::uint64_t{0};
    GCPO_CHECK_ERROR(generation_step(C, {}, T, {}, {}, last, ws), sc::invalid_argument, "`options.first_row`");
  }

  GCPO_CHECK_ERROR(generation_step({}, U, T, LP, E, o, ws), sc::invalid_argument, "`cond_logits` is required but was not given");
  GCPO_CHECK_ERROR(generation_step(cview(c, {R * V}), {}, T, LP, E, o, ws), sc::invalid_argument,
                   "`cond_logits` must have rank 2 ([R, V]) but has rank 1");
  GCPO_CHECK_ERROR(generation_step(gcpo::make_view(reinterpret_cast<const std::int32_t*>(c.data()), {R, V}), {}, T, LP, E, o, ws),
                   sc::unsupported_dtype, "`cond_logits.dtype` is int32; expected one of: float32, bfloat16, float16");
  GCPO_CHECK_ERROR(generation_step(gcpo::make_strided_view(static_cast<const float*>(big.data()), {R, V}, {10, 2}), {}, T, LP, E, o, ws),
                   sc::invalid_argument, "`cond_logits.strides[1]` (2) must be 1");
  GCPO_CHECK_ERROR(generation_step(gcpo::make_strided_view(static_cast<const float*>(big.data()), {R, V}, {0, 1}), {}, T, LP, E, o, ws),
                   sc::invalid_argument, "`cond_logits.strides[0]` (0) must be positive");
  GCPO_CHECK_ERROR(generation_step(gcpo::make_strided_view(static_cast<const float*>(c.data()), {R, 0}, {V, 1}), {}, T, LP, E, o, ws),
                   sc::invalid_argument, "`cond_logits.shape[1]` (V = 0) must be in [1, 2^31)");
  GCPO_CHECK_ERROR(generation_step(gcpo::make_view(c.data(), {R, V}, gcpo::memory_space::device), {}, T, LP, E, o, ws),
                   sc::wrong_memory_space, "`cond_logits` is a device view");
  std::vector<gcpo::float16> h(R * V);
  GCPO_CHECK_ERROR(generation_step(C, cview(h, {R, V}), T, LP, E, o, ws), sc::unsupported_dtype,
                   "`uncond_logits.dtype` (float16) must equal `cond_logits.dtype` (float32)");
  GCPO_CHECK_ERROR(generation_step(C, cview(u, {R, V - 1}), T, LP, E, o, ws), sc::invalid_argument,
                   "`uncond_logits.shape[1]` (4) must equal `cond_logits.shape[1]` (5)");
  GCPO_CHECK_ERROR(generation_step(C, cview(u, {1, V}), T, LP, E, o, ws), sc::invalid_argument,
                   "`uncond_logits.shape[0]` (1) must equal `cond_logits.shape[0]` (2)");
  GCPO_CHECK_ERROR(generation_step(C, cview(u, {R * V}), T, LP, E, o, ws), sc::invalid_argument,
                   "`uncond_logits` must have rank 2 ([R, V]) but has rank 1");
  GCPO_CHECK_ERROR(generation_step(C, gcpo::make_strided_view(static_cast<const float*>(big.data()), {R, V}, {10, 2}), T, LP, E, o, ws),
                   sc::invalid_argument, "`uncond_logits.strides[1]` (2) must be 1");
  // tokens and outputs
  GCPO_CHECK_ERROR(generation_step(C, U, gcpo::tensor_view{}, LP, E, o, ws), sc::invalid_argument, "`tokens` is required but was not given");
  GCPO_CHECK_ERROR(generation_step(C, U, view(lp, {R}), LP, E, o, ws), sc::unsupported_dtype,
                   "`tokens.dtype` is float32; expected one of: int32, int64");
  GCPO_CHECK_ERROR(generation_step(C, U, view(tok, {1}), LP, E, o, ws), sc::invalid_argument,
                   "`tokens.shape[0]` (1) must equal `cond_logits.shape[0]` (2)");
  GCPO_CHECK_ERROR(generation_step(C, U, view(tok, {R, 1}), LP, E, o, ws), sc::invalid_argument,
                   "`tokens` must have rank 1 ([R]) but has rank 2");
  GCPO_CHECK_ERROR(generation_step(C, U, T, gcpo::make_view(reinterpret_cast<gcpo::bfloat16*>(lp.data()), {R}), E, o, ws),
                   sc::unsupported_dtype, "`logprob.dtype` is bfloat16; expected one of: float32");
  GCPO_CHECK_ERROR(generation_step(C, U, T, LP, view(ent, {1}), o, ws), sc::invalid_argument,
                   "`entropy.shape[0]` (1) must equal `cond_logits.shape[0]` (2)");
  GCPO_CHECK_ERROR(generation_step(C, U, T, LP, gcpo::make_strided_view(big.data(), {R}, {2}), o, ws), sc::invalid_argument,
                   "`entropy` must be contiguous");
  GCPO_CHECK_ERROR(generation_step(C, U, T, LP, view(lp, {R}), o, ws), sc::aliasing, "`logprob` shall not overlap `entropy`");
  GCPO_CHECK_ERROR(generation_step(C, U, T, view(c, {R}), E, o, ws), sc::aliasing, "`logprob` shall not overlap `cond_logits`");
  GCPO_CHECK_ERROR(generation_step(C, U, T, LP, view(u, {R}), o, ws), sc::aliasing, "`entropy` shall not overlap `uncond_logits`");
  GCPO_CHECK_ERROR(generation_step(C, U, gcpo::make_view(reinterpret_cast<std::int64_t*>(c.data()), {R}), LP, E, o, ws), sc::aliasing,
                   "`tokens` shall not overlap `cond_logits`");
  GCPO_CHECK_ERROR(generation_step(C, U, T, gcpo::make_view(reinterpret_cast<float*>(tok.data()), {R}), E, o, ws), sc::aliasing,
                   "`tokens` shall not overlap `logprob`");
  // options
  auto opt_err = [&](const gcpo::sampling_options& b, const std::string& text) {
    GCPO_CHECK_ERROR(generation_step(C, U, T, LP, E, b, ws), sc::invalid_argument, text);
  };
  gcpo::sampling_options b;
  b.cfg_scale = inf_f;
  opt_err(b, "`options.cfg_scale` (inf) must be finite");
  b = o;
  b.cfg_scale = nan_f;
  opt_err(b, "`options.cfg_scale` (nan) must be finite");
  b = o;
  b.temperature = 0.0f;
  opt_err(b, "`options.temperature` (0) must be finite and > 0");
  b.temperature = -1.0f;
  opt_err(b, "`options.temperature` (-1) must be finite and > 0");
  b.temperature = inf_f;
  opt_err(b, "`options.temperature` (inf) must be finite and > 0");
  b = o;
  b.top_k = -1;
  opt_err(b, "`options.top_k` (-1) must be >= 0 (0: no top-k)");
  b = o;
  b.top_p = 0.0f;
  opt_err(b, "`options.top_p` (0) must be in (0, 1]");
  b.top_p = 1.5f;
  opt_err(b, "`options.top_p` (1.5) must be in (0, 1]");
  b.top_p = nan_f;
  opt_err(b, "`options.top_p` (nan) must be in (0, 1]");
  // workspace
  GCPO_CHECK_ERROR(generation_step(C, U, T, LP, E, o, gcpo::workspace{wsb.bytes.data(), bytes - 1, gcpo::memory_space::host}),
                   sc::workspace_too_small,
                   "`workspace.bytes` (" + std::to_string(bytes - 1) + ") is smaller than the " + std::to_string(bytes) +
                       " bytes `generation_step_workspace_bytes(R, V)` asks for");
  GCPO_CHECK_ERROR(generation_step(C, U, T, LP, E, o, gcpo::workspace{}), sc::workspace_too_small, "(workspace.data is null)");
  GCPO_CHECK_ERROR(generation_step(C, U, T, LP, E, o, gcpo::workspace{wsb.bytes.data(), bytes, gcpo::memory_space::device}),
                   sc::wrong_memory_space, "`workspace` is device memory but this operator needs host memory");
  // the workspace may start anywhere
  std::vector<unsigned char> odd(bytes + 1);
  GCPO_REQUIRE_OK(generation_step(C, U, T, LP, E, o, gcpo::workspace{odd.data() + 1, bytes, gcpo::memory_space::host}));
}
