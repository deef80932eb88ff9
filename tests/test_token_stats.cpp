// Unit tests of gcpo/token_stats.hpp (host twin): entropy, log-prob and logsumexp of logits and
// the backward of the log-prob to the logits. Expected values are hand-computed or come from a
// double-precision scalar reference written here from the spec (section 2 and 6).
#include <catch2/catch.hpp>

#include <gcpo/gcpo.hpp>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <limits>
#include <random>
#include <vector>

#include "unit_support.hpp"

using namespace gcpo_test;

namespace {

constexpr double val_atol = 1e-5, val_rtol = 1e-5;

/// Statistics of one row in double: x = logits / T; -inf entries have probability 0.
struct ref_row {
  double lse, entropy;
  std::vector<double> p;  ///< softmax
};

ref_row reference_row(const double* logits, std::int64_t V, double T) {
  ref_row out;
  double m = -inf_d;
  bool nan = false, pinf = false;
  for (std::int64_t v = 0; v < V; ++v) {
    const double x = logits[v] / T;
    if (std::isnan(x)) nan = true;
    if (x == inf_d) pinf = true;
    if (x > m) m = x;
  }
  out.p.assign(static_cast<std::size_t>(V), 0.0);
  if (nan || pinf) {
    out.lse = out.entropy = std::numeric_limits<double>::quiet_NaN();
    return out;
  }
  if (m == -inf_d) {
    out.lse = -inf_d;
    out.entropy = std::numeric_limits<double>::quiet_NaN();
    return out;
  }
  double s = 0.0;
  for (std::int64_t v = 0; v < V; ++v) s += std::exp(logits[v] / T - m);
  out.lse = m + std::log(s);
  double px = 0.0;
  for (std::int64_t v = 0; v < V; ++v) {
    const double x = logits[v] / T;
    const double p = std::exp(x - out.lse);
    out.p[static_cast<std::size_t>(v)] = p;
    if (p > 0) px += p * x;
  }
  out.entropy = out.lse - px;
  return out;
}

struct ref_stats {
  std::vector<double> entropy, logprob, lse;
};

/// Reference over [R, N, V] contiguous logits (given as exact double values).
template <class I>
ref_stats reference(const std::vector<double>& logits, const std::vector<I>& tokens, std::int64_t R, std::int64_t N,
                    std::int64_t V, double T) {
  ref_stats s;
  for (std::int64_t i = 0; i < R * N; ++i) {
    const ref_row row = reference_row(logits.data() + i * V, V, T);
    s.entropy.push_back(row.entropy);
    s.lse.push_back(row.lse);
    if (!tokens.empty()) s.logprob.push_back(logits[static_cast<std::size_t>(i * V + tokens[static_cast<std::size_t>(i)])] / T - row.lse);
  }
  return s;
}

std::vector<double> to_double(const std::vector<float>& v) { return std::vector<double>(v.begin(), v.end()); }

/// Reference gradient: (g / T) * (onehot(token) - softmax(x)).
template <class I>
std::vector<double> reference_grad(const std::vector<double>& logits, const std::vector<I>& tokens,
                                   const std::vector<float>& glp, std::int64_t R, std::int64_t N, std::int64_t V, double T) {
  std::vector<double> g(static_cast<std::size_t>(R * N * V));
  for (std::int64_t i = 0; i < R * N; ++i) {
    const ref_row row = reference_row(logits.data() + i * V, V, T);
    for (std::int64_t v = 0; v < V; ++v)
      g[static_cast<std::size_t>(i * V + v)] =
          glp[static_cast<std::size_t>(i)] / T * ((v == static_cast<std::int64_t>(tokens[static_cast<std::size_t>(i)]) ? 1.0 : 0.0) - row.p[static_cast<std::size_t>(v)]);
  }
  return g;
}

struct outputs {
  std::vector<float> entropy, logprob, lse;
  explicit outputs(std::int64_t n) : entropy(n, -7.0f), logprob(n, -7.0f), lse(n, -7.0f) {}
};

}  // namespace

TEST_CASE("token_stats: uniform logits give log V entropy", "[token_stats]") {
  for (std::int64_t V : {1, 2, 7, 64, 100, 1000}) {
    CAPTURE(V);
    const std::int64_t R = 2, N = 3;
    std::vector<float> logits(static_cast<std::size_t>(R * N * V), 2.5f);
    std::vector<std::int32_t> tokens(R * N);
    for (std::int64_t i = 0; i < R * N; ++i) tokens[i] = static_cast<std::int32_t>((i * 5) % V);
    outputs o(R * N);
    GCPO_REQUIRE_OK(gcpo::host::token_stats(cview(logits, {R, N, V}), cview(tokens, {R, N}), view(o.entropy, {R, N}),
                                            view(o.logprob, {R, N}), view(o.lse, {R, N})));
    const double lv = std::log(static_cast<double>(V));
    check_close(o.entropy, std::vector<double>(R * N, lv), 1e-6, 1e-6, "entropy");
    check_close(o.logprob, std::vector<double>(R * N, -lv), 1e-6, 1e-6, "logprob");
    check_close(o.lse, std::vector<double>(R * N, 2.5 + lv), 1e-6, 1e-6, "lse");
  }
}

