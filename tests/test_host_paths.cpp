// The host twins' code paths give the same bits (docs/design.md, "Host twins"): the default
// build (vector extensions, and on x86-64 the AVX2 clone chosen at run time when the CPU has it)
// against the same operators compiled without the AVX2 clones (host_paths_generic.cpp) and as
// plain scalar loops (host_paths_scalar.cpp), on random inputs with -inf, NaN, large spikes,
// ties and clustered keys. This is the property that makes a result independent of the machine.
#include <catch2/catch.hpp>

#include <gcpo/gcpo.hpp>

#include <cmath>
#include <cstdint>
#include <cstring>
#include <random>
#include <vector>

#include "host_paths.hpp"

namespace {

/// Same bits, or both NaN (a NaN's sign and payload are not part of the contract).
bool same_bits(float a, float b) {
  if (a != a && b != b) return true;
  std::uint32_t x, y;
  std::memcpy(&x, &a, 4);
  std::memcpy(&y, &b, 4);
  return x == y;
}

std::int64_t mismatches(const std::vector<float>& a, const std::vector<float>& b) {
  std::int64_t n = 0;
  for (std::size_t i = 0; i < a.size(); ++i) n += same_bits(a[i], b[i]) ? 0 : 1;
  return n;
}

struct stats_out {
  std::vector<float> entropy, logprob, lse;
  explicit stats_out(std::size_t n) : entropy(n), logprob(n), lse(n) {}
};

bool default_token_stats(int dtype, const void* logits, const std::int64_t* tokens, std::int64_t R, std::int64_t N,
                         std::int64_t V, float temperature, stats_out& o) {
  gcpo::const_tensor_view lv;
  if (dtype == 0) lv = gcpo::make_view(static_cast<const float*>(logits), {R, N, V});
  else if (dtype == 1) lv = gcpo::make_view(static_cast<const gcpo::bfloat16*>(logits), {R, N, V});
  else lv = gcpo::make_view(static_cast<const gcpo::float16*>(logits), {R, N, V});
  gcpo::token_stats_options opt;
  opt.temperature = temperature;
  return gcpo::host::token_stats(lv, gcpo::make_view(tokens, {R, N}), gcpo::make_view(o.entropy.data(), {R, N}),
                                 gcpo::make_view(o.logprob.data(), {R, N}), gcpo::make_view(o.lse.data(), {R, N}), opt)
      .ok();
}

}  // namespace

TEST_CASE("host paths: token_stats gives the same bits on every code path", "[paths][token_stats]") {
  const std::uint64_t seed = 20261126;
  INFO("seed " << seed);
  std::mt19937_64 g(seed);
  std::normal_distribution<float> normal(0.0f, 4.0f);
  const std::int64_t R = 2, N = 5;
  for (std::int64_t V : {1, 7, 255, 256, 257, 1000, 4099}) {
    for (int special = 0; special < 4; ++special) {
      for (float temperature : {1.0f, 0.7f}) {
        const std::size_t count = static_cast<std::size_t>(R * N * V);
        std::vector<float> x(count);
        for (float& v : x) v = normal(g);
        std::uniform_int_distribution<std::int64_t> pick(0, V - 1);
        for (std::int64_t row = 0; row < R * N; ++row) {
          if (special & 1) x[static_cast<std::size_t>(row * V + pick(g))] = -INFINITY;
          if ((special & 2) && row % 3 == 0) x[static_cast<std::size_t>(row * V + pick(g))] = 30.0f + static_cast<float>(row);
        }
        if (special == 3) x[static_cast<std::size_t>(pick(g))] = NAN;  // one row with a NaN
        std::vector<std::int64_t> tokens(static_cast<std::size_t>(R * N));
        for (auto& t : tokens) t = pick(g);
        std::vector<gcpo::bfloat16> xb(count);
        std::vector<gcpo::float16> xh(count);
        for (std::size_t i = 0; i < count; ++i) {
          xb[i] = gcpo::from_float<gcpo::bfloat16>(x[i]);
          xh[i] = gcpo::from_float<gcpo::float16>(x[i]);
        }
        const void* data[3] = {x.data(), xb.data(), xh.data()};
        for (int dtype = 0; dtype < 3; ++dtype) {
          INFO("V " << V << ", special " << special << ", temperature " << temperature << ", dtype " << dtype);
          const std::size_t n = static_cast<std::size_t>(R * N);
          stats_out d(n);
          REQUIRE(default_token_stats(dtype, data[dtype], tokens.data(), R, N, V, temperature, d));
          for (const host_path* path : {&host_path_generic, &host_path_scalar}) {
            INFO("against the default build: " << path->name);
            stats_out o(n);
            REQUIRE(path->token_stats(dtype, data[dtype], tokens.data(), R, N, V, temperature, o.entropy.data(),
                                      o.logprob.data(), o.lse.data()));
            CHECK(mismatches(d.entropy, o.entropy) == 0);
            CHECK(mismatches(d.logprob, o.logprob) == 0);
            CHECK(mismatches(d.lse, o.lse) == 0);
          }
          // the statistics are not trivially equal: finite values where the row is finite
          if (special != 3 && V > 1) CHECK(std::isfinite(d.entropy[0]));
        }
      }
    }
  }
}

