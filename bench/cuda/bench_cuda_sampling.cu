// bench/cuda/bench_cuda_sampling.cu - generation_step, one decoding step of 16 images with
// classifier-free guidance as the official Janus trainer samples: the [32, V] logits of the step
// hold cond / uncond rows interleaved (cond = rows 0::2, uncond = rows 1::2, strided views),
// scale 5, temperature 1, no top-k / top-p; out: token (int64), its log-prob and the entropy.
// V = 16384, bf16 and fp32, alone and inside a CUDA graph. Launch-bound.
// Bytes: 2*16*V*s (cond + uncond) + 16*(8 + 4 + 4).
// Without top-k / top-p a row is split over 8 blocks that draw the Gumbel noise only for the
// entries within 20 of their chunk's largest logit; two more bf16 cases show the other paths:
// temperature 20 (`T:20`: every entry within reach, each noise drawn) and top-k 1000 (`top_k:1000`:
// one 1024-thread block per row, radix select).
#include "bench_cuda_common.hpp"

namespace gcpo_cuda_bench {
namespace {

void bm_generation_step(benchmark::State& st, gcpo::dtype t, bool graph, std::int64_t top_k = 0,
                        float temperature = 1.0f) {
  const std::int64_t rows = gen_rows;
  const std::size_t elem = static_cast<std::size_t>(gcpo::dtype_size(t));
  const slot_ref lg = device_slot("step_logits", static_cast<std::size_t>(2 * rows * V) * elem, input_key("step_logits", t, {2 * rows, V}, 17));
  if (lg.fresh) fill_logits(lg.data, t, 2 * rows, V, V, 17);
  auto* tokens = output_as<std::int64_t>("step_tokens", rows);
  float* logprob = output_as<float>("out_a", rows);
  float* entropy = output_as<float>("out_b", rows);
  poison(tokens, static_cast<std::size_t>(rows) * 8);
  poison(logprob, static_cast<std::size_t>(rows) * 4);
  poison(entropy, static_cast<std::size_t>(rows) * 4);

  const char* base = static_cast<const char*>(lg.data);
  gcpo::const_tensor_view cond = gcpo::make_strided_view(reinterpret_cast<const float*>(base), {rows, V}, {2 * V, 1}, gcpo::memory_space::device);
  gcpo::const_tensor_view uncond = gcpo::make_strided_view(reinterpret_cast<const float*>(base + static_cast<std::size_t>(V) * elem), {rows, V}, {2 * V, 1}, gcpo::memory_space::device);
  cond.type = t;
  uncond.type = t;
  const auto tv = gcpo::make_device_view(tokens, {rows});
  const auto pv = gcpo::make_device_view(logprob, {rows});
  const auto ev = gcpo::make_device_view(entropy, {rows});
  gcpo::sampling_options opt;
  opt.cfg_scale = static_cast<float>(cfg_scale);
  opt.temperature = temperature;
  opt.top_k = top_k;
  opt.seed = 42;
  opt.step = 100;
  const std::size_t ws_bytes = gcpo::generation_step_workspace_bytes(rows, V);
  const gcpo::workspace ws{output_slot("workspace", ws_bytes), ws_bytes, gcpo::memory_space::device};
  auto op = [&] { return gcpo::cuda::generation_step(cond, uncond, tv, pv, ev, opt, ws, stream()); };
  if (graph) {
    time_graph(st, op);
  } else {
    time_calls(st, l2::keep, op, [&] {
      return expect_tokens(st, tokens, rows, V) && expect_finite(st, logprob, rows, "logprob") &&
             expect_finite(st, entropy, rows, "entropy");
    });
  }
  set_bytes(st, 2.0 * static_cast<double>(rows * V) * static_cast<double>(elem) + static_cast<double>(rows) * 16.0);
}

}  // namespace

void register_sampling() {
  for (gcpo::dtype t : float_types()) {
    add(bench_name("generation_step", dtype_tag(t), {{"R", gen_rows}, {"V", V}}), bound::launch,
        [=](benchmark::State& st) { bm_generation_step(st, t, false); });
    add(bench_name("generation_step.graph", dtype_tag(t), {{"R", gen_rows}, {"V", V}}), bound::graph,
        [=](benchmark::State& st) { bm_generation_step(st, t, true); });
  }
  const gcpo::dtype bf = gcpo::dtype::bfloat16;
  for (const bool graph : {false, true}) {
    const char* op = graph ? "generation_step.graph" : "generation_step";
    add(bench_name(op, dtype_tag(bf), {{"R", gen_rows}, {"V", V}, {"T", 20}}), graph ? bound::graph : bound::launch,
        [=](benchmark::State& st) { bm_generation_step(st, bf, graph, 0, 20.0f); });
    add(bench_name(op, dtype_tag(bf), {{"R", gen_rows}, {"V", V}, {"top_k", 1000}}), graph ? bound::graph : bound::launch,
        [=](benchmark::State& st) { bm_generation_step(st, bf, graph, 1000); });
  }
}

}  // namespace gcpo_cuda_bench