TEST_CASE("token_stats: hand-computed rows", "[token_stats]") {
  const float ninf = -inf_f;
  // row 0: one-hot by -inf: entropy 0
  // row 1: [10, 0, 0, 0]: p0 = e^10 / (e^10 + 3)
  // row 2: [log 1, log 2, log 5, -inf]: p = [1/8, 2/8, 5/8, 0]
  // row 3: [a, b] two-point: binary entropy of sigmoid(a - b)
  const std::int64_t V = 4;
  std::vector<float> logits{0.0f,  ninf, ninf, ninf,                                                   //
                            10.0f, 0.0f, 0.0f, 0.0f,                                                   //
                            static_cast<float>(std::log(1.0)), static_cast<float>(std::log(2.0)),      //
                            static_cast<float>(std::log(5.0)), ninf,                                   //
                            1.0f,  -0.5f, ninf, ninf};
  std::vector<std::int64_t> tokens{0, 1, 2, 1};
  outputs o(4);
  GCPO_REQUIRE_OK(gcpo::host::token_stats(cview(logits, {4, 1, V}), cview(tokens, {4, 1}), view(o.entropy, {4, 1}),
                                          view(o.logprob, {4, 1}), view(o.lse, {4, 1})));
  const double e10 = std::exp(10.0), z1 = e10 + 3.0, p0 = e10 / z1;
  const double h2 = -(1.0 / 8 * std::log(1.0 / 8) + 2.0 / 8 * std::log(2.0 / 8) + 5.0 / 8 * std::log(5.0 / 8));
  const double q = 1.0 / (1.0 + std::exp(-1.5));  // p(a) for a - b = 1.5
  const double h3 = -(q * std::log(q) + (1 - q) * std::log(1 - q));
  check_close(o.entropy, std::vector<double>{0.0, std::log(z1) - 10.0 * p0, h2, h3}, 1e-6, 1e-6, "entropy");
  check_close(o.lse, std::vector<double>{0.0, std::log(z1), std::log(8.0), std::log(std::exp(1.0) + std::exp(-0.5))}, 1e-6,
              1e-6, "lse");
  check_close(o.logprob, std::vector<double>{0.0, -std::log(z1), std::log(5.0 / 8), std::log(1 - q)}, 1e-6, 1e-6, "logprob");

  // the sampled token at -inf has log-prob -inf
  std::vector<std::int64_t> bad_tok{1, 1, 3, 2};
  GCPO_REQUIRE_OK(gcpo::host::token_stats(cview(logits, {4, 1, V}), cview(bad_tok, {4, 1}), {}, view(o.logprob, {4, 1}), {}));
  CHECK(o.logprob[0] == -inf_f);
  CHECK(o.logprob[2] == -inf_f);
  CHECK(o.logprob[3] == -inf_f);
  CHECK(o.logprob[1] == Approx(-std::log(z1)).epsilon(1e-6));
}

TEST_CASE("token_stats: temperature divides the logits", "[token_stats]") {
  // [0, log 2, log 5] at T = 0.5 equals [0, 2 log 2, 2 log 5] = log [1, 4, 25] at T = 1
  std::vector<float> logits{0.0f, static_cast<float>(std::log(2.0)), static_cast<float>(std::log(5.0))};
  std::vector<std::int32_t> tokens{2};
  outputs o(1);
  gcpo::token_stats_options opt;
  opt.temperature = 0.5f;
  GCPO_REQUIRE_OK(gcpo::host::token_stats(cview(logits, {1, 1, 3}), cview(tokens, {1, 1}), view(o.entropy, {1, 1}),
                                          view(o.logprob, {1, 1}), view(o.lse, {1, 1}), opt));
  const double p[3] = {1.0 / 30, 4.0 / 30, 25.0 / 30};
  const double h = -(p[0] * std::log(p[0]) + p[1] * std::log(p[1]) + p[2] * std::log(p[2]));
  CHECK(o.entropy[0] == Approx(h).epsilon(1e-6));
  CHECK(o.logprob[0] == Approx(std::log(p[2])).epsilon(1e-6));
  CHECK(o.lse[0] == Approx(std::log(30.0)).epsilon(1e-6));

  // random rows at several temperatures against the reference
  const std::uint64_t seed = 11;
  CAPTURE(seed);
  std::mt19937_64 rng(seed);
  const std::int64_t R = 2, N = 3, V = 77;
  const std::vector<float> lg = normal(rng, R * N * V, 0.0, 3.0);
  std::vector<std::int32_t> tok(R * N);
  for (auto& t : tok) t = static_cast<std::int32_t>(rng() % V);
  for (float T : {0.25f, 0.7f, 1.0f, 1.3f, 10.0f}) {
    CAPTURE(T);
    outputs out(R * N);
    opt.temperature = T;
    GCPO_REQUIRE_OK(gcpo::host::token_stats(cview(lg, {R, N, V}), cview(tok, {R, N}), view(out.entropy, {R, N}),
                                            view(out.logprob, {R, N}), view(out.lse, {R, N}), opt));
    const ref_stats want = reference(to_double(lg), tok, R, N, V, T);
    check_close(out.entropy, want.entropy, val_atol, val_rtol, "entropy");
    check_close(out.logprob, want.logprob, val_atol, val_rtol, "logprob");
    check_close(out.lse, want.lse, val_atol, val_rtol, "lse");
  }
}

TEST_CASE("token_stats: randomised comparison with the double reference", "[token_stats]") {
  // sizes either side of the 16-lane and 64-element chunking, and a prime
  for (std::int64_t V : {1, 2, 3, 15, 16, 17, 63, 64, 65, 127, 128, 129, 1000, 4099}) {
    for (std::uint64_t seed : {1u, 2u}) {
      CAPTURE(V, seed);
      std::mt19937_64 rng(seed * 1000 + static_cast<std::uint64_t>(V));
      const std::int64_t R = 3, N = 5;
      const double scale = seed == 1 ? 1.0 : 8.0;
      std::vector<float> lg = normal(rng, R * N * V, 0.5, scale);
      std::vector<std::int64_t> tok(R * N);
      for (auto& t : tok) t = static_cast<std::int64_t>(rng() % V);
      outputs o(R * N);
      GCPO_REQUIRE_OK(gcpo::host::token_stats(cview(lg, {R, N, V}), cview(tok, {R, N}), view(o.entropy, {R, N}),
                                              view(o.logprob, {R, N}), view(o.lse, {R, N})));
      const ref_stats want = reference(to_double(lg), tok, R, N, V, 1.0);
      check_close(o.entropy, want.entropy, val_atol, val_rtol, "entropy");
      check_close(o.logprob, want.logprob, val_atol, val_rtol, "logprob");
      check_close(o.lse, want.lse, val_atol, val_rtol, "lse");
    }
  }
}

