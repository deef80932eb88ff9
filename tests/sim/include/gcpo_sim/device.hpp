// gcpo_sim/device.hpp - the device side of the gcpo SIMT simulator (tests only): lets g++ compile
// the real kernel sources (include/gcpo/detail/cuda/*.cuh, kernels/*.cu) and run every launch on
// the CPU with CUDA's execution model. See docs/design.md, "The SIMT simulator".
//
// Only what gcpo's kernels use is provided; anything else fails to compile. Each primitive is
// modelled exactly where the device is exact (integer and bit operations, IEEE-rounded _rn
// arithmetic, conversions, shuffles with their masks and widths); the approximate intrinsics
// (__expf, __fdividef) are the correctly rounded host functions (last-ulp differences).
#pragma once

#if !defined(GCPO_CUDA_SIMULATOR) || !defined(__CUDACC__)
#error "gcpo_sim/device.hpp: for kernel translation units of the simulator build (GCPO_CUDA_SIMULATOR and __CUDACC__)"
#endif
#if defined(__CUDA_ARCH__)
#error "the simulator compiles device code as host code: __CUDA_ARCH__ must not be defined"
#endif

#include <cmath>
#include <cstdint>
#include <cstring>
#include <tuple>
#include <type_traits>
#include <utility>

#include "ptx.hpp"  // models of the PTX instructions kernels write as inline assembly
#include "runtime.hpp"

// --- execution spaces ------------------------------------------------------------------------
#define __global__ inline
#define __device__
#define __host__
#define __forceinline__ inline __attribute__((always_inline))
#define __noinline__ __attribute__((noinline))
#define __launch_bounds__(...)
// Static shared memory: one object per kernel instantiation shared by the threads of the block
// (blocks run one at a time). Dynamic shared memory: GCPO_DYNAMIC_SHARED below.
#define __shared__ static

// --- launches and dynamic shared memory (see include/gcpo/detail/cuda/common.cuh) ------------
namespace gcpo_sim {
namespace detail {

template <class... P>
struct launcher {
  void (*kernel)(P...);
  launch_desc d;
  template <class... A>
  void operator()(A&&... args) const {
    static_assert(sizeof...(A) == sizeof...(P), "kernel launched with the wrong number of arguments");
    // The arguments are converted to the parameter types at the launch, as the device does;
    // every thread then gets its own copies.
    std::tuple<std::decay_t<P>...> params(std::forward<A>(args)...);
    void (*k)(P...) = kernel;
    launch(d, [k, params]() { std::apply(k, params); });
  }
};

template <class... P>
launcher<P...> make_launcher(void (*kernel)(P...), dim3 grid, dim3 block, std::size_t smem, cudaStream_t stream,
                             const char* name) {
  return launcher<P...>{kernel, launch_desc{name, grid, block, smem, stream}};
}

}  // namespace detail
}  // namespace gcpo_sim

