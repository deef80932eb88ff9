// Unit tests of gcpo/similarity.hpp (host twin): group_similarity and
// group_similarity_from_tokens. Expected values are hand-computed cosines or come from the
// pairwise O(G^2 D) double-precision definition (spec 3.3) with the max(|a||b|, eps) clamp.
#include <catch2/catch.hpp>

#include <gcpo/gcpo.hpp>

#include <cmath>
#include <cstdint>
#include <random>
#include <vector>

#include "unit_support.hpp"

using namespace gcpo_test;

namespace {

/// Pairwise definition in double: mean over ordered pairs i != j of a.b / max(|a||b|, eps).
/// `emb` holds the exact values of an [R, N, D] contiguous tensor.
std::vector<double> reference(const std::vector<double>& emb, std::int64_t R, std::int64_t N, std::int64_t D, std::int64_t G,
                              double eps = 1e-8) {
  std::vector<double> sim(static_cast<std::size_t>(R * N));
  auto row = [&](std::int64_t r, std::int64_t t) { return emb.data() + (r * N + t) * D; };
  for (std::int64_t p = 0; p < R / G; ++p)
    for (std::int64_t t = 0; t < N; ++t) {
      double total = 0;
      for (std::int64_t i = 0; i < G; ++i)
        for (std::int64_t j = 0; j < G; ++j) {
          if (i == j) continue;
          const double* a = row(p * G + i, t);
          const double* b = row(p * G + j, t);
          double dot = 0, na = 0, nb = 0;
          for (std::int64_t d = 0; d < D; ++d) {
            dot += a[d] * b[d];
            na += a[d] * a[d];
            nb += b[d] * b[d];
          }
          total += dot / std::max(std::sqrt(na) * std::sqrt(nb), eps);
        }
      for (std::int64_t g = 0; g < G; ++g) sim[static_cast<std::size_t>((p * G + g) * N + t)] = total / static_cast<double>(G * (G - 1));
    }
  return sim;
}

std::vector<double> to_double(const std::vector<float>& v) { return std::vector<double>(v.begin(), v.end()); }

gcpo::similarity_options group(std::int64_t G) {
  gcpo::similarity_options o;
  o.group = G;
  return o;
}

std::vector<float> run(const std::vector<float>& emb, std::int64_t R, std::int64_t N, std::int64_t D, std::int64_t G) {
  std::vector<float> sim(static_cast<std::size_t>(R * N), -9.0f);
  GCPO_REQUIRE_OK(gcpo::host::group_similarity(cview(emb, {R, N, D}), view(sim, {R, N}), group(G)));
  return sim;
}

}  // namespace

TEST_CASE("group_similarity: identical, orthogonal, opposite (G = 2)", "[similarity]") {
  // position 0: identical up to scale (1); 1: orthogonal (0); 2: opposite (-1); 3: 60 degrees (0.5)
  const std::int64_t R = 2, N = 4, D = 3;
  const std::vector<float> emb{1, 2, 3,   1, 0, 0,   0, 0, -2,   1, 0, 0,  //
                               2, 4, 6,   0, 5, 0,   0, 0, 7,    0.5f, static_cast<float>(std::sqrt(0.75)), 0};
  const std::vector<float> sim = run(emb, R, N, D, 2);
  check_close(sim, std::vector<double>{1, 0, -1, 0.5, 1, 0, -1, 0.5}, 1e-6, 1e-6, "similarity");
}