TEST_CASE("token_stats: strided rows inside a larger buffer", "[token_stats]") {
  const std::uint64_t seed = 5;
  CAPTURE(seed);
  std::mt19937_64 rng(seed);
  const std::int64_t R = 3, N = 4, V = 70;
  const std::vector<float> dense = normal(rng, R * N * V, 0.0, 2.0);
  std::vector<std::int32_t> tok(R * N);
  for (auto& t : tok) t = static_cast<std::int32_t>(rng() % V);
  const ref_stats want = reference(to_double(dense), tok, R, N, V, 1.0);

  SECTION("padded rows: strides {N*(V+5) + 3, V + 5, 1}, padding is NaN") {
    const std::int64_t s1 = V + 5, s0 = N * s1 + 3;
    std::vector<float> buf(static_cast<std::size_t>(R * s0), nan_f);
    for (std::int64_t r = 0; r < R; ++r)
      for (std::int64_t n = 0; n < N; ++n)
        for (std::int64_t v = 0; v < V; ++v) buf[r * s0 + n * s1 + v] = dense[(r * N + n) * V + v];
    outputs o(R * N);
    GCPO_REQUIRE_OK(gcpo::host::token_stats(gcpo::make_strided_view(static_cast<const float*>(buf.data()), {R, N, V}, {s0, s1, 1}),
                                            cview(tok, {R, N}), view(o.entropy, {R, N}), view(o.logprob, {R, N}),
                                            view(o.lse, {R, N})));
    check_close(o.entropy, want.entropy, val_atol, val_rtol, "entropy");
    check_close(o.logprob, want.logprob, val_atol, val_rtol, "logprob");
    check_close(o.lse, want.lse, val_atol, val_rtol, "lse");
  }
  SECTION("transposed storage [N, R, V] viewed as [R, N, V]") {
    std::vector<float> buf(static_cast<std::size_t>(R * N * V));
    for (std::int64_t r = 0; r < R; ++r)
      for (std::int64_t n = 0; n < N; ++n)
        for (std::int64_t v = 0; v < V; ++v) buf[(n * R + r) * V + v] = dense[(r * N + n) * V + v];
    outputs o(R * N);
    GCPO_REQUIRE_OK(gcpo::host::token_stats(gcpo::make_strided_view(static_cast<const float*>(buf.data()), {R, N, V}, {V, R * V, 1}),
                                            cview(tok, {R, N}), view(o.entropy, {R, N}), view(o.logprob, {R, N}),
                                            view(o.lse, {R, N})));
    check_close(o.entropy, want.entropy, val_atol, val_rtol, "entropy");
    check_close(o.logprob, want.logprob, val_atol, val_rtol, "logprob");
    check_close(o.lse, want.lse, val_atol, val_rtol, "lse");
  }
  SECTION("a misaligned base pointer") {
    std::vector<float> buf(dense.size() + 1);
    std::copy(dense.begin(), dense.end(), buf.begin() + 1);
    outputs o(R * N);
    GCPO_REQUIRE_OK(gcpo::host::token_stats(gcpo::make_view(static_cast<const float*>(buf.data() + 1), {R, N, V}),
                                            cview(tok, {R, N}), view(o.entropy, {R, N}), view(o.logprob, {R, N}),
                                            view(o.lse, {R, N})));
    check_close(o.entropy, want.entropy, val_atol, val_rtol, "entropy");
    check_close(o.lse, want.lse, val_atol, val_rtol, "lse");
  }
}

TEMPLATE_TEST_CASE("token_stats: 16-bit logits accumulate in float", "[token_stats]", gcpo::bfloat16, gcpo::float16) {
  const std::uint64_t seed = 21;
  CAPTURE(seed);
  std::mt19937_64 rng(seed);
  const std::int64_t R = 2, N = 3, V = 300;
  const std::vector<float> lg = normal(rng, R * N * V, 0.0, 4.0);
  std::vector<double> exact;
  const std::vector<TestType> stored = stored_as<TestType>(lg, exact);
  std::vector<std::int32_t> tok(R * N);
  for (auto& t : tok) t = static_cast<std::int32_t>(rng() % V);
  outputs o(R * N);
  gcpo::token_stats_options opt;
  opt.temperature = 0.8f;
  GCPO_REQUIRE_OK(gcpo::host::token_stats(cview(stored, {R, N, V}), cview(tok, {R, N}), view(o.entropy, {R, N}),
                                          view(o.logprob, {R, N}), view(o.lse, {R, N}), opt));
  // the reference sees the exact 16-bit values (decoded independently)
  const ref_stats want = reference(exact, tok, R, N, V, 0.8f);
  check_close(o.entropy, want.entropy, val_atol, val_rtol, "entropy");
  check_close(o.logprob, want.logprob, val_atol, val_rtol, "logprob");
  check_close(o.lse, want.lse, val_atol, val_rtol, "lse");
}

TEST_CASE("token_stats: int32 and int64 tokens agree", "[token_stats]") {
  const std::uint64_t seed = 8;
  CAPTURE(seed);
  std::mt19937_64 rng(seed);
  const std::int64_t R = 4, N = 6, V = 33;
  const std::vector<float> lg = normal(rng, R * N * V, 0.0, 1.0);
  std::vector<std::int32_t> t32(R * N);
  std::vector<std::int64_t> t64(R * N);
  for (std::int64_t i = 0; i < R * N; ++i) t64[i] = t32[i] = static_cast<std::int32_t>(rng() % V);
  t32[0] = 0;
  t64[0] = 0;
  t32[1] = V - 1;
  t64[1] = V - 1;
  std::vector<float> a(R * N), b(R * N);
  GCPO_REQUIRE_OK(gcpo::host::token_stats(cview(lg, {R, N, V}), cview(t32, {R, N}), {}, view(a, {R, N}), {}));
  GCPO_REQUIRE_OK(gcpo::host::token_stats(cview(lg, {R, N, V}), cview(t64, {R, N}), {}, view(b, {R, N}), {}));
  const ref_stats want = reference(to_double(lg), t64, R, N, V, 1.0);
  check_close(a, want.logprob, val_atol, val_rtol, "logprob int32");
  check_close(b, want.logprob, val_atol, val_rtol, "logprob int64");
}

