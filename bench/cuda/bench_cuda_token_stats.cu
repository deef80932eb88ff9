// bench/cuda/bench_cuda_token_stats.cu - token_stats (entropy, log-prob, logsumexp from
// [R, N, V] logits in one pass) and token_stats_backward (dlogprob -> dlogits, out of place),
// at R = 8 / 32, N = 576 / 1024, V = 16384, bf16 and fp32 logits, int64 tokens. Memory-bound:
// L2 flushed before every call.
//
// Bytes each call must move (s = bytes per logit):
//   token_stats           R*N*V*s (logits) + R*N*8 (tokens) + 3*R*N*4 (entropy, logprob, lse)
//   token_stats_backward  2*R*N*V*s (logits in, grad out) + R*N*(8 + 4 + 4) (tokens, lse, dlogprob)
#include "bench_cuda_common.hpp"

namespace gcpo_cuda_bench {
namespace {

double forward_bytes(gcpo::dtype t, std::int64_t R, std::int64_t N) {
  return static_cast<double>(R * N) * (static_cast<double>(V) * gcpo::dtype_size(t) + 8.0 + 12.0);
}
double backward_bytes(gcpo::dtype t, std::int64_t R, std::int64_t N) {
  return static_cast<double>(R * N) * (2.0 * static_cast<double>(V) * gcpo::dtype_size(t) + 16.0);
}

struct logits_inputs {
  void* logits;
  std::int64_t* tokens;
};

logits_inputs make_inputs(gcpo::dtype t, std::int64_t R, std::int64_t N) {
  const std::size_t elem = static_cast<std::size_t>(gcpo::dtype_size(t));
  const slot_ref lg = device_slot("logits", static_cast<std::size_t>(R * N * V) * elem, input_key("logits", t, {R, N, V}, 1));
  if (lg.fresh) fill_logits(lg.data, t, R * N, V, V, 1);
  const slot_ref tk = device_slot("tokens", static_cast<std::size_t>(R * N) * 8, input_key("tokens", gcpo::dtype::int64, {R, N, V}, 2));
  if (tk.fresh) upload_tokens(static_cast<std::int64_t*>(tk.data), R * N, V, 2);
  return logits_inputs{lg.data, static_cast<std::int64_t*>(tk.data)};
}

gcpo::const_tensor_view logits_view(const void* p, gcpo::dtype t, std::int64_t R, std::int64_t N) {
  gcpo::const_tensor_view v = gcpo::make_device_view(static_cast<const float*>(p), {R, N, V});
  v.type = t;  // same extents and element strides for every float type
  return v;
}

void bm_token_stats(benchmark::State& st, gcpo::dtype t, std::int64_t R, std::int64_t N) {
  const logits_inputs in = make_inputs(t, R, N);
  float* entropy = output_as<float>("out_a", R * N);
  float* logprob = output_as<float>("out_b", R * N);
  float* lse = output_as<float>("out_c", R * N);
  for (float* p : {entropy, logprob, lse}) poison(p, static_cast<std::size_t>(R * N) * 4);
  const auto lv = logits_view(in.logits, t, R, N);
  const auto tv = gcpo::make_device_view(static_cast<const std::int64_t*>(in.tokens), {R, N});
  const auto ev = gcpo::make_device_view(entropy, {R, N});
  const auto pv = gcpo::make_device_view(logprob, {R, N});
  const auto sv = gcpo::make_device_view(lse, {R, N});
  const gcpo::token_stats_options opt{};
  time_calls(
      st, l2::flush, [&] { return gcpo::cuda::token_stats(lv, tv, ev, pv, sv, opt, stream()); },
      [&] {
        return expect_finite(st, entropy, R * N, "entropy") && expect_finite(st, logprob, R * N, "logprob") &&
               expect_finite(st, lse, R * N, "lse");
      });
  set_bytes(st, forward_bytes(t, R, N));
}

void bm_token_stats_backward(benchmark::State& st, gcpo::dtype t, std::int64_t R, std::int64_t N) {
  const logits_inputs in = make_inputs(t, R, N);
  const std::size_t elem = static_cast<std::size_t>(gcpo::dtype_size(t));
  // lse from token_stats itself (the saved forward state), dlogprob ~ N(0, 1e-3).
  const slot_ref lse = device_slot("lse", static_cast<std::size_t>(R * N) * 4, input_key("lse", t, {R, N, V}, 1));
  const slot_ref grad = device_slot("grad_logprob", static_cast<std::size_t>(R * N) * 4, input_key("dlogprob", gcpo::dtype::float32, {R, N}, 3));
  const auto lv = logits_view(in.logits, t, R, N);
  const auto tv = gcpo::make_device_view(static_cast<const std::int64_t*>(in.tokens), {R, N});
  const auto lsev = gcpo::make_device_view(static_cast<float*>(lse.data), {R, N});
  const gcpo::token_stats_options opt{};
  if (lse.fresh) {
    const gcpo::status s = gcpo::cuda::token_stats(lv, tv, gcpo::tensor_view{}, gcpo::tensor_view{}, lsev, opt, stream());
    if (!s.ok()) {
      device_slot("lse", 1, "invalid");
      st.SkipWithError((std::string("token_stats (for lse): ") + s.message()).c_str());
      return;
    }
  }
  if (grad.fresh) fill_normal(grad.data, gcpo::dtype::float32, R * N, 0.0f, 1e-3f, 3);
  void* out = output_slot("grad_logits", static_cast<std::size_t>(R * N * V) * elem);
  poison(out, static_cast<std::size_t>(R * N * V) * elem);
  gcpo::tensor_view ov = gcpo::make_device_view(static_cast<float*>(out), {R, N, V});
  ov.type = t;
  const auto gv = gcpo::make_device_view(static_cast<const float*>(grad.data), {R, N});
  const gcpo::const_tensor_view lse_in = lsev;
  time_calls(
      st, l2::flush, [&] { return gcpo::cuda::token_stats_backward(lv, tv, lse_in, gv, ov, opt, stream()); },
      [&] {
        // first and last row of the gradient (a full check would copy gigabytes)
        const char* last = static_cast<const char*>(out) + static_cast<std::size_t>(R * N - 1) * V * elem;
        return expect_finite_typed(st, out, t, V, "grad_logits[0, 0, :]") &&
               expect_finite_typed(st, last, t, V, "grad_logits[R-1, N-1, :]");
      });
  set_bytes(st, backward_bytes(t, R, N));
}

}  // namespace

void register_token_stats() {
  for (gcpo::dtype t : float_types())
    for (std::int64_t R : rollout_counts())
      for (std::int64_t N : token_counts())
        add(bench_name("token_stats", dtype_tag(t), {{"R", R}, {"N", N}, {"V", V}}), bound::memory,
            [=](benchmark::State& st) { bm_token_stats(st, t, R, N); }, forward_bytes(t, R, N));
  for (gcpo::dtype t : float_types())
    for (std::int64_t R : rollout_counts())
      for (std::int64_t N : token_counts())
        add(bench_name("token_stats_backward", dtype_tag(t), {{"R", R}, {"N", N}, {"V", V}}), bound::memory,
            [=](benchmark::State& st) { bm_token_stats_backward(st, t, R, N); }, backward_bytes(t, R, N));
}

}  // namespace gcpo_cuda_bench
