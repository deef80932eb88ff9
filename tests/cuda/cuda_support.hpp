// tests/cuda/cuda_support.hpp - what the CUDA tests share: the visible skip without a GPU,
// device buffers (with an element offset, to test misaligned pointers), random data, and
// `run_checked`, which runs an operator with poisoned outputs, checks that a second run and a
// CUDA-graph replay give bitwise the same bytes, and returns the first run's outputs.
//
// Nothing here touches CUDA before a test case calls it (no static initialisers), so the test
// binaries list their cases on machines without a GPU.
#pragma once

#include <catch2/catch.hpp>
#include <cuda_runtime_api.h>

#include <gcpo/cuda.hpp>
#include <gcpo/gcpo.hpp>

#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <functional>
#include <limits>
#include <random>
#include <string>
#include <utility>
#include <vector>

#include "support.hpp"

#if defined(GCPO_CUDA_SIMULATOR)
#include <gcpo_sim/runtime.hpp>
#endif

namespace gcpo_cuda_test {

/// True when the kernels run in the SIMT simulator (tests/sim) rather than on a GPU: the same
/// test sources, with smaller shapes where a GPU-sized one would take minutes on CPU threads.
#if defined(GCPO_CUDA_SIMULATOR)
constexpr bool simulated = true;
#else
constexpr bool simulated = false;
#endif

/// `gpu` on a GPU, `sim` under the simulator (a shape, a count, a list of cases).
template <class T>
T gpu_or_sim(T gpu, T sim) {
  return simulated ? sim : gpu;
}

/// True when a CUDA device is usable (checked once, on first use).
inline bool device_available() {
  static int state = -1;
  if (state < 0) {
    int n = 0;
    const cudaError_t e = cudaGetDeviceCount(&n);
    if (e != cudaSuccess) {
      std::printf("(cudaGetDeviceCount: %s)\n", cudaGetErrorString(e));
      (void)cudaGetLastError();
    }
    state = (e == cudaSuccess && n > 0) ? 1 : 0;
  }
  return state == 1;
}

}  // namespace gcpo_cuda_test

/// First statement of every CUDA test case: without a device (a GPU, or the simulator), say so
/// and return; CTest reports the case as skipped ("SKIPPED: " is its SKIP_REGULAR_EXPRESSION).
#define GCPO_REQUIRE_CUDA_DEVICE()                                                                       \
  do {                                                                                                   \
    if (!gcpo_cuda_test::device_available()) {                                                           \
      std::printf("SKIPPED: no CUDA device: %s\n", Catch::getResultCapture().getCurrentTestName().c_str()); \
      return;                                                                                            \
    }                                                                                                    \
  } while (0)

/// First statement of a case only a real GPU can run (sizes beyond the simulator's reach):
/// skipped under the simulator, and without a device.
#if defined(GCPO_CUDA_SIMULATOR)
#define GCPO_REQUIRE_REAL_GPU()                                                                          \
  do {                                                                                                   \
    std::printf("SKIPPED: needs a real GPU (simulated build): %s\n",                                   \
                Catch::getResultCapture().getCurrentTestName().c_str());                                 \
    return;                                                                                              \
  } while (0)
#else
#define GCPO_REQUIRE_REAL_GPU() GCPO_REQUIRE_CUDA_DEVICE()
#endif

