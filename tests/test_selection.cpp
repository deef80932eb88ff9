// Unit tests of gcpo/selection.hpp (host twins): initial_mask, smoothed_entropy,
// entropy_gradient, gradient_topk, low_similarity_mask, union_mask, select_critical_tokens.
// Expected values are hand-computed grids (spec section 3) or come from a straightforward
// scalar reference written here: double-precision maps and a sorting-based top-k.
#include <catch2/catch.hpp>

#include <gcpo/gcpo.hpp>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <numeric>
#include <random>
#include <tuple>
#include <vector>

#include "unit_support.hpp"

using namespace gcpo_test;
using u8 = std::uint8_t;

namespace {

constexpr double map_atol = 1e-6, map_rtol = 1e-5;

// ---- reference --------------------------------------------------------------------------

/// Causal local mean of one H x W map: mean of the existing among self, left, upper-left, up,
/// upper-right.
std::vector<double> ref_smooth(const double* E, std::int64_t H, std::int64_t W) {
  std::vector<double> M(static_cast<std::size_t>(H * W));
  for (std::int64_t i = 0; i < H; ++i)
    for (std::int64_t j = 0; j < W; ++j) {
      const std::int64_t di[5] = {0, 0, -1, -1, -1}, dj[5] = {0, -1, -1, 0, 1};
      double sum = 0;
      int cnt = 0;
      for (int k = 0; k < 5; ++k) {
        const std::int64_t a = i + di[k], b = j + dj[k];
        if (a < 0 || b < 0 || b >= W) continue;
        sum += E[a * W + b];
        ++cnt;
      }
      M[static_cast<std::size_t>(i * W + j)] = sum / cnt;
    }
  return M;
}

/// Central differences inside, one-sided at the borders, 0 along an extent of 1.
std::vector<double> ref_gradient(const std::vector<double>& M, std::int64_t H, std::int64_t W) {
  auto at = [&](std::int64_t i, std::int64_t j) { return M[static_cast<std::size_t>(i * W + j)]; };
  std::vector<double> g(M.size());
  for (std::int64_t i = 0; i < H; ++i)
    for (std::int64_t j = 0; j < W; ++j) {
      double dx = 0, dy = 0;
      if (W > 1) dx = j == 0 ? at(i, 1) - at(i, 0) : j == W - 1 ? at(i, W - 1) - at(i, W - 2) : (at(i, j + 1) - at(i, j - 1)) / 2;
      if (H > 1) dy = i == 0 ? at(1, j) - at(0, j) : i == H - 1 ? at(H - 1, j) - at(H - 2, j) : (at(i + 1, j) - at(i - 1, j)) / 2;
      g[static_cast<std::size_t>(i * W + j)] = std::sqrt(dx * dx + dy * dy);
    }
  return g;
}

/// Sorting-based top-k over the eligible positions of [lo, lo + n): sort everything by
/// (NaN last, value best first, index), take the first k.
std::vector<u8> ref_topk(const float* key, std::int64_t N, std::int64_t lo, std::int64_t n, std::int64_t k, bool largest,
                         const u8* excluded) {
  std::vector<std::int64_t> idx;
  for (std::int64_t t = lo; t < lo + n; ++t)
    if (!excluded || !excluded[t]) idx.push_back(t);
  auto rank = [&](std::int64_t t) {
    const double v = key[t];
    return std::make_tuple(std::isnan(v) ? 1 : 0, std::isnan(v) ? 0.0 : (largest ? -v : v), t);
  };
  std::sort(idx.begin(), idx.end(), [&](std::int64_t a, std::int64_t b) { return rank(a) < rank(b); });
  std::vector<u8> mask(static_cast<std::size_t>(N), 0);
  for (std::size_t i = 0; i < idx.size() && static_cast<std::int64_t>(i) < k; ++i) mask[static_cast<std::size_t>(idx[i])] = 1;
  return mask;
}

std::int64_t floor_count(std::int64_t N, double frac) { return static_cast<std::int64_t>(std::floor(static_cast<double>(N) * frac)); }

std::vector<u8> mask_of(std::int64_t N, std::initializer_list<std::int64_t> on) {
  std::vector<u8> m(static_cast<std::size_t>(N), 0);
  for (auto t : on) m[static_cast<std::size_t>(t)] = 1;
  return m;
}

gcpo::selection_options opts(std::int64_t H, std::int64_t W, double init, double grad, double sim, double ws, double wf) {
  gcpo::selection_options o;
  o.grid = {H, W};
  o.initial_frac = init;
  o.gradient_frac = grad;
  o.similarity_frac = sim;
  o.window_start_frac = ws;
  o.window_frac = wf;
  return o;
}

/// smoothed and gradient maps of the library for one rollout.
void lib_maps(const std::vector<float>& E, std::int64_t H, std::int64_t W, std::vector<float>& M, std::vector<float>& G) {
  const std::int64_t N = H * W;
  M.assign(static_cast<std::size_t>(N), -1.0f);
  G.assign(static_cast<std::size_t>(N), -1.0f);
  gcpo::selection_options o;
  o.grid = {H, W};
  GCPO_REQUIRE_OK(gcpo::host::smoothed_entropy(cview(E, {1, N}), view(M, {1, N}), o));
  GCPO_REQUIRE_OK(gcpo::host::entropy_gradient(cview(M, {1, N}), view(G, {1, N}), o));
}

}  // namespace

// ---- counts and the initial mask ----------------------------------------------------------

TEST_CASE("selection: counts are floor(N * frac) in double", "[selection]") {
  gcpo::selection_counts c;
  GCPO_REQUIRE_OK(gcpo::selection_counts_for(576, gcpo::selection_options{}, c));
  CHECK(c.initial == 57);
  CHECK(c.gradient == 57);
  CHECK(c.similarity == 57);
  CHECK(c.window_start == 57);
  CHECK(c.window == 460);
  GCPO_REQUIRE_OK(gcpo::selection_counts_for(1024, gcpo::selection_options{}, c));
  CHECK(c.initial == 102);
  CHECK(c.window == 819);
  // k larger than the window is cut to the window
  gcpo::selection_options o;
  o.gradient_frac = 1.0;
  GCPO_REQUIRE_OK(gcpo::selection_counts_for(16, o, c));
  CHECK(c.window == 12);
  CHECK(c.gradient == 12);
  // 100 * 0.29 is 28.999999999999996 in double: 28, as the official int(N * frac)
  o = gcpo::selection_options{};
  o.similarity_frac = 0.29;
  GCPO_REQUIRE_OK(gcpo::selection_counts_for(100, o, c));
  CHECK(c.similarity == 28);
  GCPO_CHECK_ERROR(gcpo::selection_counts_for(10, gcpo::selection_options{}, c), gcpo::status_code::invalid_argument,
                   "`options.grid` was not given and N (N = 10) is not a perfect square: give height and width");
}

TEST_CASE("initial_mask: the first floor(N * frac) tokens", "[selection]") {
  const std::int64_t R = 2;
  for (auto tc : {std::make_tuple(std::int64_t{576}, 0.1, std::int64_t{57}), std::make_tuple(std::int64_t{16}, 0.1, std::int64_t{1}),
                  std::make_tuple(std::int64_t{16}, 0.0, std::int64_t{0}), std::make_tuple(std::int64_t{16}, 1.0, std::int64_t{16}),
                  std::make_tuple(std::int64_t{9}, 0.5, std::int64_t{4}), std::make_tuple(std::int64_t{1}, 0.99, std::int64_t{0})}) {
    const std::int64_t N = std::get<0>(tc), want = std::get<2>(tc);
    CAPTURE(N, std::get<1>(tc));
    std::vector<u8> m(static_cast<std::size_t>(R * N), 7);
    gcpo::selection_options o;
    o.initial_frac = std::get<1>(tc);
    GCPO_REQUIRE_OK(gcpo::host::initial_mask(view(m, {R, N}), o));
    std::vector<u8> expect(static_cast<std::size_t>(R * N), 0);
    for (std::int64_t r = 0; r < R; ++r)
      for (std::int64_t t = 0; t < want; ++t) expect[static_cast<std::size_t>(r * N + t)] = 1;
    check_close(m, expect, 0, 0, "initial");
  }
  // non-square N with a grid
  std::vector<u8> m(10);
  GCPO_REQUIRE_OK(gcpo::host::initial_mask(view(m, {1, 10}), opts(2, 5, 0.35, 0.1, 0.1, 0.1, 0.8)));
  check_close(m, mask_of(10, {0, 1, 2}), 0, 0, "initial 2x5");
}

