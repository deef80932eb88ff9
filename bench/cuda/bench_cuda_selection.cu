// bench/cuda/bench_cuda_selection.cu - critical-token selection at R = 8 / 32, N = 576 (24x24)
// / 1024 (32x32): the whole select_critical_tokens (entropy + precomputed similarity map in,
// critical mask + counts out; intermediates in the workspace), alone and inside a CUDA graph,
// and each step on its own (initial_mask, smoothed_entropy, entropy_gradient, gradient_topk,
// low_similarity_mask, union_mask). Launch-bound (the maps are kilobytes): no L2 flush.
//
// Bytes each call must move (maps float32, masks uint8):
//   select_critical_tokens  R*N*4 (entropy) + R*N*4 (similarity) + R*N (critical) + R*4 (counts)
//   initial_mask            R*N
//   smoothed_entropy        2*R*N*4          entropy_gradient   2*R*N*4
//   gradient_topk           R*N*4 + R*N      low_similarity_mask R*N*4 + 2*R*N
//   union_mask              4*R*N + R*4
#include "bench_cuda_common.hpp"

namespace gcpo_cuda_bench {
namespace {

/// Entropy in [0, 9) nats and similarity in [-0.2, 1) as [R, N] float32 maps.
struct maps {
  float* entropy;
  float* similarity;
};

maps make_maps(std::int64_t R, std::int64_t N) {
  const std::size_t bytes = static_cast<std::size_t>(R * N) * 4;
  const slot_ref e = device_slot("entropy", bytes, input_key("entropy", gcpo::dtype::float32, {R, N}, 6));
  if (e.fresh) fill_uniform(static_cast<float*>(e.data), R * N, 0.0f, 9.0f, 6);
  const slot_ref s = device_slot("similarity", bytes, input_key("similarity", gcpo::dtype::float32, {R, N}, 7));
  if (s.fresh) fill_uniform(static_cast<float*>(s.data), R * N, -0.2f, 1.0f, 7);
  return maps{static_cast<float*>(e.data), static_cast<float*>(s.data)};
}

std::uint8_t* make_mask(const char* name, std::int64_t R, std::int64_t N, float frac, std::uint64_t seed) {
  const slot_ref m = device_slot(name, static_cast<std::size_t>(R * N), input_key(name, gcpo::dtype::uint8, {R, N}, seed));
  if (m.fresh) fill_mask(static_cast<std::uint8_t*>(m.data), R * N, frac, seed);
  return static_cast<std::uint8_t*>(m.data);
}

void bm_select(benchmark::State& st, std::int64_t R, std::int64_t N, bool graph) {
  const maps m = make_maps(R, N);
  auto* critical = output_as<std::uint8_t>("mask_a", R * N);
  auto* counts = output_as<std::int32_t>("counts", R);
  poison(critical, static_cast<std::size_t>(R * N));
  poison(counts, static_cast<std::size_t>(R) * 4);
  const std::size_t ws_bytes = gcpo::select_critical_tokens_workspace_bytes(R, N);
  const gcpo::workspace ws{output_slot("workspace", ws_bytes), ws_bytes, gcpo::memory_space::device};
  gcpo::selection_inputs inputs;
  inputs.entropy = gcpo::make_device_view(static_cast<const float*>(m.entropy), {R, N});
  inputs.similarity = gcpo::make_device_view(static_cast<const float*>(m.similarity), {R, N});
  gcpo::selection_outputs outputs;
  outputs.critical = gcpo::make_device_view(critical, {R, N});
  outputs.counts = gcpo::make_device_view(counts, {R});
  const gcpo::selection_options opt{};
  auto op = [&] { return gcpo::cuda::select_critical_tokens(inputs, outputs, opt, ws, stream()); };
  if (graph) {
    time_graph(st, op);
  } else {
    time_calls(st, l2::keep, op, [&] {
      if (!expect_mask(st, critical, R * N, "critical")) return false;
      std::vector<std::int32_t> host(static_cast<std::size_t>(R));
      GCPO_BENCH_CUDA(cudaMemcpy(host.data(), counts, host.size() * 4, cudaMemcpyDeviceToHost));
      gcpo::selection_counts c;
      (void)gcpo::selection_counts_for(N, opt, c);
      const std::int64_t want = c.initial + c.gradient + c.similarity;
      for (std::int64_t r = 0; r < R; ++r)
        if (host[static_cast<std::size_t>(r)] != want) {
          st.SkipWithError(("counts[" + std::to_string(r) + "] = " + std::to_string(host[static_cast<std::size_t>(r)]) +
                            ", expected " + std::to_string(want)).c_str());
          return false;
        }
      return true;
    });
  }
  set_bytes(st, static_cast<double>(R * N) * 9.0 + static_cast<double>(R) * 4.0);
}

/// One selection step `op` that moves `bytes_per_token` bytes per (r, t).
template <class Op, class Check>
void bm_step(benchmark::State& st, std::int64_t R, std::int64_t N, double bytes_per_token, Op&& op, Check&& check) {
  time_calls(st, l2::keep, op, check);
  set_bytes(st, static_cast<double>(R * N) * bytes_per_token);
}

void bm_initial_mask(benchmark::State& st, std::int64_t R, std::int64_t N) {
  auto* out = output_as<std::uint8_t>("mask_a", R * N);
  poison(out, static_cast<std::size_t>(R * N));
  const auto ov = gcpo::make_device_view(out, {R, N});
  const gcpo::selection_options opt{};
  bm_step(st, R, N, 1.0, [&] { return gcpo::cuda::initial_mask(ov, opt, stream()); },
          [&] { return expect_mask(st, out, R * N, "initial"); });
}

void bm_smoothed_entropy(benchmark::State& st, std::int64_t R, std::int64_t N) {
  const maps m = make_maps(R, N);
  float* out = output_as<float>("out_a", R * N);
  poison(out, static_cast<std::size_t>(R * N) * 4);
  const auto iv = gcpo::make_device_view(static_cast<const float*>(m.entropy), {R, N});
  const auto ov = gcpo::make_device_view(out, {R, N});
  const gcpo::selection_options opt{};
  bm_step(st, R, N, 8.0, [&] { return gcpo::cuda::smoothed_entropy(iv, ov, opt, stream()); },
          [&] { return expect_finite(st, out, R * N, "smoothed"); });
}

void bm_entropy_gradient(benchmark::State& st, std::int64_t R, std::int64_t N) {
  const maps m = make_maps(R, N);
  float* out = output_as<float>("out_a", R * N);
  poison(out, static_cast<std::size_t>(R * N) * 4);
  const auto iv = gcpo::make_device_view(static_cast<const float*>(m.entropy), {R, N});
  const auto ov = gcpo::make_device_view(out, {R, N});
  const gcpo::selection_options opt{};
  bm_step(st, R, N, 8.0, [&] { return gcpo::cuda::entropy_gradient(iv, ov, opt, stream()); },
          [&] { return expect_finite(st, out, R * N, "gradient"); });
}

void bm_gradient_topk(benchmark::State& st, std::int64_t R, std::int64_t N) {
  const maps m = make_maps(R, N);
  auto* out = output_as<std::uint8_t>("mask_a", R * N);
  poison(out, static_cast<std::size_t>(R * N));
  const auto iv = gcpo::make_device_view(static_cast<const float*>(m.entropy), {R, N});
  const auto ov = gcpo::make_device_view(out, {R, N});
  const gcpo::selection_options opt{};
  bm_step(st, R, N, 5.0, [&] { return gcpo::cuda::gradient_topk(iv, ov, opt, stream()); },
          [&] { return expect_mask(st, out, R * N, "gradient"); });
}

void bm_low_similarity_mask(benchmark::State& st, std::int64_t R, std::int64_t N) {
  const maps m = make_maps(R, N);
  const std::uint8_t* exclude = make_mask("exclude", R, N, 0.2f, 8);
  auto* out = output_as<std::uint8_t>("mask_a", R * N);
  poison(out, static_cast<std::size_t>(R * N));
  const auto sv = gcpo::make_device_view(static_cast<const float*>(m.similarity), {R, N});
  const auto xv = gcpo::make_device_view(exclude, {R, N});
  const auto ov = gcpo::make_device_view(out, {R, N});
  const gcpo::selection_options opt{};
  bm_step(st, R, N, 6.0, [&] { return gcpo::cuda::low_similarity_mask(sv, xv, ov, opt, stream()); },
          [&] { return expect_mask(st, out, R * N, "low_similarity"); });
}

void bm_union_mask(benchmark::State& st, std::int64_t R, std::int64_t N) {
  const std::uint8_t* a = make_mask("mask_in_a", R, N, 0.1f, 9);
  const std::uint8_t* b = make_mask("mask_in_b", R, N, 0.1f, 10);
  const std::uint8_t* c = make_mask("mask_in_c", R, N, 0.1f, 11);
  auto* out = output_as<std::uint8_t>("mask_a", R * N);
  auto* counts = output_as<std::int32_t>("counts", R);
  poison(out, static_cast<std::size_t>(R * N));
  const auto av = gcpo::make_device_view(a, {R, N});
  const auto bv = gcpo::make_device_view(b, {R, N});
  const auto cv = gcpo::make_device_view(c, {R, N});
  const auto ov = gcpo::make_device_view(out, {R, N});
  const auto nv = gcpo::make_device_view(counts, {R});
  time_calls(st, l2::keep, [&] { return gcpo::cuda::union_mask(av, bv, cv, ov, nv, stream()); },
             [&] { return expect_mask(st, out, R * N, "critical"); });
  set_bytes(st, static_cast<double>(R * N) * 4.0 + static_cast<double>(R) * 4.0);
}

}  // namespace

void register_selection() {
  for (std::int64_t R : rollout_counts())
    for (std::int64_t N : token_counts()) {
      add(bench_name("select_critical_tokens", "fp32", {{"R", R}, {"N", N}}), bound::launch,
          [=](benchmark::State& st) { bm_select(st, R, N, false); });
      add(bench_name("select_critical_tokens.graph", "fp32", {{"R", R}, {"N", N}}), bound::graph,
          [=](benchmark::State& st) { bm_select(st, R, N, true); });
    }
  struct step {
    const char* name;
    void (*fn)(benchmark::State&, std::int64_t, std::int64_t);
  };
  const step steps[] = {{"initial_mask", bm_initial_mask},       {"smoothed_entropy", bm_smoothed_entropy},
                        {"entropy_gradient", bm_entropy_gradient}, {"gradient_topk", bm_gradient_topk},
                        {"low_similarity_mask", bm_low_similarity_mask}, {"union_mask", bm_union_mask}};
  for (const step& s : steps)
    for (std::int64_t R : rollout_counts())
      for (std::int64_t N : token_counts()) {
        auto fn = s.fn;
        add(bench_name(s.name, "fp32", {{"R", R}, {"N", N}}), bound::launch,
            [=](benchmark::State& st) { fn(st, R, N); });
      }
}

}  // namespace gcpo_cuda_bench
