// bench/bench_selection.cpp - every host selection operator at Janus-Pro shapes: R = 8 rollouts
// (P = 2, G = 4) of N = 576 = 24 x 24 tokens; the default (official) fractions: 57 initial, 57
// entropy-gradient tokens in the window [57, 517), 57 low-similarity tokens.
//
// Inputs: an entropy map with spatial structure (a disc of high entropy with a soft edge plus
// noise, in nats) and a group similarity shared by the G rollouts of a prompt, with 30% of the
// positions at exactly 1 (every sample of the group drew the same token: ties).
//
// Each benchmark cycles through 16 different input sets (16 steps' worth), so that branch
// predictors cannot learn one input by heart: a trainer never selects on the same maps twice.
//
// Bytes counted: the [R, N] maps read and written (float32 4 B, masks 1 B per token).
#include "bench_common.hpp"

#include <unordered_set>

namespace {

using namespace gcpo_bench;

constexpr double RN = static_cast<double>(R * N);
constexpr std::int64_t sets = 16;  ///< input sets cycled through
constexpr std::int64_t SRN = sets * R * N;

/// `sets` entropy maps [R, N] back to back: the disc of each rollout moves with the set.
std::vector<float> entropy_map() {
  std::vector<float> e(SRN);
  rng g(41);
  for (std::int64_t q = 0; q < sets; ++q)
    for (std::int64_t r = 0; r < R; ++r)
      for (std::int64_t t = 0; t < N; ++t)
        e[(q * R + r) * N + t] = 2.0f + 5.0f * spatial_field(r + q, t) + 0.5f * g.uniform();
  return e;
}

/// `sets` group-similarity maps [R, N], shared by the G rollouts of each prompt.
std::vector<float> similarity_map() {
  std::vector<float> s(SRN);
  rng g(42);
  for (std::int64_t q = 0; q < sets; ++q)
    for (std::int64_t p = 0; p < P; ++p)
      for (std::int64_t t = 0; t < N; ++t) {
        const float v = g.uniform() < 0.3f ? 1.0f : -0.05f + 0.6f * g.uniform();
        for (std::int64_t k = 0; k < G; ++k) s[(q * R + p * G + k) * N + t] = v;
      }
  return s;
}

/// View of input set q of a `sets`-long buffer of [R, N] maps.
template <class T>
auto set_view(T* data, std::int64_t q) {
  return gcpo::make_view(data + q * R * N, {R, N});
}

void BM_initial_mask(benchmark::State& state) {
  std::vector<std::uint8_t> m(R * N);
  const auto mv = gcpo::make_view(m.data(), {R, N});
  for (auto _ : state) {
    if (!check(state, gcpo::host::initial_mask(mv))) break;
    benchmark::DoNotOptimize(m.data());
    benchmark::ClobberMemory();
  }
  set_rates(state, RN, RN);
}
BENCHMARK(BM_initial_mask)->Name("selection/initial_mask/8x576")->Unit(benchmark::kMicrosecond);

void BM_smoothed_entropy(benchmark::State& state) {
  const std::vector<float> e = entropy_map();
  std::vector<float> s(R * N);
  const auto sv = gcpo::make_view(s.data(), {R, N});
  std::int64_t q = 0;
  for (auto _ : state) {
    if (!check(state, gcpo::host::smoothed_entropy(set_view(e.data(), q++ % sets), sv))) break;
    benchmark::DoNotOptimize(s.data());
    benchmark::ClobberMemory();
  }
  set_rates(state, 8 * RN, RN);
}
BENCHMARK(BM_smoothed_entropy)->Name("selection/smoothed_entropy/8x576")->Unit(benchmark::kMicrosecond);

void BM_entropy_gradient(benchmark::State& state) {
  const std::vector<float> e = entropy_map();
  std::vector<float> s(SRN), gr(R * N);
  if (!check(state, gcpo::host::smoothed_entropy(gcpo::make_view(e.data(), {sets * R, N}),
                                                 gcpo::make_view(s.data(), {sets * R, N}))))
    return;
  const auto gv = gcpo::make_view(gr.data(), {R, N});
  std::int64_t q = 0;
  for (auto _ : state) {
    if (!check(state, gcpo::host::entropy_gradient(set_view(s.data(), q++ % sets), gv))) break;
    benchmark::DoNotOptimize(gr.data());
    benchmark::ClobberMemory();
  }
  set_rates(state, 8 * RN, RN);
}
BENCHMARK(BM_entropy_gradient)->Name("selection/entropy_gradient/8x576")->Unit(benchmark::kMicrosecond);

void BM_gradient_topk(benchmark::State& state) {
  const std::vector<float> e = entropy_map();
  std::vector<float> s(SRN), gr(SRN);
  std::vector<std::uint8_t> m(R * N);
  const auto all = [](std::vector<float>& v) { return gcpo::make_view(v.data(), {sets * R, N}); };
  if (!check(state, gcpo::host::smoothed_entropy(gcpo::make_view(e.data(), {sets * R, N}), all(s))) ||
      !check(state, gcpo::host::entropy_gradient(all(s), all(gr))))
    return;
  const auto mv = gcpo::make_view(m.data(), {R, N});
  std::int64_t q = 0;
  for (auto _ : state) {
    if (!check(state, gcpo::host::gradient_topk(set_view(gr.data(), q++ % sets), mv))) break;
    benchmark::DoNotOptimize(m.data());
    benchmark::ClobberMemory();
  }
  set_rates(state, 5 * RN, RN);
}
BENCHMARK(BM_gradient_topk)->Name("selection/gradient_topk/8x576")->Unit(benchmark::kMicrosecond);

void BM_low_similarity_mask(benchmark::State& state) {
  const std::vector<float> sim = similarity_map();
  std::vector<std::uint8_t> exclude(SRN), m(R * N);
  rng g(43);
  for (std::int64_t i = 0; i < SRN; ++i) exclude[i] = (i % N < 57 || g.uniform() < 0.1f) ? 1 : 0;
  const auto mv = gcpo::make_view(m.data(), {R, N});
  std::int64_t q = 0;
  for (auto _ : state) {
    const std::int64_t k = q++ % sets;
    if (!check(state, gcpo::host::low_similarity_mask(set_view(sim.data(), k), set_view(exclude.data(), k), mv))) break;
    benchmark::DoNotOptimize(m.data());
    benchmark::ClobberMemory();
  }
  set_rates(state, 6 * RN, RN);
}
BENCHMARK(BM_low_similarity_mask)->Name("selection/low_similarity_mask/8x576")->Unit(benchmark::kMicrosecond);

void BM_union_mask(benchmark::State& state) {
  std::vector<std::uint8_t> a(R * N), b(R * N), c(R * N), out(R * N);
  std::vector<std::int32_t> counts(R);
  rng g(44);
  for (std::int64_t i = 0; i < R * N; ++i) {
    a[i] = g.uniform() < 0.1f;
    b[i] = g.uniform() < 0.1f;
    c[i] = g.uniform() < 0.1f;
  }
  const auto av = gcpo::make_view(a.data(), {R, N}), bv = gcpo::make_view(b.data(), {R, N}),
             cv = gcpo::make_view(c.data(), {R, N});
  const auto ov = gcpo::make_view(out.data(), {R, N});
  const auto nv = gcpo::make_view(counts.data(), {R});
  for (auto _ : state) {
    if (!check(state, gcpo::host::union_mask(av, bv, cv, ov, nv))) break;
    benchmark::DoNotOptimize(out.data());
    benchmark::ClobberMemory();
  }
  set_rates(state, 4 * RN + 4.0 * R, RN);
}
BENCHMARK(BM_union_mask)->Name("selection/union_mask/8x576")->Unit(benchmark::kMicrosecond);

/// The whole selection with the similarity given (the trainer computes it during generation).
void BM_select_critical_tokens(benchmark::State& state) {
  const std::vector<float> e = entropy_map(), sim = similarity_map();
  std::vector<std::uint8_t> crit(R * N);
  std::vector<std::int32_t> counts(R);
  owned_workspace ws(gcpo::select_critical_tokens_workspace_bytes(R, N));
  gcpo::selection_outputs out;
  out.critical = gcpo::make_view(crit.data(), {R, N});
  out.counts = gcpo::make_view(counts.data(), {R});
  const gcpo::selection_options opt;
  std::int64_t q = 0;
  for (auto _ : state) {
    gcpo::selection_inputs in;
    const std::int64_t k = q++ % sets;
    in.entropy = set_view(e.data(), k);
    in.similarity = set_view(sim.data(), k);
    if (!check(state, gcpo::host::select_critical_tokens(in, out, opt, ws.get()))) break;
    benchmark::DoNotOptimize(crit.data());
    benchmark::ClobberMemory();
  }
  set_rates(state, 9 * RN + 4.0 * R, RN);
}
BENCHMARK(BM_select_critical_tokens)->Name("selection/select_critical_tokens/similarity_given/8x576")->Unit(benchmark::kMicrosecond);

/// The whole selection computing the similarity from tokens + a bf16 table [16384, 2048]
/// (dominated by group_similarity_from_tokens).
void BM_select_critical_tokens_from_tokens(benchmark::State& state) {
  const std::vector<float> e = entropy_map();  // set 0 only: this one is dominated by the similarity
  const std::vector<std::int64_t>& tokens = janus_tokens();
  const std::vector<gcpo::bfloat16>& table = janus_table<gcpo::bfloat16>();
  std::vector<std::uint8_t> crit(R * N);
  std::vector<std::int32_t> counts(R);
  owned_workspace ws(gcpo::select_critical_tokens_workspace_bytes(R, N));
  gcpo::selection_inputs in;
  in.entropy = gcpo::make_view(e.data(), {R, N});
  in.tokens = gcpo::make_view(tokens.data(), {R, N});
  in.embedding_table = gcpo::make_view(table.data(), {V, D});
  in.similarity_opts.group = G;
  gcpo::selection_outputs out;
  out.critical = gcpo::make_view(crit.data(), {R, N});
  out.counts = gcpo::make_view(counts.data(), {R});
  const gcpo::selection_options opt;
  for (auto _ : state) {
    if (!check(state, gcpo::host::select_critical_tokens(in, out, opt, ws.get()))) break;
    benchmark::DoNotOptimize(crit.data());
    benchmark::ClobberMemory();
  }
  const double distinct = static_cast<double>(std::unordered_set<std::int64_t>(tokens.begin(), tokens.end()).size());
  set_rates(state, distinct * D * 2 + RN * (4 + 8 + 1) + 4.0 * R, RN);
  state.counters["distinct_tokens"] = distinct;
}
BENCHMARK(BM_select_critical_tokens_from_tokens)
    ->Name("selection/select_critical_tokens/from_tokens_bf16/8x576x2048")->Unit(benchmark::kMillisecond);

}  // namespace
