// bench/bench_similarity.cpp - gcpo::host::group_similarity (from embeddings [R, N, D]) and
// group_similarity_from_tokens (tokens [R, N] + table [V, D]) at Janus-Pro shapes: R = 8 (P = 2,
// G = 4), N = 576, D = 2048, V = 16384.
//
// Bytes counted (what the operator must move): group_similarity reads every embedding row once
// (R * N * D elements) and writes the [R, N] float32 output; group_similarity_from_tokens reads
// each distinct table row once (U * D elements, U = distinct tokens of the batch, reported as
// the counter `distinct_tokens`), the int64 tokens, and writes the output.
#include "bench_common.hpp"

#include <unordered_set>

namespace {

using namespace gcpo_bench;

/// Embeddings [R, N, D] gathered from the table by the sampled tokens, with a share of
/// positions where a group's samples agree (same token), as happens in real rollouts.
template <class T>
std::vector<T> gathered_embeddings(std::vector<std::int64_t>& tokens_out) {
  const std::vector<T>& table = janus_table<T>();
  tokens_out = make_tokens<std::int64_t>(static_cast<std::size_t>(R * N), V, 31);
  rng g(32);
  for (std::int64_t p = 0; p < P; ++p)
    for (std::int64_t t = 0; t < N; ++t)
      if (g.uniform() < 0.3f)
        for (std::int64_t k = 1; k < G; ++k) tokens_out[static_cast<std::size_t>((p * G + k) * N + t)] = tokens_out[static_cast<std::size_t>(p * G * N + t)];
  std::vector<T> e(static_cast<std::size_t>(R * N * D));
  for (std::int64_t i = 0; i < R * N; ++i)
    std::memcpy(e.data() + i * D, table.data() + tokens_out[static_cast<std::size_t>(i)] * D, D * sizeof(T));
  return e;
}

template <class T>
void BM_group_similarity(benchmark::State& state) {
  std::vector<std::int64_t> tokens;
  const std::vector<T> emb = gathered_embeddings<T>(tokens);
  std::vector<float> sim(R * N);
  gcpo::similarity_options opt;
  opt.group = G;
  const auto ev = gcpo::make_view(emb.data(), {R, N, D});
  const auto sv = gcpo::make_view(sim.data(), {R, N});
  for (auto _ : state) {
    if (!check(state, gcpo::host::group_similarity(ev, sv, opt))) break;
    benchmark::DoNotOptimize(sim.data());
    benchmark::ClobberMemory();
  }
  set_rates(state, static_cast<double>(R * N * D * sizeof(T) + R * N * sizeof(float)), static_cast<double>(R * N));
}
BENCHMARK_TEMPLATE(BM_group_similarity, float)->Name("group_similarity/fp32/8x576x2048")->Unit(benchmark::kMillisecond);
BENCHMARK_TEMPLATE(BM_group_similarity, gcpo::bfloat16)->Name("group_similarity/bf16/8x576x2048")->Unit(benchmark::kMillisecond);

template <class T>
void BM_group_similarity_from_tokens(benchmark::State& state) {
  std::vector<std::int64_t> tokens;
  (void)gathered_embeddings<T>(tokens);  // same tokens as BM_group_similarity
  const std::vector<T>& table = janus_table<T>();
  std::vector<float> sim(R * N);
  gcpo::similarity_options opt;
  opt.group = G;
  const auto tv = gcpo::make_view(tokens.data(), {R, N});
  const auto tab = gcpo::make_view(table.data(), {V, D});
  const auto sv = gcpo::make_view(sim.data(), {R, N});
  for (auto _ : state) {
    if (!check(state, gcpo::host::group_similarity_from_tokens(tv, tab, sv, opt))) break;
    benchmark::DoNotOptimize(sim.data());
    benchmark::ClobberMemory();
  }
  const double distinct = static_cast<double>(std::unordered_set<std::int64_t>(tokens.begin(), tokens.end()).size());
  set_rates(state, distinct * D * sizeof(T) + static_cast<double>(R * N * (sizeof(std::int64_t) + sizeof(float))),
            static_cast<double>(R * N));
  state.counters["distinct_tokens"] = distinct;
}
BENCHMARK_TEMPLATE(BM_group_similarity_from_tokens, float)
    ->Name("group_similarity_from_tokens/fp32/8x576,table16384x2048")->Unit(benchmark::kMillisecond);
BENCHMARK_TEMPLATE(BM_group_similarity_from_tokens, gcpo::bfloat16)
    ->Name("group_similarity_from_tokens/bf16/8x576,table16384x2048")->Unit(benchmark::kMillisecond);

}  // namespace
