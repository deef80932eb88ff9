// CUDA token_stats and token_stats_backward against the host twins: odd, prime and
// warp/block-boundary sizes, every dtype and index type, strided rows, misaligned pointers,
// temperatures, -inf / NaN / +inf / huge logits, in place, out-of-range tokens; every run
// deterministic, poisoned first and replayed from a CUDA graph.
#include "cuda_support.hpp"

namespace {

using namespace gcpo_cuda_test;

struct shape3 {
  std::int64_t R, N, V;
};

// Sizes either side of a warp (32), of a 16-byte vector, of the block (256 threads x 4 vectors),
// primes, the block-per-row path (R*N < 4096, V >= 1024) and the warp-per-row path with long rows.
// Simulated, the same paths with fewer elements (the warp-per-row path with long rows still has
// 4097 rows of 1030 logits).
const std::vector<shape3>& shapes() {
  static const std::vector<shape3> s = gpu_or_sim<std::vector<shape3>>(
      {{1, 1, 1},    {2, 3, 7},     {3, 5, 31},    {2, 4, 32},     {2, 3, 33},
       {1, 7, 127},  {2, 2, 255},   {1, 3, 257},   {2, 5, 1000},   {1, 2, 1031},
       {3, 3, 4099}, {1, 1, 16384}, {2, 1, 65537}, {5, 821, 1024}, {1, 4099, 37}},
      {{1, 1, 1},    {2, 3, 7},     {3, 5, 31},    {2, 4, 32},     {2, 3, 33},
       {1, 7, 127},  {2, 2, 255},   {1, 3, 257},   {2, 5, 1000},   {1, 2, 1031},
       {1, 3, 4099}, {1, 1, 16384}, {1, 1, 65537}, {1, 4097, 1030}, {1, 4099, 37}});
  return s;
}

struct layout {
  std::int64_t s0, s1, elems;
};
layout make_layout(const shape3& sh, std::int64_t pad1, std::int64_t pad0) {
  layout l;
  l.s1 = sh.V + pad1;
  l.s0 = sh.N * l.s1 + pad0;
  l.elems = (sh.R - 1) * l.s0 + (sh.N - 1) * l.s1 + sh.V;
  return l;
}

/// Random logits: normal with a scale, some -inf, some large.
template <class T>
std::vector<T> random_logits(rng& g, std::int64_t n, float scale, double p_neg_inf, double p_large) {
  std::vector<float> f(static_cast<std::size_t>(n));
  for (auto& x : f) {
    x = g.normal(0.0f, scale);
    if (g.chance(p_neg_inf)) x = -std::numeric_limits<float>::infinity();
    else if (g.chance(p_large)) x = g.uniform(-30.0f, 30.0f);
  }
  return narrow<T>(f);
}

template <class I>
std::vector<I> random_tokens(rng& g, std::int64_t n, std::int64_t V) {
  std::vector<I> t(static_cast<std::size_t>(n));
  for (auto& x : t) x = static_cast<I>(g.integer(0, V - 1));
  return t;
}

template <class T, class I>
void check_forward(const shape3& sh, std::int64_t pad1, std::int64_t pad0, std::size_t offset, float temperature,
                   std::uint64_t seed) {
  INFO("R=" << sh.R << " N=" << sh.N << " V=" << sh.V << " dtype=" << gcpo::to_string(gcpo::dtype_of<T>::value)
            << " index=" << gcpo::to_string(gcpo::dtype_of<I>::value) << " pad1=" << pad1 << " pad0=" << pad0
            << " offset=" << offset << " T=" << temperature << " seed=" << seed);
  rng g(seed);
  const layout l = make_layout(sh, pad1, pad0);
  const std::vector<T> logits = random_logits<T>(g, l.elems, 2.0f, 0.02, 0.01);
  const std::vector<I> tokens = random_tokens<I>(g, sh.R * sh.N, sh.V);
  const std::int64_t R = sh.R, N = sh.N, V = sh.V;
  gcpo::token_stats_options opt;
  opt.temperature = temperature;

  std::vector<float> ent(R * N), lp(R * N), lse(R * N);
  GCPO_OK(gcpo::host::token_stats(strided(logits.data(), {R, N, V}, {l.s0, l.s1, 1}, host),
                                  gcpo::make_view(tokens.data(), {R, N}), gcpo::make_view(ent.data(), {R, N}),
                                  gcpo::make_view(lp.data(), {R, N}), gcpo::make_view(lse.data(), {R, N}), opt));

  device_buffer<T> d_logits(logits, offset);
  device_buffer<I> d_tokens(tokens);
  device_buffer<float> d_ent(R * N), d_lp(R * N), d_lse(R * N);
  auto outs = run_checked(
      [&](cudaStream_t s) {
        return gcpo::cuda::token_stats(strided(d_logits.get(), {R, N, V}, {l.s0, l.s1, 1}, device),
                                       gcpo::make_device_view(d_tokens.get(), {R, N}),
                                       gcpo::make_device_view(d_ent.get(), {R, N}),
                                       gcpo::make_device_view(d_lp.get(), {R, N}),
                                       gcpo::make_device_view(d_lse.get(), {R, N}), opt, s);
      },
      {out(d_ent), out(d_lp), out(d_lse)});
  check_close(as<float>(outs[0]), ent, value_atol, value_rtol, "entropy");
  check_close(as<float>(outs[1]), lp, value_atol, value_rtol, "logprob");
  check_close(as<float>(outs[2]), lse, value_atol, value_rtol, "lse");
}

/// Tolerance of a gradient stored as G: the spec's, or one unit in G's last place.
template <class G>
double grad_rtol_for() {
  return sizeof(G) == 4 ? grad_rtol : (std::is_same<G, gcpo::bfloat16>::value ? 8e-3 : 1.1e-3);
}

template <class T, class G, class I>
void check_backward(const shape3& sh, std::int64_t pad1, std::int64_t pad0, std::size_t offset, std::size_t goffset,
                    float temperature, std::uint64_t seed) {
  INFO("R=" << sh.R << " N=" << sh.N << " V=" << sh.V << " logits=" << gcpo::to_string(gcpo::dtype_of<T>::value)
            << " grad=" << gcpo::to_string(gcpo::dtype_of<G>::value) << " index="
            << gcpo::to_string(gcpo::dtype_of<I>::value) << " pad1=" << pad1 << " pad0=" << pad0 << " offset="
            << offset << " goffset=" << goffset << " T=" << temperature << " seed=" << seed);
  rng g(seed);
  const layout l = make_layout(sh, pad1, pad0);
  const std::int64_t R = sh.R, N = sh.N, V = sh.V;
  const std::vector<T> logits = random_logits<T>(g, l.elems, 2.0f, 0.02, 0.0);
  const std::vector<I> tokens = random_tokens<I>(g, R * N, V);
  std::vector<float> go(R * N);
  for (auto& x : go) x = g.uniform(-0.01f, 0.01f);
  gcpo::token_stats_options opt;
  opt.temperature = temperature;
  std::vector<float> lse(R * N);
  GCPO_OK(gcpo::host::token_stats(strided(logits.data(), {R, N, V}, {l.s0, l.s1, 1}, host), {}, {}, {},
                                  gcpo::make_view(lse.data(), {R, N}), opt));
  // The gradient in a layout of its own (dense rows, its own offset).
  std::vector<G> want(static_cast<std::size_t>(R * N * V));
  GCPO_OK(gcpo::host::token_stats_backward(strided(logits.data(), {R, N, V}, {l.s0, l.s1, 1}, host),
                                           gcpo::make_view(tokens.data(), {R, N}), gcpo::make_view(lse.data(), {R, N}),
                                           gcpo::make_view(go.data(), {R, N}), gcpo::make_view(want.data(), {R, N, V}),
                                           opt));
  device_buffer<T> d_logits(logits, offset);
  device_buffer<I> d_tokens(tokens);
  device_buffer<float> d_lse(lse), d_go(go);
  device_buffer<G> d_grad(want.size(), goffset);
  auto outs = run_checked(
      [&](cudaStream_t s) {
        return gcpo::cuda::token_stats_backward(
            strided(d_logits.get(), {R, N, V}, {l.s0, l.s1, 1}, device), gcpo::make_device_view(d_tokens.get(), {R, N}),
            gcpo::make_device_view(d_lse.get(), {R, N}), gcpo::make_device_view(d_go.get(), {R, N}),
            gcpo::make_device_view(d_grad.get(), {R, N, V}), opt, s);
      },
      {out(d_grad)});
  check_close(widen(as<G>(outs[0])), widen(want), grad_atol, grad_rtol_for<G>(), "grad_logits");
}

}  // namespace