// ---- smoothing and gradient, hand-computed ---------------------------------------------------

TEST_CASE("smoothed_entropy / entropy_gradient: 3x3 by hand", "[selection]") {
  // E = 1..9. M (hand):  1     1.5  2.5
  //                      7/3   3    4
  //                      16/3  6    7
  const std::vector<float> E{1, 2, 3, 4, 5, 6, 7, 8, 9};
  std::vector<float> M, G;
  lib_maps(E, 3, 3, M, G);
  check_close(M, std::vector<double>{1, 1.5, 2.5, 7.0 / 3, 3, 4, 16.0 / 3, 6, 7}, map_atol, map_rtol, "M");
  // dx rows: [.5, .75, 1], [2/3, 5/6, 1], [2/3, 5/6, 1]; dy cols: [4/3, 13/6, 3], [1.5, 2.25, 3], [1.5, 2.25, 3]
  const std::vector<double> want{std::hypot(0.5, 4.0 / 3),     std::hypot(0.75, 1.5),       std::hypot(1.0, 1.5),
                                 std::hypot(2.0 / 3, 13.0 / 6), std::hypot(5.0 / 6, 2.25),   std::hypot(1.0, 2.25),
                                 std::hypot(2.0 / 3, 3.0),      std::hypot(5.0 / 6, 3.0),    std::hypot(1.0, 3.0)};
  check_close(G, want, map_atol, map_rtol, "G");

  // top-3 in the window [1, 8) (k = floor(9 * .34) = 3, lo = floor(9 * .12) = 1, n = floor(9 * .78) = 7):
  // g ascends with the position here, and position 8 lies outside the window: {5, 6, 7}
  std::vector<u8> mask(9, 9);
  GCPO_REQUIRE_OK(gcpo::host::gradient_topk(cview(G, {1, 9}), view(mask, {1, 9}), opts(3, 3, 0, 0.34, 0, 0.12, 0.78)));
  check_close(mask, mask_of(9, {5, 6, 7}), 0, 0, "top-3");
  // defaults on 9 tokens: k = floor(0.9) = 0: nothing
  GCPO_REQUIRE_OK(gcpo::host::gradient_topk(cview(G, {1, 9}), view(mask, {1, 9})));
  check_close(mask, mask_of(9, {}), 0, 0, "k = 0");
}

TEST_CASE("smoothed_entropy / entropy_gradient: 4x4 spike by hand, ties", "[selection]") {
  // E = 0 but E(1,2) = 5. The spike enters the means of (1,2) (5 terms), (1,3) (4), (2,1) (5),
  // (2,2) (5) and (2,3) (4):
  //   M = 0 0 0 0 / 0 0 1 1.25 / 0 1 1 1.25 / 0 0 0 0
  std::vector<float> E(16, 0.0f);
  E[1 * 4 + 2] = 5.0f;
  std::vector<float> M, G;
  lib_maps(E, 4, 4, M, G);
  check_close(M, std::vector<double>{0, 0, 0, 0, 0, 0, 1, 1.25, 0, 1, 1, 1.25, 0, 0, 0, 0}, 0, 0, "M (exact)");
  // dx row1 [0, .5, .625, .25], row2 [1, .5, .125, .25]; dy col1 [0, .5, 0, -1], col2 [1, .5, -.5, -1],
  // col3 [1.25, .625, -.625, -1.25]
  const std::vector<double> want{0, 0, 1, 1.25,                                                                //
                                 0, std::hypot(.5, .5), std::hypot(.625, .5), std::hypot(.25, .625),           //
                                 1, .5, std::hypot(.125, .5), std::hypot(.25, .625),                           //
                                 0, 1, 1, 1.25};
  check_close(G, want, map_atol, map_rtol, "G");

  std::vector<u8> mask(16);
  // defaults: k = 1, window [1, 13): the 1.25 at position 3 (15 is outside)
  GCPO_REQUIRE_OK(gcpo::host::gradient_topk(cview(G, {1, 16}), view(mask, {1, 16})));
  check_close(mask, mask_of(16, {3}), 0, 0, "default top-1");
  // k = 2: 1.25 at 3, then the tie of 1s at 2, 8 (13 and 14 are outside): the lower index, 2
  GCPO_REQUIRE_OK(gcpo::host::gradient_topk(cview(G, {1, 16}), view(mask, {1, 16}), opts(4, 4, .1, .125, .1, .1, .8)));
  check_close(mask, mask_of(16, {2, 3}), 0, 0, "top-2 tie");
  // k = 4: then 8, then hypot(.625, .5) at 6
  GCPO_REQUIRE_OK(gcpo::host::gradient_topk(cview(G, {1, 16}), view(mask, {1, 16}), opts(4, 4, .1, .25, .1, .1, .8)));
  check_close(mask, mask_of(16, {2, 3, 6, 8}), 0, 0, "top-4");
  // window [1, 16): 1.25 at 3 and 15 tie
  GCPO_REQUIRE_OK(gcpo::host::gradient_topk(cview(G, {1, 16}), view(mask, {1, 16}), opts(4, 4, .1, .0625, .1, .0625, .9375)));
  check_close(mask, mask_of(16, {3}), 0, 0, "top-1 of a tie");
  GCPO_REQUIRE_OK(gcpo::host::gradient_topk(cview(G, {1, 16}), view(mask, {1, 16}), opts(4, 4, .1, .125, .1, .0625, .9375)));
  check_close(mask, mask_of(16, {3, 15}), 0, 0, "top-2 of a tie");
  // k larger than the window: the whole window [4, 8)
  GCPO_REQUIRE_OK(gcpo::host::gradient_topk(cview(G, {1, 16}), view(mask, {1, 16}), opts(4, 4, .1, 1.0, .1, .25, .25)));
  check_close(mask, mask_of(16, {4, 5, 6, 7}), 0, 0, "k > window");
  // an empty window selects nothing
  GCPO_REQUIRE_OK(gcpo::host::gradient_topk(cview(G, {1, 16}), view(mask, {1, 16}), opts(4, 4, .1, 1.0, .1, .5, 0)));
  check_close(mask, mask_of(16, {}), 0, 0, "empty window");
}

