// bench/cuda/bench_cuda_checks.cu - count_nonfinite over the [R, N, V] logits (the check a
// trainer runs before selecting tokens). Memory-bound: L2 flushed before every call.
// Bytes: R*N*V*s read + 8 written.
#include "bench_cuda_common.hpp"

namespace gcpo_cuda_bench {
namespace {

double check_bytes(gcpo::dtype t, std::int64_t R, std::int64_t N) {
  return static_cast<double>(R * N * V) * gcpo::dtype_size(t) + 8.0;
}

void bm_count_nonfinite(benchmark::State& st, gcpo::dtype t, std::int64_t R, std::int64_t N) {
  const std::size_t elem = static_cast<std::size_t>(gcpo::dtype_size(t));
  const slot_ref lg = device_slot("logits", static_cast<std::size_t>(R * N * V) * elem, input_key("logits", t, {R, N, V}, 1));
  if (lg.fresh) fill_logits(lg.data, t, R * N, V, V, 1);
  auto* count = output_as<std::int64_t>("count", 1);
  poison(count, 8);
  gcpo::const_tensor_view xv = gcpo::make_device_view(static_cast<const float*>(lg.data), {R, N, V});
  xv.type = t;
  const auto cv = gcpo::make_device_view(count, {1});
  time_calls(
      st, l2::flush, [&] { return gcpo::cuda::count_nonfinite(xv, cv, stream()); },
      [&] {
        std::int64_t host = -1;
        GCPO_BENCH_CUDA(cudaMemcpy(&host, count, 8, cudaMemcpyDeviceToHost));
        if (host == 0) return true;
        st.SkipWithError(("count_nonfinite found " + std::to_string(host) + " in finite logits").c_str());
        return false;
      });
  set_bytes(st, check_bytes(t, R, N));
}

}  // namespace

void register_checks() {
  for (gcpo::dtype t : float_types())
    for (std::int64_t R : rollout_counts())
      for (std::int64_t N : token_counts())
        add(bench_name("count_nonfinite", dtype_tag(t), {{"R", R}, {"N", N}, {"V", V}}), bound::memory,
            [=](benchmark::State& st) { bm_count_nonfinite(st, t, R, N); }, check_bytes(t, R, N));
}

}  // namespace gcpo_cuda_bench