TEST_CASE("token_stats: -inf entries and huge logits", "[token_stats]") {
  const std::uint64_t seed = 13;
  CAPTURE(seed);
  std::mt19937_64 rng(seed);
  const std::int64_t R = 2, N = 4, V = 150;
  std::vector<float> lg = normal(rng, R * N * V, 0.0, 2.0);
  // row 0: most entries -inf; row 1: +-1e4; row 2: 1e4 and 1e4 - 1 only near the top; row 3: -1e4 everywhere but one
  for (std::int64_t v = 0; v < V; ++v)
    if (v % 7 != 3) lg[v] = -inf_f;
  for (std::int64_t v = 0; v < V; ++v) lg[V + v] = (v % 2) ? 1e4f : -1e4f;
  for (std::int64_t v = 0; v < V; ++v) lg[2 * V + v] = v == 5 ? 1e4f : (v == 77 ? 1e4f - 1.0f : -1e4f + static_cast<float>(v));
  for (std::int64_t v = 0; v < V; ++v) lg[3 * V + v] = v == 149 ? 0.0f : -1e4f;
  // a -inf in every 64-element chunk of rollout 1
  for (std::int64_t v = 0; v < V; v += 64) lg[(N + 1) * V + v] = -inf_f;
  // a row that starts with a full chunk of -inf
  for (std::int64_t v = 0; v < 64; ++v) lg[(N + 2) * V + v] = -inf_f;
  std::vector<std::int32_t> tok(R * N);
  for (std::int64_t i = 0; i < R * N; ++i) tok[i] = static_cast<std::int32_t>(rng() % V);
  tok[0] = 3;  // a finite entry
  tok[1] = 5;
  tok[2] = 77;
  tok[3] = 149;
  outputs o(R * N);
  GCPO_REQUIRE_OK(gcpo::host::token_stats(cview(lg, {R, N, V}), cview(tok, {R, N}), view(o.entropy, {R, N}),
                                          view(o.logprob, {R, N}), view(o.lse, {R, N})));
  const ref_stats want = reference(to_double(lg), tok, R, N, V, 1.0);
  check_close(o.entropy, want.entropy, val_atol, val_rtol, "entropy");
  check_close(o.logprob, want.logprob, val_atol, val_rtol, "logprob");
  check_close(o.lse, want.lse, val_atol, val_rtol, "lse");
  // row 1 is uniform over the 75 entries at 1e4: entropy log 75
  CHECK(o.entropy[1] == Approx(std::log(75.0)).epsilon(1e-6));
  CHECK(o.lse[1] == Approx(1e4 + std::log(75.0)).epsilon(1e-7));
  // row 3: a single winner by 1e4: entropy 0, logprob 0
  CHECK(std::fabs(o.entropy[3]) < 1e-6);
  CHECK(std::fabs(o.logprob[3]) < 1e-6);
}

TEST_CASE("token_stats: all -inf rows and NaN follow the header", "[token_stats]") {
  const std::int64_t V = 70;  // more than one chunk
  std::vector<float> lg(static_cast<std::size_t>(4 * V), 0.5f);
  for (std::int64_t v = 0; v < V; ++v) lg[v] = -inf_f;  // row 0: all -inf
  lg[V + 66] = nan_f;                                    // row 1: NaN in the second chunk
  lg[2 * V + 3] = inf_f;                                 // row 2: +inf
  std::vector<std::int32_t> tok{0, 1, 2, 3};
  outputs o(4);
  GCPO_REQUIRE_OK(gcpo::host::token_stats(cview(lg, {2, 2, V}), cview(tok, {2, 2}), view(o.entropy, {2, 2}),
                                          view(o.logprob, {2, 2}), view(o.lse, {2, 2})));
  // "A row of only -inf gives lse = -inf and NaN entropy / log-prob"
  CHECK(o.lse[0] == -inf_f);
  CHECK(std::isnan(o.entropy[0]));
  CHECK(std::isnan(o.logprob[0]));
  // "a NaN or +inf logit makes its row's outputs NaN"
  for (int i : {1, 2}) {
    CAPTURE(i);
    CHECK(std::isnan(o.entropy[i]));
    CHECK(std::isnan(o.logprob[i]));
    CHECK(std::isnan(o.lse[i]));
  }
  // other rows are unaffected: uniform over V
  CHECK(o.entropy[3] == Approx(std::log(static_cast<double>(V))).epsilon(1e-6));
  CHECK(o.logprob[3] == Approx(-std::log(static_cast<double>(V))).epsilon(1e-6));
}

TEST_CASE("token_stats: any subset of the outputs", "[token_stats]") {
  const std::uint64_t seed = 3;
  CAPTURE(seed);
  std::mt19937_64 rng(seed);
  const std::int64_t R = 2, N = 2, V = 9;
  const std::vector<float> lg = normal(rng, R * N * V, 0.0, 1.0);
  std::vector<std::int32_t> tok{1, 2, 3, 4};
  const ref_stats want = reference(to_double(lg), tok, R, N, V, 1.0);
  std::vector<float> e(R * N), l(R * N), s(R * N);
  GCPO_REQUIRE_OK(gcpo::host::token_stats(cview(lg, {R, N, V}), {}, view(e, {R, N}), {}, {}));
  check_close(e, want.entropy, val_atol, val_rtol, "entropy only");
  GCPO_REQUIRE_OK(gcpo::host::token_stats(cview(lg, {R, N, V}), {}, {}, {}, view(s, {R, N})));
  check_close(s, want.lse, val_atol, val_rtol, "lse only");
  GCPO_REQUIRE_OK(gcpo::host::token_stats(cview(lg, {R, N, V}), cview(tok, {R, N}), {}, view(l, {R, N}), {}));
  check_close(l, want.logprob, val_atol, val_rtol, "logprob only");
  // tokens are only needed (and checked) for logprob
  std::vector<std::int32_t> bad{99, 99, 99, 99};
  GCPO_REQUIRE_OK(gcpo::host::token_stats(cview(lg, {R, N, V}), cview(bad, {R, N}), view(e, {R, N}), {}, {}));
  // empty batch
  GCPO_REQUIRE_OK(gcpo::host::token_stats(gcpo::make_view(lg.data(), {0, 3, V}), {}, gcpo::make_view(e.data(), {0, 3}), {}, {}));
  // no tokens per rollout (make_view gives the rollout dimension stride 0 here)
  GCPO_REQUIRE_OK(gcpo::host::token_stats(gcpo::make_view(lg.data(), {R, 0, V}), gcpo::make_view(tok.data(), {R, 0}),
                                          gcpo::make_view(e.data(), {R, 0}), gcpo::make_view(l.data(), {R, 0}), {}));
}