/// A CUDA runtime call that must succeed.
#define GCPO_CUDA_CHECK(call)                                                               \
  do {                                                                                      \
    const cudaError_t gcpo_e_ = (call);                                                     \
    INFO(#call << ": " << cudaGetErrorString(gcpo_e_));                                     \
    REQUIRE(gcpo_e_ == cudaSuccess);                                                        \
  } while (0)

/// A gcpo operator that must succeed.
#define GCPO_OK(expr)                                                                       \
  do {                                                                                      \
    const gcpo::status gcpo_s_ = (expr);                                                    \
    INFO(#expr << ": " << gcpo::to_string(gcpo_s_.code()) << ": " << gcpo_s_.message());  \
    REQUIRE(gcpo_s_.ok());                                                                  \
  } while (0)

namespace gcpo_cuda_test {

/// Device memory holding `n` elements of T starting `offset` elements past a 256-byte
/// boundary (offset > 0: a misaligned pointer). The allocation ends right after the last
/// element, so a write past it hits the simulator's guard zone (or compute-sanitizer's).
template <class T>
class device_buffer {
 public:
  device_buffer() = default;
  explicit device_buffer(std::size_t n, std::size_t offset = 0) : n_(n), offset_(offset) {
    bytes_ = (n + offset) * sizeof(T);
    if (bytes_ == 0) bytes_ = 1;
    GCPO_CUDA_CHECK(cudaMalloc(&raw_, bytes_));
    GCPO_CUDA_CHECK(cudaMemset(raw_, 0, bytes_));
  }
  device_buffer(const std::vector<T>& host, std::size_t offset = 0) : device_buffer(host.size(), offset) {
    upload(host);
  }
  device_buffer(const device_buffer&) = delete;
  device_buffer& operator=(const device_buffer&) = delete;
  device_buffer(device_buffer&& o) noexcept { swap(o); }
  device_buffer& operator=(device_buffer&& o) noexcept {
    swap(o);
    return *this;
  }
  ~device_buffer() {
    if (raw_) (void)cudaFree(raw_);
  }

  T* get() const { return reinterpret_cast<T*>(raw_) + offset_; }
  std::size_t size() const { return n_; }
  std::size_t bytes() const { return n_ * sizeof(T); }

  void upload(const std::vector<T>& host) {
    REQUIRE(host.size() == n_);
    if (n_) GCPO_CUDA_CHECK(cudaMemcpy(get(), host.data(), bytes(), cudaMemcpyHostToDevice));
  }
  std::vector<T> download() const {
    std::vector<T> host(n_);
    if (n_) GCPO_CUDA_CHECK(cudaMemcpy(host.data(), get(), bytes(), cudaMemcpyDeviceToHost));
    return host;
  }
  /// Fills the elements with a byte (0xff: NaN floats, 255 masks, -1 integers).
  void poison(unsigned char byte = 0xff) {
    if (n_) GCPO_CUDA_CHECK(cudaMemset(get(), byte, bytes()));
  }
  gcpo::workspace workspace() const { return gcpo::workspace{get(), bytes(), gcpo::memory_space::device}; }

 private:
  void swap(device_buffer& o) noexcept {
    std::swap(raw_, o.raw_);
    std::swap(n_, o.n_);
    std::swap(offset_, o.offset_);
    std::swap(bytes_, o.bytes_);
  }
  void* raw_ = nullptr;
  std::size_t n_ = 0, offset_ = 0, bytes_ = 0;
};

/// A device workspace of `bytes` bytes (at least one byte, so the pointer is never null).
inline device_buffer<unsigned char> device_workspace(std::size_t bytes) {
  return device_buffer<unsigned char>(bytes ? bytes : 1);
}

/// A (blocking) stream, destroyed at scope exit. Blocking on purpose: the uploads and poisoning
/// (cudaMemcpy / cudaMemset on the legacy stream, which may return before their DMA is done) are
/// then ordered before the operators enqueued on it.
class stream {
 public:
  stream() { GCPO_CUDA_CHECK(cudaStreamCreate(&s_)); }
  stream(const stream&) = delete;
  stream& operator=(const stream&) = delete;
  ~stream() { (void)cudaStreamDestroy(s_); }
  operator cudaStream_t() const { return s_; }  // NOLINT(google-explicit-constructor)

 private:
  cudaStream_t s_ = nullptr;
};

/// An output to snapshot: bytes at a device address.
struct output {
  const void* ptr;
  std::size_t bytes;
};
template <class T>
output out(const device_buffer<T>& b) {
  return output{b.get(), b.bytes()};
}

inline std::vector<unsigned char> snapshot(const output& o) {
  std::vector<unsigned char> h(o.bytes);
  if (o.bytes) GCPO_CUDA_CHECK(cudaMemcpy(h.data(), o.ptr, o.bytes, cudaMemcpyDeviceToHost));
  return h;
}

inline void poison_outputs(const std::vector<output>& outs, unsigned char byte) {
  for (const output& o : outs)
    if (o.bytes) GCPO_CUDA_CHECK(cudaMemset(const_cast<void*>(o.ptr), byte, o.bytes));
}

/// Index and bytes of the first difference, or "" when equal.
inline std::string first_difference(const std::vector<unsigned char>& a, const std::vector<unsigned char>& b) {
  if (a.size() != b.size()) return "sizes differ";
  for (std::size_t i = 0; i < a.size(); ++i)
    if (a[i] != b[i]) {
      char buf[96];
      std::snprintf(buf, sizeof buf, "byte %zu: 0x%02x then 0x%02x", i, a[i], b[i]);
      return buf;
    }
  return "";
}

/// Runs `op(stream)` (which enqueues an operator and returns its status) with `outs` poisoned
/// with 0xff: once; again after poisoning with 0x7f (bitwise the same bytes: deterministic, and
/// every output byte is written; simulated, with the grid capped at 2 blocks); and, when `graph`, captured in a CUDA graph and replayed after
/// poisoning (bitwise the same again). Returns the first run's bytes of each output.
inline std::vector<std::vector<unsigned char>> run_checked(const std::function<gcpo::status(cudaStream_t)>& op,
                                                           const std::vector<output>& outs, bool graph = true) {
  stream s;
  poison_outputs(outs, 0xff);
  GCPO_OK(op(s));
  GCPO_CUDA_CHECK(cudaStreamSynchronize(s));
  std::vector<std::vector<unsigned char>> first;
  for (const output& o : outs) first.push_back(snapshot(o));

  poison_outputs(outs, 0x7f);
#if defined(GCPO_CUDA_SIMULATOR)
  // Simulated, the second run has at most 2 blocks: every grid-stride loop then runs many times
  // per block, and must give the same bits (shared memory reused across iterations, tails).
  gcpo_sim::set_grid_limit(2);
  const gcpo::status capped = op(s);
  gcpo_sim::set_grid_limit(0);
  GCPO_OK(capped);
#else
  GCPO_OK(op(s));
#endif
  GCPO_CUDA_CHECK(cudaStreamSynchronize(s));
  for (std::size_t i = 0; i < outs.size(); ++i) {
    const std::string d = first_difference(first[i], snapshot(outs[i]));
    INFO("output " << i << " differs between two runs (nondeterminism, an element left unwritten"
                   << (simulated ? ", or a result that depends on the grid size: the second run had 2 blocks" : "")
                   << "): " << d);
    CHECK(d.empty());
  }

  if (graph) {
    cudaGraph_t g = nullptr;
    cudaGraphExec_t exec = nullptr;
    GCPO_CUDA_CHECK(cudaStreamBeginCapture(s, cudaStreamCaptureModeGlobal));
    const gcpo::status st = op(s);
    const cudaError_t end = cudaStreamEndCapture(s, &g);
    {
      INFO("captured call: " << st.message());
      REQUIRE(st.ok());
    }
    GCPO_CUDA_CHECK(end);
    GCPO_CUDA_CHECK(cudaGraphInstantiate(&exec, g, 0));
    poison_outputs(outs, 0xff);
    GCPO_CUDA_CHECK(cudaGraphLaunch(exec, s));
    GCPO_CUDA_CHECK(cudaStreamSynchronize(s));
    for (std::size_t i = 0; i < outs.size(); ++i) {
      const std::string d = first_difference(first[i], snapshot(outs[i]));
      INFO("output " << i << " differs between a direct run and a CUDA-graph replay: " << d);
      CHECK(d.empty());
    }
    (void)cudaGraphExecDestroy(exec);
    (void)cudaGraphDestroy(g);
  }
  return first;
}

/// Reinterprets snapshot bytes as elements of T.
template <class T>
std::vector<T> as(const std::vector<unsigned char>& bytes) {
  std::vector<T> v(bytes.size() / sizeof(T));
  if (!v.empty()) std::memcpy(v.data(), bytes.data(), v.size() * sizeof(T));
  return v;
}

/// Bitwise equality of floats, except that any NaN equals any NaN (x86 and CUDA write different
/// NaN payloads), with the first mismatches.
inline void check_same_floats(const std::vector<float>& got, const std::vector<float>& want, const std::string& what) {
  REQUIRE(got.size() == want.size());
  std::size_t bad = 0;
  std::string report;
  for (std::size_t i = 0; i < got.size(); ++i) {
    const bool same = std::memcmp(&got[i], &want[i], sizeof(float)) == 0 || (std::isnan(got[i]) && std::isnan(want[i]));
    if (!same) {
      if (bad < 5) {
        char buf[160];
        std::snprintf(buf, sizeof buf, "%s[%zu]: got %.9g, expected %.9g (not bitwise equal)\n", what.c_str(), i,
                      static_cast<double>(got[i]), static_cast<double>(want[i]));
        report += buf;
      }
      ++bad;
    }
  }
  if (bad) report += what + ": " + std::to_string(bad) + " of " + std::to_string(got.size()) + " elements differ\n";
  INFO(report);
  CHECK(bad == 0);
}

/// Widens any float element type to float.
template <class T>
std::vector<float> widen(const std::vector<T>& v) {
  std::vector<float> out(v.size());
  for (std::size_t i = 0; i < v.size(); ++i) out[i] = gcpo::to_float(v[i]);
  return out;
}

/// Narrows floats to T (round to nearest even).
template <class T>
std::vector<T> narrow(const std::vector<float>& v) {
  std::vector<T> out(v.size());
  for (std::size_t i = 0; i < v.size(); ++i) out[i] = gcpo::from_float<T>(v[i]);
  return out;
}

/// Element-wise check with a report of the first mismatches (support.hpp's compare).
template <class A, class B>
void check_close(const A& got, const B& want, double atol, double rtol, const std::string& what) {
  const gcpo_test::comparison c = gcpo_test::compare(got, want, atol, rtol, what);
  INFO(c.report);
  CHECK(c.ok());
}

/// Bitwise equality of two arrays (masks, tokens), with the first mismatches.
template <class T>
void check_equal(const std::vector<T>& got, const std::vector<T>& want, const std::string& what) {
  REQUIRE(got.size() == want.size());
  std::size_t bad = 0;
  std::string report;
  for (std::size_t i = 0; i < got.size(); ++i)
    if (std::memcmp(&got[i], &want[i], sizeof(T)) != 0) {
      if (bad < 5)
        report += what + "[" + std::to_string(i) + "]: got " + std::to_string(static_cast<long long>(got[i])) +
                  ", expected " + std::to_string(static_cast<long long>(want[i])) + "\n";
      ++bad;
    }
  if (bad) report += what + ": " + std::to_string(bad) + " of " + std::to_string(got.size()) + " elements differ\n";
  INFO(report);
  CHECK(bad == 0);
}

/// Random numbers with a printed seed.
struct rng {
  std::mt19937_64 gen;
  explicit rng(std::uint64_t seed) : gen(seed) {}
  float normal(float mean = 0.0f, float sd = 1.0f) { return std::normal_distribution<float>(mean, sd)(gen); }
  float uniform(float lo = 0.0f, float hi = 1.0f) { return std::uniform_real_distribution<float>(lo, hi)(gen); }
  std::int64_t integer(std::int64_t lo, std::int64_t hi) {  // [lo, hi]
    return std::uniform_int_distribution<std::int64_t>(lo, hi)(gen);
  }
  bool chance(double p) { return std::bernoulli_distribution(p)(gen); }
};

/// A host view and a device view of the same layout.
template <class T>
gcpo::const_tensor_view strided(const T* data, std::initializer_list<std::int64_t> shape,
                                std::initializer_list<std::int64_t> strides, gcpo::memory_space space) {
  return gcpo::make_strided_view(data, shape, strides, space);
}

inline constexpr gcpo::memory_space host = gcpo::memory_space::host;
inline constexpr gcpo::memory_space device = gcpo::memory_space::device;

/// Spec tolerances (section 8).
constexpr double value_atol = 1e-5, value_rtol = 1e-4;
constexpr double grad_atol = 1e-7, grad_rtol = 1e-3;

}  // namespace gcpo_cuda_test