TEST_CASE("group_similarity: G = 16 identical and random against the pairwise reference", "[similarity]") {
  const std::int64_t G = 16, R = 2 * G, N = 5, D = 24;
  const std::uint64_t seed = 31;
  CAPTURE(seed);
  std::mt19937_64 rng(seed);
  // prompt 0: every rollout the same vector times a positive scale (1); prompt 1: random
  std::vector<float> emb = normal(rng, static_cast<std::size_t>(R * N * D), 0.0, 1.0);
  for (std::int64_t g = 1; g < G; ++g)
    for (std::int64_t t = 0; t < N; ++t)
      for (std::int64_t d = 0; d < D; ++d) emb[(g * N + t) * D + d] = emb[t * D + d] * static_cast<float>(g + 1);
  const std::vector<float> sim = run(emb, R, N, D, G);
  const std::vector<double> want = reference(to_double(emb), R, N, D, G);
  for (std::int64_t i = 0; i < G * N; ++i) CHECK(want[i] == Approx(1.0).epsilon(1e-12));
  check_close(sim, want, 2e-6, 1e-5, "similarity");
  // one value per prompt and position, written for all G rollouts
  for (std::int64_t p = 0; p < 2; ++p)
    for (std::int64_t g = 1; g < G; ++g)
      for (std::int64_t t = 0; t < N; ++t) CHECK(sim[(p * G + g) * N + t] == sim[p * G * N + t]);
}

TEST_CASE("group_similarity: randomised groups and sizes", "[similarity]") {
  for (std::int64_t G : {2, 3, 4, 7, 16}) {
    for (std::int64_t D : {1, 2, 5, 64}) {
      const std::int64_t P = 2, R = P * G, N = 3;
      const std::uint64_t seed = static_cast<std::uint64_t>(G * 100 + D);
      CAPTURE(G, D, seed);
      std::mt19937_64 rng(seed);
      std::vector<float> emb = normal(rng, static_cast<std::size_t>(R * N * D), 0.3, 1.0);
      const std::vector<float> sim = run(emb, R, N, D, G);
      check_close(sim, reference(to_double(emb), R, N, D, G), 2e-6, 1e-5, "similarity");
    }
  }
}

TEST_CASE("group_similarity: zero and near-zero norms honour the 1e-8 clamp", "[similarity]") {
  SECTION("a zero vector has cosine 0 with everything") {
    // G = 3 at one position: e0 = 0, e1 = (1, 0), e2 = (1, 1): pairs (1,2) give 1/sqrt2, the rest 0
    const std::vector<float> emb{0, 0, 1, 0, 1, 1};
    const std::vector<float> sim = run(emb, 3, 1, 2, 3);
    const double want = 2 * (1 / std::sqrt(2.0)) / 6;
    check_close(sim, std::vector<double>(3, want), 1e-7, 1e-6, "with a zero vector");
    // all zero: 0
    const std::vector<float> zeros(6, 0.0f);
    check_close(run(zeros, 3, 1, 2, 3), std::vector<double>(3, 0.0), 0, 0, "all zero");
  }
  SECTION("identical tiny vectors: |a||b| = 2.5e-9 < 1e-8, so cos = 2.5e-9 / 1e-8 = 0.25") {
    const std::vector<float> emb{3e-5f, 4e-5f, 3e-5f, 4e-5f};
    const std::vector<float> sim = run(emb, 2, 1, 2, 2);
    const std::vector<double> want = reference(to_double(emb), 2, 1, 2, 2);
    CHECK(want[0] == Approx(0.25).epsilon(1e-6));
    check_close(sim, want, 1e-6, 1e-5, "tiny identical");
  }
  SECTION("a tiny vector among normal ones (G = 4): only its pairs are damped") {
    // e0 = (2e-9, 0, 0), e1 = (1, 0, 0), e2 = (0, 2, 0), e3 = (1, 0, 1): |e0||ej| <= 2.9e-9 < 1e-8
    const std::vector<float> emb{2e-9f, 0.0f, 0.0f, 1.0f, 0.0f, 0.0f, 0.0f, 2.0f, 0.0f, 1.0f, 0.0f, 1.0f};
    const std::vector<float> sim = run(emb, 4, 1, 3, 4);
    const std::vector<double> want = reference(to_double(emb), 4, 1, 3, 4);
    // hand: cos(e0, e1) = 2e-9 / 1e-8 = 0.2, cos(e0, e2) = 0, cos(e0, e3) = 2e-9 / 1e-8 = 0.2 (clamped),
    //       cos(e1, e2) = 0, cos(e1, e3) = 1/sqrt2, cos(e2, e3) = 0; without the clamp e0's pairs would give 1 and 1/sqrt2
    const double hand = 2 * (0.2 + 0 + 0.2 + 0 + 1 / std::sqrt(2.0) + 0) / 12;
    CHECK(want[0] == Approx(hand).epsilon(1e-6));
    check_close(sim, want, 1e-6, 1e-5, "mixed");
  }
  SECTION("norm products either side of eps: randomised against the reference") {
    for (std::uint64_t seed = 1; seed <= 4; ++seed) {
      CAPTURE(seed);
      std::mt19937_64 rng(seed);
      const std::int64_t G = 5, R = 2 * G, N = 6, D = 4;
      std::vector<float> emb = normal(rng, static_cast<std::size_t>(R * N * D), 0.0, 1.0);
      // scale rows so norms fall around 1e-4 (products around 1e-8)
      std::uniform_real_distribution<double> lg(-5.0, -3.0);
      for (std::int64_t i = 0; i < R * N; ++i) {
        const double s = std::pow(10.0, lg(rng));
        for (std::int64_t d = 0; d < D; ++d) emb[i * D + d] = static_cast<float>(emb[i * D + d] * s);
      }
      check_close(run(emb, R, N, D, G), reference(to_double(emb), R, N, D, G), 2e-6, 1e-4, "near eps");
    }
  }
  SECTION("a custom eps") {
    gcpo::similarity_options o = group(2);
    o.eps = 0.5f;
    // |a||b| = 0.25 < 0.5: cos = a.b / 0.5 = 0.25 / 0.5
    const std::vector<float> emb{0.5f, 0.0f, 0.5f, 0.0f};
    std::vector<float> sim(2);
    GCPO_REQUIRE_OK(gcpo::host::group_similarity(cview(emb, {2, 1, 2}), view(sim, {2, 1}), o));
    check_close(sim, std::vector<double>{0.5, 0.5}, 1e-7, 1e-6, "eps 0.5");
  }
}