TEST_CASE("smoothed_entropy / entropy_gradient: 1x1, 1xW, Hx1 and non-square grids", "[selection]") {
  std::vector<float> M, G;
  // 1x1: M = E, g = 0
  lib_maps({3.5f}, 1, 1, M, G);
  CHECK(M[0] == 3.5f);
  CHECK(G[0] == 0.0f);
  // 1x5 of [1, 3, 2, 5, 4]: M = [1, 2, 2.5, 3.5, 4.5] (self and left); g = |dx| = [1, .75, .75, 1, 1]
  const std::vector<float> line{1, 3, 2, 5, 4};
  lib_maps(line, 1, 5, M, G);
  check_close(M, std::vector<double>{1, 2, 2.5, 3.5, 4.5}, 0, 0, "M 1x5");
  check_close(G, std::vector<double>{1, .75, .75, 1, 1}, 0, 0, "G 1x5");
  // 5x1: self and up give the same means; g = |dy|
  lib_maps(line, 5, 1, M, G);
  check_close(M, std::vector<double>{1, 2, 2.5, 3.5, 4.5}, 0, 0, "M 5x1");
  check_close(G, std::vector<double>{1, .75, .75, 1, 1}, 0, 0, "G 5x1");
  // 2x3 of 1..6: M = [1, 1.5, 2.5 / 7/3, 3, 4]; dx [.5, .75, 1 / 2/3, 5/6, 1]; dy one-sided [4/3, 1.5, 1.5] both rows
  lib_maps({1, 2, 3, 4, 5, 6}, 2, 3, M, G);
  check_close(M, std::vector<double>{1, 1.5, 2.5, 7.0 / 3, 3, 4}, map_atol, map_rtol, "M 2x3");
  check_close(G,
              std::vector<double>{std::hypot(.5, 4.0 / 3), std::hypot(.75, 1.5), std::hypot(1.0, 1.5), std::hypot(2.0 / 3, 4.0 / 3),
                                  std::hypot(5.0 / 6, 1.5), std::hypot(1.0, 1.5)},
              map_atol, map_rtol, "G 2x3");
  // 3x2 of 1..6: M = [1, 1.5 / 2, 2.5 / 4, 4.5]; dx = .5 everywhere; dy [1, 1.5, 2] in both columns
  lib_maps({1, 2, 3, 4, 5, 6}, 3, 2, M, G);
  check_close(M, std::vector<double>{1, 1.5, 2, 2.5, 4, 4.5}, 0, 0, "M 3x2");
  check_close(G,
              std::vector<double>{std::hypot(.5, 1.0), std::hypot(.5, 1.0), std::hypot(.5, 1.5), std::hypot(.5, 1.5),
                                  std::hypot(.5, 2.0), std::hypot(.5, 2.0)},
              map_atol, map_rtol, "G 3x2");
}

TEST_CASE("smoothed_entropy / entropy_gradient: randomised against the double reference", "[selection]") {
  const std::vector<std::pair<std::int64_t, std::int64_t>> grids{{1, 1}, {1, 7}, {7, 1}, {2, 2}, {5, 5}, {6, 9}, {13, 17}, {24, 24}};
  for (const auto& hw : grids) {
    const std::int64_t H = hw.first, W = hw.second, N = H * W, R = 3;
    const std::uint64_t seed = static_cast<std::uint64_t>(1000 + H * 100 + W);
    CAPTURE(H, W, seed);
    std::mt19937_64 rng(seed);
    const std::vector<float> E = uniform(rng, static_cast<std::size_t>(R * N), 0.0, 9.7);
    std::vector<float> M(R * N), G(R * N);
    gcpo::selection_options o;
    o.grid = {H, W};
    GCPO_REQUIRE_OK(gcpo::host::smoothed_entropy(cview(E, {R, N}), view(M, {R, N}), o));
    GCPO_REQUIRE_OK(gcpo::host::entropy_gradient(cview(M, {R, N}), view(G, {R, N}), o));
    std::vector<double> wantM, wantG;
    for (std::int64_t r = 0; r < R; ++r) {
      std::vector<double> e(E.begin() + r * N, E.begin() + (r + 1) * N);
      const std::vector<double> m = ref_smooth(e.data(), H, W);
      // the gradient of the library's own M, so that the check isolates the gradient stage
      std::vector<double> mlib(M.begin() + r * N, M.begin() + (r + 1) * N);
      const std::vector<double> g = ref_gradient(mlib, H, W);
      wantM.insert(wantM.end(), m.begin(), m.end());
      wantG.insert(wantG.end(), g.begin(), g.end());
    }
    check_close(M, wantM, map_atol, map_rtol, "M");
    check_close(G, wantG, map_atol, map_rtol, "G");
  }
}

// ---- top-k --------------------------------------------------------------------------------

TEST_CASE("gradient_topk: NaN ranks below every number", "[selection]") {
  // 4x4, window [1, 13), k = 4; NaN at 2, 5 and 6
  std::vector<float> g(16, 0.0f);
  for (int t = 0; t < 16; ++t) g[t] = static_cast<float>(t % 5);
  g[2] = g[5] = g[6] = nan_f;
  std::vector<u8> mask(16);
  // values in the window: 1:1 3:3 4:4 7:2 8:3 9:4 10:0 11:1 12:2 -> top-4: 4, 9 (4s), 3, 8 (3s)
  GCPO_REQUIRE_OK(gcpo::host::gradient_topk(cview(g, {1, 16}), view(mask, {1, 16}), opts(4, 4, .1, .25, .1, .1, .8)));
  check_close(mask, mask_of(16, {3, 4, 8, 9}), 0, 0, "NaN not chosen");
  // window [1, 7) has 1:1 3:3 4:4 and NaN at 2, 5, 6; k = 5: the three numbers, then NaN at 2 and 5
  GCPO_REQUIRE_OK(gcpo::host::gradient_topk(cview(g, {1, 16}), view(mask, {1, 16}), opts(4, 4, .1, .3125, .1, .0625, .375)));
  check_close(mask, mask_of(16, {1, 2, 3, 4, 5}), 0, 0, "NaN after numbers, lower index first");
}

TEST_CASE("low_similarity_mask: lowest k among the eligible, ties and NaN", "[selection]") {
  // N = 10 on a 2x5 grid; k = floor(10 * .35) = 3
  const std::vector<float> sim{0.5f, 0.1f, 0.3f, 0.1f, nan_f, -0.2f, 0.3f, 0.9f, 0.0f, 0.4f};
  const auto o = opts(2, 5, .1, .1, .35, .1, .8);
  std::vector<u8> mask(10, 5);
  // -0.2 (5), 0.0 (8), then the tie of 0.1 at 1 and 3: the lower index, 1
  GCPO_REQUIRE_OK(gcpo::host::low_similarity_mask(cview(sim, {1, 10}), {}, view(mask, {1, 10}), o));
  check_close(mask, mask_of(10, {1, 5, 8}), 0, 0, "lowest 3");
  std::vector<u8> ex = mask_of(10, {8});
  GCPO_REQUIRE_OK(gcpo::host::low_similarity_mask(cview(sim, {1, 10}), cview(ex, {1, 10}), view(mask, {1, 10}), o));
  check_close(mask, mask_of(10, {1, 3, 5}), 0, 0, "exclusion");
  // only 2 (0.3), 4 (NaN) and 7 (0.9) eligible: all of them, NaN included
  ex = mask_of(10, {0, 1, 3, 5, 6, 8, 9});
  GCPO_REQUIRE_OK(gcpo::host::low_similarity_mask(cview(sim, {1, 10}), cview(ex, {1, 10}), view(mask, {1, 10}), o));
  check_close(mask, mask_of(10, {2, 4, 7}), 0, 0, "all eligible");
  // k = 2 of {2, 4, 7}: NaN ranks after every number
  GCPO_REQUIRE_OK(gcpo::host::low_similarity_mask(cview(sim, {1, 10}), cview(ex, {1, 10}), view(mask, {1, 10}),
                                                  opts(2, 5, .1, .1, .2, .1, .8)));
  check_close(mask, mask_of(10, {2, 7}), 0, 0, "NaN last");
  // fewer eligible than k
  ex = mask_of(10, {0, 1, 2, 3, 4, 5, 6, 8, 9});
  GCPO_REQUIRE_OK(gcpo::host::low_similarity_mask(cview(sim, {1, 10}), cview(ex, {1, 10}), view(mask, {1, 10}), o));
  check_close(mask, mask_of(10, {7}), 0, 0, "one eligible");
  // everything excluded, k = 0
  std::vector<u8> all(10, 1);
  GCPO_REQUIRE_OK(gcpo::host::low_similarity_mask(cview(sim, {1, 10}), cview(all, {1, 10}), view(mask, {1, 10}), o));
  check_close(mask, mask_of(10, {}), 0, 0, "all excluded");
  GCPO_REQUIRE_OK(gcpo::host::low_similarity_mask(cview(sim, {1, 10}), {}, view(mask, {1, 10}), opts(2, 5, .1, .1, 0, .1, .8)));
  check_close(mask, mask_of(10, {}), 0, 0, "k = 0");
  // rows are independent; nonzero exclusion values other than 1 count as excluded
  const std::vector<float> sim2{0.5f, 0.1f, 0.3f, 0.1f, 0.0f, -0.2f, 0.3f, 0.9f, 0.0f, 0.4f,  //
                                0.0f, 0.0f, 0.0f, 0.0f, 0.0f, 0.0f, 0.0f, 0.0f, 0.0f, 0.0f};
  std::vector<u8> ex2(20, 0), mask2(20);
  ex2[10] = 255;
  GCPO_REQUIRE_OK(gcpo::host::low_similarity_mask(cview(sim2, {2, 10}), cview(ex2, {2, 10}), view(mask2, {2, 10}), o));
  std::vector<u8> want2 = mask_of(20, {4, 5, 8, 11, 12, 13});
  check_close(mask2, want2, 0, 0, "two rows");
}