#define GCPO_LAUNCH(grid, block, smem, stream, ...) \
  ::gcpo_sim::detail::make_launcher(&__VA_ARGS__, grid, block, smem, stream, #__VA_ARGS__)
#define GCPO_DYNAMIC_SHARED(T, name) \
  T* const name = static_cast<T*>(::gcpo_sim::detail::dynamic_shared_memory(nullptr))

// --- barriers ----------------------------------------------------------------------------------
inline void __syncthreads(const char* f = __builtin_FILE(), int l = __builtin_LINE()) {
  (void)::gcpo_sim::detail::barrier(::gcpo_sim::detail::bar_op::sync, 0, {f, l});
}
inline int __syncthreads_or(int p, const char* f = __builtin_FILE(), int l = __builtin_LINE()) {
  return ::gcpo_sim::detail::barrier(::gcpo_sim::detail::bar_op::sync_or, p, {f, l});
}
inline int __syncthreads_and(int p, const char* f = __builtin_FILE(), int l = __builtin_LINE()) {
  return ::gcpo_sim::detail::barrier(::gcpo_sim::detail::bar_op::sync_and, p, {f, l});
}
inline int __syncthreads_count(int p, const char* f = __builtin_FILE(), int l = __builtin_LINE()) {
  return ::gcpo_sim::detail::barrier(::gcpo_sim::detail::bar_op::sync_count, p, {f, l});
}

// --- warp primitives ---------------------------------------------------------------------------
namespace gcpo_sim {
namespace detail {
/// The types __shfl_*_sync accept (the device's overloads); others do not compile.
template <class T>
struct shuffle_type
    : std::integral_constant<bool, std::is_same<T, int>::value || std::is_same<T, unsigned int>::value ||
                                       std::is_same<T, long>::value || std::is_same<T, unsigned long>::value ||
                                       std::is_same<T, long long>::value ||
                                       std::is_same<T, unsigned long long>::value || std::is_same<T, float>::value ||
                                       std::is_same<T, double>::value> {};

template <class T>
T shuffle(warp_op op, unsigned mask, T v, int arg, int width, site s) {
  static_assert(shuffle_type<T>::value, "__shfl_*_sync: no such overload on the device");
  std::uint64_t bits = 0;
  std::memcpy(&bits, &v, sizeof(T));
  bits = warp_collective(op, mask, bits, arg, width, s);
  T r;
  std::memcpy(&r, &bits, sizeof(T));
  return r;
}
}  // namespace detail
}  // namespace gcpo_sim

template <class T>
inline T __shfl_sync(unsigned mask, T v, int src, int width = warpSize, const char* f = __builtin_FILE(),
                     int l = __builtin_LINE()) {
  return ::gcpo_sim::detail::shuffle(::gcpo_sim::detail::warp_op::shfl, mask, v, src, width, {f, l});
}
template <class T>
inline T __shfl_up_sync(unsigned mask, T v, unsigned delta, int width = warpSize, const char* f = __builtin_FILE(),
                        int l = __builtin_LINE()) {
  return ::gcpo_sim::detail::shuffle(::gcpo_sim::detail::warp_op::shfl_up, mask, v, static_cast<int>(delta), width,
                                     {f, l});
}
template <class T>
inline T __shfl_down_sync(unsigned mask, T v, unsigned delta, int width = warpSize, const char* f = __builtin_FILE(),
                          int l = __builtin_LINE()) {
  return ::gcpo_sim::detail::shuffle(::gcpo_sim::detail::warp_op::shfl_down, mask, v, static_cast<int>(delta), width,
                                     {f, l});
}
template <class T>
inline T __shfl_xor_sync(unsigned mask, T v, int lane_mask, int width = warpSize, const char* f = __builtin_FILE(),
                         int l = __builtin_LINE()) {
  return ::gcpo_sim::detail::shuffle(::gcpo_sim::detail::warp_op::shfl_xor, mask, v, lane_mask, width, {f, l});
}
inline unsigned __ballot_sync(unsigned mask, int p, const char* f = __builtin_FILE(), int l = __builtin_LINE()) {
  return static_cast<unsigned>(
      ::gcpo_sim::detail::warp_collective(::gcpo_sim::detail::warp_op::ballot, mask, p != 0, 0, warpSize, {f, l}));
}
inline int __any_sync(unsigned mask, int p, const char* f = __builtin_FILE(), int l = __builtin_LINE()) {
  return static_cast<int>(
      ::gcpo_sim::detail::warp_collective(::gcpo_sim::detail::warp_op::any, mask, p != 0, 0, warpSize, {f, l}));
}
inline int __all_sync(unsigned mask, int p, const char* f = __builtin_FILE(), int l = __builtin_LINE()) {
  return static_cast<int>(
      ::gcpo_sim::detail::warp_collective(::gcpo_sim::detail::warp_op::all, mask, p != 0, 0, warpSize, {f, l}));
}
inline void __syncwarp(unsigned mask = 0xffffffffu, const char* f = __builtin_FILE(), int l = __builtin_LINE()) {
  (void)::gcpo_sim::detail::warp_collective(::gcpo_sim::detail::warp_op::syncwarp, mask, 0, 0, warpSize, {f, l});
}

// --- atomics (relaxed, device scope: the device's atomicAdd) ----------------------------------
inline unsigned int atomicAdd(unsigned int* p, unsigned int v) { return __atomic_fetch_add(p, v, __ATOMIC_RELAXED); }
inline int atomicAdd(int* p, int v) { return __atomic_fetch_add(p, v, __ATOMIC_RELAXED); }
inline unsigned long long atomicAdd(unsigned long long* p, unsigned long long v) {
  return __atomic_fetch_add(p, v, __ATOMIC_RELAXED);
}
// __threadfence: a sequentially consistent fence (the device's fence.sc.gpu orders the calling
// thread's memory accesses for every thread of the device). Blocks run one after another here,
// so a missing fence is not found (docs/design.md); the ordering it gives the threads of a block
// under the concurrent schedule is the device's.
inline void __threadfence() { __atomic_thread_fence(__ATOMIC_SEQ_CST); }

// --- loads -------------------------------------------------------------------------------------
// __ldg: the read-only path; the same bytes as a plain load (for the overloads the device has).
inline float __ldg(const float* p) { return *p; }
inline double __ldg(const double* p) { return *p; }
inline int __ldg(const int* p) { return *p; }
inline unsigned int __ldg(const unsigned int* p) { return *p; }
inline long long __ldg(const long long* p) { return *p; }
inline unsigned long long __ldg(const unsigned long long* p) { return *p; }
inline uint2 __ldg(const uint2* p) { return *p; }
inline uint4 __ldg(const uint4* p) { return *p; }

// --- bit reinterpretation and integer intrinsics ----------------------------------------------
inline float __uint_as_float(unsigned int u) {
  float f;
  std::memcpy(&f, &u, 4);
  return f;
}
inline float __int_as_float(int u) {
  float f;
  std::memcpy(&f, &u, 4);
  return f;
}
inline unsigned int __float_as_uint(float f) {
  unsigned int u;
  std::memcpy(&u, &f, 4);
  return u;
}
inline int __float_as_int(float f) {
  int u;
  std::memcpy(&u, &f, 4);
  return u;
}
inline long long __double_as_longlong(double d) {
  long long u;
  std::memcpy(&u, &d, 8);
  return u;
}
inline double __longlong_as_double(long long u) {
  double d;
  std::memcpy(&d, &u, 8);
  return d;
}
inline int __clz(int x) { return x == 0 ? 32 : __builtin_clz(static_cast<unsigned>(x)); }
inline int __clzll(long long x) { return x == 0 ? 64 : __builtin_clzll(static_cast<unsigned long long>(x)); }
inline int __popc(unsigned int x) { return __builtin_popcount(x); }
inline int __popcll(unsigned long long x) { return __builtin_popcountll(x); }
inline int __ffs(int x) { return __builtin_ffs(x); }
inline int __ffsll(long long x) { return __builtin_ffsll(x); }

// --- floating point ----------------------------------------------------------------------------
// The _rn forms are single IEEE operations; the simulator's kernels are compiled with
// -ffp-contract=off, so no compiler fuses them (as the device compiler does not fuse _rn forms).
inline float __fadd_rn(float a, float b) { return a + b; }
inline float __fsub_rn(float a, float b) { return a - b; }
inline float __fmul_rn(float a, float b) { return a * b; }
inline float __fdiv_rn(float a, float b) { return a / b; }
inline float __fsqrt_rn(float a) { return std::sqrt(a); }
inline float __fmaf_rn(float a, float b, float c) { return std::fma(a, b, c); }
inline double __dadd_rn(double a, double b) { return a + b; }
inline double __dsub_rn(double a, double b) { return a - b; }
inline double __dmul_rn(double a, double b) { return a * b; }
inline double __ddiv_rn(double a, double b) { return a / b; }
inline double __dsqrt_rn(double a) { return std::sqrt(a); }
inline double __fma_rn(double a, double b, double c) { return std::fma(a, b, c); }
// Approximate on the device (a few ulp); correctly rounded here: results may differ in the last
// bits from a GPU's, never in a way the tests' tolerances do not cover.
inline float __expf(float x) { return std::exp(x); }
inline float __logf(float x) { return std::log(x); }
inline float __fdividef(float a, float b) { return a / b; }
inline int __float2int_rn(float x) { return static_cast<int>(std::nearbyint(x)); }
inline int __float2int_rz(float x) { return static_cast<int>(x); }
