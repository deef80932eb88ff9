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

/// token_stats on the device through run_checked: the entropy, log-prob and lse [R, N] of
/// `logits` [R, N, V] as host bytes (outs[0], outs[1], outs[2]).
std::vector<std::vector<unsigned char>> device_token_stats(gcpo::const_tensor_view logits, gcpo::const_tensor_view tokens,
                                                           const gcpo::token_stats_options& opt) {
  const std::int64_t R = logits.shape[0], N = logits.shape[1];
  device_buffer<float> d_ent(R * N), d_lp(R * N), d_lse(R * N);
  return run_checked(
      [&](cudaStream_t s) {
        return gcpo::cuda::token_stats(logits, tokens, gcpo::make_device_view(d_ent.get(), {R, N}),
                                       gcpo::make_device_view(d_lp.get(), {R, N}),
                                       gcpo::make_device_view(d_lse.get(), {R, N}), opt, s);
      },
      {out(d_ent), out(d_lp), out(d_lse)});
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
  const auto outs = device_token_stats(strided(d_logits.get(), {R, N, V}, {l.s0, l.s1, 1}, device),
                                       gcpo::make_device_view(d_tokens.get(), {R, N}), opt);
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

// --- the log2-domain kernels (issue 14): non-finite rows, grid shapes, 16-bit gradients -----------

namespace {

/// The spec's statistics of one row in float64, from its definitions (section 2): a NaN or a
/// +inf logit makes all three NaN; a row of only -inf has lse = -inf and NaN entropy and
/// log-prob; -inf logits have probability 0. Independent of both twins.
struct reference_stats {
  double lse, entropy, logprob;
};
reference_stats reference_row(const std::vector<float>& x, double temperature, std::int64_t k) {
  const double inf = std::numeric_limits<double>::infinity(), nan = std::numeric_limits<double>::quiet_NaN();
  double m = -inf;
  for (const float v : x) {
    if (std::isnan(v) || v == std::numeric_limits<float>::infinity()) return {nan, nan, nan};
    m = std::max(m, static_cast<double>(v) / temperature);
  }
  if (m == -inf) return {-inf, nan, nan};
  double s = 0.0, t = 0.0;
  for (const float v : x) {
    if (std::isinf(v)) continue;
    const double d = static_cast<double>(v) / temperature - m;
    s += std::exp(d);
    t += std::exp(d) * d;
  }
  const double lse = m + std::log(s);
  return {lse, std::log(s) - t / s, static_cast<double>(x[static_cast<std::size_t>(k)]) / temperature - lse};
}

/// Runs the CUDA forward on rows `x` ([rows, V] floats, stored as T `offset` elements past a
/// 256-byte boundary) and checks every output against reference_row (and the host twin).
template <class T>
void check_rows_against_reference(const std::vector<std::vector<float>>& rows_f, const std::vector<std::int32_t>& tokens,
                                  std::int64_t R, std::int64_t N, std::size_t offset, float temperature) {
  const std::int64_t V = static_cast<std::int64_t>(rows_f[0].size());
  INFO("dtype=" << gcpo::to_string(gcpo::dtype_of<T>::value) << " R=" << R << " N=" << N << " V=" << V
                << " offset=" << offset << " T=" << temperature);
  std::vector<float> flat;
  for (const auto& r : rows_f) flat.insert(flat.end(), r.begin(), r.end());
  const std::vector<T> logits = narrow<T>(flat);
  const std::vector<float> stored = widen(logits);  // what the kernel sees
  std::vector<float> want_lse(R * N), want_ent(R * N), want_lp(R * N);
  for (std::int64_t i = 0; i < R * N; ++i) {
    const std::vector<float> row(stored.begin() + i * V, stored.begin() + (i + 1) * V);
    const reference_stats st = reference_row(row, temperature, tokens[static_cast<std::size_t>(i)]);
    want_lse[i] = static_cast<float>(st.lse);
    want_ent[i] = static_cast<float>(st.entropy);
    want_lp[i] = static_cast<float>(st.logprob);
  }
  gcpo::token_stats_options opt;
  opt.temperature = temperature;
  std::vector<float> h_ent(R * N), h_lp(R * N), h_lse(R * N);
  GCPO_OK(gcpo::host::token_stats(gcpo::make_view(logits.data(), {R, N, V}), gcpo::make_view(tokens.data(), {R, N}),
                                  gcpo::make_view(h_ent.data(), {R, N}), gcpo::make_view(h_lp.data(), {R, N}),
                                  gcpo::make_view(h_lse.data(), {R, N}), opt));
  device_buffer<T> d_logits(logits, offset);
  device_buffer<std::int32_t> d_tok(tokens);
  const auto outs = device_token_stats(gcpo::make_device_view(d_logits.get(), {R, N, V}),
                                       gcpo::make_device_view(d_tok.get(), {R, N}), opt);
  // NaN must be NaN and an infinity the same infinity (compare's rule); finite values within
  // the spec's tolerance of the float64 definition.
  check_close(as<float>(outs[0]), want_ent, value_atol, value_rtol, "entropy vs float64");
  check_close(as<float>(outs[1]), want_lp, value_atol, value_rtol, "logprob vs float64");
  check_close(as<float>(outs[2]), want_lse, value_atol, value_rtol, "lse vs float64");
  check_close(as<float>(outs[0]), h_ent, value_atol, value_rtol, "entropy vs host");
  check_close(as<float>(outs[1]), h_lp, value_atol, value_rtol, "logprob vs host");
  check_close(as<float>(outs[2]), h_lse, value_atol, value_rtol, "lse vs host");
}

template <class T>
void check_nonfinite_rows(std::int64_t V, std::size_t offset, std::uint64_t seed) {
  const float inf = std::numeric_limits<float>::infinity(), nan = std::numeric_limits<float>::quiet_NaN();
  float neg_nan;
  const std::uint32_t neg_nan_bits = 0xffc00000u;  // x86's default NaN (0/0): sign bit set
  std::memcpy(&neg_nan, &neg_nan_bits, 4);
  rng g(seed);
  auto normal_row = [&] {
    std::vector<float> r(static_cast<std::size_t>(V));
    for (auto& x : r) x = g.normal(0.0f, 2.0f);
    return r;
  };
  auto filled = [&](float v) { return std::vector<float>(static_cast<std::size_t>(V), v); };
  const std::size_t last = static_cast<std::size_t>(V - 1), mid = static_cast<std::size_t>(V / 2);
  std::vector<std::vector<float>> rows;
  std::vector<std::int32_t> tokens;
  auto add = [&](std::vector<float> r, std::int64_t tok) {
    rows.push_back(std::move(r));
    tokens.push_back(static_cast<std::int32_t>(tok));
  };
  add(filled(-inf), 0);  // all -inf: lse -inf, NaN entropy and log-prob
  { auto r = normal_row(); r[mid] = nan; add(r, 1); }          // a NaN in the middle
  { auto r = normal_row(); r[mid] = inf; add(r, 0); }          // a single +inf after finite maxima
  { auto r = normal_row(); r[last] = nan; add(r, 0); }         // a NaN at the end (the scalar tail when V leaves one)
  { auto r = normal_row(); r[0] = nan; add(r, last); }         // a NaN first (the scalar head when misaligned)
  { auto r = filled(-inf); r[mid] = nan; add(r, 0); }          // NaN among -inf only: NaN, not the -inf row
  { auto r = filled(-inf); r[last] = inf; add(r, last); }      // +inf among -inf only
  { auto r = normal_row(); r[0] = inf; add(r, mid); }          // +inf as the very first maximum
  { auto r = normal_row(); r[mid] = neg_nan; add(r, 0); }      // a NaN with its sign bit set
  { auto r = filled(-inf); r[last] = 1.5f; add(r, last); }     // one finite logit, last: entropy 0, log-prob 0
  { auto r = normal_row(); r[mid] = -inf; add(r, mid); }       // the token's logit is -inf: log-prob -inf
  { auto r = normal_row(); r[3 % V] = -inf; r[last] = -inf; add(r, 2 % V); }  // an ordinary row with -inf logits
  // 12 rows as R = 3, N = 4 (the warp kernel's last block has 4 of its 8 warps idle).
  check_rows_against_reference<T>(rows, tokens, 3, 4, offset, 1.0f);
}

}  // namespace

TEST_CASE("cuda token_stats: NaN, +inf and all -inf rows are decided by the final max and sum",
          "[cuda][token_stats]") {
  GCPO_REQUIRE_CUDA_DEVICE();
  // V: warp rows of scalars, warp rows of vectors with a tail, block rows (16 KB of fp32 or
  // fewer than 4096 rows of >= 1024) with a tail; offsets: aligned, and a scalar head.
  std::uint64_t seed = 9000;
  for (const std::int64_t V : {5, 37, 301, 4102}) {
    for (const std::size_t offset : {std::size_t{0}, std::size_t{1}}) {
      check_nonfinite_rows<float>(V, offset, ++seed);
      check_nonfinite_rows<gcpo::bfloat16>(V, offset, ++seed);
      check_nonfinite_rows<gcpo::float16>(V, offset, ++seed);
    }
  }
}

TEST_CASE("cuda token_stats: row counts that leave warps and blocks idle, against float64", "[cuda][token_stats]") {
  GCPO_REQUIRE_CUDA_DEVICE();
  // Rows not a multiple of the 8 rows of a warp-kernel block, and block-per-row grids of odd
  // sizes (V = 16384: 32 KB bf16 rows, the Janus codebook, one block each), with T != 1.
  struct shape {
    std::int64_t R, N, V;
  };
  std::uint64_t seed = 9500;
  for (const shape sh : {shape{3, 7, 600}, shape{1, 13, 1030}, shape{3, 5, 16384}}) {
    rng g(++seed);
    std::vector<std::vector<float>> rows;
    std::vector<std::int32_t> tokens;
    for (std::int64_t i = 0; i < sh.R * sh.N; ++i) {
      std::vector<float> r(static_cast<std::size_t>(sh.V));
      const float scale = g.uniform(0.6f, 3.6f);
      for (auto& x : r) x = g.normal(0.0f, scale);
      r[static_cast<std::size_t>(g.integer(0, sh.V - 1))] += 12.0f;  // a peaked entry
      rows.push_back(std::move(r));
      tokens.push_back(static_cast<std::int32_t>(g.integer(0, sh.V - 1)));
    }
    check_rows_against_reference<float>(rows, tokens, sh.R, sh.N, 0, 0.8f);
    check_rows_against_reference<gcpo::bfloat16>(rows, tokens, sh.R, sh.N, 0, 1.0f);
  }
}

namespace {

/// 16-bit gradients against float64: each element must be the round-to-nearest-even G of
/// r = (g / T)(onehot - exp(x / T - lse)), unless r lies closer to a rounding tie of G than the
/// float computation's error: about 2^-18.7 of p at |x / T| <= 17 (the roundings of c = log2(e) / T,
/// of lse log2(e) and of the FMA, ex2.approx's 2 ulp), so |g| p 2^-17 (+ |g| 2^-21 for the token's
/// g (1 - p)) is left out;
/// where exp(x / T - lse) < 2^-125 the kernel's ex2.approx.ftz gives a probability of exactly 0.
/// Returns the number of elements that had to be bitwise exact.
template <class G>
std::size_t check_grad_rounding(const std::vector<G>& got, const std::vector<G>& host, const std::vector<float>& x,
                                const std::vector<std::int32_t>& tokens, const std::vector<float>& lse,
                                const std::vector<float>& go, std::int64_t V, float temperature) {
  std::size_t exact = 0, bad = 0, bad_host = 0;
  std::string report;
  for (std::size_t i = 0; i < got.size(); ++i) {
    const std::size_t row = i / static_cast<std::size_t>(V);
    const std::int64_t v = static_cast<std::int64_t>(i % static_cast<std::size_t>(V));
    const double g = static_cast<double>(go[row]) / temperature;
    const double p = std::exp(static_cast<double>(x[i]) / temperature - static_cast<double>(lse[row]));
    const bool tok = v == tokens[row];
    if (!tok && p < std::ldexp(1.0, -125)) {  // flushed: the gradient is a zero
      if (gcpo::to_float(got[i]) != 0.0f) {
        if (bad < 5) report += "element " + std::to_string(i) + ": flushed probability, gradient not 0\n";
        ++bad;
      }
      continue;
    }
    const double r = g * ((tok ? 1.0 : 0.0) - p);
    const G want = gcpo::from_float<G>(static_cast<float>(r));
    // Distance from r to the ties either side of `want`.
    const std::uint16_t wb = want.bits, mag = wb & 0x7fffu, sign = wb & 0x8000u;
    const double w = std::fabs(static_cast<double>(gcpo::to_float(want)));
    double tie = std::numeric_limits<double>::infinity();
    G up{static_cast<std::uint16_t>(sign | (mag + 1u))};
    tie = std::min(tie, std::fabs(std::fabs(r) - 0.5 * (w + std::fabs(static_cast<double>(gcpo::to_float(up))))));
    if (mag > 0) {
      G down{static_cast<std::uint16_t>(sign | (mag - 1u))};
      tie = std::min(tie, std::fabs(std::fabs(r) - 0.5 * (w + std::fabs(static_cast<double>(gcpo::to_float(down))))));
    }
    if (tie <= std::fabs(g) * (p * std::ldexp(1.0, -17) + (tok ? std::ldexp(1.0, -21) : 0.0))) continue;  // near a tie
    ++exact;
    if (got[i].bits != want.bits && !(r == 0.0 && gcpo::to_float(got[i]) == 0.0f)) {
      if (bad < 5) {
        char buf[200];
        std::snprintf(buf, sizeof buf, "element %zu: got 0x%04x (%.9g), round-to-nearest of %.12g is 0x%04x\n", i,
                      got[i].bits, static_cast<double>(gcpo::to_float(got[i])), r, want.bits);
        report += buf;
      }
      ++bad;
    }
    if (p >= std::ldexp(1.0, -120) && got[i].bits != host[i].bits) ++bad_host;  // the host twin rounds the same
  }
  INFO(report << bad << " of " << exact << " elements not rounded to nearest even; " << bad_host
              << " differ from the host twin");
  CHECK(bad == 0);
  CHECK(bad_host == 0);
  return exact;
}

template <class T, class G>
void check_backward_rounding(std::int64_t R, std::int64_t N, std::int64_t V, std::size_t offset, float temperature,
                             std::uint64_t seed) {
  INFO("logits=" << gcpo::to_string(gcpo::dtype_of<T>::value) << " grad=" << gcpo::to_string(gcpo::dtype_of<G>::value)
                 << " R=" << R << " N=" << N << " V=" << V << " offset=" << offset << " T=" << temperature);
  rng g(seed);
  std::vector<float> f(static_cast<std::size_t>(R * N * V));
  for (auto& x : f) x = g.normal(0.0f, 3.0f);
  const std::vector<T> logits = narrow<T>(f);
  const std::vector<float> x = widen(logits);
  std::vector<std::int32_t> tokens(static_cast<std::size_t>(R * N));
  for (auto& t : tokens) t = static_cast<std::int32_t>(g.integer(0, V - 1));
  std::vector<float> go(static_cast<std::size_t>(R * N));
  for (auto& v : go) v = g.uniform(-1.0f, 1.0f);
  gcpo::token_stats_options opt;
  opt.temperature = temperature;
  std::vector<float> lse(static_cast<std::size_t>(R * N));
  GCPO_OK(gcpo::host::token_stats(gcpo::make_view(logits.data(), {R, N, V}), {}, {}, {},
                                  gcpo::make_view(lse.data(), {R, N}), opt));
  std::vector<G> host(static_cast<std::size_t>(R * N * V));
  GCPO_OK(gcpo::host::token_stats_backward(gcpo::make_view(logits.data(), {R, N, V}),
                                           gcpo::make_view(tokens.data(), {R, N}), gcpo::make_view(lse.data(), {R, N}),
                                           gcpo::make_view(go.data(), {R, N}), gcpo::make_view(host.data(), {R, N, V}),
                                           opt));
  device_buffer<T> d_logits(logits, offset);
  device_buffer<std::int32_t> d_tok(tokens);
  device_buffer<float> d_lse(lse), d_go(go);
  device_buffer<G> d_grad(host.size(), offset);  // the same phase: the vector path
  auto outs = run_checked(
      [&](cudaStream_t s) {
        return gcpo::cuda::token_stats_backward(
            gcpo::make_device_view(d_logits.get(), {R, N, V}), gcpo::make_device_view(d_tok.get(), {R, N}),
            gcpo::make_device_view(d_lse.get(), {R, N}), gcpo::make_device_view(d_go.get(), {R, N}),
            gcpo::make_device_view(d_grad.get(), {R, N, V}), opt, s);
      },
      {out(d_grad)});
  const std::size_t exact = check_grad_rounding(as<G>(outs[0]), host, x, tokens, lse, go, V, temperature);
  CHECK(exact > host.size() * 9 / 10);  // the ties left out are few
}

}  // namespace

TEST_CASE("cuda token_stats_backward: 16-bit gradients are rounded to nearest even, as the host twin",
          "[cuda][token_stats]") {
  GCPO_REQUIRE_CUDA_DEVICE();
  std::uint64_t seed = 9900;
  // Warp rows (vectors and a tail, aligned or with a scalar head) and block rows.
  for (const std::int64_t V : {37, 301, 4102}) {
    for (const std::size_t offset : {std::size_t{0}, std::size_t{3}}) {
      check_backward_rounding<float, gcpo::bfloat16>(2, 3, V, offset, 1.0f, ++seed);
      check_backward_rounding<gcpo::bfloat16, gcpo::bfloat16>(2, 3, V, offset, 0.7f, ++seed);
      check_backward_rounding<gcpo::float16, gcpo::float16>(2, 3, V, offset, 1.0f, ++seed);
      check_backward_rounding<gcpo::bfloat16, gcpo::float16>(1, 5, V, offset, 1.3f, ++seed);
    }
  }
}

TEST_CASE("cuda token_stats: Janus shapes against the host twin (GPU only)", "[cuda][token_stats][slow]") {
  GCPO_REQUIRE_REAL_GPU();
  struct shape {
    std::int64_t R, N;
  };
  for (const shape sh : {shape{8, 576}, shape{32, 1024}})
    check_forward<gcpo::bfloat16, std::int64_t>({sh.R, sh.N, 16384}, 0, 0, 0, 1.0f, 77 + sh.R + sh.N);
  check_forward<float, std::int64_t>({8, 576, 16384}, 0, 0, 0, 1.0f, 78);
  check_backward<gcpo::bfloat16, gcpo::bfloat16, std::int64_t>({8, 576, 16384}, 0, 0, 0, 0, 1.0f, 79);
}