TEST_CASE("gradient_topk / low_similarity_mask: randomised against a sorting-based top-k", "[selection]") {
  for (std::uint64_t seed = 1; seed <= 12; ++seed) {
    std::mt19937_64 rng(seed);
    const std::int64_t H = 1 + static_cast<std::int64_t>(rng() % 20), W = 1 + static_cast<std::int64_t>(rng() % 20);
    const std::int64_t N = H * W, R = 3;
    std::uniform_real_distribution<double> f01(0, 1);
    auto o = opts(H, W, f01(rng) * 0.3, f01(rng) * 0.5, f01(rng) * 0.5, f01(rng) * 0.3, f01(rng) * 0.7);
    if (seed % 4 == 0) o.gradient_frac = 1.0;  // k > window
    CAPTURE(seed, H, W, o.initial_frac, o.gradient_frac, o.similarity_frac, o.window_start_frac, o.window_frac);
    // keys with many exact ties (quantised) and a few NaN
    std::vector<float> key(R * N), sim(R * N);
    for (std::int64_t i = 0; i < R * N; ++i) {
      key[i] = static_cast<float>(std::floor(f01(rng) * 8) / 4);
      sim[i] = static_cast<float>(std::floor(f01(rng) * 8) / 4 - 1);
      if (rng() % 17 == 0) key[i] = nan_f;
      if (rng() % 19 == 0) sim[i] = nan_f;
    }
    std::vector<u8> ex(R * N);
    for (auto& e : ex) e = rng() % 3 == 0 ? 1 : 0;
    std::vector<u8> gm(R * N), sm(R * N), sm_all(R * N);
    GCPO_REQUIRE_OK(gcpo::host::gradient_topk(cview(key, {R, N}), view(gm, {R, N}), o));
    GCPO_REQUIRE_OK(gcpo::host::low_similarity_mask(cview(sim, {R, N}), cview(ex, {R, N}), view(sm, {R, N}), o));
    GCPO_REQUIRE_OK(gcpo::host::low_similarity_mask(cview(sim, {R, N}), {}, view(sm_all, {R, N}), o));
    const std::int64_t lo = floor_count(N, o.window_start_frac), n = floor_count(N, o.window_frac);
    std::vector<u8> want_g, want_s, want_all;
    for (std::int64_t r = 0; r < R; ++r) {
      const auto g = ref_topk(key.data() + r * N, N, lo, n, floor_count(N, o.gradient_frac), true, nullptr);
      const auto s = ref_topk(sim.data() + r * N, N, 0, N, floor_count(N, o.similarity_frac), false, ex.data() + r * N);
      const auto a = ref_topk(sim.data() + r * N, N, 0, N, floor_count(N, o.similarity_frac), false, nullptr);
      want_g.insert(want_g.end(), g.begin(), g.end());
      want_s.insert(want_s.end(), s.begin(), s.end());
      want_all.insert(want_all.end(), a.begin(), a.end());
    }
    check_close(gm, want_g, 0, 0, "gradient mask");
    check_close(sm, want_s, 0, 0, "similarity mask (excluding)");
    check_close(sm_all, want_all, 0, 0, "similarity mask");
  }
}

// ---- union ----------------------------------------------------------------------------------

TEST_CASE("union_mask: or of the masks and per-rollout counts", "[selection]") {
  const std::vector<u8> a{1, 0, 0, 0, 0, 0, 0, 0}, b{0, 1, 0, 1, 0, 0, 0, 2}, c{1, 0, 0, 0, 0, 3, 0, 0};
  std::vector<u8> out(8, 9);
  std::vector<std::int32_t> counts(2, -1);
  GCPO_REQUIRE_OK(gcpo::host::union_mask(cview(a, {2, 4}), cview(b, {2, 4}), cview(c, {2, 4}), view(out, {2, 4}), view(counts, {2})));
  check_close(out, std::vector<u8>{1, 1, 0, 1, 0, 1, 0, 1}, 0, 0, "critical");
  check_close(counts, std::vector<int>{3, 2}, 0, 0, "counts");
  // c absent, counts absent
  GCPO_REQUIRE_OK(gcpo::host::union_mask(cview(a, {2, 4}), cview(b, {2, 4}), {}, view(out, {2, 4}), {}));
  check_close(out, std::vector<u8>{1, 1, 0, 1, 0, 0, 0, 1}, 0, 0, "a | b");
  // in place: critical is exactly a
  std::vector<u8> acc = a;
  GCPO_REQUIRE_OK(gcpo::host::union_mask(cview(acc, {2, 4}), cview(b, {2, 4}), cview(c, {2, 4}), view(acc, {2, 4}), view(counts, {2})));
  check_close(acc, std::vector<u8>{1, 1, 0, 1, 0, 1, 0, 1}, 0, 0, "in place");
  check_close(counts, std::vector<int>{3, 2}, 0, 0, "counts in place");
}

// ---- the whole selection ------------------------------------------------------------------

namespace {

struct selection_run {
  std::vector<u8> critical, initial, gradient, low_similarity;
  std::vector<std::int32_t> counts;
  std::vector<float> smoothed, egrad, similarity;
};

selection_run run_select(const gcpo::selection_inputs& in, std::int64_t R, std::int64_t N, const gcpo::selection_options& o,
                         bool all_outputs = true, std::size_t misalign = 0) {
  selection_run s;
  s.critical.assign(static_cast<std::size_t>(R * N), 9);
  s.initial.assign(static_cast<std::size_t>(R * N), 9);
  s.gradient.assign(static_cast<std::size_t>(R * N), 9);
  s.low_similarity.assign(static_cast<std::size_t>(R * N), 9);
  s.counts.assign(static_cast<std::size_t>(R), -1);
  s.smoothed.assign(static_cast<std::size_t>(R * N), -1.0f);
  s.egrad.assign(static_cast<std::size_t>(R * N), -1.0f);
  s.similarity.assign(static_cast<std::size_t>(R * N), -1.0f);
  gcpo::selection_outputs out;
  out.critical = view(s.critical, {R, N});
  if (all_outputs) {
    out.counts = view(s.counts, {R});
    out.initial = view(s.initial, {R, N});
    out.gradient = view(s.gradient, {R, N});
    out.low_similarity = view(s.low_similarity, {R, N});
    out.smoothed_entropy = view(s.smoothed, {R, N});
    out.entropy_gradient = view(s.egrad, {R, N});
    out.similarity = view(s.similarity, {R, N});
  }
  const std::size_t bytes = gcpo::select_critical_tokens_workspace_bytes(R, N);
  std::vector<unsigned char> ws(bytes + misalign);
  GCPO_REQUIRE_OK(gcpo::host::select_critical_tokens(in, out, o, gcpo::workspace{ws.data() + misalign, bytes, gcpo::memory_space::host}));
  return s;
}

}  // namespace