TEST_CASE("cuda token_stats: smoke (vector and scalar paths, warp and block rows)", "[cuda][token_stats]") {
  GCPO_REQUIRE_CUDA_DEVICE();
  check_forward<float, std::int32_t>({2, 3, 37}, 1, 2, 1, 0.7f, 11);
  check_forward<gcpo::bfloat16, std::int64_t>({1, 2, 1031}, 0, 0, 3, 1.0f, 12);
  check_forward<gcpo::float16, std::int32_t>({2, 2, 260}, 0, 0, 0, 1.0f, 13);
  check_backward<float, gcpo::bfloat16, std::int32_t>({2, 3, 37}, 1, 3, 1, 1, 1.0f, 14);
  check_backward<gcpo::bfloat16, float, std::int64_t>({1, 2, 1031}, 0, 0, 0, 0, 1.3f, 15);
  check_backward<gcpo::float16, gcpo::float16, std::int32_t>({2, 2, 260}, 8, 0, 2, 0, 1.0f, 16);
}

TEST_CASE("cuda token_stats: random shapes, dtypes, strides, offsets", "[cuda][token_stats][slow]") {
  GCPO_REQUIRE_CUDA_DEVICE();
  std::uint64_t seed = 1000;
  for (const shape3& sh : shapes()) {
    const std::int64_t pad1 = sh.V % 3 == 0 ? 0 : (sh.V % 3 == 1 ? 1 : 8);
    // Simulated, the shapes of 4096 rows and more (513 blocks) run three of the six layouts.
    const bool all = !simulated || sh.R * sh.N < 4096;
    check_forward<float, std::int32_t>(sh, 0, 0, 0, 1.0f, ++seed);
    if (all) check_forward<float, std::int64_t>(sh, pad1, 5, 1, 0.7f, ++seed);
    check_forward<gcpo::bfloat16, std::int32_t>(sh, pad1, 0, 3, 1.0f, ++seed);
    if (all) check_forward<gcpo::bfloat16, std::int64_t>(sh, 0, 3, 0, 1.3f, ++seed);
    if (all) check_forward<gcpo::float16, std::int32_t>(sh, 0, 0, 1, 1.0f, ++seed);
    check_forward<gcpo::float16, std::int64_t>(sh, pad1, 1, 0, 0.5f, ++seed);
  }
}