TEST_CASE("token_stats: preconditions", "[token_stats]") {
  const std::int64_t R = 2, N = 3, V = 5;
  std::vector<float> lg(R * N * V, 0.0f), e(R * N), l(R * N), s(R * N), big(200);
  std::vector<std::int32_t> tok(R * N, 0);
  const auto L = cview(lg, {R, N, V});
  const auto T = cview(tok, {R, N});
  const auto E = view(e, {R, N});
  const auto LP = view(l, {R, N});
  const auto S = view(s, {R, N});
  using gcpo::host::token_stats;
  using sc = gcpo::status_code;

  GCPO_CHECK_ERROR(token_stats({}, T, E, LP, S), sc::invalid_argument, "`logits` is required but was not given");
  GCPO_CHECK_ERROR(token_stats(cview(lg, {R * N, V}), T, E, LP, S), sc::invalid_argument,
                   "`logits` must have rank 3 ([R, N, V]) but has rank 2");
  GCPO_CHECK_ERROR(token_stats(gcpo::make_view(static_cast<const float*>(nullptr), {R, N, V}), T, E, LP, S), sc::invalid_argument,
                   "`logits.data` is null but the view has 30 elements");
  GCPO_CHECK_ERROR(token_stats(gcpo::make_view(lg.data(), {R, N, V}, gcpo::memory_space::device), T, E, LP, S),
                   sc::wrong_memory_space, "`logits` is a device view but this operator needs host memory");
  GCPO_CHECK_ERROR(token_stats(cview(tok, {R, N, 1}), T, E, LP, S), sc::unsupported_dtype,
                   "`logits.dtype` is int32; expected one of: float32, bfloat16, float16");
  GCPO_CHECK_ERROR(token_stats(gcpo::make_strided_view(big.data(), {R, N, V}, {30, 10, 2}), T, E, LP, S), sc::invalid_argument,
                   "`logits.strides[2]` (2) must be 1: the last dimension must be contiguous");
  GCPO_CHECK_ERROR(token_stats(gcpo::make_strided_view(big.data(), {R, N, V}, {5, 0, 1}), T, E, LP, S), sc::invalid_argument,
                   "`logits.strides[1]` (0) must be positive");
  GCPO_CHECK_ERROR(token_stats(gcpo::make_strided_view(lg.data(), {R, N, 0}, {N * V, V, 1}), T, E, LP, S), sc::invalid_argument,
                   "`logits.shape[2]` (V = 0) must be at least 1");
  GCPO_CHECK_ERROR(token_stats(gcpo::make_view(lg.data(), {R, -1, V}), T, E, LP, S), sc::invalid_argument,
                   "`logits.shape[1]` (-1) must not be negative");
  for (float bad_t : {0.0f, -1.0f, inf_f, nan_f}) {
    CAPTURE(bad_t);
    gcpo::token_stats_options opt;
    opt.temperature = bad_t;
    GCPO_CHECK_ERROR(token_stats(L, T, E, LP, S, opt), sc::invalid_argument, "`options.temperature` (");
    GCPO_CHECK_ERROR(token_stats(L, T, E, LP, S, opt), sc::invalid_argument, ") must be finite and > 0");
  }
  // tokens
  GCPO_CHECK_ERROR(token_stats(L, cview(tok, {R * N}), E, LP, S), sc::invalid_argument,
                   "`tokens` must have rank 2 ([R, N]) but has rank 1");
  GCPO_CHECK_ERROR(token_stats(L, cview(lg, {R, N}), E, LP, S), sc::unsupported_dtype,
                   "`tokens.dtype` is float32; expected one of: int32, int64");
  GCPO_CHECK_ERROR(token_stats(L, cview(tok, {N, R}), E, LP, S), sc::invalid_argument,
                   "`tokens.shape[0]` (3) must equal `logits.shape[0]` (2)");
  GCPO_CHECK_ERROR(token_stats(L, cview(tok, {R, 2}), E, LP, S), sc::invalid_argument,
                   "`tokens.shape[1]` (2) must equal `logits.shape[1]` (3)");
  std::vector<std::int32_t> tbig(20, 0);
  GCPO_CHECK_ERROR(token_stats(L, gcpo::make_strided_view(static_cast<const std::int32_t*>(tbig.data()), {R, N}, {4, 1}), E, LP, S),
                   sc::invalid_argument, "`tokens` must be contiguous (row-major, no gaps)");
  GCPO_CHECK_ERROR(token_stats(L, gcpo::make_view(tok.data(), {R, N}, gcpo::memory_space::device), E, LP, S),
                   sc::wrong_memory_space, "`tokens` is a device view");
  GCPO_CHECK_ERROR(token_stats(L, {}, E, LP, S), sc::invalid_argument, "`logprob` was requested but `tokens` was not given");
  GCPO_CHECK_ERROR(token_stats(L, T, {}, {}, {}), sc::invalid_argument,
                   "none of `entropy`, `logprob`, `lse` was given: nothing to compute");
  // outputs
  std::vector<gcpo::bfloat16> e16(R * N);
  GCPO_CHECK_ERROR(token_stats(L, T, view(e16, {R, N}), LP, S), sc::unsupported_dtype,
                   "`entropy.dtype` is bfloat16; expected one of: float32");
  GCPO_CHECK_ERROR(token_stats(L, T, view(e, {R * N}), LP, S), sc::invalid_argument,
                   "`entropy` must have rank 2 ([R, N]) but has rank 1");
  GCPO_CHECK_ERROR(token_stats(L, T, E, view(l, {N, R}), S), sc::invalid_argument,
                   "`logprob.shape[0]` (3) must equal `logits.shape[0]` (2)");
  GCPO_CHECK_ERROR(token_stats(L, T, E, LP, view(s, {R, 2})), sc::invalid_argument,
                   "`lse.shape[1]` (2) must equal `logits.shape[1]` (3)");
  GCPO_CHECK_ERROR(token_stats(L, T, gcpo::make_strided_view(big.data(), {R, N}, {4, 1}), LP, S), sc::invalid_argument,
                   "`entropy` must be contiguous");
  GCPO_CHECK_ERROR(token_stats(L, T, gcpo::make_view(e.data(), {R, N}, gcpo::memory_space::device), LP, S),
                   sc::wrong_memory_space, "`entropy` is a device view");
  // aliasing
  GCPO_CHECK_ERROR(token_stats(L, T, view(lg, {R, N}), LP, S), sc::aliasing, "`entropy` shall not overlap `logits`");
  GCPO_CHECK_ERROR(token_stats(L, T, gcpo::make_view(lg.data() + R * N * V - 1, {R, N}), LP, S), sc::aliasing,
                   "`entropy` shall not overlap `logits`");
  GCPO_CHECK_ERROR(token_stats(L, T, E, gcpo::make_view(e.data(), {R, N}), S), sc::aliasing,
                   "`logprob` shall not overlap `entropy`");
  GCPO_CHECK_ERROR(token_stats(L, T, E, LP, gcpo::make_view(l.data(), {R, N})), sc::aliasing, "`lse` shall not overlap `logprob`");
  GCPO_CHECK_ERROR(token_stats(L, T, E, LP, gcpo::make_view(reinterpret_cast<float*>(tok.data()), {R, N})), sc::aliasing,
                   "`lse` shall not overlap `tokens`");
  // out-of-range tokens name the position
  std::vector<std::int32_t> t_hi(R * N, 0), t_lo(R * N, 0);
  t_hi[1 * N + 2] = static_cast<std::int32_t>(V);
  t_lo[0 * N + 1] = -1;
  GCPO_CHECK_ERROR(token_stats(L, cview(t_hi, {R, N}), E, LP, S), sc::invalid_argument, "`tokens[1, 2]` (5) must be in [0, V = 5)");
  GCPO_CHECK_ERROR(token_stats(L, cview(t_lo, {R, N}), E, LP, S), sc::invalid_argument, "`tokens[0, 1]` (-1) must be in [0, V = 5)");
  std::vector<std::int64_t> t64(R * N, 0);
  t64[R * N - 1] = std::int64_t{1} << 40;
  GCPO_CHECK_ERROR(token_stats(L, cview(t64, {R, N}), E, LP, S), sc::invalid_argument,
                   "`tokens[1, 2]` (1099511627776) must be in [0, V = 5)");
}