TEST_CASE("select_critical_tokens: randomised against the reference pipeline", "[selection]") {
  const std::vector<std::pair<std::int64_t, std::int64_t>> grids{{4, 4}, {10, 10}, {24, 24}, {5, 8}, {1, 30}, {30, 1}};
  for (const auto& hw : grids) {
    for (int variant = 0; variant < 2; ++variant) {
      const std::int64_t H = hw.first, W = hw.second, N = H * W, G = 4, R = 2 * G;
      const std::uint64_t seed = static_cast<std::uint64_t>(7 * N + variant);
      CAPTURE(H, W, variant, seed);
      std::mt19937_64 rng(seed);
      gcpo::selection_options o;
      o.grid = {H, W};
      if (variant == 1) o = opts(H, W, 0.05, 0.2, 0.15, 0.2, 0.5);
      // entropies; variant 1 uses few distinct values so the maps have exact ties
      std::vector<float> E = uniform(rng, static_cast<std::size_t>(R * N), 0.0, 9.0);
      if (variant == 1)
        for (auto& e : E) e = std::floor(e);
      std::vector<float> sim = uniform(rng, static_cast<std::size_t>(R * N), -1.0, 1.0);
      for (std::int64_t p = 0; p < R / G; ++p)  // shared per prompt, as group_similarity writes it
        for (std::int64_t g = 1; g < G; ++g)
          for (std::int64_t t = 0; t < N; ++t) sim[(p * G + g) * N + t] = sim[p * G * N + t];
      gcpo::selection_inputs in;
      in.entropy = cview(E, {R, N});
      in.similarity = cview(sim, {R, N});
      const selection_run s = run_select(in, R, N, o, true, static_cast<std::size_t>(variant * 3));

      gcpo::selection_counts c;
      GCPO_REQUIRE_OK(gcpo::selection_counts_for(N, o, c));
      REQUIRE(c.initial == floor_count(N, o.initial_frac));
      std::vector<double> wantM;
      std::vector<u8> want_init, want_grad, want_sim, want_crit;
      std::vector<int> want_counts;
      for (std::int64_t r = 0; r < R; ++r) {
        std::vector<double> e(E.begin() + r * N, E.begin() + (r + 1) * N);
        const std::vector<double> m = ref_smooth(e.data(), H, W);
        wantM.insert(wantM.end(), m.begin(), m.end());
        std::vector<u8> init(static_cast<std::size_t>(N), 0);
        for (std::int64_t t = 0; t < c.initial; ++t) init[static_cast<std::size_t>(t)] = 1;
        // masks from the library's float gradient map (checked against the reference above)
        const std::vector<u8> grad = ref_topk(s.egrad.data() + r * N, N, floor_count(N, o.window_start_frac),
                                              floor_count(N, o.window_frac), floor_count(N, o.gradient_frac), true, nullptr);
        std::vector<u8> ex(static_cast<std::size_t>(N));
        for (std::int64_t t = 0; t < N; ++t) ex[static_cast<std::size_t>(t)] = init[static_cast<std::size_t>(t)] | grad[static_cast<std::size_t>(t)];
        const std::vector<u8> low = ref_topk(sim.data() + r * N, N, 0, N, floor_count(N, o.similarity_frac), false, ex.data());
        int cnt = 0;
        for (std::int64_t t = 0; t < N; ++t) {
          const std::size_t i = static_cast<std::size_t>(t);
          // the three sets are disjoint
          CHECK(init[i] + grad[i] + low[i] <= 1);
          want_crit.push_back(init[i] | grad[i] | low[i]);
          cnt += want_crit.back();
        }
        want_counts.push_back(cnt);
        want_init.insert(want_init.end(), init.begin(), init.end());
        want_grad.insert(want_grad.end(), grad.begin(), grad.end());
        want_sim.insert(want_sim.end(), low.begin(), low.end());
      }
      check_close(s.smoothed, wantM, map_atol, map_rtol, "smoothed_entropy");
      std::vector<double> wantG;
      for (std::int64_t r = 0; r < R; ++r) {
        const std::vector<double> m(s.smoothed.begin() + r * N, s.smoothed.begin() + (r + 1) * N);
        const std::vector<double> g = ref_gradient(m, H, W);
        wantG.insert(wantG.end(), g.begin(), g.end());
      }
      check_close(s.egrad, wantG, map_atol, map_rtol, "entropy_gradient");
      check_close(s.similarity, sim, 0, 0, "similarity (copied)");
      check_close(s.initial, want_init, 0, 0, "initial");
      check_close(s.gradient, want_grad, 0, 0, "gradient");
      check_close(s.low_similarity, want_sim, 0, 0, "low_similarity");
      check_close(s.critical, want_crit, 0, 0, "critical");
      check_close(s.counts, want_counts, 0, 0, "counts");
      if (N >= 100 && variant == 0)  // large enough: 3k critical tokens per rollout
        for (auto n : s.counts) CHECK(n == 3 * c.initial);
      // only `critical` requested: the same mask
      const selection_run only = run_select(in, R, N, o, false);
      check_close(only.critical, want_crit, 0, 0, "critical only");
    }
  }
}

TEST_CASE("select_critical_tokens: the three similarity sources give the same masks", "[selection]") {
  const std::uint64_t seed = 2024;
  CAPTURE(seed);
  std::mt19937_64 rng(seed);
  const std::int64_t H = 6, W = 6, N = H * W, G = 4, R = 2 * G, V = 23, D = 8;
  const std::vector<float> E = uniform(rng, static_cast<std::size_t>(R * N), 0.0, 5.0);
  const std::vector<float> table = normal(rng, static_cast<std::size_t>(V * D), 0.0, 1.0);
  std::vector<std::int64_t> tok(R * N);
  for (auto& t : tok) t = static_cast<std::int64_t>(rng() % V);
  std::vector<float> emb(static_cast<std::size_t>(R * N * D));
  for (std::int64_t i = 0; i < R * N; ++i)
    for (std::int64_t d = 0; d < D; ++d) emb[i * D + d] = table[tok[i] * D + d];
  gcpo::selection_options o;
  o.grid = {H, W};
  o.similarity_frac = 0.2;

  gcpo::selection_inputs from_tokens;
  from_tokens.entropy = cview(E, {R, N});
  from_tokens.tokens = cview(tok, {R, N});
  from_tokens.embedding_table = cview(table, {V, D});
  from_tokens.similarity_opts.group = G;
  const selection_run a = run_select(from_tokens, R, N, o);

  gcpo::selection_inputs from_emb;
  from_emb.entropy = cview(E, {R, N});
  from_emb.embeddings = cview(emb, {R, N, D});
  from_emb.similarity_opts.group = G;
  const selection_run b = run_select(from_emb, R, N, o);

  std::vector<float> sim(R * N);
  gcpo::similarity_options so;
  so.group = G;
  GCPO_REQUIRE_OK(gcpo::host::group_similarity(cview(emb, {R, N, D}), view(sim, {R, N}), so));
  gcpo::selection_inputs given;
  given.entropy = cview(E, {R, N});
  given.similarity = cview(sim, {R, N});
  const selection_run c = run_select(given, R, N, o);

  check_close(a.similarity, sim, 0, 0, "similarity from tokens");
  check_close(b.similarity, sim, 0, 0, "similarity from embeddings");
  for (const selection_run* s : {&a, &b}) {
    check_close(s->critical, c.critical, 0, 0, "critical");
    check_close(s->low_similarity, c.low_similarity, 0, 0, "low_similarity");
    check_close(s->gradient, c.gradient, 0, 0, "gradient");
    check_close(s->counts, c.counts, 0, 0, "counts");
  }
  // the low-similarity tokens are the k lowest of the shared similarity outside the other two sets
  const std::int64_t k = floor_count(N, o.similarity_frac);
  for (std::int64_t r = 0; r < R; ++r) {
    std::vector<u8> ex(static_cast<std::size_t>(N));
    for (std::int64_t t = 0; t < N; ++t) ex[static_cast<std::size_t>(t)] = c.initial[r * N + t] | c.gradient[r * N + t];
    const std::vector<u8> want = ref_topk(sim.data() + r * N, N, 0, N, k, false, ex.data());
    check_close(std::vector<u8>(c.low_similarity.begin() + r * N, c.low_similarity.begin() + (r + 1) * N), want, 0, 0, "low");
  }
}

