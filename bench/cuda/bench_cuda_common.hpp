// bench/cuda/bench_cuda_common.hpp - what every CUDA benchmark of gcpo_bench_cuda shares:
// the real shapes, device buffers filled with non-trivial random data, the L2 flush, and the
// two timing loops (one launch timed with CUDA events; K launches captured in a CUDA graph).
//
// Method (docs/performance.md says more):
// - Google Benchmark with manual time: each iteration's time is the CUDA-event time of the
//   operator on the benchmark stream; every benchmark has a fixed iteration count (so the run's
//   length is known in advance); the reported figure is the median over repetitions of the
//   per-repetition mean (--benchmark_repetitions=N --benchmark_report_aggregates_only=true).
// - Memory-bound operators flush the 50 MB L2 before every iteration: a 128 MiB write
//   (cudaMemsetAsync) followed by a 128 MiB read of another buffer, so the timed kernel starts
//   with a cold cache holding no dirty lines to write back.
// - `SetBytesProcessed` gets the bytes the operator must move (each input read once, each
//   output written once), so bytes_per_second reads as achieved bandwidth; the counter `bytes`
//   holds the same figure per call for the summary.
// - Memory-bound benchmarks run about GCPO_BENCH_MEMORY_MS (default 20) ms of kernel time per
//   repetition, estimated from their bytes (10 to 200 iterations).
// - Launch-bound operators run GCPO_BENCH_LAUNCH_ITERS (default 500) iterations, and also
//   `<op>.graph`: K calls captured in one CUDA graph (GCPO_BENCH_GRAPH_CALLS, default 32), time
//   per call = graph time / K, over GCPO_BENCH_GRAPH_ITERS (default 50) graph launches, next to
//   `empty_kernel` and `empty_kernel.graph`.
// - Outputs are poisoned (0xFF bytes: NaN for floats, 255 for masks) before the warm-up call and
//   checked after it, so an operator that leaves an output unwritten is reported, not timed.
//
// Names: "op:<operator>/dtype:<bf16|fp32|...>/R:<R>/N:<N>/V:<V>/D:<D>/G:<G>" (only the
// dimensions the operator has, in that order). bench/baseline/torch_baseline.py prints the same
// names, and scripts/bench-summary.py joins the two on them.
#pragma once

#include <benchmark/benchmark.h>
#include <cuda_runtime_api.h>

#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <initializer_list>
#include <string>
#include <utility>
#include <vector>

#include <gcpo/cuda.hpp>
#include <gcpo/gcpo.hpp>