// ------------------------------------------------------------------------------------------
// backward

TEST_CASE("token_stats_backward: hand-computed gradient", "[token_stats]") {
  // logits log [1, 2, 5] (p = [1/8, 2/8, 5/8]), token 1, dL/dlogprob = 2:
  //   grad = 2 * (onehot(1) - p) = [-0.25, 1.5, -1.25]
  std::vector<float> lg{0.0f, static_cast<float>(std::log(2.0)), static_cast<float>(std::log(5.0))};
  std::vector<std::int32_t> tok{1};
  std::vector<float> lse{static_cast<float>(std::log(8.0))}, g{2.0f}, out(3, 99.0f);
  GCPO_REQUIRE_OK(gcpo::host::token_stats_backward(cview(lg, {1, 1, 3}), cview(tok, {1, 1}), cview(lse, {1, 1}),
                                                   cview(g, {1, 1}), view(out, {1, 1, 3})));
  check_close(out, std::vector<double>{-0.25, 1.5, -1.25}, 1e-7, 1e-6, "grad");
  // temperature 2 on doubled logits: same p, gradient divided by T
  std::vector<float> lg2{0.0f, static_cast<float>(2 * std::log(2.0)), static_cast<float>(2 * std::log(5.0))};
  gcpo::token_stats_options opt;
  opt.temperature = 2.0f;
  GCPO_REQUIRE_OK(gcpo::host::token_stats_backward(cview(lg2, {1, 1, 3}), cview(tok, {1, 1}), cview(lse, {1, 1}),
                                                   cview(g, {1, 1}), view(out, {1, 1, 3}), opt));
  check_close(out, std::vector<double>{-0.125, 0.75, -0.625}, 1e-7, 1e-6, "grad at T = 2");
  // -inf logits get zero gradient (unless sampled)
  std::vector<float> lg3{0.0f, -inf_f, 0.0f};
  std::vector<float> lse3{static_cast<float>(std::log(2.0))}, g3{1.0f};
  std::vector<std::int32_t> tok3{0};
  GCPO_REQUIRE_OK(gcpo::host::token_stats_backward(cview(lg3, {1, 1, 3}), cview(tok3, {1, 1}), cview(lse3, {1, 1}),
                                                   cview(g3, {1, 1}), view(out, {1, 1, 3})));
  check_close(out, std::vector<double>{0.5, 0.0, -0.5}, 1e-7, 1e-6, "grad with -inf");
}

TEST_CASE("token_stats_backward: randomised comparison and finite differences", "[token_stats]") {
  for (std::int64_t V : {1, 5, 64, 129}) {
    for (float T : {1.0f, 0.6f}) {
      const std::uint64_t seed = 40 + static_cast<std::uint64_t>(V);
      CAPTURE(V, T, seed);
      std::mt19937_64 rng(seed);
      const std::int64_t R = 2, N = 3;
      const std::vector<float> lg = normal(rng, R * N * V, 0.0, 2.0);
      std::vector<std::int64_t> tok(R * N);
      for (auto& t : tok) t = static_cast<std::int64_t>(rng() % V);
      const std::vector<float> glp = normal(rng, R * N, 0.0, 1.0);
      std::vector<float> lse(R * N);
      gcpo::token_stats_options opt;
      opt.temperature = T;
      GCPO_REQUIRE_OK(gcpo::host::token_stats(cview(lg, {R, N, V}), {}, {}, {}, view(lse, {R, N}), opt));
      std::vector<float> grad(R * N * V);
      GCPO_REQUIRE_OK(gcpo::host::token_stats_backward(cview(lg, {R, N, V}), cview(tok, {R, N}), cview(lse, {R, N}),
                                                       cview(glp, {R, N}), view(grad, {R, N, V}), opt));
      const std::vector<double> want = reference_grad(to_double(lg), tok, glp, R, N, V, T);
      check_close(grad, want, 1e-6, 1e-4, "grad_logits");

      // the reference gradient is the derivative of glp * logprob (central differences in double)
      std::vector<double> x = to_double(lg);
      std::vector<double> fd(want.size());
      const double h = 1e-5;
      for (std::int64_t i = 0; i < R * N; ++i)
        for (std::int64_t v = 0; v < V; ++v) {
          const std::size_t k = static_cast<std::size_t>(i * V + v);
          const double x0 = x[k];
          auto lp = [&]() {
            const ref_row row = reference_row(x.data() + i * V, V, T);
            return x[static_cast<std::size_t>(i * V + tok[static_cast<std::size_t>(i)])] / T - row.lse;
          };
          x[k] = x0 + h;
          const double up = lp();
          x[k] = x0 - h;
          const double dn = lp();
          x[k] = x0;
          fd[k] = glp[static_cast<std::size_t>(i)] * (up - dn) / (2 * h);
        }
      check_close(want, fd, 1e-7, 1e-5, "reference vs finite differences");
    }
  }
}