TEST_CASE("select_critical_tokens: preconditions and workspace", "[selection]") {
  const std::int64_t R = 2, N = 16, D = 3, V = 5;
  std::vector<float> E(R * N, 1.0f), sim(R * N, 0.0f), emb(R * N * D, 1.0f), table(V * D, 1.0f), f(R * N);
  std::vector<std::int32_t> tok(R * N, 0), counts(R);
  std::vector<u8> crit(R * N), other(R * N);
  using sc = gcpo::status_code;
  const gcpo::selection_options o;
  const std::size_t bytes = gcpo::select_critical_tokens_workspace_bytes(R, N);
  std::vector<unsigned char> mem(bytes);
  const gcpo::workspace ws{mem.data(), bytes, gcpo::memory_space::host};

  gcpo::selection_inputs in;
  in.entropy = cview(E, {R, N});
  in.similarity = cview(sim, {R, N});
  gcpo::selection_outputs out;
  out.critical = view(crit, {R, N});
  GCPO_REQUIRE_OK(gcpo::host::select_critical_tokens(in, out, o, ws));

  // workspace
  GCPO_CHECK_ERROR(gcpo::host::select_critical_tokens(in, out, o, gcpo::workspace{mem.data(), bytes - 1, gcpo::memory_space::host}),
                   sc::workspace_too_small,
                   "`workspace.bytes` (" + std::to_string(bytes - 1) + ") is smaller than the " + std::to_string(bytes) +
                       " bytes `select_critical_tokens_workspace_bytes(R, N)` asks for");
  GCPO_CHECK_ERROR(gcpo::host::select_critical_tokens(in, out, o, gcpo::workspace{}), sc::workspace_too_small,
                   "(workspace.data is null)");
  GCPO_CHECK_ERROR(gcpo::host::select_critical_tokens(in, out, o, gcpo::workspace{mem.data(), bytes, gcpo::memory_space::device}),
                   sc::wrong_memory_space, "`workspace` is device memory but this operator needs host memory");

  // sources
  {
    gcpo::selection_inputs none = in;
    none.similarity = {};
    GCPO_CHECK_ERROR(gcpo::host::select_critical_tokens(none, out, o, ws), sc::invalid_argument,
                     "give exactly one similarity source: `inputs.similarity`, `inputs.embeddings`, or `inputs.tokens` with "
                     "`inputs.embedding_table` (0 given)");
    gcpo::selection_inputs two = in;
    two.embeddings = cview(emb, {R, N, D});
    GCPO_CHECK_ERROR(gcpo::host::select_critical_tokens(two, out, o, ws), sc::invalid_argument, "(2 given)");
    gcpo::selection_inputs three = two;
    three.tokens = cview(tok, {R, N});
    GCPO_CHECK_ERROR(gcpo::host::select_critical_tokens(three, out, o, ws), sc::invalid_argument, "(3 given)");
    gcpo::selection_inputs half = none;
    half.tokens = cview(tok, {R, N});
    GCPO_CHECK_ERROR(gcpo::host::select_critical_tokens(half, out, o, ws), sc::invalid_argument,
                     "`inputs.embedding_table` is required but was not given");
    half.tokens = {};
    half.embedding_table = cview(table, {V, D});
    GCPO_CHECK_ERROR(gcpo::host::select_critical_tokens(half, out, o, ws), sc::invalid_argument,
                     "`inputs.tokens` is required but was not given");
    half.tokens = cview(tok, {R, N - 1});
    GCPO_CHECK_ERROR(gcpo::host::select_critical_tokens(half, out, o, ws), sc::invalid_argument,
                     "`inputs.tokens.shape[1]` (15) must equal `inputs.entropy.shape[1]` (16)");
    gcpo::selection_inputs e = none;
    e.embeddings = cview(emb, {R, N - 1, D});
    GCPO_CHECK_ERROR(gcpo::host::select_critical_tokens(e, out, o, ws), sc::invalid_argument,
                     "`inputs.embeddings.shape[1]` (15) must equal `inputs.entropy.shape[1]` (16)");
    e.embeddings = cview(emb, {R * N, D});
    GCPO_CHECK_ERROR(gcpo::host::select_critical_tokens(e, out, o, ws), sc::invalid_argument,
                     "`inputs.embeddings` must have rank 3 ([R, N, D]) but has rank 2");
    e.embeddings = cview(emb, {R, N, D});  // similarity_opts.group not set
    GCPO_CHECK_ERROR(gcpo::host::select_critical_tokens(e, out, o, ws), sc::invalid_argument,
                     "`inputs.similarity_opts.group` (0) must be in [2, 1024]");
    e.similarity_opts.group = 3;  // R = 2 rollouts
    GCPO_CHECK_ERROR(gcpo::host::select_critical_tokens(e, out, o, ws), sc::invalid_argument,
                     "`inputs.entropy.shape[0]` (R = 2) must be a multiple of `inputs.similarity_opts.group` (3)");
    e.similarity_opts.group = 2;
    e.similarity_opts.eps = 0.0f;
    GCPO_CHECK_ERROR(gcpo::host::select_critical_tokens(e, out, o, ws), sc::invalid_argument,
                     "`inputs.similarity_opts.eps` (0) must be finite and > 0");
    gcpo::selection_inputs s = in;
    s.similarity = cview(sim, {R, N - 1});
    GCPO_CHECK_ERROR(gcpo::host::select_critical_tokens(s, out, o, ws), sc::invalid_argument,
                     "`inputs.similarity.shape[1]` (15) must equal N (16)");
  }
  // entropy and options
  {
    gcpo::selection_inputs e = in;
    e.entropy = cview(E, {R * N});
    GCPO_CHECK_ERROR(gcpo::host::select_critical_tokens(e, out, o, ws), sc::invalid_argument,
                     "`inputs.entropy` must have rank 2 ([R, N]) but has rank 1");
    e.entropy = {};
    GCPO_CHECK_ERROR(gcpo::host::select_critical_tokens(e, out, o, ws), sc::invalid_argument,
                     "`inputs.entropy` is required but was not given");
    e.entropy = gcpo::make_view(reinterpret_cast<const gcpo::float16*>(E.data()), {R, N});
    GCPO_CHECK_ERROR(gcpo::host::select_critical_tokens(e, out, o, ws), sc::unsupported_dtype,
                     "`inputs.entropy.dtype` is float16; expected one of: float32");
    gcpo::selection_options bad = o;
    bad.grid = {3, 5};
    GCPO_CHECK_ERROR(gcpo::host::select_critical_tokens(in, out, bad, ws), sc::invalid_argument,
                     "`options.grid` height * width (3 * 5 = 15) must equal N (N = 16)");
    bad = o;
    bad.window_start_frac = 0.5;
    bad.window_frac = 0.6;
    GCPO_CHECK_ERROR(gcpo::host::select_critical_tokens(in, out, bad, ws), sc::invalid_argument,
                     "the gradient window [floor(N * `options.window_start_frac`), + floor(N * `options.window_frac`)) = [8, 17) "
                     "must lie within N (16)");
    bad = o;
    bad.similarity_frac = -0.1;
    GCPO_CHECK_ERROR(gcpo::host::select_critical_tokens(in, out, bad, ws), sc::invalid_argument,
                     "`options.similarity_frac` (-0.1) must be in [0, 1]");
  }
  // outputs
  {
    gcpo::selection_outputs x;
    GCPO_CHECK_ERROR(gcpo::host::select_critical_tokens(in, x, o, ws), sc::invalid_argument,
                     "`outputs.critical` is required but was not given");
    x = out;
    x.counts = gcpo::make_view(reinterpret_cast<std::int64_t*>(counts.data()), {1});
    GCPO_CHECK_ERROR(gcpo::host::select_critical_tokens(in, x, o, ws), sc::unsupported_dtype,
                     "`outputs.counts.dtype` is int64; expected one of: int32");
    x.counts = view(counts, {1});
    GCPO_CHECK_ERROR(gcpo::host::select_critical_tokens(in, x, o, ws), sc::invalid_argument,
                     "`outputs.counts.shape[0]` (1) must equal `inputs.entropy.shape[0]` (2)");
    x = out;
    x.initial = view(f, {R, N});
    GCPO_CHECK_ERROR(gcpo::host::select_critical_tokens(in, x, o, ws), sc::unsupported_dtype,
                     "`outputs.initial.dtype` is float32; expected one of: uint8");
    x = out;
    x.smoothed_entropy = view(other, {R, N});
    GCPO_CHECK_ERROR(gcpo::host::select_critical_tokens(in, x, o, ws), sc::unsupported_dtype,
                     "`outputs.smoothed_entropy.dtype` is uint8; expected one of: float32");
    x = out;
    x.gradient = view(crit, {R, N});
    GCPO_CHECK_ERROR(gcpo::host::select_critical_tokens(in, x, o, ws), sc::aliasing,
                     "`outputs.gradient` shall not overlap `outputs.critical`");
    x = out;
    x.entropy_gradient = gcpo::make_view(E.data(), {R, N});
    GCPO_CHECK_ERROR(gcpo::host::select_critical_tokens(in, x, o, ws), sc::aliasing,
                     "`outputs.entropy_gradient` shall not overlap `inputs.entropy`");
    x = out;
    x.similarity = gcpo::make_view(sim.data(), {R, N});
    GCPO_CHECK_ERROR(gcpo::host::select_critical_tokens(in, x, o, ws), sc::aliasing,
                     "`outputs.similarity` shall not overlap `inputs.similarity`");
    x = out;
    x.counts = gcpo::make_view(reinterpret_cast<std::int32_t*>(crit.data()), {R});
    GCPO_CHECK_ERROR(gcpo::host::select_critical_tokens(in, x, o, ws), sc::aliasing,
                     "`outputs.counts` shall not overlap `outputs.critical`");
    x = out;
    x.low_similarity = gcpo::make_view(other.data(), {R, N}, gcpo::memory_space::device);
    GCPO_CHECK_ERROR(gcpo::host::select_critical_tokens(in, x, o, ws), sc::wrong_memory_space,
                     "`outputs.low_similarity` is a device view");
  }
}

