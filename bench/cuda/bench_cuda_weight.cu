// bench/cuda/bench_cuda_weight.cu - advantage_weight (the running mean of
// exp(clip(logp - ref, -0.5, 0.5)) along each rollout) at R = 8 / 32, N = 576 / 1024, alone
// and inside a CUDA graph. Launch-bound. Bytes: 2*R*N*4 read + R*N*4 written.
#include "bench_cuda_common.hpp"

namespace gcpo_cuda_bench {

/// Policy log-probs in [-9, -0.5) and reference log-probs within N(0, 0.4) of them (so both sides
/// of the +-0.5 clip occur), [R, N] float32; shared with the loss benchmarks.
void make_logps(std::int64_t R, std::int64_t N, const float** logp, const float** ref) {
  const std::size_t bytes = static_cast<std::size_t>(R * N) * 4;
  const slot_ref lp = device_slot("logp", bytes, input_key("logp", gcpo::dtype::float32, {R, N}, 13));
  const slot_ref rf = device_slot("ref_logp", bytes, input_key("ref_logp", gcpo::dtype::float32, {R, N}, 14));
  if (lp.fresh) fill_uniform(static_cast<float*>(lp.data), R * N, -9.0f, -0.5f, 13);
  if (lp.fresh || rf.fresh) fill_near(static_cast<float*>(rf.data), static_cast<const float*>(lp.data), R * N, 0.4f, 14);
  *logp = static_cast<const float*>(lp.data);
  *ref = static_cast<const float*>(rf.data);
}

namespace {

void bm_advantage_weight(benchmark::State& st, std::int64_t R, std::int64_t N, bool graph) {
  const float* lp = nullptr;
  const float* rf = nullptr;
  make_logps(R, N, &lp, &rf);
  float* w = output_as<float>("out_a", R * N);
  poison(w, static_cast<std::size_t>(R * N) * 4);
  const auto lv = gcpo::make_device_view(lp, {R, N});
  const auto rv = gcpo::make_device_view(rf, {R, N});
  const auto wv = gcpo::make_device_view(w, {R, N});
  const gcpo::weight_options opt{};
  auto op = [&] { return gcpo::cuda::advantage_weight(lv, rv, wv, opt, stream()); };
  if (graph)
    time_graph(st, op);
  else
    time_calls(st, l2::keep, op, [&] { return expect_finite(st, w, R * N, "weight"); });
  set_bytes(st, static_cast<double>(R * N) * 12.0);
}

}  // namespace

void register_weight() {
  for (std::int64_t R : rollout_counts())
    for (std::int64_t N : token_counts()) {
      add(bench_name("advantage_weight", "fp32", {{"R", R}, {"N", N}}), bound::launch,
          [=](benchmark::State& st) { bm_advantage_weight(st, R, N, false); });
      add(bench_name("advantage_weight.graph", "fp32", {{"R", R}, {"N", N}}), bound::graph,
          [=](benchmark::State& st) { bm_advantage_weight(st, R, N, true); });
    }
}

}  // namespace gcpo_cuda_bench
