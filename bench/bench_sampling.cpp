// bench/bench_sampling.cpp - gcpo::host::generation_step: one decoding step of 16 rows over
// V = 16384 with classifier-free guidance (scale 5, the official Janus setting), temperature 1,
// and the top-k / top-p variants (top-k 1000 and top-p 0.9, LlamaGen-style).
//
// Bytes counted: the conditional and unconditional logits read once ([16, 16384] each) plus
// the [16] outputs. The host twin touches its [V] float32 workspace several times per row
// (guided logits, sort for top-k/top-p, Gumbel draw, log-prob/entropy); it stays in L2.
#include "bench_common.hpp"

namespace {

using namespace gcpo_bench;

template <class T>
void BM_generation_step(benchmark::State& state) {
  const std::int64_t top_k = state.range(0);
  const float top_p = static_cast<float>(state.range(1)) / 100.0f;
  // spread%: the logits scaled by spread / 100. At 100 the guided logits spread over tens of
  // nats, as a model's do at CFG 5, and the host twin computes the Gumbel noise of few entries
  // (those that can reach the largest logit's key); at 2 every entry is within the noise's
  // bound of the largest, its worst case.
  const float spread = state.range(2) > 0 ? static_cast<float>(state.range(2)) / 100.0f : 1.0f;
  static const std::vector<float> cond_f = make_logits(gen_rows, 1, V, 61);
  static const std::vector<float> uncond_f = [] {
    std::vector<float> u = make_logits(gen_rows, 1, V, 62);
    for (std::size_t i = 0; i < u.size(); ++i) u[i] = 0.7f * u[i] + 0.3f * cond_f[i];  // correlated with cond
    return u;
  }();
  std::vector<float> cond_s = cond_f, uncond_s = uncond_f;
  for (auto& x : cond_s) x *= spread;
  for (auto& x : uncond_s) x *= spread;
  const std::vector<T> cond = convert<T>(cond_s), uncond = convert<T>(uncond_s);
  std::vector<std::int64_t> tokens(gen_rows);
  std::vector<float> logprob(gen_rows), entropy(gen_rows);
  owned_workspace ws(gcpo::generation_step_workspace_bytes(gen_rows, V));
  gcpo::sampling_options opt;
  opt.cfg_scale = 5.0f;
  opt.top_k = top_k;
  opt.top_p = top_p;
  opt.seed = 1234;
  const auto cv = gcpo::make_view(cond.data(), {gen_rows, V});
  const auto uv = gcpo::make_view(uncond.data(), {gen_rows, V});
  const auto tv = gcpo::make_view(tokens.data(), {gen_rows});
  const auto lv = gcpo::make_view(logprob.data(), {gen_rows});
  const auto ev = gcpo::make_view(entropy.data(), {gen_rows});
  for (auto _ : state) {
    if (!check(state, gcpo::host::generation_step(cv, uv, tv, lv, ev, opt, ws.get()))) break;
    ++opt.step;  // a new draw each step, as in the decoding loop
    benchmark::DoNotOptimize(tokens.data());
    benchmark::ClobberMemory();
  }
  set_rates(state, static_cast<double>(2 * gen_rows * V * sizeof(T) + gen_rows * (8 + 4 + 4)),
            static_cast<double>(gen_rows));
}
BENCHMARK_TEMPLATE(BM_generation_step, float)
    ->Name("sampling/generation_step/fp32/16x16384,cfg5")
    ->ArgNames({"top_k", "top_p%", "spread%"})
    ->Args({0, 100, 100})
    ->Args({0, 100, 2})
    ->Args({1000, 100, 100})
    ->Args({0, 90, 100})
    ->Args({1000, 90, 100})
    ->Unit(benchmark::kMillisecond);
BENCHMARK_TEMPLATE(BM_generation_step, gcpo::bfloat16)
    ->Name("sampling/generation_step/bf16/16x16384,cfg5")
    ->ArgNames({"top_k", "top_p%", "spread%"})
    ->Args({0, 100, 100})
    ->Args({1000, 100, 100})
    ->Args({0, 90, 100})
    ->Unit(benchmark::kMillisecond);

}  // namespace