TEST_CASE("selection map operators: preconditions", "[selection]") {
  const std::int64_t R = 2, N = 9;
  std::vector<float> a(R * N, 1.0f), b(R * N), big(100);
  std::vector<u8> m(R * N), m2(R * N);
  using sc = gcpo::status_code;
  using namespace gcpo::host;
  // smoothed_entropy
  GCPO_CHECK_ERROR(smoothed_entropy(cview(a, {R * N}), view(b, {R, N})), sc::invalid_argument,
                   "`entropy` must have rank 2 ([R, N]) but has rank 1");
  GCPO_CHECK_ERROR(smoothed_entropy(gcpo::make_view(reinterpret_cast<const gcpo::float16*>(a.data()), {R, N}), view(b, {R, N})),
                   sc::unsupported_dtype, "`entropy.dtype` is float16; expected one of: float32");
  GCPO_CHECK_ERROR(smoothed_entropy(cview(a, {R, N}), view(b, {R, N - 1})), sc::invalid_argument,
                   "`smoothed.shape[1]` (8) must equal N (9)");
  GCPO_CHECK_ERROR(smoothed_entropy(cview(a, {R, N}), view(b, {1, N})), sc::invalid_argument, "`smoothed.shape[0]` (1) must equal R (2)");
  GCPO_CHECK_ERROR(smoothed_entropy(gcpo::make_strided_view(static_cast<const float*>(big.data()), {R, N}, {10, 1}), view(b, {R, N})),
                   sc::invalid_argument, "`entropy` must be contiguous");
  GCPO_CHECK_ERROR(smoothed_entropy(cview(a, {R, N}), view(a, {R, N})), sc::aliasing, "`smoothed` shall not overlap `entropy`");
  GCPO_CHECK_ERROR(smoothed_entropy(cview(a, {R, N}), gcpo::make_view(b.data(), {R, N}, gcpo::memory_space::device)),
                   sc::wrong_memory_space, "`smoothed` is a device view but this operator needs host memory");
  GCPO_CHECK_ERROR(smoothed_entropy(cview(a, {1, 10}), view(b, {1, 10})), sc::invalid_argument,
                   "`options.grid` was not given and `entropy.shape[1]` (N = 10) is not a perfect square: give height and width");
  GCPO_CHECK_ERROR(smoothed_entropy(cview(a, {1, 10}), view(b, {1, 10}), opts(2, 4, .1, .1, .1, .1, .8)), sc::invalid_argument,
                   "`options.grid` height * width (2 * 4 = 8) must equal `entropy.shape[1]` (N = 10)");
  GCPO_CHECK_ERROR(smoothed_entropy(cview(a, {1, 10}), view(b, {1, 10}), opts(0, 10, .1, .1, .1, .1, .8)), sc::invalid_argument,
                   "`options.grid` (0 x 10) must have height >= 1 and width >= 1");
  // entropy_gradient
  GCPO_CHECK_ERROR(entropy_gradient(cview(a, {R, N}), view(m, {R, N})), sc::unsupported_dtype,
                   "`gradient.dtype` is uint8; expected one of: float32");
  GCPO_CHECK_ERROR(entropy_gradient(cview(a, {R, N}), gcpo::make_view(a.data() + 3, {R, N - 3})), sc::invalid_argument,
                   "`gradient.shape[1]` (6) must equal N (9)");
  GCPO_CHECK_ERROR(entropy_gradient(cview(big, {R, N}), gcpo::make_view(big.data() + 3, {R, N})), sc::aliasing,
                   "`gradient` shall not overlap `smoothed`");
  GCPO_CHECK_ERROR(entropy_gradient(cview(a, {1, 10}), view(b, {1, 10})), sc::invalid_argument, "`smoothed.shape[1]` (N = 10)");
  // gradient_topk
  GCPO_CHECK_ERROR(gradient_topk(cview(a, {R, N}), view(b, {R, N})), sc::unsupported_dtype, "`mask.dtype` is float32; expected one of: uint8");
  GCPO_CHECK_ERROR(gradient_topk(cview(m, {R, N}), view(m2, {R, N})), sc::unsupported_dtype, "`gradient.dtype` is uint8");
  GCPO_CHECK_ERROR(gradient_topk(cview(a, {R, N}), view(m, {R, N}), opts(3, 3, .1, 1.5, .1, .1, .8)), sc::invalid_argument,
                   "`options.gradient_frac` (1.5) must be in [0, 1]");
  GCPO_CHECK_ERROR(gradient_topk(cview(a, {R, N}), view(m, {R, N}), opts(3, 3, std::nan(""), .1, .1, .1, .8)), sc::invalid_argument,
                   "`options.initial_frac` (nan) must be in [0, 1]");
  GCPO_CHECK_ERROR(gradient_topk(cview(a, {R, N}), view(m, {R, N}), opts(3, 3, .1, .1, .1, .6, .99)), sc::invalid_argument,
                   "= [5, 13) must lie within N (9)");
  GCPO_CHECK_ERROR(gradient_topk(cview(a, {R, N}), view(m, {R, N}), opts(3, 3, .1, .1, .1, -1, .5)), sc::invalid_argument,
                   "`options.window_start_frac` (-1) must be in [0, 1]");
  GCPO_CHECK_ERROR(gradient_topk(cview(a, {R, N}), view(m, {R, N}), opts(3, 3, .1, .1, .1, .1, 2)), sc::invalid_argument,
                   "`options.window_frac` (2) must be in [0, 1]");
  GCPO_CHECK_ERROR(gradient_topk(cview(a, {1, 10}), view(m, {1, 10})), sc::invalid_argument,
                   "`options.grid` was not given and N (N = 10) is not a perfect square");
  // low_similarity_mask
  GCPO_CHECK_ERROR(low_similarity_mask(cview(a, {R, N}), cview(a, {R, N}), view(m, {R, N})), sc::unsupported_dtype,
                   "`exclude.dtype` is float32; expected one of: uint8");
  GCPO_CHECK_ERROR(low_similarity_mask(cview(a, {R, N}), cview(m2, {1, N}), view(m, {R, N})), sc::invalid_argument,
                   "`exclude.shape[0]` (1) must equal `similarity.shape[0]` (2)");
  GCPO_CHECK_ERROR(low_similarity_mask(cview(a, {R, N}), cview(m, {R, N}), view(m, {R, N})), sc::aliasing,
                   "`mask` shall not overlap `exclude`");
  GCPO_CHECK_ERROR(low_similarity_mask(cview(a, {R, N}), {}, gcpo::make_view(reinterpret_cast<u8*>(a.data()), {R, N})), sc::aliasing,
                   "`mask` shall not overlap `similarity`");
  GCPO_CHECK_ERROR(low_similarity_mask(cview(a, {R, N}), {}, view(m, {R, N}), opts(3, 3, .1, .1, 1.01, .1, .8)), sc::invalid_argument,
                   "`options.similarity_frac` (1.01) must be in [0, 1]");
  // initial_mask
  GCPO_CHECK_ERROR(initial_mask(view(b, {R, N})), sc::unsupported_dtype, "`mask.dtype` is float32; expected one of: uint8");
  GCPO_CHECK_ERROR(initial_mask(view(m, {R * N})), sc::invalid_argument, "`mask` must have rank 2 ([R, N]) but has rank 1");
  GCPO_CHECK_ERROR(initial_mask(gcpo::tensor_view{}), sc::invalid_argument, "`mask` is required but was not given");
  GCPO_CHECK_ERROR(initial_mask(view(m, {R, N}), opts(3, 3, 2.0, .1, .1, .1, .8)), sc::invalid_argument,
                   "`options.initial_frac` (2) must be in [0, 1]");
  // union_mask
  std::vector<std::int32_t> counts(R);
  GCPO_CHECK_ERROR(union_mask(cview(m, {R, N}), cview(m2, {R, N - 1}), {}, view(b, {R, N}), {}), sc::invalid_argument,
                   "`b.shape[1]` (8) must equal N (9)");
  GCPO_CHECK_ERROR(union_mask(cview(m, {R, N}), cview(m2, {R, N}), cview(a, {R, N}), view(m, {R, N}), {}), sc::unsupported_dtype,
                   "`c.dtype` is float32; expected one of: uint8");
  std::vector<u8> out(R * N + 1);
  GCPO_CHECK_ERROR(union_mask(cview(out, {R, N}), cview(m2, {R, N}), {}, gcpo::make_view(out.data() + 1, {R, N}), {}), sc::aliasing,
                   "`critical` shall not overlap `a` unless it is exactly `a` (in place)");
  GCPO_CHECK_ERROR(union_mask(cview(m, {R, N}), cview(m2, {R, N}), {}, view(out, {R, N}), gcpo::make_view(counts.data(), {R + 1})),
                   sc::invalid_argument, "`counts.shape[0]` (3) must equal `a.shape[0]` (2)");
  GCPO_CHECK_ERROR(union_mask(cview(m, {R, N}), cview(m2, {R, N}), {}, view(out, {R, N}),
                              gcpo::make_view(reinterpret_cast<std::int64_t*>(counts.data()), {1})),
                   sc::unsupported_dtype, "`counts.dtype` is int64; expected one of: int32");
  GCPO_CHECK_ERROR(union_mask(cview(m, {R, N}), cview(m2, {R, N}), {}, view(out, {R, N}),
                              gcpo::make_view(reinterpret_cast<std::int32_t*>(out.data()), {R})),
                   sc::aliasing, "`counts` shall not overlap `critical`");
  GCPO_CHECK_ERROR(union_mask(cview(m, {R, N}), cview(m2, {R, N}), {}, view(out, {R, N}),
                              gcpo::make_view(reinterpret_cast<std::int32_t*>(m2.data()), {R})),
                   sc::aliasing, "`counts` shall not overlap `b`");
}

