// bench/cuda/bench_cuda_copy.cu - the two reference points every other figure is read against:
// device-to-device copy bandwidth (cudaMemcpyAsync of 1 GiB, bytes read + written) and the
// latency of an empty kernel, launched alone and inside a CUDA graph.
#include "bench_cuda_common.hpp"

namespace gcpo_cuda_bench {
namespace {

constexpr std::int64_t copy_mib = 1024;
constexpr double copy_bytes = 2.0 * static_cast<double>(std::int64_t{copy_mib} << 20);  // read + written

__global__ void empty_kernel() {}

void bm_copy(benchmark::State& st) {
  const std::size_t bytes = static_cast<std::size_t>(copy_mib) << 20;
  const slot_ref src = device_slot("copy_src", bytes, "copy_src");
  void* dst = output_slot("copy_dst", bytes);
  if (src.fresh) fill_normal(src.data, gcpo::dtype::float32, static_cast<std::int64_t>(bytes / 4), 0.0f, 1.0f, 11);
  time_calls(st, l2::keep, [&] {
    const cudaError_t e = cudaMemcpyAsync(dst, src.data, bytes, cudaMemcpyDeviceToDevice, stream());
    return e == cudaSuccess ? gcpo::ok()
                            : gcpo::status::error(gcpo::status_code::cuda_error, "cudaMemcpyAsync: %s", cudaGetErrorString(e));
  });
  set_bytes(st, copy_bytes);
}

gcpo::status launch_empty() {
  empty_kernel<<<1, 1, 0, stream()>>>();
  const cudaError_t e = cudaGetLastError();
  return e == cudaSuccess ? gcpo::ok() : gcpo::status::error(gcpo::status_code::cuda_error, "%s", cudaGetErrorString(e));
}

}  // namespace

void register_copy() {
  add(bench_name("d2d_copy", "u8", {{"MiB", copy_mib}}), bound::memory, bm_copy, copy_bytes);
  add(bench_name("empty_kernel", "none", {}), bound::launch, [](benchmark::State& st) { time_calls(st, l2::keep, launch_empty); });
  add(bench_name("empty_kernel.graph", "none", {}), bound::graph,
      [](benchmark::State& st) { time_graph(st, launch_empty); });
}

}  // namespace gcpo_cuda_bench