TEMPLATE_TEST_CASE("token_stats_backward: 16-bit logits and gradients", "[token_stats]", gcpo::bfloat16, gcpo::float16) {
  const std::uint64_t seed = 99;
  CAPTURE(seed);
  std::mt19937_64 rng(seed);
  const std::int64_t R = 2, N = 2, V = 40;
  const std::vector<float> lg = normal(rng, R * N * V, 0.0, 2.0);
  std::vector<double> exact;
  const std::vector<TestType> stored = stored_as<TestType>(lg, exact);
  std::vector<std::int32_t> tok(R * N);
  for (auto& t : tok) t = static_cast<std::int32_t>(rng() % V);
  const std::vector<float> glp = normal(rng, R * N, 0.0, 1.0);
  std::vector<float> lse(R * N);
  GCPO_REQUIRE_OK(gcpo::host::token_stats(cview(stored, {R, N, V}), {}, {}, {}, view(lse, {R, N})));
  const std::vector<double> want = reference_grad(exact, tok, glp, R, N, V, 1.0);
  // 16-bit logits, float gradient
  std::vector<float> gf(R * N * V);
  GCPO_REQUIRE_OK(gcpo::host::token_stats_backward(cview(stored, {R, N, V}), cview(tok, {R, N}), cview(lse, {R, N}),
                                                   cview(glp, {R, N}), view(gf, {R, N, V})));
  check_close(gf, want, 1e-6, 1e-4, "float grad of 16-bit logits");
  // 16-bit gradient: within half an ulp of the format (plus the float error)
  std::vector<TestType> g16(R * N * V);
  GCPO_REQUIRE_OK(gcpo::host::token_stats_backward(cview(stored, {R, N, V}), cview(tok, {R, N}), cview(lse, {R, N}),
                                                   cview(glp, {R, N}), view(g16, {R, N, V})));
  std::vector<double> got(g16.size());
  for (std::size_t i = 0; i < g16.size(); ++i) got[i] = value_of(g16[i]);
  const double rel = std::is_same<TestType, gcpo::bfloat16>::value ? 1.0 / 256 : 1.0 / 2048;
  check_close(got, want, 1e-6, rel * 1.01 + 1e-4, "16-bit grad");
  // in place on the 16-bit logits
  std::vector<TestType> inplace = stored;
  GCPO_REQUIRE_OK(gcpo::host::token_stats_backward(cview(inplace, {R, N, V}), cview(tok, {R, N}), cview(lse, {R, N}),
                                                   cview(glp, {R, N}), view(inplace, {R, N, V})));
  std::vector<double> got_ip(inplace.size());
  for (std::size_t i = 0; i < inplace.size(); ++i) got_ip[i] = value_of(inplace[i]);
  check_close(got_ip, got, 0, 0, "in place == out of place");
}

TEST_CASE("token_stats_backward: in place, strided, overwrite", "[token_stats]") {
  const std::uint64_t seed = 123;
  CAPTURE(seed);
  std::mt19937_64 rng(seed);
  const std::int64_t R = 3, N = 2, V = 67;
  const std::vector<float> lg = normal(rng, R * N * V, 0.0, 3.0);
  std::vector<std::int32_t> tok(R * N);
  for (auto& t : tok) t = static_cast<std::int32_t>(rng() % V);
  const std::vector<float> glp = normal(rng, R * N, 0.0, 1.0);
  std::vector<float> lse(R * N);
  GCPO_REQUIRE_OK(gcpo::host::token_stats(cview(lg, {R, N, V}), {}, {}, {}, view(lse, {R, N})));
  const std::vector<double> want = reference_grad(to_double(lg), tok, glp, R, N, V, 1.0);

  SECTION("in place: grad_logits is exactly logits") {
    std::vector<float> buf = lg;
    GCPO_REQUIRE_OK(gcpo::host::token_stats_backward(cview(buf, {R, N, V}), cview(tok, {R, N}), cview(lse, {R, N}),
                                                     cview(glp, {R, N}), view(buf, {R, N, V})));
    check_close(buf, want, 1e-6, 1e-4, "in place");
  }
  SECTION("in place on strided rows, padding untouched") {
    const std::int64_t s1 = V + 3, s0 = N * s1 + 1;
    std::vector<float> buf(static_cast<std::size_t>(R * s0), 42.0f);
    for (std::int64_t i = 0; i < R * N; ++i)
      for (std::int64_t v = 0; v < V; ++v) buf[(i / N) * s0 + (i % N) * s1 + v] = lg[i * V + v];
    const gcpo::tensor_view g = gcpo::make_strided_view(buf.data(), {R, N, V}, {s0, s1, 1});
    GCPO_REQUIRE_OK(gcpo::host::token_stats_backward(g, cview(tok, {R, N}), cview(lse, {R, N}), cview(glp, {R, N}), g));
    std::vector<float> dense(R * N * V);
    std::size_t pad_changed = 0;
    for (std::int64_t r = 0; r < R; ++r)
      for (std::int64_t k = 0; k < s0; ++k) {
        const std::int64_t n = k / s1, v = k % s1;
        if (n < N && v < V) dense[(r * N + n) * V + v] = buf[r * s0 + k];
        else pad_changed += buf[r * s0 + k] != 42.0f;
      }
    CHECK(pad_changed == 0);
    check_close(dense, want, 1e-6, 1e-4, "strided in place");
  }
  SECTION("grad_logits is overwritten, not accumulated") {
    std::vector<float> out(R * N * V, 1000.0f);
    GCPO_REQUIRE_OK(gcpo::host::token_stats_backward(cview(lg, {R, N, V}), cview(tok, {R, N}), cview(lse, {R, N}),
                                                     cview(glp, {R, N}), view(out, {R, N, V})));
    check_close(out, want, 1e-6, 1e-4, "overwrite");
  }
}