namespace gcpo_cuda_bench {

// --- shapes ------------------------------------------------------------------------------------
constexpr std::int64_t V = 16384;       ///< Janus-Pro / LlamaGen codebook
constexpr std::int64_t D = 2048;        ///< Janus-Pro 1B gen_aligner output
constexpr std::int64_t gen_rows = 16;   ///< rows of one generation step (16 images, CFG pairs)
constexpr double cfg_scale = 5.0;       ///< Janus-Pro training run
inline const std::vector<std::int64_t>& rollout_counts() { static const std::vector<std::int64_t> v{8, 32}; return v; }
inline const std::vector<std::int64_t>& token_counts() { static const std::vector<std::int64_t> v{576, 1024}; return v; }
inline const std::vector<std::int64_t>& group_sizes() { static const std::vector<std::int64_t> v{4, 8}; return v; }
/// The logits / embedding dtypes measured.
inline const std::vector<gcpo::dtype>& float_types() {
  static const std::vector<gcpo::dtype> v{gcpo::dtype::bfloat16, gcpo::dtype::float32};
  return v;
}

/// "bf16", "fp32", "fp16" (the tags the baseline uses too).
const char* dtype_tag(gcpo::dtype t);
/// "op:<op>/dtype:<tag>/R:8/N:576..." from (name, value) pairs in order.
std::string bench_name(const char* op, const char* dtype, std::initializer_list<std::pair<const char*, std::int64_t>> dims);

// --- CUDA plumbing ------------------------------------------------------------------------------
/// Aborts with the call, file and line when a CUDA runtime call fails (benchmarks may abort).
#define GCPO_BENCH_CUDA(call)                                                                      \
  do {                                                                                             \
    const cudaError_t gcpo_bench_err_ = (call);                                                    \
    if (gcpo_bench_err_ != cudaSuccess) {                                                          \
      std::fprintf(stderr, "gcpo_bench_cuda: %s failed at %s:%d: %s\n", #call, __FILE__, __LINE__, \
                   cudaGetErrorString(gcpo_bench_err_));                                           \
      std::abort();                                                                                \
    }                                                                                              \
  } while (0)

/// Creates the stream, the events and the flush buffers. Call once, after checking for a GPU.
void init();
/// The stream every operator runs on (non-blocking, created by `init`).
cudaStream_t stream();
/// Iterations of each launch-bound benchmark (GCPO_BENCH_LAUNCH_ITERS, default 500).
std::int64_t launch_iterations();
/// Calls per CUDA graph in the `.graph` benchmarks (GCPO_BENCH_GRAPH_CALLS, default 32).
int graph_calls();
/// Graph launches per `.graph` benchmark (GCPO_BENCH_GRAPH_ITERS, default 50).
std::int64_t graph_iterations();
/// Enqueues the L2 flush on `stream()`: a 128 MiB write, then a 128 MiB read of another buffer.
void flush_l2();
/// The two events of the timed region.
cudaEvent_t event_start();
cudaEvent_t event_stop();

// --- device buffers -----------------------------------------------------------------------------
/// A named, grow-only device allocation that remembers which inputs it holds: `fresh` is true
/// when `key` differs from the key of the last request of this slot (the caller then fills it).
struct slot_ref {
  void* data;
  bool fresh;
};
slot_ref device_slot(const char* name, std::size_t bytes, const std::string& key);
/// A slot for an output (key "output"): never reported fresh.
void* output_slot(const char* name, std::size_t bytes);
template <class T>
T* output_as(const char* name, std::int64_t count) {
  return static_cast<T*>(output_slot(name, static_cast<std::size_t>(count) * sizeof(T)));
}

/// Fills (asynchronous, on `stream()`; every value is a hash of `seed` and the index):
/// logits [rows, V] of `type` with row pitch `row_stride`: per row a scale in [0.6, 3.6] times a
/// normal draw, plus a few peaked entries, as a codebook head produces.
void fill_logits(void* data, gcpo::dtype type, std::int64_t rows, std::int64_t vocab, std::int64_t row_stride,
                 std::uint64_t seed);
/// `count` normal values (mean, stddev) of `type`.
void fill_normal(void* data, gcpo::dtype type, std::int64_t count, float mean, float stddev, std::uint64_t seed);
/// `count` float32 values uniform in [lo, hi).
void fill_uniform(float* data, std::int64_t count, float lo, float hi, std::uint64_t seed);
/// out[i] = base[i] + stddev * normal (float32): reference log-probs near the policy's.
void fill_near(float* out, const float* base, std::int64_t count, float stddev, std::uint64_t seed);
/// `count` uint8 values, 1 with probability `frac`.
void fill_mask(std::uint8_t* data, std::int64_t count, float frac, std::uint64_t seed);
/// `count` int64 tokens uniform in [0, vocab) generated on the host (deterministic), copied to
/// `data` (synchronises).
void upload_tokens(std::int64_t* data, std::int64_t count, std::int64_t vocab, std::uint64_t seed);
/// How many distinct ids `upload_tokens(_, count, vocab, seed)` uploads (host only).
std::int64_t distinct_tokens(std::int64_t count, std::int64_t vocab, std::uint64_t seed);
/// memset 0xFF (NaN for floats, 255 for masks), asynchronous.
void poison(void* data, std::size_t bytes);

// --- output checks after the warm-up call (they synchronise) ----------------------------------
/// Every one of `count` float32 values at `data` is finite; otherwise SkipWithError naming `what`.
bool expect_finite(benchmark::State& st, const float* data, std::int64_t count, const char* what);
/// The same for `count` values of `type` (float32 / bfloat16 / float16).
bool expect_finite_typed(benchmark::State& st, const void* data, gcpo::dtype type, std::int64_t count, const char* what);
/// Every one of `count` bytes is 0 or 1.
bool expect_mask(benchmark::State& st, const std::uint8_t* data, std::int64_t count, const char* what);
/// Every one of `count` int64 tokens is in [0, vocab).
bool expect_tokens(benchmark::State& st, const std::int64_t* data, std::int64_t count, std::int64_t vocab);

/// Synchronises the stream; a pending launch error becomes SkipWithError, an error of the
/// work itself (a kernel fault: the context is lost) aborts the process naming the benchmark.
bool sync_ok(benchmark::State& st);
/// The name of the benchmark running now (set by `add`).
std::string& current_benchmark();

// --- timing ---------------------------------------------------------------------------------------
enum class l2 { keep, flush };

/// Bytes per call: SetBytesProcessed (for bytes_per_second) and the counter `bytes`.
inline void set_bytes(benchmark::State& st, double bytes_per_call) {
  st.SetBytesProcessed(static_cast<std::int64_t>(bytes_per_call * static_cast<double>(st.iterations())));
  st.counters["bytes"] = benchmark::Counter(bytes_per_call);
}

/// Warm-up call, output check, then per iteration: [flush], event, op, event, synchronise;
/// the iteration's manual time is the event time. `op` returns gcpo::status; `check` returns
/// bool (false after it called SkipWithError).
template <class Op, class Check>
void time_calls(benchmark::State& st, l2 cache, Op&& op, Check&& check) {
  const gcpo::status w = op();
  if (!w.ok()) {
    st.SkipWithError(w.message());
    return;
  }
  if (!sync_ok(st) || !check()) return;
  cudaStream_t s = stream();
  for (auto _ : st) {
    if (cache == l2::flush) flush_l2();
    GCPO_BENCH_CUDA(cudaEventRecord(event_start(), s));
    const gcpo::status r = op();
    GCPO_BENCH_CUDA(cudaEventRecord(event_stop(), s));
    GCPO_BENCH_CUDA(cudaEventSynchronize(event_stop()));
    if (!r.ok()) {
      st.SkipWithError(r.message());
      break;
    }
    float ms = 0.0f;
    GCPO_BENCH_CUDA(cudaEventElapsedTime(&ms, event_start(), event_stop()));
    st.SetIterationTime(static_cast<double>(ms) * 1e-3);
  }
}

template <class Op>
void time_calls(benchmark::State& st, l2 cache, Op&& op) {
  time_calls(st, cache, static_cast<Op&&>(op), [] { return true; });
}

/// Launch-bound latency inside a CUDA graph: `graph_calls()` calls of `op` captured in one
/// graph (after an uncaptured warm-up call); per iteration one graph launch timed with events;
/// the iteration's manual time is the graph time / calls.
template <class Op>
void time_graph(benchmark::State& st, Op&& op) {
  const int calls = graph_calls();
  cudaStream_t s = stream();
  const gcpo::status w = op();
  if (!w.ok()) {
    st.SkipWithError(w.message());
    return;
  }
  if (!sync_ok(st)) return;
  cudaGraph_t graph = nullptr;
  GCPO_BENCH_CUDA(cudaStreamBeginCapture(s, cudaStreamCaptureModeThreadLocal));
  gcpo::status r;
  for (int i = 0; i < calls && r.ok(); ++i) r = op();
  const cudaError_t end = cudaStreamEndCapture(s, &graph);
  if (!r.ok() || end != cudaSuccess) {
    (void)cudaGetLastError();
    if (graph) (void)cudaGraphDestroy(graph);
    st.SkipWithError(!r.ok() ? r.message() : cudaGetErrorString(end));
    return;
  }
  cudaGraphExec_t exec = nullptr;
  const cudaError_t inst = cudaGraphInstantiate(&exec, graph, 0);
  if (inst != cudaSuccess) {
    (void)cudaGetLastError();
    (void)cudaGraphDestroy(graph);
    st.SkipWithError(cudaGetErrorString(inst));
    return;
  }
  GCPO_BENCH_CUDA(cudaGraphLaunch(exec, s));  // warm-up launch of the graph itself
  if (sync_ok(st)) {
    for (auto _ : st) {
      GCPO_BENCH_CUDA(cudaEventRecord(event_start(), s));
      GCPO_BENCH_CUDA(cudaGraphLaunch(exec, s));
      GCPO_BENCH_CUDA(cudaEventRecord(event_stop(), s));
      GCPO_BENCH_CUDA(cudaEventSynchronize(event_stop()));
      float ms = 0.0f;
      GCPO_BENCH_CUDA(cudaEventElapsedTime(&ms, event_start(), event_stop()));
      st.SetIterationTime(static_cast<double>(ms) * 1e-3 / calls);
    }
  }
  st.counters["calls_per_graph"] = benchmark::Counter(calls);
  GCPO_BENCH_CUDA(cudaGraphExecDestroy(exec));
  GCPO_BENCH_CUDA(cudaGraphDestroy(graph));
}

// --- registration -------------------------------------------------------------------------------
enum class bound {
  memory,  ///< iterations from the bytes: about GCPO_BENCH_MEMORY_MS (default 20) ms of kernel time, 10..200
  launch,  ///< `launch_iterations()` iterations
  graph,   ///< `graph_iterations()` launches of a graph of `graph_calls()` calls
};

/// Iterations of a memory-bound benchmark moving `bytes` per call (assumes 2.5 TB/s).
std::int64_t memory_iterations(double bytes);

/// Registers `fn` under `name` with manual time in microseconds and the iteration count of `b`
/// (`bytes`: what one call moves, for memory-bound benchmarks). Every benchmark has a fixed
/// iteration count, so a run's length is known in advance; --benchmark_repetitions repeats it.
template <class Fn>
benchmark::internal::Benchmark* add(const std::string& name, bound b, Fn fn, double bytes = 0.0) {
  benchmark::internal::Benchmark* bm = benchmark::RegisterBenchmark(name.c_str(), [name, fn](benchmark::State& st) {
    current_benchmark() = name;
    fn(st);
  });
  bm->UseManualTime()->Unit(benchmark::kMicrosecond);
  bm->Iterations(b == bound::memory ? memory_iterations(bytes) : b == bound::launch ? launch_iterations() : graph_iterations());
  return bm;
}

/// Dispatches a float dtype to a C++ type (float, gcpo::bfloat16, gcpo::float16).
template <class F>
void with_float_type(gcpo::dtype t, F&& f) {
  switch (t) {
    case gcpo::dtype::bfloat16: f(gcpo::bfloat16{}); break;
    case gcpo::dtype::float16: f(gcpo::float16{}); break;
    default: f(float{}); break;
  }
}

/// A key naming the contents of an input slot.
std::string input_key(const char* what, gcpo::dtype t, std::initializer_list<std::int64_t> dims, std::uint64_t seed);

// --- the families (one file each) --------------------------------------------------------------
void register_copy();          // bench_cuda_copy.cu: d2d copy bandwidth, empty kernel
void register_token_stats();   // bench_cuda_token_stats.cu
void register_checks();        // bench_cuda_checks.cu: count_nonfinite
void register_similarity();    // bench_cuda_similarity.cu
void register_selection();     // bench_cuda_selection.cu
void register_advantages();    // bench_cuda_advantages.cu
void register_weight();        // bench_cuda_weight.cu
/// [R, N] float32 policy log-probs in [-9, -0.5) and reference log-probs near them (N(0, 0.4)),
/// shared by the weight and loss benchmarks (bench_cuda_weight.cu).
void make_logps(std::int64_t R, std::int64_t N, const float** logp, const float** ref);
void register_loss();          // bench_cuda_loss.cu
void register_sampling();      // bench_cuda_sampling.cu: generation_step

}  // namespace gcpo_cuda_bench