TEST_CASE("cuda token_stats: optional outputs, no tokens", "[cuda][token_stats]") {
  GCPO_REQUIRE_CUDA_DEVICE();
  rng g(7);
  const std::int64_t R = 3, N = 17, V = 300;
  const std::vector<float> logits = random_logits<float>(g, R * N * V, 3.0f, 0.0, 0.0);
  std::vector<float> ent(R * N);
  GCPO_OK(gcpo::host::token_stats(gcpo::make_view(logits.data(), {R, N, V}), {}, gcpo::make_view(ent.data(), {R, N}),
                                  {}, {}));
  device_buffer<float> d_logits(logits), d_ent(R * N);
  auto outs = run_checked(
      [&](cudaStream_t s) {
        return gcpo::cuda::token_stats(gcpo::make_device_view(d_logits.get(), {R, N, V}), {},
                                       gcpo::make_device_view(d_ent.get(), {R, N}), {}, {}, {}, s);
      },
      {out(d_ent)});
  check_close(as<float>(outs[0]), ent, value_atol, value_rtol, "entropy");
}

TEST_CASE("cuda token_stats: -inf, NaN, +inf and huge logits", "[cuda][token_stats]") {
  GCPO_REQUIRE_CUDA_DEVICE();
  const float inf = std::numeric_limits<float>::infinity(), nan = std::numeric_limits<float>::quiet_NaN();
  for (const std::int64_t V : {5, 40, 300, 2000}) {
    INFO("V=" << V);
    rng g(static_cast<std::uint64_t>(V));
    const std::int64_t R = 2, N = 6;
    std::vector<float> logits(R * N * V);
    for (auto& x : logits) x = g.normal(0.0f, 1.0f);
    auto row = [&](std::int64_t i) { return logits.data() + i * V; };
    for (std::int64_t v = 0; v < V; ++v) row(0)[v] = -inf;                 // all -inf
    row(1)[V / 2] = nan;                                                   // one NaN
    row(2)[V - 1] = inf;                                                   // one +inf
    for (std::int64_t v = 0; v < V; ++v) row(3)[v] = v % 2 ? 1e4f : -1e4f;  // huge
    for (std::int64_t v = 1; v < V; ++v) row(4)[v] = -inf;                 // one finite
    for (std::int64_t v = 0; v < V; ++v) row(5)[v] = 3.0f;                 // uniform
    for (std::int64_t v = 0; v < V; v += 3) row(7)[v] = -inf;
    std::vector<std::int32_t> tokens(R * N);
    for (std::int64_t i = 0; i < R * N; ++i) tokens[i] = static_cast<std::int32_t>((i * 7) % V);
    tokens[4] = 0;  // the finite entry of row 4
    std::vector<float> ent(R * N), lp(R * N), lse(R * N);
    GCPO_OK(gcpo::host::token_stats(gcpo::make_view(logits.data(), {R, N, V}), gcpo::make_view(tokens.data(), {R, N}),
                                    gcpo::make_view(ent.data(), {R, N}), gcpo::make_view(lp.data(), {R, N}),
                                    gcpo::make_view(lse.data(), {R, N})));
    device_buffer<float> d_logits(logits), d_ent(R * N), d_lp(R * N), d_lse(R * N);
    device_buffer<std::int32_t> d_tok(tokens);
    auto outs = run_checked(
        [&](cudaStream_t s) {
          return gcpo::cuda::token_stats(gcpo::make_device_view(d_logits.get(), {R, N, V}),
                                         gcpo::make_device_view(d_tok.get(), {R, N}),
                                         gcpo::make_device_view(d_ent.get(), {R, N}),
                                         gcpo::make_device_view(d_lp.get(), {R, N}),
                                         gcpo::make_device_view(d_lse.get(), {R, N}), {}, s);
        },
        {out(d_ent), out(d_lp), out(d_lse)});
    check_close(as<float>(outs[0]), ent, value_atol, value_rtol, "entropy");
    check_close(as<float>(outs[1]), lp, value_atol, value_rtol, "logprob");
    check_close(as<float>(outs[2]), lse, value_atol, value_rtol, "lse");
  }
}

