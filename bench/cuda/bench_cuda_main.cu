// bench/cuda/bench_cuda_main.cu - entry point of gcpo_bench_cuda: checks for a GPU, records
// the card in the benchmark context, registers every family and runs Google Benchmark.
//
//   gcpo_bench_cuda --benchmark_repetitions=5 --benchmark_report_aggregates_only=true
//                   --benchmark_min_time=0.05 --benchmark_out=cuda.json --benchmark_out_format=json
// Environment: GCPO_BENCH_LAUNCH_ITERS (iterations of launch-bound benchmarks, default 500),
// GCPO_BENCH_GRAPH_CALLS (calls per captured graph, default 64).
// Without a GPU it can still list the benchmarks (--benchmark_list_tests); a run exits with 2.
#include <cstring>
#include <string>

#include "bench_cuda_common.hpp"

int main(int argc, char** argv) {
  bool listing = false;
  for (int i = 1; i < argc; ++i)
    if (std::strncmp(argv[i], "--benchmark_list_tests", 22) == 0 && std::strcmp(argv[i], "--benchmark_list_tests=false") != 0)
      listing = true;

  benchmark::Initialize(&argc, argv);
  if (benchmark::ReportUnrecognizedArguments(argc, argv)) return 1;

  int devices = 0;
  const cudaError_t e = cudaGetDeviceCount(&devices);
  const bool have_gpu = e == cudaSuccess && devices > 0;
  if (!have_gpu) (void)cudaGetLastError();
  if (!have_gpu && !listing) {
    std::fprintf(stderr, "gcpo_bench_cuda: no CUDA device (%s): nothing to measure\n",
                 e == cudaSuccess ? "0 devices" : cudaGetErrorString(e));
    return 2;
  }
  if (have_gpu) {
    cudaDeviceProp prop{};
    GCPO_BENCH_CUDA(cudaGetDeviceProperties(&prop, 0));
    int runtime = 0, driver = 0;
    GCPO_BENCH_CUDA(cudaRuntimeGetVersion(&runtime));
    GCPO_BENCH_CUDA(cudaDriverGetVersion(&driver));
    benchmark::AddCustomContext("gpu", prop.name);
    benchmark::AddCustomContext("gpu_sm", std::to_string(prop.major) + "." + std::to_string(prop.minor));
    benchmark::AddCustomContext("gpu_multiprocessors", std::to_string(prop.multiProcessorCount));
    benchmark::AddCustomContext("gpu_l2_bytes", std::to_string(prop.l2CacheSize));
    benchmark::AddCustomContext("gpu_memory_bytes", std::to_string(prop.totalGlobalMem));
    benchmark::AddCustomContext("cuda_runtime", std::to_string(runtime));
    benchmark::AddCustomContext("cuda_driver", std::to_string(driver));
    gcpo_cuda_bench::init();
  }
  benchmark::AddCustomContext("launch_iterations", std::to_string(gcpo_cuda_bench::launch_iterations()));
  benchmark::AddCustomContext("graph_calls", std::to_string(gcpo_cuda_bench::graph_calls()));
  benchmark::AddCustomContext("graph_iterations", std::to_string(gcpo_cuda_bench::graph_iterations()));

  // Registration touches no CUDA state, so listing works without a GPU.
  gcpo_cuda_bench::register_copy();
  gcpo_cuda_bench::register_token_stats();
  gcpo_cuda_bench::register_checks();
  gcpo_cuda_bench::register_similarity();
  gcpo_cuda_bench::register_selection();
  gcpo_cuda_bench::register_advantages();
  gcpo_cuda_bench::register_weight();
  gcpo_cuda_bench::register_loss();
  gcpo_cuda_bench::register_sampling();

  benchmark::RunSpecifiedBenchmarks();
  benchmark::Shutdown();
  return 0;
}