TEST_CASE("host paths: select_critical_tokens gives the same masks with and without the AVX2 clone",
          "[paths][selection]") {
  const std::uint64_t seed = 7;
  INFO("seed " << seed);
  std::mt19937_64 g(seed);
  std::uniform_real_distribution<float> u(0.0f, 1.0f);
  const std::int64_t grids[][2] = {{24, 24}, {16, 16}, {8, 8}, {1, 7}, {7, 1}, {3, 5}, {48, 48}};
  std::int64_t selected = 0;
  for (int rep = 0; rep < 20; ++rep)
    for (const auto& hw : grids) {
      const std::int64_t H = hw[0], W = hw[1], N = H * W, R = 4;
      const int mode = rep % 4;
      std::vector<float> e(static_cast<std::size_t>(R * N)), s(e.size());
      for (std::size_t i = 0; i < e.size(); ++i) {
        e[i] = 3.0f * u(g);
        s[i] = 0.4f + 0.4f * u(g);
        if (mode == 1) {  // heavy ties
          e[i] = static_cast<float>(g() % 4);
          s[i] = 0.25f * static_cast<float>(g() % 3);
        }
        if (mode == 2) s[i] = 0.5f + 1e-6f * static_cast<float>(g() % 50);  // one tight cluster
        if (mode == 3 && g() % 40 == 0) s[i] = NAN;
      }
      const double gf = rep % 3 == 0 ? 0.3 : 0.1, sf = rep % 3 == 0 ? 0.25 : 0.1;
      std::vector<std::uint8_t> c0(e.size()), g0(e.size()), s0(e.size()), c1(e.size()), g1(e.size()), s1(e.size());
      INFO("grid " << H << "x" << W << ", rep " << rep);
      gcpo::selection_inputs in;
      in.entropy = gcpo::make_view(e.data(), {R, N});
      in.similarity = gcpo::make_view(s.data(), {R, N});
      gcpo::selection_outputs out;
      out.critical = gcpo::make_view(c0.data(), {R, N});
      out.gradient = gcpo::make_view(g0.data(), {R, N});
      out.low_similarity = gcpo::make_view(s0.data(), {R, N});
      gcpo::selection_options o;
      o.grid = {H, W};
      o.gradient_frac = gf;
      o.similarity_frac = sf;
      std::vector<unsigned char> ws(gcpo::select_critical_tokens_workspace_bytes(R, N));
      REQUIRE(gcpo::host::select_critical_tokens(in, out, o, {ws.data(), ws.size()}).ok());
      REQUIRE(host_path_generic.select_critical_tokens(e.data(), s.data(), R, H, W, gf, sf, c1.data(), g1.data(),
                                                       s1.data()));
      CHECK(c0 == c1);
      CHECK(g0 == g1);
      CHECK(s0 == s1);
      for (auto v : c0) selected += v;
    }
  CHECK(selected > 0);
}
