// bench/cuda/bench_cuda_advantages.cu - group_advantages (unbiased std + 1e-4, the official
// setting) for R = 8 / 32 rewards in groups of G = 4 / 8, alone and inside a CUDA graph.
// Launch-bound. Bytes: R*4 read + R*4 written.
#include "bench_cuda_common.hpp"

namespace gcpo_cuda_bench {
namespace {

void bm_group_advantages(benchmark::State& st, std::int64_t R, std::int64_t G, bool graph) {
  const slot_ref rw = device_slot("rewards", static_cast<std::size_t>(R) * 4, input_key("rewards", gcpo::dtype::float32, {R}, 12));
  if (rw.fresh) fill_uniform(static_cast<float*>(rw.data), R, 0.0f, 1.0f, 12);
  float* adv = output_as<float>("out_a", R);
  poison(adv, static_cast<std::size_t>(R) * 4);
  const auto rv = gcpo::make_device_view(static_cast<const float*>(rw.data), {R});
  const auto av = gcpo::make_device_view(adv, {R});
  gcpo::advantage_options opt;
  opt.group = G;
  auto op = [&] { return gcpo::cuda::group_advantages(rv, av, opt, stream()); };
  if (graph)
    time_graph(st, op);
  else
    time_calls(st, l2::keep, op, [&] { return expect_finite(st, adv, R, "advantages"); });
  set_bytes(st, static_cast<double>(R) * 8.0);
}

}  // namespace

void register_advantages() {
  for (std::int64_t R : rollout_counts())
    for (std::int64_t G : group_sizes()) {
      add(bench_name("group_advantages", "fp32", {{"R", R}, {"G", G}}), bound::launch,
          [=](benchmark::State& st) { bm_group_advantages(st, R, G, false); });
      add(bench_name("group_advantages.graph", "fp32", {{"R", R}, {"G", G}}), bound::graph,
          [=](benchmark::State& st) { bm_group_advantages(st, R, G, true); });
    }
}

}  // namespace gcpo_cuda_bench
