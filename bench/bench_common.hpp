// bench/bench_common.hpp - shapes, deterministic synthetic inputs and helpers shared by the
// host benchmarks (gcpo_bench_host).
//
// Shapes are Janus-Pro's at 384 px: P = 2 prompts x G = 4 samples = R = 8 rollouts, N = 24 x 24
// = 576 image tokens, V = 16384 codebook entries, D = 2048 (gen_aligner output, 1B model).
// Every input is random with a fixed seed and non-trivial (no zeros, no constant rows), and the
// large ones are built once per process and shared by the benchmarks that read them.
#pragma once

#include <benchmark/benchmark.h>

#include <cmath>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <vector>

#include <gcpo/gcpo.hpp>

namespace gcpo_bench {

constexpr std::int64_t P = 2, G = 4, R = P * G;
constexpr std::int64_t H = 24, W = 24, N = H * W;
constexpr std::int64_t V = 16384, D = 2048;
constexpr std::int64_t gen_rows = 16;  ///< rows of one generation step (16 images)

/// SplitMix64: tiny, fast and good enough for benchmark inputs.
struct rng {
  std::uint64_t s;
  explicit rng(std::uint64_t seed) : s(seed) {}
  std::uint64_t next() {
    std::uint64_t z = (s += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
  }
  /// Uniform in [0, 1).
  float uniform() { return static_cast<float>(next() >> 40) * 5.9604644775390625e-8f; }
  /// Approximately standard normal (Irwin-Hall of 4 uniforms from one 64-bit draw).
  float normal() {
    const std::uint64_t z = next();
    const float s = static_cast<float>(z & 0xffff) + static_cast<float>((z >> 16) & 0xffff) +
                    static_cast<float>((z >> 32) & 0xffff) + static_cast<float>(z >> 48);
    return (s * (1.0f / 65536.0f) - 2.0f) * 1.7320508f;
  }
};

/// A smooth spatial field over the H x W grid in [0, 1] per rollout (blobs with edges), used
/// to shape the logits' temperature so that the entropy map has structure.
inline float spatial_field(std::int64_t r, std::int64_t t) {
  const float i = static_cast<float>(t / W), j = static_cast<float>(t % W);
  const float cx = 6.0f + 3.0f * static_cast<float>(r % 4), cy = 8.0f + 2.0f * static_cast<float>(r / 4);
  const float d2 = (i - cy) * (i - cy) + (j - cx) * (j - cx);
  return 0.5f + 0.5f * std::tanh((25.0f - d2) * 0.15f);  // a disc with a soft edge
}

/// Logits [rows, V] in float32: per row a scale in [0.6, 3.6] from the spatial field times an
/// approximately normal draw, plus a few peaked entries (what a codebook head produces looks
/// more like this than like uniform noise).
inline std::vector<float> make_logits(std::int64_t rollouts, std::int64_t positions, std::int64_t vocab,
                                      std::uint64_t seed) {
  std::vector<float> x(static_cast<std::size_t>(rollouts * positions * vocab));
  rng g(seed);
  for (std::int64_t r = 0; r < rollouts; ++r)
    for (std::int64_t t = 0; t < positions; ++t) {
      float* row = x.data() + (r * positions + t) * vocab;
      const float scale = 0.6f + 3.0f * spatial_field(r, t % N);
      for (std::int64_t v = 0; v < vocab; ++v) row[v] = scale * g.normal();
      for (int k = 0; k < 8; ++k) row[g.next() % static_cast<std::uint64_t>(vocab)] += 4.0f + 4.0f * g.uniform();
    }
  return x;
}

template <class T>
std::vector<T> convert(const std::vector<float>& x) {
  std::vector<T> out(x.size());
  for (std::size_t i = 0; i < x.size(); ++i) out[i] = gcpo::from_float<T>(x[i]);
  return out;
}

/// `count` values uniform in [lo, hi).
inline std::vector<float> make_uniform(std::size_t count, float lo, float hi, std::uint64_t seed) {
  std::vector<float> x(count);
  rng g(seed);
  for (auto& v : x) v = lo + (hi - lo) * g.uniform();
  return x;
}

/// `count` tokens uniform in [0, vocab).
template <class I>
std::vector<I> make_tokens(std::size_t count, std::int64_t vocab, std::uint64_t seed) {
  std::vector<I> x(count);
  rng g(seed);
  for (auto& v : x) v = static_cast<I>(g.next() % static_cast<std::uint64_t>(vocab));
  return x;
}

/// The Janus-Pro policy logits [R, N, V] (float32), built once.
inline const std::vector<float>& janus_logits_f32() {
  static const std::vector<float> x = make_logits(R, N, V, 1);
  return x;
}

/// The same logits rounded to a 16-bit type, built once per type.
template <class T>
const std::vector<T>& janus_logits() {
  static const std::vector<T> x = convert<T>(janus_logits_f32());
  return x;
}
template <>
inline const std::vector<float>& janus_logits<float>() {
  return janus_logits_f32();
}

/// Sampled tokens [R, N] (int64, PyTorch's default index type).
inline const std::vector<std::int64_t>& janus_tokens() {
  static const std::vector<std::int64_t> x = make_tokens<std::int64_t>(static_cast<std::size_t>(R * N), V, 2);
  return x;
}

/// Embedding table [V, D] (float32), values ~ N(0, 0.02) plus a per-row offset, built once.
inline const std::vector<float>& janus_table_f32() {
  static const std::vector<float> x = [] {
    std::vector<float> t(static_cast<std::size_t>(V * D));
    rng g(3);
    for (std::int64_t v = 0; v < V; ++v) {
      const float off = 0.01f * g.normal();
      for (std::int64_t d = 0; d < D; ++d) t[static_cast<std::size_t>(v * D + d)] = off + 0.02f * g.normal();
    }
    return t;
  }();
  return x;
}

template <class T>
const std::vector<T>& janus_table() {
  static const std::vector<T> x = convert<T>(janus_table_f32());
  return x;
}
template <>
inline const std::vector<float>& janus_table<float>() {
  return janus_table_f32();
}

/// Reports a failed status as a benchmark error. Returns false on failure.
inline bool check(benchmark::State& state, const gcpo::status& s) {
  if (s.ok()) return true;
  state.SkipWithError(s.message());
  return false;
}

/// Sets bytes and items processed for `bytes_per_iter` / `items_per_iter` each iteration.
inline void set_rates(benchmark::State& state, double bytes_per_iter, double items_per_iter = 0) {
  state.SetBytesProcessed(static_cast<std::int64_t>(bytes_per_iter * static_cast<double>(state.iterations())));
  if (items_per_iter > 0)
    state.SetItemsProcessed(static_cast<std::int64_t>(items_per_iter * static_cast<double>(state.iterations())));
}

/// A host workspace that owns its memory.
struct owned_workspace {
  std::vector<unsigned char> buf;
  explicit owned_workspace(std::size_t bytes) : buf(bytes ? bytes : 1) {}
  gcpo::workspace get() { return gcpo::workspace{buf.data(), buf.size(), gcpo::memory_space::host}; }
};

}  // namespace gcpo_bench