TEST_CASE("token_stats_backward: preconditions", "[token_stats]") {
  const std::int64_t R = 2, N = 3, V = 5;
  std::vector<float> lg(R * N * V, 0.0f), lse(R * N, std::log(5.0f)), glp(R * N, 1.0f), out(R * N * V, 7.0f), big(200);
  std::vector<std::int32_t> tok(R * N, 0);
  const auto L = cview(lg, {R, N, V});
  const auto T = cview(tok, {R, N});
  const auto S = cview(lse, {R, N});
  const auto GL = cview(glp, {R, N});
  const auto O = view(out, {R, N, V});
  using gcpo::host::token_stats_backward;
  using sc = gcpo::status_code;
  GCPO_REQUIRE_OK(token_stats_backward(L, T, S, GL, O));

  GCPO_CHECK_ERROR(token_stats_backward(cview(lg, {R * N, V}), T, S, GL, O), sc::invalid_argument,
                   "`logits` must have rank 3 ([R, N, V]) but has rank 2");
  GCPO_CHECK_ERROR(token_stats_backward(L, {}, S, GL, O), sc::invalid_argument, "`tokens` is required but was not given");
  GCPO_CHECK_ERROR(token_stats_backward(L, T, {}, GL, O), sc::invalid_argument, "`lse` is required but was not given");
  GCPO_CHECK_ERROR(token_stats_backward(L, T, cview(lse, {R * N}), GL, O), sc::invalid_argument,
                   "`lse` must have rank 2 ([R, N]) but has rank 1");
  GCPO_CHECK_ERROR(token_stats_backward(L, T, S, {}, O), sc::invalid_argument, "`grad_logprob` is required but was not given");
  GCPO_CHECK_ERROR(token_stats_backward(L, T, S, cview(glp, {N, R}), O), sc::invalid_argument,
                   "`grad_logprob.shape[0]` (3) must equal `logits.shape[0]` (2)");
  GCPO_CHECK_ERROR(token_stats_backward(L, T, S, cview(tok, {R, N}), O), sc::unsupported_dtype,
                   "`grad_logprob.dtype` is int32; expected one of: float32");
  GCPO_CHECK_ERROR(token_stats_backward(L, T, S, gcpo::make_strided_view(static_cast<const float*>(big.data()), {R, N}, {4, 1}), O),
                   sc::invalid_argument, "`grad_logprob` must be contiguous");
  GCPO_CHECK_ERROR(token_stats_backward(L, T, S, GL, {}), sc::invalid_argument, "`grad_logits` is required but was not given");
  GCPO_CHECK_ERROR(token_stats_backward(L, T, S, GL, view(out, {R, N * V})), sc::invalid_argument,
                   "`grad_logits` must have rank 3 ([R, N, V]) but has rank 2");
  GCPO_CHECK_ERROR(token_stats_backward(L, T, S, GL, gcpo::make_view(reinterpret_cast<std::int32_t*>(out.data()), {R, N, V})),
                   sc::unsupported_dtype, "`grad_logits.dtype` is int32; expected one of: float32, bfloat16, float16");
  GCPO_CHECK_ERROR(token_stats_backward(L, T, S, GL, view(out, {R, N, V - 1})), sc::invalid_argument,
                   "`grad_logits.shape[2]` (4) must equal `logits.shape[2]` (5)");
  GCPO_CHECK_ERROR(token_stats_backward(L, T, S, GL, view(out, {R, 1, V})), sc::invalid_argument,
                   "`grad_logits.shape[1]` (1) must equal `logits.shape[1]` (3)");
  GCPO_CHECK_ERROR(token_stats_backward(L, T, S, GL, gcpo::make_strided_view(big.data(), {R, N, V}, {30, 10, 2})),
                   sc::invalid_argument, "`grad_logits.strides[2]` (2) must be 1");
  GCPO_CHECK_ERROR(token_stats_backward(L, T, S, GL, gcpo::make_strided_view(big.data(), {R, N, V}, {0, 5, 1})),
                   sc::invalid_argument, "`grad_logits.strides[0]` (0) must be positive");
  GCPO_CHECK_ERROR(token_stats_backward(L, T, S, GL, gcpo::make_view(out.data(), {R, N, V}, gcpo::memory_space::device)),
                   sc::wrong_memory_space, "`grad_logits` is a device view");
  // aliasing: a partial overlap with logits, or the same pointer with other strides or dtype
  std::vector<float> lg_buf(R * N * V + 1, 0.0f);
  GCPO_CHECK_ERROR(token_stats_backward(cview(lg_buf, {R, N, V}), T, S, GL, gcpo::make_view(lg_buf.data() + 1, {R, N, V})),
                   sc::aliasing, "`grad_logits` shall not overlap `logits");
  std::vector<float> wide(R * N * (V + 1), 0.0f);
  GCPO_CHECK_ERROR(token_stats_backward(gcpo::make_strided_view(static_cast<const float*>(wide.data()), {R, N, V}, {N * (V + 1), V + 1, 1}),
                                        T, S, GL, gcpo::make_view(wide.data(), {R, N, V})),
                   sc::aliasing, "`grad_logits` shall not overlap `logits");
  GCPO_CHECK_ERROR(token_stats_backward(L, T, S, GL, gcpo::make_view(reinterpret_cast<gcpo::bfloat16*>(lg.data()), {R, N, V})),
                   sc::aliasing, "`grad_logits` shall not overlap `logits");
  std::vector<float> joint(R * N * V + R * N, 0.0f);
  GCPO_CHECK_ERROR(token_stats_backward(L, T, gcpo::make_view(static_cast<const float*>(joint.data() + R * N * V - 1), {R, N}), GL,
                                        gcpo::make_view(joint.data(), {R, N, V})),
                   sc::aliasing, "`grad_logits` shall not overlap `lse`");
  GCPO_CHECK_ERROR(token_stats_backward(L, T, S, gcpo::make_view(static_cast<const float*>(joint.data()), {R, N}),
                                        gcpo::make_view(joint.data(), {R, N, V})),
                   sc::aliasing, "`grad_logits` shall not overlap `grad_logprob`");
  GCPO_CHECK_ERROR(token_stats_backward(L, gcpo::make_view(reinterpret_cast<const std::int32_t*>(joint.data()), {R, N}), S, GL,
                                        gcpo::make_view(joint.data(), {R, N, V})),
                   sc::aliasing, "`grad_logits` shall not overlap `tokens`");
  gcpo::token_stats_options opt;
  opt.temperature = -2.0f;
  GCPO_CHECK_ERROR(token_stats_backward(L, T, S, GL, O, opt), sc::invalid_argument, "`options.temperature` (-2) must be finite and > 0");

  // an out-of-range token names its position and leaves grad_logits untouched
  std::vector<std::int32_t> bad(R * N, 0);
  bad[1 * N + 1] = 5;
  std::fill(out.begin(), out.end(), 7.0f);
  GCPO_CHECK_ERROR(token_stats_backward(L, cview(bad, {R, N}), S, GL, O), sc::invalid_argument,
                   "`tokens[1, 1]` (5) must be in [0, V = 5)");
  CHECK(std::all_of(out.begin(), out.end(), [](float x) { return x == 7.0f; }));
  bad[1 * N + 1] = 0;
  bad[0] = -3;
  GCPO_CHECK_ERROR(token_stats_backward(L, cview(bad, {R, N}), S, GL, O), sc::invalid_argument,
                   "`tokens[0, 0]` (-3) must be in [0, V = 5)");
}