TEST_CASE("group_similarity: NaN makes only its position NaN", "[similarity]") {
  std::vector<float> emb{1, 0, nan_f, 1, 1, 0, 0, 1};  // R = 2, N = 2, D = 2
  const std::vector<float> sim = run(emb, 2, 2, 2, 2);
  CHECK(sim[0] == Approx(1.0));
  CHECK(sim[2] == Approx(1.0));
  CHECK(std::isnan(sim[1]));
  CHECK(std::isnan(sim[3]));
}

TEMPLATE_TEST_CASE("group_similarity: 16-bit embeddings", "[similarity]", gcpo::bfloat16, gcpo::float16) {
  const std::uint64_t seed = 17;
  CAPTURE(seed);
  std::mt19937_64 rng(seed);
  const std::int64_t G = 4, R = 2 * G, N = 3, D = 32;
  std::vector<double> exact;
  const std::vector<TestType> emb = stored_as<TestType>(normal(rng, static_cast<std::size_t>(R * N * D), 0.0, 1.0), exact);
  std::vector<float> sim(R * N);
  GCPO_REQUIRE_OK(gcpo::host::group_similarity(cview(emb, {R, N, D}), view(sim, {R, N}), group(G)));
  check_close(sim, reference(exact, R, N, D, G), 2e-6, 1e-5, "similarity");
}