TEST_CASE("selection: empty batches (null data) are valid and write nothing", "[selection]") {
  // R = 0 with empty vectors: the views have null data; N = 0 with R = 2: every count is 0
  std::vector<float> f;
  std::vector<u8> m;
  std::vector<std::int32_t> c;
  gcpo::selection_options o;
  o.grid = {2, 2};
  using namespace gcpo::host;
  GCPO_REQUIRE_OK(initial_mask(gcpo::make_view(m.data(), {0, 4}), o));
  GCPO_REQUIRE_OK(smoothed_entropy(gcpo::make_view(f.data(), {0, 4}), gcpo::make_view(f.data(), {0, 4}), o));
  GCPO_REQUIRE_OK(entropy_gradient(gcpo::make_view(f.data(), {0, 4}), gcpo::make_view(f.data(), {0, 4}), o));
  GCPO_REQUIRE_OK(gradient_topk(gcpo::make_view(f.data(), {0, 4}), gcpo::make_view(m.data(), {0, 4}), o));
  GCPO_REQUIRE_OK(low_similarity_mask(gcpo::make_view(f.data(), {0, 4}), {}, gcpo::make_view(m.data(), {0, 4}), o));
  GCPO_REQUIRE_OK(union_mask(gcpo::make_view(m.data(), {0, 4}), gcpo::make_view(m.data(), {0, 4}), {}, gcpo::make_view(m.data(), {0, 4}),
                             gcpo::make_view(c.data(), {0})));
  gcpo::selection_inputs in;
  in.entropy = gcpo::make_view(f.data(), {0, 4});
  in.similarity = gcpo::make_view(f.data(), {0, 4});
  gcpo::selection_outputs out;
  out.critical = gcpo::make_view(m.data(), {0, 4});
  out.counts = gcpo::make_view(c.data(), {0});
  host_workspace ws(gcpo::select_critical_tokens_workspace_bytes(0, 4));
  GCPO_REQUIRE_OK(select_critical_tokens(in, out, o, ws.get()));

  std::vector<float> e(2);
  std::vector<std::int32_t> counts{-1, -1};
  in.entropy = gcpo::make_view(e.data(), {2, 0});
  in.similarity = gcpo::make_view(e.data() + 1, {2, 0});
  out.critical = gcpo::make_view(m.data(), {2, 0});
  out.counts = view(counts, {2});
  o.grid = {};
  host_workspace ws0(gcpo::select_critical_tokens_workspace_bytes(2, 0));
  GCPO_REQUIRE_OK(select_critical_tokens(in, out, o, ws0.get()));
  CHECK(counts == std::vector<std::int32_t>{0, 0});
  GCPO_REQUIRE_OK(gradient_topk(gcpo::make_view(e.data(), {2, 0}), gcpo::make_view(m.data(), {2, 0}), o));
}
