// The cases only a real GPU can run (issue 9): token_stats and its backward with one row per warp
// at Janus-Pro's shapes (V = 16384, R * N >= 4096 rows), and with more than 2^31 logits, so that
// any 32-bit index arithmetic in the kernels would wrap. Every output element is checked against
// the host twin (not only for finiteness). Tagged [large]: device-check's sanitizer stage leaves
// them out (minutes under memcheck); the simulator skips them (GCPO_REQUIRE_REAL_GPU).
//
// The inputs come from a counter-based hash (splitmix64 of the element index), so they can be
// made in parallel in about a second at 2^31 elements; the host twin runs on slices of rows in
// parallel too (it is the same operator: rows are independent).
#include "cuda_support.hpp"

#include <algorithm>
#include <atomic>
#include <thread>

#ifndef GCPO_REQUIRE_REAL_GPU
#define GCPO_REQUIRE_REAL_GPU() GCPO_REQUIRE_CUDA_DEVICE()
#endif

namespace {

using namespace gcpo_cuda_test;

std::uint64_t splitmix64(std::uint64_t x) {
  x += 0x9e3779b97f4a7c15ull;
  x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ull;
  x = (x ^ (x >> 27)) * 0x94d049bb133111ebull;
  return x ^ (x >> 31);
}

/// Runs body(begin, end) over [0, n) split into one contiguous slice per hardware thread.
template <class F>
void parallel_for(std::int64_t n, F body) {
  const std::int64_t workers = std::max<std::int64_t>(1, std::min<std::int64_t>(std::thread::hardware_concurrency(), 32));
  const std::int64_t chunk = (n + workers - 1) / workers;
  std::vector<std::thread> pool;
  for (std::int64_t b = 0; b < n; b += chunk) pool.emplace_back(body, b, std::min(n, b + chunk));
  for (auto& t : pool) t.join();
}

/// Logits: uniform in [-6, 6), one in 64 a spike in [-30, 30), one in 997 -inf.
template <class T>
std::vector<T> hashed_logits(std::int64_t n, std::uint64_t seed) {
  std::vector<T> v(static_cast<std::size_t>(n));
  parallel_for(n, [&](std::int64_t b, std::int64_t e) {
    for (std::int64_t i = b; i < e; ++i) {
      const std::uint64_t h = splitmix64(seed * 0x100000001b3ull + static_cast<std::uint64_t>(i));
      const float u = static_cast<float>(h >> 40) * (1.0f / 16777216.0f);  // [0, 1)
      float x = -6.0f + 12.0f * u;
      if ((h & 63u) == 0) x = -30.0f + 60.0f * u;
      else if (h % 997u == 1) x = -std::numeric_limits<float>::infinity();
      v[static_cast<std::size_t>(i)] = gcpo::from_float<T>(x);
    }
  });
  return v;
}

template <class I>
std::vector<I> hashed_tokens(std::int64_t n, std::int64_t V, std::uint64_t seed) {
  std::vector<I> t(static_cast<std::size_t>(n));
  for (std::int64_t i = 0; i < n; ++i) t[i] = static_cast<I>(splitmix64(seed + static_cast<std::uint64_t>(i)) % V);
  return t;
}

/// |got - want| <= atol + rtol |want| for every element (NaN equals NaN, inf the same inf),
/// counted in parallel; reports the first few mismatches.
template <class G>
void check_close_parallel(const std::vector<G>& got, const std::vector<G>& want, double atol, double rtol,
                          const std::string& what) {
  REQUIRE(got.size() == want.size());
  const std::int64_t n = static_cast<std::int64_t>(got.size());
  std::atomic<std::int64_t> bad{0};
  std::atomic<std::int64_t> first{n};
  parallel_for(n, [&](std::int64_t b, std::int64_t e) {
    std::int64_t local = 0, lfirst = n;
    for (std::int64_t i = b; i < e; ++i) {
      const double g = gcpo::to_float(got[i]), w = gcpo::to_float(want[i]);
      bool good;
      if (std::isnan(w)) good = std::isnan(g);
      else if (std::isinf(w)) good = g == w;
      else good = std::fabs(g - w) <= atol + rtol * std::fabs(w);
      if (!good) {
        if (lfirst == n) lfirst = i;
        ++local;
      }
    }
    bad += local;
    std::int64_t cur = first.load();
    while (lfirst < cur && !first.compare_exchange_weak(cur, lfirst)) {
    }
  });
  std::string report;
  if (bad.load()) {
    for (std::int64_t i = first.load(), shown = 0; i < n && shown < 5; ++i) {
      const double g = gcpo::to_float(got[i]), w = gcpo::to_float(want[i]);
      if (!(std::isnan(w) ? std::isnan(g) : std::isinf(w) ? g == w : std::fabs(g - w) <= atol + rtol * std::fabs(w))) {
        report += what + "[" + std::to_string(i) + "]: got " + std::to_string(g) + ", expected " + std::to_string(w) + "\n";
        ++shown;
      }
    }
    report += what + ": " + std::to_string(bad.load()) + " of " + std::to_string(n) + " elements off\n";
  }
  INFO(report);
  CHECK(bad.load() == 0);
}

/// Host twin of token_stats over [R, N, V] logits, slices of rollouts in parallel.
template <class T, class I>
void host_forward(const std::vector<T>& logits, const std::vector<I>& tokens, std::int64_t R, std::int64_t N,
                  std::int64_t V, std::vector<float>& ent, std::vector<float>& lp, std::vector<float>& lse) {
  ent.assign(R * N, 0.0f);
  lp.assign(R * N, 0.0f);
  lse.assign(R * N, 0.0f);
  std::atomic<int> failures{0};
  parallel_for(R, [&](std::int64_t b, std::int64_t e) {
    const std::int64_t r = e - b, o = b * N;
    const gcpo::status s = gcpo::host::token_stats(
        gcpo::make_view(logits.data() + o * V, {r, N, V}), gcpo::make_view(tokens.data() + o, {r, N}),
        gcpo::make_view(ent.data() + o, {r, N}), gcpo::make_view(lp.data() + o, {r, N}),
        gcpo::make_view(lse.data() + o, {r, N}));
    if (!s.ok()) ++failures;
  });
  REQUIRE(failures.load() == 0);
}

template <class T, class G, class I>
void host_backward(const std::vector<T>& logits, const std::vector<I>& tokens, const std::vector<float>& lse,
                   const std::vector<float>& go, std::int64_t R, std::int64_t N, std::int64_t V, std::vector<G>& grad) {
  grad.resize(static_cast<std::size_t>(R * N * V));
  std::atomic<int> failures{0};
  parallel_for(R, [&](std::int64_t b, std::int64_t e) {
    const std::int64_t r = e - b, o = b * N;
    const gcpo::status s = gcpo::host::token_stats_backward(
        gcpo::make_view(logits.data() + o * V, {r, N, V}), gcpo::make_view(tokens.data() + o, {r, N}),
        gcpo::make_view(lse.data() + o, {r, N}), gcpo::make_view(go.data() + o, {r, N}),
        gcpo::make_view(grad.data() + o * V, {r, N, V}));
    if (!s.ok()) ++failures;
  });
  REQUIRE(failures.load() == 0);
}

/// token_stats then token_stats_backward on the device at [R, N, V], every output element
/// against the host twin.
template <class T, class G, class I>
void check_large(std::int64_t R, std::int64_t N, std::int64_t V, std::uint64_t seed) {
  INFO("R=" << R << " N=" << N << " V=" << V << " (" << R * N * V << " logits) logits="
            << gcpo::to_string(gcpo::dtype_of<T>::value) << " grad=" << gcpo::to_string(gcpo::dtype_of<G>::value)
            << " index=" << gcpo::to_string(gcpo::dtype_of<I>::value));
  const std::vector<T> logits = hashed_logits<T>(R * N * V, seed);
  const std::vector<I> tokens = hashed_tokens<I>(R * N, V, seed + 1);
  std::vector<float> go(R * N);
  for (std::int64_t i = 0; i < R * N; ++i)
    go[i] = (static_cast<float>(splitmix64(seed + 2 + i) >> 40) / 16777216.0f - 0.5f) * 0.02f;

  std::vector<float> ent, lp, lse;
  host_forward(logits, tokens, R, N, V, ent, lp, lse);

  device_buffer<T> d_logits(logits);
  device_buffer<I> d_tok(tokens);
  device_buffer<float> d_ent(R * N), d_lp(R * N), d_lse(R * N), d_go(go);
  d_ent.poison();
  d_lp.poison();
  d_lse.poison();
  stream s;
  GCPO_OK(gcpo::cuda::token_stats(gcpo::make_device_view(d_logits.get(), {R, N, V}),
                                  gcpo::make_device_view(d_tok.get(), {R, N}),
                                  gcpo::make_device_view(d_ent.get(), {R, N}), gcpo::make_device_view(d_lp.get(), {R, N}),
                                  gcpo::make_device_view(d_lse.get(), {R, N}), {}, s));
  GCPO_CUDA_CHECK(cudaStreamSynchronize(s));
  check_close(d_ent.download(), ent, value_atol, value_rtol, "entropy");
  check_close(d_lp.download(), lp, value_atol, value_rtol, "logprob");
  check_close(d_lse.download(), lse, value_atol, value_rtol, "lse");

  // The backward from the host's lse (the device's was just checked against it).
  std::vector<G> want;
  host_backward<T, G, I>(logits, tokens, lse, go, R, N, V, want);
  device_buffer<float> d_lse_host(lse);
  device_buffer<G> d_grad(want.size());
  d_grad.poison();
  GCPO_OK(gcpo::cuda::token_stats_backward(gcpo::make_device_view(d_logits.get(), {R, N, V}),
                                           gcpo::make_device_view(d_tok.get(), {R, N}),
                                           gcpo::make_device_view(d_lse_host.get(), {R, N}),
                                           gcpo::make_device_view(d_go.get(), {R, N}),
                                           gcpo::make_device_view(d_grad.get(), {R, N, V}), {}, s));
  GCPO_CUDA_CHECK(cudaStreamSynchronize(s));
  const double rtol = sizeof(G) == 4 ? grad_rtol : (std::is_same<G, gcpo::bfloat16>::value ? 8e-3 : 1.1e-3);
  check_close_parallel(d_grad.download(), want, grad_atol, rtol, "grad_logits");
}

}  // namespace

TEST_CASE("cuda large: token_stats one row per warp at V = 16384, 4608 rows, element by element",
          "[cuda][large][token_stats]") {
  GCPO_REQUIRE_REAL_GPU();
  check_large<float, float, std::int64_t>(8, 576, 16384, 101);
  check_large<gcpo::bfloat16, gcpo::bfloat16, std::int32_t>(8, 576, 16384, 102);
  check_large<gcpo::float16, float, std::int32_t>(16, 576, 16384, 103);
}

TEST_CASE("cuda large: token_stats and backward over more than 2^31 logits (bf16 [228, 576, 16384])",
          "[cuda][large][token_stats]") {
  GCPO_REQUIRE_REAL_GPU();
  constexpr std::int64_t R = 228, N = 576, V = 16384;
  static_assert(R * N * V > (std::int64_t{1} << 31), "the case must pass 2^31 elements");
  check_large<gcpo::bfloat16, gcpo::bfloat16, std::int64_t>(R, N, V, 104);
}