TEST_CASE("cuda token_stats: out-of-range tokens give NaN log-probs and zero gradient rows", "[cuda][token_stats]") {
  GCPO_REQUIRE_CUDA_DEVICE();
  const std::int64_t R = 1, N = 3, V = 50;
  std::vector<float> logits(R * N * V, 0.5f);
  std::vector<std::int64_t> tokens{3, -1, 50};
  device_buffer<float> d_logits(logits), d_lp(R * N), d_lse(R * N), d_go(std::vector<float>(R * N, 1.0f)),
      d_grad(R * N * V);
  device_buffer<std::int64_t> d_tok(tokens);
  stream s;
  GCPO_OK(gcpo::cuda::token_stats(gcpo::make_device_view(d_logits.get(), {R, N, V}),
                                  gcpo::make_device_view(d_tok.get(), {R, N}), {},
                                  gcpo::make_device_view(d_lp.get(), {R, N}), gcpo::make_device_view(d_lse.get(), {R, N}),
                                  {}, s));
  d_grad.poison();
  GCPO_OK(gcpo::cuda::token_stats_backward(gcpo::make_device_view(d_logits.get(), {R, N, V}),
                                           gcpo::make_device_view(d_tok.get(), {R, N}),
                                           gcpo::make_device_view(d_lse.get(), {R, N}),
                                           gcpo::make_device_view(d_go.get(), {R, N}),
                                           gcpo::make_device_view(d_grad.get(), {R, N, V}), {}, s));
  GCPO_CUDA_CHECK(cudaStreamSynchronize(s));
  const std::vector<float> lp = d_lp.download(), grad = d_grad.download();
  CHECK(std::fabs(lp[0] - (-std::log(50.0f))) < 1e-5f);
  CHECK(std::isnan(lp[1]));
  CHECK(std::isnan(lp[2]));
  for (std::int64_t v = 0; v < V; ++v) {
    CHECK(grad[V + v] == 0.0f);
    CHECK(grad[2 * V + v] == 0.0f);
  }
  CHECK(std::fabs(grad[3] - (1.0f - 1.0f / 50.0f)) < 1e-6f);
}

