// bench/cuda/bench_cuda_loss.cu - the GCPO loss with the official Janus options (no ratio
// clipping, on-policy, beta = 0.01, weight clip 0.5, weight not detached, token mean over the
// batch; mask = about 30% critical tokens): gcpo_loss_forward (stats only), gcpo_loss_backward
// (dense dL/dlogp), both in one call (gcpo_loss_forward_backward: one pass, two launches) and
// the two calls back to back (gcpo_loss_forward_then_backward: three launches), at R = 8 / 32,
// N = 576 / 1024, alone and inside a CUDA graph. Launch-bound.
//
// Bytes each call must move: forward R*N*(4 + 4 + 1) + R*4 + 24 (stats);
// backward R*N*(4 + 4 + 1 + 4) + R*4; forward + backward the sum.
#include "bench_cuda_common.hpp"

namespace gcpo_cuda_bench {
namespace {

enum class pass { forward, backward, both, separate };

void bm_loss(benchmark::State& st, std::int64_t R, std::int64_t N, pass p, bool graph) {
  const float* lp = nullptr;
  const float* rf = nullptr;
  make_logps(R, N, &lp, &rf);
  const slot_ref adv = device_slot("advantages", static_cast<std::size_t>(R) * 4, input_key("adv", gcpo::dtype::float32, {R}, 15));
  if (adv.fresh) fill_normal(adv.data, gcpo::dtype::float32, R, 0.0f, 1.0f, 15);
  const slot_ref mask = device_slot("loss_mask", static_cast<std::size_t>(R * N), input_key("loss_mask", gcpo::dtype::uint8, {R, N}, 16));
  if (mask.fresh) fill_mask(static_cast<std::uint8_t*>(mask.data), R * N, 0.3f, 16);
  float* stats = output_as<float>("stats", gcpo::loss_stat_count);
  float* grad = output_as<float>("out_a", R * N);
  poison(stats, gcpo::loss_stat_count * 4);
  poison(grad, static_cast<std::size_t>(R * N) * 4);
  const std::size_t ws_bytes = gcpo::gcpo_loss_workspace_bytes(R, N);
  const gcpo::workspace ws{output_slot("workspace", ws_bytes), ws_bytes, gcpo::memory_space::device};

  gcpo::loss_inputs in;
  in.logp = gcpo::make_device_view(lp, {R, N});
  in.ref_logp = gcpo::make_device_view(rf, {R, N});
  in.advantages = gcpo::make_device_view(static_cast<const float*>(adv.data), {R});
  in.mask = gcpo::make_device_view(static_cast<const std::uint8_t*>(mask.data), {R, N});
  gcpo::loss_outputs out;
  out.stats = gcpo::make_device_view(stats, {gcpo::loss_stat_count});
  const auto gv = gcpo::make_device_view(grad, {R, N});
  gcpo::loss_options opt;  // defaults = the official Janus run
  opt.beta = 0.01f;
  opt.weight_clip = 0.5f;

  auto op = [&]() -> gcpo::status {
    if (p == pass::both) return gcpo::cuda::gcpo_loss_forward_backward(in, out, gcpo::const_tensor_view{}, gv, opt, ws, stream());
    if (p != pass::backward) GCPO_TRY(gcpo::cuda::gcpo_loss_forward(in, out, opt, ws, stream()));
    if (p != pass::forward) GCPO_TRY(gcpo::cuda::gcpo_loss_backward(in, gcpo::const_tensor_view{}, gv, opt, ws, stream()));
    return gcpo::ok();
  };
  if (graph) {
    time_graph(st, op);
  } else {
    time_calls(st, l2::keep, op, [&] {
      if (p != pass::backward && !expect_finite(st, stats, gcpo::loss_stat_count, "stats")) return false;
      return p == pass::forward || expect_finite(st, grad, R * N, "grad_logp");
    });
  }
  const double fwd = static_cast<double>(R * N) * 9.0 + static_cast<double>(R) * 4.0 + 24.0;
  const double bwd = static_cast<double>(R * N) * 13.0 + static_cast<double>(R) * 4.0;
  set_bytes(st, p == pass::forward ? fwd : (p == pass::backward ? bwd : fwd + bwd));
}

}  // namespace

void register_loss() {
  struct variant {
    const char* name;
    pass p;
  };
  const variant variants[] = {{"gcpo_loss_forward", pass::forward},
                              {"gcpo_loss_backward", pass::backward},
                              {"gcpo_loss_forward_backward", pass::both},
                              {"gcpo_loss_forward_then_backward", pass::separate}};
  for (const variant& v : variants)
    for (std::int64_t R : rollout_counts())
      for (std::int64_t N : token_counts()) {
        const pass p = v.p;
        add(bench_name(v.name, "fp32", {{"R", R}, {"N", N}}), bound::launch,
            [=](benchmark::State& st) { bm_loss(st, R, N, p, false); });
        add(bench_name((std::string(v.name) + ".graph").c_str(), "fp32", {{"R", R}, {"N", N}}), bound::graph,
            [=](benchmark::State& st) { bm_loss(st, R, N, p, true); });
      }
}

}  // namespace gcpo_cuda_bench
