// bench/bench_loss.cpp - group_advantages, advantage_weight, gcpo_loss_forward and
// gcpo_loss_backward on the host at Janus-Pro shapes: R = 8 rollouts (P = 2, G = 4) of N = 576
// tokens, 171 critical tokens per rollout (57 initial + 114 elsewhere).
//
// Inputs: rewards in {0, 1}; policy log-probs of sampled tokens in about [-9, -0.5]; reference
// log-probs within about +-0.3 of them (so the weight clip at 0.5 is active on some tokens);
// for the PPO variant, old log-probs within about +-0.3 too.
//
// Bytes counted: the [R, N] float32 maps and the uint8 mask read, the [R, N] outputs written.
#include "bench_common.hpp"

namespace {

using namespace gcpo_bench;

constexpr double RN = static_cast<double>(R * N);

struct loss_data {
  std::vector<float> rewards, advantages, logp, ref, old;
  std::vector<std::uint8_t> mask;
  loss_data() : rewards(R), advantages(R), logp(R * N), ref(R * N), old(R * N), mask(R * N) {
    rng g(51);
    for (std::int64_t r = 0; r < R; ++r) rewards[r] = g.uniform() < 0.5f ? 1.0f : 0.0f;
    rewards[0] = 1.0f;  // each group has both outcomes
    rewards[1] = 0.0f;
    rewards[G] = 0.0f;
    rewards[G + 1] = 1.0f;
    gcpo::advantage_options ao;
    ao.group = G;
    if (!gcpo::host::group_advantages(gcpo::make_view(rewards.data(), {R}), gcpo::make_view(advantages.data(), {R}), ao).ok())
      std::abort();
    for (std::int64_t i = 0; i < R * N; ++i) {
      logp[i] = -0.5f - 8.5f * g.uniform() * g.uniform();
      ref[i] = logp[i] + 0.3f * g.normal();
      old[i] = logp[i] + 0.1f * g.normal();
    }
    for (std::int64_t r = 0; r < R; ++r) {
      std::int64_t chosen = 0;
      for (std::int64_t t = 0; t < N; ++t) mask[r * N + t] = t < 57 ? 1 : 0;
      while (chosen < 114) {
        const std::int64_t t = 57 + static_cast<std::int64_t>(g.next() % (N - 57));
        if (!mask[r * N + t]) {
          mask[r * N + t] = 1;
          ++chosen;
        }
      }
    }
  }
  gcpo::loss_inputs inputs(bool with_old) const {
    gcpo::loss_inputs in;
    in.logp = gcpo::make_view(logp.data(), {R, N});
    in.ref_logp = gcpo::make_view(ref.data(), {R, N});
    if (with_old) in.old_logp = gcpo::make_view(old.data(), {R, N});
    in.advantages = gcpo::make_view(advantages.data(), {R});
    in.mask = gcpo::make_view(mask.data(), {R, N});
    return in;
  }
};

const loss_data& data() {
  static const loss_data d;
  return d;
}

gcpo::loss_options options_for(bool ppo) {
  gcpo::loss_options o;  // official Janus: GCPO, no clipping, beta 0.01, weight clip 0.5, token mean
  if (ppo) o.clipping = gcpo::ratio_clipping::ppo;
  return o;
}

void BM_group_advantages(benchmark::State& state) {
  const loss_data& d = data();
  std::vector<float> adv(R);
  gcpo::advantage_options ao;
  ao.group = G;
  const auto rv = gcpo::make_view(d.rewards.data(), {R});
  const auto av = gcpo::make_view(adv.data(), {R});
  for (auto _ : state) {
    if (!check(state, gcpo::host::group_advantages(rv, av, ao))) break;
    benchmark::DoNotOptimize(adv.data());
    benchmark::ClobberMemory();
  }
  set_rates(state, 8.0 * R, static_cast<double>(R));
}
BENCHMARK(BM_group_advantages)->Name("advantages/group_advantages/8(G=4)")->Unit(benchmark::kNanosecond);

void BM_advantage_weight(benchmark::State& state) {
  const loss_data& d = data();
  std::vector<float> w(R * N);
  const auto lv = gcpo::make_view(d.logp.data(), {R, N});
  const auto fv = gcpo::make_view(d.ref.data(), {R, N});
  const auto wv = gcpo::make_view(w.data(), {R, N});
  for (auto _ : state) {
    if (!check(state, gcpo::host::advantage_weight(lv, fv, wv))) break;
    benchmark::DoNotOptimize(w.data());
    benchmark::ClobberMemory();
  }
  set_rates(state, 12 * RN, RN);
}
BENCHMARK(BM_advantage_weight)->Name("weight/advantage_weight/8x576")->Unit(benchmark::kMicrosecond);

void BM_gcpo_loss_forward(benchmark::State& state) {
  const bool ppo = state.range(0) != 0, per_token = state.range(1) != 0;
  const loss_data& d = data();
  std::vector<float> stats(gcpo::loss_stat_count), w(R * N), kl(R * N);
  const gcpo::loss_inputs in = d.inputs(ppo);
  gcpo::loss_outputs out;
  out.stats = gcpo::make_view(stats.data(), {gcpo::loss_stat_count});
  if (per_token) {
    out.weight = gcpo::make_view(w.data(), {R, N});
    out.kl = gcpo::make_view(kl.data(), {R, N});
  }
  const gcpo::loss_options opt = options_for(ppo);
  for (auto _ : state) {
    if (!check(state, gcpo::host::gcpo_loss_forward(in, out, opt))) break;
    benchmark::DoNotOptimize(stats.data());
    benchmark::ClobberMemory();
  }
  set_rates(state, RN * (4 + 4 + 1 + (ppo ? 4 : 0) + (per_token ? 8 : 0)) + 4.0 * R + 4.0 * gcpo::loss_stat_count, RN);
}
BENCHMARK(BM_gcpo_loss_forward)
    ->Name("loss/gcpo_loss_forward/8x576")
    ->ArgNames({"ppo", "per_token_out"})
    ->Args({0, 0})
    ->Args({0, 1})
    ->Args({1, 0})
    ->Unit(benchmark::kMicrosecond);

void BM_gcpo_loss_backward(benchmark::State& state) {
  const bool ppo = state.range(0) != 0;
  const loss_data& d = data();
  std::vector<float> grad(R * N);
  const gcpo::loss_inputs in = d.inputs(ppo);
  const gcpo::loss_options opt = options_for(ppo);
  const auto gv = gcpo::make_view(grad.data(), {R, N});
  for (auto _ : state) {
    if (!check(state, gcpo::host::gcpo_loss_backward(in, gcpo::const_tensor_view{}, gv, opt))) break;
    benchmark::DoNotOptimize(grad.data());
    benchmark::ClobberMemory();
  }
  set_rates(state, RN * (4 + 4 + 1 + 4 + (ppo ? 4 : 0)) + 4.0 * R, RN);
}
BENCHMARK(BM_gcpo_loss_backward)
    ->Name("loss/gcpo_loss_backward/8x576")
    ->ArgNames({"ppo"})
    ->Arg(0)
    ->Arg(1)
    ->Unit(benchmark::kMicrosecond);

}  // namespace