TEST_CASE("cuda token_stats_backward: random shapes, dtypes, strides, offsets", "[cuda][token_stats][slow]") {
  GCPO_REQUIRE_CUDA_DEVICE();
  std::uint64_t seed = 5000;
  for (const shape3& sh : shapes()) {
    if (sh.R * sh.N * sh.V > (1 << 22)) continue;
    check_backward<float, float, std::int32_t>(sh, 0, 0, 0, 0, 1.0f, ++seed);
    check_backward<float, gcpo::bfloat16, std::int64_t>(sh, 1, 3, 1, 1, 0.7f, ++seed);   // same phase: vectors
    check_backward<float, gcpo::float16, std::int32_t>(sh, 8, 0, 2, 0, 1.0f, ++seed);    // phases differ: scalar
    check_backward<gcpo::bfloat16, gcpo::bfloat16, std::int32_t>(sh, 0, 1, 3, 0, 1.0f, ++seed);
    check_backward<gcpo::bfloat16, float, std::int64_t>(sh, 0, 0, 0, 0, 1.5f, ++seed);
    check_backward<gcpo::float16, gcpo::float16, std::int64_t>(sh, 2, 0, 0, 2, 1.0f, ++seed);
    check_backward<gcpo::float16, float, std::int32_t>(sh, 0, 0, 5, 1, 1.0f, ++seed);
  }
}

TEST_CASE("cuda token_stats_backward: in place on the logits", "[cuda][token_stats]") {
  GCPO_REQUIRE_CUDA_DEVICE();
  for (const shape3& sh : {shape3{2, 3, 33}, shape3{1, 2, 4099}, shape3{4, 5, 1024}}) {
    INFO("R=" << sh.R << " N=" << sh.N << " V=" << sh.V);
    rng g(static_cast<std::uint64_t>(sh.V));
    const std::int64_t R = sh.R, N = sh.N, V = sh.V;
    const std::vector<gcpo::bfloat16> logits = random_logits<gcpo::bfloat16>(g, R * N * V, 2.0f, 0.0, 0.0);
    const std::vector<std::int32_t> tokens = random_tokens<std::int32_t>(g, R * N, V);
    std::vector<float> go(R * N), lse(R * N);
    for (auto& x : go) x = g.uniform(-0.01f, 0.01f);
    GCPO_OK(gcpo::host::token_stats(gcpo::make_view(logits.data(), {R, N, V}), {}, {}, {},
                                    gcpo::make_view(lse.data(), {R, N})));
    std::vector<gcpo::bfloat16> want = logits;
    GCPO_OK(gcpo::host::token_stats_backward(gcpo::make_view(logits.data(), {R, N, V}),
                                             gcpo::make_view(tokens.data(), {R, N}), gcpo::make_view(lse.data(), {R, N}),
                                             gcpo::make_view(go.data(), {R, N}), gcpo::make_view(want.data(), {R, N, V})));
    device_buffer<gcpo::bfloat16> d_x(logits, 1);
    device_buffer<std::int32_t> d_tok(tokens);
    device_buffer<float> d_lse(lse), d_go(go);
    stream s;
    GCPO_OK(gcpo::cuda::token_stats_backward(gcpo::make_device_view(d_x.get(), {R, N, V}),
                                             gcpo::make_device_view(d_tok.get(), {R, N}),
                                             gcpo::make_device_view(d_lse.get(), {R, N}),
                                             gcpo::make_device_view(d_go.get(), {R, N}),
                                             gcpo::make_device_view(d_x.get(), {R, N, V}), {}, s));
    GCPO_CUDA_CHECK(cudaStreamSynchronize(s));
    check_close(widen(d_x.download()), widen(want), grad_atol, grad_rtol_for<gcpo::bfloat16>(), "grad_logits (in place)");
  }
}

TEST_CASE("cuda token_stats: host views and bad shapes are rejected before any launch", "[cuda][token_stats]") {
  // Validation runs on the host: no device needed.
  std::vector<float> logits(2 * 3 * 4), ent(6);
  const gcpo::status s = gcpo::cuda::token_stats(gcpo::make_view(logits.data(), {2, 3, 4}), {},
                                                 gcpo::make_view(ent.data(), {2, 3}), {}, {}, {}, nullptr);
  CHECK(s.code() == gcpo::status_code::wrong_memory_space);
  const gcpo::status s2 = gcpo::cuda::token_stats(gcpo::make_device_view(logits.data(), {2, 3, 4}), {},
                                                  gcpo::make_device_view(ent.data(), {3, 2}), {}, {}, {}, nullptr);
  CHECK(s2.code() == gcpo::status_code::invalid_argument);
}
