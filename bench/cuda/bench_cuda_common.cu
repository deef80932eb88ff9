// bench/cuda/bench_cuda_common.cu - definitions of bench_cuda_common.hpp: input generators,
// the L2 flush, device slots and the output checks.
#include "bench_cuda_common.hpp"

#include <cmath>
#include <cstring>
#include <map>

namespace gcpo_cuda_bench {
namespace {

// SplitMix64 finaliser: a counter-based hash, so every generated value depends only on the
// seed and its index (fills are reproducible and need no state).
__host__ __device__ inline std::uint64_t mix(std::uint64_t z) {
  z += 0x9E3779B97F4A7C15ull;
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
  return z ^ (z >> 31);
}
/// Uniform in (0, 1).
__host__ __device__ inline float uniform01(std::uint64_t h) {
  return (static_cast<float>(h >> 40) + 0.5f) * 5.9604644775390625e-8f;
}
__device__ inline float normal(std::uint64_t seed, std::uint64_t i) {
  const std::uint64_t h = mix(seed ^ mix(i));
  const float u1 = uniform01(h), u2 = uniform01(mix(h));
  return sqrtf(-2.0f * logf(u1)) * cospif(2.0f * u2);
}

template <class T>
__global__ void logits_kernel(T* out, std::int64_t rows, std::int64_t vocab, std::int64_t stride, std::uint64_t seed) {
  const std::int64_t n = rows * vocab;
  for (std::int64_t i = blockIdx.x * static_cast<std::int64_t>(blockDim.x) + threadIdx.x; i < n;
       i += static_cast<std::int64_t>(gridDim.x) * blockDim.x) {
    const std::int64_t r = i / vocab, v = i - r * vocab;
    const float scale = 0.6f + 3.0f * uniform01(mix(seed + 0x51ull * static_cast<std::uint64_t>(r)));
    float x = scale * normal(seed, static_cast<std::uint64_t>(i));
    if ((mix(seed ^ (static_cast<std::uint64_t>(i) * 0x9E37ull)) & 2047u) == 0) x += 6.0f;  // a few peaks per row
    out[r * stride + v] = gcpo::from_float<T>(x);
  }
}

template <class T>
__global__ void normal_kernel(T* out, std::int64_t n, float mean, float stddev, std::uint64_t seed) {
  for (std::int64_t i = blockIdx.x * static_cast<std::int64_t>(blockDim.x) + threadIdx.x; i < n;
       i += static_cast<std::int64_t>(gridDim.x) * blockDim.x)
    out[i] = gcpo::from_float<T>(mean + stddev * normal(seed, static_cast<std::uint64_t>(i)));
}

__global__ void uniform_kernel(float* out, std::int64_t n, float lo, float hi, std::uint64_t seed) {
  for (std::int64_t i = blockIdx.x * static_cast<std::int64_t>(blockDim.x) + threadIdx.x; i < n;
       i += static_cast<std::int64_t>(gridDim.x) * blockDim.x)
    out[i] = lo + (hi - lo) * uniform01(mix(seed ^ mix(static_cast<std::uint64_t>(i))));
}

__global__ void near_kernel(float* out, const float* base, std::int64_t n, float stddev, std::uint64_t seed) {
  for (std::int64_t i = blockIdx.x * static_cast<std::int64_t>(blockDim.x) + threadIdx.x; i < n;
       i += static_cast<std::int64_t>(gridDim.x) * blockDim.x)
    out[i] = base[i] + stddev * normal(seed, static_cast<std::uint64_t>(i));
}

__global__ void mask_kernel(std::uint8_t* out, std::int64_t n, float frac, std::uint64_t seed) {
  for (std::int64_t i = blockIdx.x * static_cast<std::int64_t>(blockDim.x) + threadIdx.x; i < n;
       i += static_cast<std::int64_t>(gridDim.x) * blockDim.x)
    out[i] = uniform01(mix(seed ^ mix(static_cast<std::uint64_t>(i)))) < frac ? 1 : 0;
}

/// Reads `n` 16-byte words and writes one word only if their xor is an impossible value, so the
/// compiler keeps the reads: the read half of the L2 flush.
__global__ void read_kernel(const uint4* in, std::int64_t n, unsigned* sink) {
  unsigned acc = 0;
  for (std::int64_t i = blockIdx.x * static_cast<std::int64_t>(blockDim.x) + threadIdx.x; i < n;
       i += static_cast<std::int64_t>(gridDim.x) * blockDim.x) {
    const uint4 w = in[i];
    acc ^= w.x ^ w.y ^ w.z ^ w.w;
  }
  if (acc == 0x9E3779B9u) *sink = acc;
}

constexpr std::size_t flush_bytes = std::size_t{128} << 20;  // 128 MiB, > 2.5x the H100's 50 MB L2

struct state {
  cudaStream_t stream = nullptr;
  cudaEvent_t start = nullptr, stop = nullptr;
  void* flush_write = nullptr;
  void* flush_read = nullptr;
  unsigned* sink = nullptr;
  int flush_count = 0;
  int sm_count = 1;
};
state& st() {
  static state s;
  return s;
}

struct slot {
  void* data = nullptr;
  std::size_t bytes = 0;
  std::string key;
};
std::map<std::string, slot>& slots() {
  static std::map<std::string, slot> m;
  return m;
}

unsigned grid_for(std::int64_t n, unsigned block) {
  const std::int64_t want = (n + block - 1) / block;
  const std::int64_t cap = static_cast<std::int64_t>(st().sm_count) * 16;
  return static_cast<unsigned>(want < 1 ? 1 : (want > cap ? cap : want));
}

std::int64_t env_int(const char* name, std::int64_t fallback) {
  const char* v = std::getenv(name);
  if (!v || !*v) return fallback;
  const long long x = std::atoll(v);
  return x > 0 ? x : fallback;
}

bool fail(benchmark::State& s, const std::string& msg) {
  s.SkipWithError(msg.c_str());
  return false;
}

}  // namespace

const char* dtype_tag(gcpo::dtype t) {
  switch (t) {
    case gcpo::dtype::float32: return "fp32";
    case gcpo::dtype::bfloat16: return "bf16";
    case gcpo::dtype::float16: return "fp16";
    case gcpo::dtype::int32: return "i32";
    case gcpo::dtype::int64: return "i64";
    case gcpo::dtype::uint8: return "u8";
  }
  return "unknown";
}

std::string bench_name(const char* op, const char* dtype, std::initializer_list<std::pair<const char*, std::int64_t>> dims) {
  std::string s = std::string("op:") + op + "/dtype:" + dtype;
  for (const auto& d : dims) s += std::string("/") + d.first + ":" + std::to_string(d.second);
  return s;
}

std::string input_key(const char* what, gcpo::dtype t, std::initializer_list<std::int64_t> dims, std::uint64_t seed) {
  std::string s = std::string(what) + ":" + dtype_tag(t);
  for (std::int64_t d : dims) s += "x" + std::to_string(d);
  return s + "#" + std::to_string(seed);
}

std::string& current_benchmark() {
  static std::string name;
  return name;
}

void init() {
  state& s = st();
  if (s.stream) return;
  int dev = 0;
  GCPO_BENCH_CUDA(cudaGetDevice(&dev));
  GCPO_BENCH_CUDA(cudaDeviceGetAttribute(&s.sm_count, cudaDevAttrMultiProcessorCount, dev));
  GCPO_BENCH_CUDA(cudaStreamCreateWithFlags(&s.stream, cudaStreamNonBlocking));
  GCPO_BENCH_CUDA(cudaEventCreate(&s.start));
  GCPO_BENCH_CUDA(cudaEventCreate(&s.stop));
  GCPO_BENCH_CUDA(cudaMalloc(&s.flush_write, flush_bytes));
  GCPO_BENCH_CUDA(cudaMalloc(&s.flush_read, flush_bytes));
  GCPO_BENCH_CUDA(cudaMalloc(&s.sink, sizeof(unsigned)));
  GCPO_BENCH_CUDA(cudaMemsetAsync(s.flush_read, 0x5A, flush_bytes, s.stream));
  GCPO_BENCH_CUDA(cudaStreamSynchronize(s.stream));
}

cudaStream_t stream() { return st().stream; }
cudaEvent_t event_start() { return st().start; }
cudaEvent_t event_stop() { return st().stop; }

std::int64_t launch_iterations() {
  static const std::int64_t n = env_int("GCPO_BENCH_LAUNCH_ITERS", 500);
  return n;
}

int graph_calls() {
  static const int n = static_cast<int>(env_int("GCPO_BENCH_GRAPH_CALLS", 32));
  return n;
}

std::int64_t graph_iterations() {
  static const std::int64_t n = env_int("GCPO_BENCH_GRAPH_ITERS", 50);
  return n;
}

std::int64_t memory_iterations(double bytes) {
  static const double target_s = static_cast<double>(env_int("GCPO_BENCH_MEMORY_MS", 20)) * 1e-3;
  const double expected_s = bytes / 2.5e12;
  const double n = expected_s > 0.0 ? target_s / expected_s : 200.0;
  return n < 10.0 ? 10 : (n > 200.0 ? 200 : static_cast<std::int64_t>(n));
}

void flush_l2() {
  state& s = st();
  GCPO_BENCH_CUDA(cudaMemsetAsync(s.flush_write, ++s.flush_count & 0xff, flush_bytes, s.stream));
  const std::int64_t words = static_cast<std::int64_t>(flush_bytes / sizeof(uint4));
  read_kernel<<<grid_for(words, 256), 256, 0, s.stream>>>(static_cast<const uint4*>(s.flush_read), words, s.sink);
  GCPO_BENCH_CUDA(cudaGetLastError());
}

slot_ref device_slot(const char* name, std::size_t bytes, const std::string& key) {
  slot& sl = slots()[name];
  if (bytes == 0) bytes = 1;
  bool fresh = sl.key != key;
  if (sl.bytes < bytes) {
    if (sl.data) {
      GCPO_BENCH_CUDA(cudaStreamSynchronize(stream()));
      GCPO_BENCH_CUDA(cudaFree(sl.data));
    }
    sl.data = nullptr;
    GCPO_BENCH_CUDA(cudaMalloc(&sl.data, bytes));
    sl.bytes = bytes;
    fresh = true;
  }
  sl.key = key;
  return slot_ref{sl.data, fresh};
}

void* output_slot(const char* name, std::size_t bytes) { return device_slot(name, bytes, "output").data; }

void fill_logits(void* data, gcpo::dtype type, std::int64_t rows, std::int64_t vocab, std::int64_t row_stride,
                 std::uint64_t seed) {
  with_float_type(type, [&](auto tag) {
    using T = decltype(tag);
    logits_kernel<T><<<grid_for(rows * vocab, 256), 256, 0, stream()>>>(static_cast<T*>(data), rows, vocab, row_stride,
                                                                        seed);
  });
  GCPO_BENCH_CUDA(cudaGetLastError());
}

void fill_normal(void* data, gcpo::dtype type, std::int64_t count, float mean, float stddev, std::uint64_t seed) {
  with_float_type(type, [&](auto tag) {
    using T = decltype(tag);
    normal_kernel<T><<<grid_for(count, 256), 256, 0, stream()>>>(static_cast<T*>(data), count, mean, stddev, seed);
  });
  GCPO_BENCH_CUDA(cudaGetLastError());
}

void fill_uniform(float* data, std::int64_t count, float lo, float hi, std::uint64_t seed) {
  uniform_kernel<<<grid_for(count, 256), 256, 0, stream()>>>(data, count, lo, hi, seed);
  GCPO_BENCH_CUDA(cudaGetLastError());
}

void fill_near(float* out, const float* base, std::int64_t count, float stddev, std::uint64_t seed) {
  near_kernel<<<grid_for(count, 256), 256, 0, stream()>>>(out, base, count, stddev, seed);
  GCPO_BENCH_CUDA(cudaGetLastError());
}

void fill_mask(std::uint8_t* data, std::int64_t count, float frac, std::uint64_t seed) {
  mask_kernel<<<grid_for(count, 256), 256, 0, stream()>>>(data, count, frac, seed);
  GCPO_BENCH_CUDA(cudaGetLastError());
}

static std::vector<std::int64_t> host_tokens(std::int64_t count, std::int64_t vocab, std::uint64_t seed) {
  std::vector<std::int64_t> host(static_cast<std::size_t>(count));
  for (std::int64_t i = 0; i < count; ++i)
    host[static_cast<std::size_t>(i)] = static_cast<std::int64_t>(mix(seed ^ mix(static_cast<std::uint64_t>(i))) %
                                                                  static_cast<std::uint64_t>(vocab));
  return host;
}

void upload_tokens(std::int64_t* data, std::int64_t count, std::int64_t vocab, std::uint64_t seed) {
  const std::vector<std::int64_t> host = host_tokens(count, vocab, seed);
  GCPO_BENCH_CUDA(cudaMemcpyAsync(data, host.data(), host.size() * sizeof(std::int64_t), cudaMemcpyHostToDevice,
                                  stream()));
  GCPO_BENCH_CUDA(cudaStreamSynchronize(stream()));
}

std::int64_t distinct_tokens(std::int64_t count, std::int64_t vocab, std::uint64_t seed) {
  std::vector<char> seen(static_cast<std::size_t>(vocab), 0);
  std::int64_t distinct = 0;
  for (std::int64_t t : host_tokens(count, vocab, seed))
    if (!seen[static_cast<std::size_t>(t)]) {
      seen[static_cast<std::size_t>(t)] = 1;
      ++distinct;
    }
  return distinct;
}

void poison(void* data, std::size_t bytes) { GCPO_BENCH_CUDA(cudaMemsetAsync(data, 0xFF, bytes, stream())); }

bool sync_ok(benchmark::State& s) {
  const cudaError_t e = cudaStreamSynchronize(stream());
  const cudaError_t last = cudaGetLastError();
  if (e != cudaSuccess) {
    // A kernel fault leaves the context unusable: stop here, naming the benchmark, rather than
    // in whichever benchmark makes the next CUDA call (scripts/run-cuda-bench.py resumes after it).
    std::fprintf(stderr, "gcpo_bench_cuda: %s: CUDA error after the call: %s\n", current_benchmark().c_str(), cudaGetErrorString(e));
    std::abort();
  }
  if (last != cudaSuccess) return fail(s, std::string("CUDA launch error: ") + cudaGetErrorString(last));
  return true;
}

bool expect_finite_typed(benchmark::State& s, const void* data, gcpo::dtype type, std::int64_t count, const char* what) {
  const std::size_t elem = static_cast<std::size_t>(gcpo::dtype_size(type));
  std::vector<unsigned char> host(static_cast<std::size_t>(count) * elem);
  GCPO_BENCH_CUDA(cudaMemcpyAsync(host.data(), data, host.size(), cudaMemcpyDeviceToHost, stream()));
  GCPO_BENCH_CUDA(cudaStreamSynchronize(stream()));
  for (std::int64_t i = 0; i < count; ++i) {
    float v = 0.0f;
    const unsigned char* p = host.data() + static_cast<std::size_t>(i) * elem;
    if (type == gcpo::dtype::float32) {
      std::memcpy(&v, p, 4);
    } else {
      std::uint16_t bits;
      std::memcpy(&bits, p, 2);
      v = type == gcpo::dtype::bfloat16 ? gcpo::bfloat16{bits}.to_float() : gcpo::float16{bits}.to_float();
    }
    if (!std::isfinite(v))
      return fail(s, std::string("output `") + what + "` element " + std::to_string(i) + " is " +
                         (v != v ? "NaN (unwritten?)" : "infinite") + " after the warm-up call");
  }
  return true;
}

bool expect_finite(benchmark::State& s, const float* data, std::int64_t count, const char* what) {
  return expect_finite_typed(s, data, gcpo::dtype::float32, count, what);
}

bool expect_mask(benchmark::State& s, const std::uint8_t* data, std::int64_t count, const char* what) {
  std::vector<std::uint8_t> host(static_cast<std::size_t>(count));
  GCPO_BENCH_CUDA(cudaMemcpyAsync(host.data(), data, host.size(), cudaMemcpyDeviceToHost, stream()));
  GCPO_BENCH_CUDA(cudaStreamSynchronize(stream()));
  for (std::int64_t i = 0; i < count; ++i)
    if (host[static_cast<std::size_t>(i)] > 1)
      return fail(s, std::string("mask `") + what + "` element " + std::to_string(i) + " is " +
                         std::to_string(host[static_cast<std::size_t>(i)]) + " (unwritten?) after the warm-up call");
  return true;
}

bool expect_tokens(benchmark::State& s, const std::int64_t* data, std::int64_t count, std::int64_t vocab) {
  std::vector<std::int64_t> host(static_cast<std::size_t>(count));
  GCPO_BENCH_CUDA(cudaMemcpyAsync(host.data(), data, host.size() * sizeof(std::int64_t), cudaMemcpyDeviceToHost,
                                  stream()));
  GCPO_BENCH_CUDA(cudaStreamSynchronize(stream()));
  for (std::int64_t i = 0; i < count; ++i)
    if (host[static_cast<std::size_t>(i)] < 0 || host[static_cast<std::size_t>(i)] >= vocab)
      return fail(s, "sampled token " + std::to_string(i) + " is " + std::to_string(host[static_cast<std::size_t>(i)]) +
                         ", outside [0, V)");
  return true;
}

}  // namespace gcpo_cuda_bench