TEST_CASE("group_similarity: strided embeddings", "[similarity]") {
  const std::uint64_t seed = 23;
  CAPTURE(seed);
  std::mt19937_64 rng(seed);
  const std::int64_t G = 3, R = 2 * G, N = 4, D = 7;
  const std::vector<float> dense = normal(rng, static_cast<std::size_t>(R * N * D), 0.0, 1.0);
  const std::vector<double> want = reference(to_double(dense), R, N, D, G);
  // rows of D inside rows of D + 3, rollouts N * (D + 3) + 1 apart, padding NaN
  const std::int64_t s1 = D + 3, s0 = N * s1 + 1;
  std::vector<float> buf(static_cast<std::size_t>(R * s0), nan_f);
  for (std::int64_t r = 0; r < R; ++r)
    for (std::int64_t t = 0; t < N; ++t)
      for (std::int64_t d = 0; d < D; ++d) buf[r * s0 + t * s1 + d] = dense[(r * N + t) * D + d];
  std::vector<float> sim(R * N);
  GCPO_REQUIRE_OK(gcpo::host::group_similarity(gcpo::make_strided_view(static_cast<const float*>(buf.data()), {R, N, D}, {s0, s1, 1}),
                                               view(sim, {R, N}), group(G)));
  check_close(sim, want, 2e-6, 1e-5, "strided");
  // [N, R, D] storage viewed as [R, N, D]
  std::vector<float> tr(static_cast<std::size_t>(R * N * D));
  for (std::int64_t r = 0; r < R; ++r)
    for (std::int64_t t = 0; t < N; ++t)
      for (std::int64_t d = 0; d < D; ++d) tr[(t * R + r) * D + d] = dense[(r * N + t) * D + d];
  GCPO_REQUIRE_OK(gcpo::host::group_similarity(gcpo::make_strided_view(static_cast<const float*>(tr.data()), {R, N, D}, {D, R * D, 1}),
                                               view(sim, {R, N}), group(G)));
  check_close(sim, want, 2e-6, 1e-5, "transposed");
}

TEST_CASE("group_similarity_from_tokens: equals the materialised embeddings", "[similarity]") {
  const std::uint64_t seed = 5;
  CAPTURE(seed);
  std::mt19937_64 rng(seed);
  const std::int64_t G = 4, R = 3 * G, N = 6, V = 11, D = 9;
  const std::vector<float> table = normal(rng, static_cast<std::size_t>(V * D), 0.0, 1.0);
  std::vector<std::int32_t> t32(R * N);
  std::vector<std::int64_t> t64(R * N);
  for (std::int64_t i = 0; i < R * N; ++i) t64[i] = t32[i] = static_cast<std::int32_t>(rng() % V);
  // make some positions share tokens across the group (cos 1)
  for (std::int64_t g = 0; g < G; ++g) t32[g * N] = t64[g * N] = 3;
  std::vector<double> emb(static_cast<std::size_t>(R * N * D));
  for (std::int64_t i = 0; i < R * N; ++i)
    for (std::int64_t d = 0; d < D; ++d) emb[i * D + d] = table[t64[i] * D + d];
  const std::vector<double> want = reference(emb, R, N, D, G);
  CHECK(want[0] == Approx(1.0));
  std::vector<float> a(R * N), b(R * N);
  GCPO_REQUIRE_OK(gcpo::host::group_similarity_from_tokens(cview(t32, {R, N}), cview(table, {V, D}), view(a, {R, N}), group(G)));
  GCPO_REQUIRE_OK(gcpo::host::group_similarity_from_tokens(cview(t64, {R, N}), cview(table, {V, D}), view(b, {R, N}), group(G)));
  check_close(a, want, 2e-6, 1e-5, "int32 tokens");
  check_close(b, want, 2e-6, 1e-5, "int64 tokens");

  // bf16 table with strided rows
  std::vector<double> exact;
  const std::vector<gcpo::bfloat16> t16 = stored_as<gcpo::bfloat16>(table, exact);
  const std::int64_t s0 = D + 5;
  std::vector<gcpo::bfloat16> padded(static_cast<std::size_t>(V * s0), gcpo::bfloat16::from_float(nan_f));
  for (std::int64_t v = 0; v < V; ++v)
    for (std::int64_t d = 0; d < D; ++d) padded[v * s0 + d] = t16[v * D + d];
  std::vector<double> emb16(static_cast<std::size_t>(R * N * D));
  for (std::int64_t i = 0; i < R * N; ++i)
    for (std::int64_t d = 0; d < D; ++d) emb16[i * D + d] = exact[t64[i] * D + d];
  GCPO_REQUIRE_OK(gcpo::host::group_similarity_from_tokens(
      cview(t32, {R, N}), gcpo::make_strided_view(static_cast<const gcpo::bfloat16*>(padded.data()), {V, D}, {s0, 1}), view(a, {R, N}),
      group(G)));
  check_close(a, reference(emb16, R, N, D, G), 2e-6, 1e-5, "bf16 strided table");
}

