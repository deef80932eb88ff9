// bench/bench_token_stats.cpp - gcpo::host::token_stats and token_stats_backward at Janus-Pro
// shapes: logits [R = 8, N = 576, V = 16384] (302 MB in float32, 151 MB in 16 bit).
//
// Bytes counted: token_stats reads the logits once plus the tokens and writes three [R, N]
// float32 maps; token_stats_backward reads the logits and writes grad_logits once (plus the
// small [R, N] inputs).
#include "bench_common.hpp"

namespace {

using namespace gcpo_bench;

template <class T>
void BM_token_stats(benchmark::State& state) {
  const std::vector<T>& logits = janus_logits<T>();
  const std::vector<std::int64_t>& tokens = janus_tokens();
  std::vector<float> entropy(R * N), logprob(R * N), lse(R * N);
  const auto lv = gcpo::make_view(logits.data(), {R, N, V});
  const auto tv = gcpo::make_view(tokens.data(), {R, N});
  for (auto _ : state) {
    if (!check(state, gcpo::host::token_stats(lv, tv, gcpo::make_view(entropy.data(), {R, N}),
                                              gcpo::make_view(logprob.data(), {R, N}),
                                              gcpo::make_view(lse.data(), {R, N}))))
      break;
    benchmark::DoNotOptimize(entropy.data());
    benchmark::ClobberMemory();
  }
  set_rates(state, static_cast<double>(R * N * V * sizeof(T) + R * N * (sizeof(std::int64_t) + 3 * sizeof(float))),
            static_cast<double>(R * N));
}
BENCHMARK_TEMPLATE(BM_token_stats, float)->Name("token_stats/fp32/8x576x16384")->Unit(benchmark::kMillisecond)->MinTime(2.0);
BENCHMARK_TEMPLATE(BM_token_stats, gcpo::bfloat16)->Name("token_stats/bf16/8x576x16384")->Unit(benchmark::kMillisecond)->MinTime(2.0);
BENCHMARK_TEMPLATE(BM_token_stats, gcpo::float16)->Name("token_stats/fp16/8x576x16384")->Unit(benchmark::kMillisecond)->MinTime(2.0);

template <class T, class Gr>
void BM_token_stats_backward(benchmark::State& state) {
  const std::vector<T>& logits = janus_logits<T>();
  const std::vector<std::int64_t>& tokens = janus_tokens();
  std::vector<float> lse(R * N), grad_logprob = make_uniform(R * N, -1e-3f, 1e-3f, 21);
  if (!check(state, gcpo::host::token_stats(gcpo::make_view(logits.data(), {R, N, V}),
                                            gcpo::make_view(tokens.data(), {R, N}), gcpo::tensor_view{},
                                            gcpo::tensor_view{}, gcpo::make_view(lse.data(), {R, N}))))
    return;
  std::vector<Gr> grad(static_cast<std::size_t>(R * N * V));
  const auto lv = gcpo::make_view(logits.data(), {R, N, V});
  const auto tv = gcpo::make_view(tokens.data(), {R, N});
  const auto sv = gcpo::make_view(lse.data(), {R, N});
  const auto gov = gcpo::make_view(grad_logprob.data(), {R, N});
  const auto gv = gcpo::make_view(grad.data(), {R, N, V});
  for (auto _ : state) {
    if (!check(state, gcpo::host::token_stats_backward(lv, tv, sv, gov, gv))) break;
    benchmark::DoNotOptimize(grad.data());
    benchmark::ClobberMemory();
  }
  set_rates(state,
            static_cast<double>(R * N * V * (sizeof(T) + sizeof(Gr)) +
                                R * N * (sizeof(std::int64_t) + 2 * sizeof(float))),
            static_cast<double>(R * N));
}
BENCHMARK_TEMPLATE(BM_token_stats_backward, float, float)
    ->Name("token_stats_backward/fp32->fp32/8x576x16384")->Unit(benchmark::kMillisecond)->MinTime(2.0);
BENCHMARK_TEMPLATE(BM_token_stats_backward, gcpo::bfloat16, gcpo::bfloat16)
    ->Name("token_stats_backward/bf16->bf16/8x576x16384")->Unit(benchmark::kMillisecond)->MinTime(2.0);

}  // namespace