TEST_CASE("group_similarity: preconditions", "[similarity]") {
  const std::int64_t G = 2, R = 4, N = 3, D = 2, V = 5;
  std::vector<float> emb(R * N * D, 1.0f), sim(R * N), table(V * D, 1.0f), big(200);
  std::vector<std::int32_t> tok(R * N, 0);
  using sc = gcpo::status_code;
  using gcpo::host::group_similarity;
  using gcpo::host::group_similarity_from_tokens;
  const auto E = cview(emb, {R, N, D});
  const auto S = view(sim, {R, N});
  GCPO_REQUIRE_OK(group_similarity(E, S, group(G)));

  GCPO_CHECK_ERROR(group_similarity(E, S, group(1)), sc::invalid_argument, "`options.group` (1) must be in [2, 1024]");
  GCPO_CHECK_ERROR(group_similarity(E, S, group(0)), sc::invalid_argument, "`options.group` (0) must be in [2, 1024]");
  GCPO_CHECK_ERROR(group_similarity(E, S, group(1025)), sc::invalid_argument, "`options.group` (1025) must be in [2, 1024]");
  GCPO_CHECK_ERROR(group_similarity(E, S, group(3)), sc::invalid_argument,
                   "`embeddings.shape[0]` (R = 4) must be a multiple of `options.group` (3)");
  for (float eps : {0.0f, -1.0f, inf_f, nan_f}) {
    gcpo::similarity_options o = group(G);
    o.eps = eps;
    GCPO_CHECK_ERROR(group_similarity(E, S, o), sc::invalid_argument, "`options.eps` (");
    GCPO_CHECK_ERROR(group_similarity(E, S, o), sc::invalid_argument, ") must be finite and > 0");
  }
  GCPO_CHECK_ERROR(group_similarity(cview(emb, {R, N * D}), S, group(G)), sc::invalid_argument,
                   "`embeddings` must have rank 3 ([R, N, D]) but has rank 2");
  GCPO_CHECK_ERROR(group_similarity({}, S, group(G)), sc::invalid_argument, "`embeddings` is required but was not given");
  GCPO_CHECK_ERROR(group_similarity(cview(tok, {R, N, 1}), S, group(G)), sc::unsupported_dtype,
                   "`embeddings.dtype` is int32; expected one of: float32, bfloat16, float16");
  GCPO_CHECK_ERROR(group_similarity(gcpo::make_strided_view(static_cast<const float*>(big.data()), {R, N, D}, {12, 4, 2}), S, group(G)),
                   sc::invalid_argument, "`embeddings.strides[2]` (2) must be 1");
  GCPO_CHECK_ERROR(group_similarity(gcpo::make_strided_view(static_cast<const float*>(big.data()), {R, N, D}, {6, 0, 1}), S, group(G)),
                   sc::invalid_argument, "`embeddings.strides[1]` (0) must be positive");
  GCPO_CHECK_ERROR(group_similarity(gcpo::make_view(emb.data(), {R, N, D}, gcpo::memory_space::device), S, group(G)),
                   sc::wrong_memory_space, "`embeddings` is a device view");
  GCPO_CHECK_ERROR(group_similarity(E, view(sim, {R, N - 1}), group(G)), sc::invalid_argument,
                   "`similarity.shape[1]` (2) must equal N (3)");
  GCPO_CHECK_ERROR(group_similarity(E, view(sim, {2, N}), group(G)), sc::invalid_argument,
                   "`similarity.shape[0]` (2) must equal `embeddings.shape[0]` (4)");
  GCPO_CHECK_ERROR(group_similarity(E, gcpo::make_view(reinterpret_cast<gcpo::float16*>(sim.data()), {R, N}), group(G)),
                   sc::unsupported_dtype, "`similarity.dtype` is float16; expected one of: float32");
  GCPO_CHECK_ERROR(group_similarity(E, gcpo::make_strided_view(big.data(), {R, N}, {4, 1}), group(G)), sc::invalid_argument,
                   "`similarity` must be contiguous");
  GCPO_CHECK_ERROR(group_similarity(E, gcpo::make_view(emb.data() + 5, {R, N}), group(G)), sc::aliasing,
                   "`similarity` shall not overlap `embeddings`");
  GCPO_CHECK_ERROR(group_similarity(E, gcpo::tensor_view{}, group(G)), sc::invalid_argument, "`similarity` is required but was not given");

  // from tokens
  const auto T = cview(tok, {R, N});
  const auto TB = cview(table, {V, D});
  GCPO_REQUIRE_OK(group_similarity_from_tokens(T, TB, S, group(G)));
  std::vector<std::int32_t> bad(R * N, 0);
  bad[2 * N + 1] = 5;
  GCPO_CHECK_ERROR(group_similarity_from_tokens(cview(bad, {R, N}), TB, S, group(G)), sc::invalid_argument,
                   "`tokens[2, 1]` (5) must be in [0, V = 5)");
  bad[2 * N + 1] = 0;
  bad[R * N - 1] = -1;
  GCPO_CHECK_ERROR(group_similarity_from_tokens(cview(bad, {R, N}), TB, S, group(G)), sc::invalid_argument,
                   "`tokens[3, 2]` (-1) must be in [0, V = 5)");
  std::vector<std::int64_t> bad64(R * N, 0);
  bad64[0] = 1000000000000LL;
  GCPO_CHECK_ERROR(group_similarity_from_tokens(cview(bad64, {R, N}), TB, S, group(G)), sc::invalid_argument,
                   "`tokens[0, 0]` (1000000000000) must be in [0, V = 5)");
  GCPO_CHECK_ERROR(group_similarity_from_tokens(cview(table, {V, D}), TB, S, group(G)), sc::unsupported_dtype,
                   "`tokens.dtype` is float32; expected one of: int32, int64");
  GCPO_CHECK_ERROR(group_similarity_from_tokens(cview(tok, {R * N}), TB, S, group(G)), sc::invalid_argument,
                   "`tokens` must have rank 2 ([R, N]) but has rank 1");
  GCPO_CHECK_ERROR(group_similarity_from_tokens(gcpo::make_strided_view(reinterpret_cast<const std::int32_t*>(big.data()), {R, N}, {4, 1}),
                                                TB, S, group(G)),
                   sc::invalid_argument, "`tokens` must be contiguous");
  GCPO_CHECK_ERROR(group_similarity_from_tokens(T, cview(table, {V * D}), S, group(G)), sc::invalid_argument,
                   "`table` must have rank 2 ([V, D]) but has rank 1");
  GCPO_CHECK_ERROR(group_similarity_from_tokens(T, cview(tok, {2, 6}), S, group(G)), sc::unsupported_dtype,
                   "`table.dtype` is int32; expected one of: float32, bfloat16, float16");
  GCPO_CHECK_ERROR(group_similarity_from_tokens(T, gcpo::make_strided_view(static_cast<const float*>(big.data()), {V, D}, {4, 2}), S, group(G)),
                   sc::invalid_argument, "`table.strides[1]` (2) must be 1");
  GCPO_CHECK_ERROR(group_similarity_from_tokens(T, TB, S, group(5)), sc::invalid_argument,
                   "`tokens.shape[0]` (R = 4) must be a multiple of `options.group` (5)");
  GCPO_CHECK_ERROR(group_similarity_from_tokens(T, TB, view(sim, {R, 1}), group(G)), sc::invalid_argument,
                   "`similarity.shape[1]` (1) must equal N (3)");
  GCPO_CHECK_ERROR(group_similarity_from_tokens(T, TB, gcpo::make_view(table.data(), {R, N}), group(G)), sc::aliasing,
                   "`similarity` shall not overlap `table`");
  GCPO_CHECK_ERROR(group_similarity_from_tokens(T, TB, gcpo::make_view(reinterpret_cast<float*>(tok.data()), {R, N}), group(G)),
                   sc::aliasing, "`similarity` shall not overlap `tokens`");
}
