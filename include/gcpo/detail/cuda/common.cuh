// gcpo/detail/cuda/common.cuh - what every gcpo kernel shares: error checking of launches,
// device-side loads and stores of the element types, 16-byte vector (un)packing, float keys
// whose unsigned order is the selection order, and deterministic block reductions.
//
// CUDA translation units only (nvcc). Everything here runs on the stream it is given: no
// allocation, no synchronisation, no host round trip.
#pragma once

#if !defined(__CUDACC__)
#error "gcpo/detail/cuda/*.cuh hold device code: include them from a .cu file compiled by nvcc (or link gcpo::cuda)"
#endif

#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <cstdint>
#include <limits>

#include "../../gcpo.hpp"

namespace gcpo {
namespace detail {
namespace cuda_impl {

constexpr float f_inf = __builtin_huge_valf();

// --- launches and dynamic shared memory ----------------------------------------------------
//
// Every launch is written `GCPO_LAUNCH(grid, block, smem, stream, kernel)(args...)`, and every
// dynamic shared array `GCPO_DYNAMIC_SHARED(T, name);`: under nvcc exactly `kernel<<<grid,
// block, smem, stream>>>(args...)` and `extern __shared__ T name[]`. The test-only SIMT
// simulator (tests/sim, built with GCPO_CUDA_SIMULATOR) defines both in its <cuda_runtime.h> to
// run the same kernels on the CPU (see docs/design.md); nothing else differs.
#if defined(GCPO_CUDA_SIMULATOR)
#if !defined(GCPO_LAUNCH) || !defined(GCPO_DYNAMIC_SHARED)
#error "GCPO_CUDA_SIMULATOR: the simulator's <cuda_runtime.h> (tests/sim/include) must come first on the include path"
#endif
#else
#define GCPO_LAUNCH(grid, block, smem, stream, ...) __VA_ARGS__<<<grid, block, smem, stream>>>
#define GCPO_DYNAMIC_SHARED(T, name) extern __shared__ T name[]
#endif

// --- errors --------------------------------------------------------------------------------

/// A `cuda_error` status for `e`, after clearing the error state so the next call starts clean.
inline status cuda_failure(cudaError_t e, const char* what) noexcept {
  (void)cudaGetLastError();
  return status::error(status_code::cuda_error, "%s: %s (%s)", what, cudaGetErrorString(e), cudaGetErrorName(e));
}

/// Checks the launch just made (configuration errors, missing kernel image, sticky errors).
inline status check_launch(const char* kernel) noexcept {
  const cudaError_t e = cudaGetLastError();
  if (e != cudaSuccess) return cuda_failure(e, kernel);
  return ok();
}

/// Checks a CUDA runtime call.
inline status check_call(cudaError_t e, const char* what) noexcept {
  if (e != cudaSuccess) return cuda_failure(e, what);
  return ok();
}

// --- launch geometry -----------------------------------------------------------------------

constexpr std::int64_t max_grid = 0x7fffffff;  ///< gridDim.x limit

inline std::int64_t ceil_div(std::int64_t a, std::int64_t b) noexcept { return (a + b - 1) / b; }

/// Blocks for `work` items of `per_block` each, capped at the grid limit (kernels loop).
inline unsigned grid_for(std::int64_t work, std::int64_t per_block) noexcept {
  std::int64_t g = ceil_div(work, per_block);
  if (g < 1) g = 1;
  if (g > max_grid) g = max_grid;
  return static_cast<unsigned>(g);
}

/// Bits needed to write every index in [0, n): 0 for n <= 1.
inline int index_bits(std::int64_t n) noexcept {
  int b = 0;
  while (b < 63 && (std::int64_t{1} << b) < n) ++b;
  return b;
}

/// True when `p` is aligned to `a` bytes.
inline bool aligned_to(const void* p, std::size_t a) noexcept { return reinterpret_cast<std::uintptr_t>(p) % a == 0; }

// --- element loads and stores --------------------------------------------------------------

__device__ __forceinline__ float load_f(float x) { return x; }
__device__ __forceinline__ float load_f(bfloat16 x) { return __uint_as_float(static_cast<std::uint32_t>(x.bits) << 16); }
__device__ __forceinline__ float load_f(float16 x) { return __half2float(__ushort_as_half(x.bits)); }

template <class T> __device__ __forceinline__ T store_f(float x);
template <> __device__ __forceinline__ float store_f<float>(float x) { return x; }
template <> __device__ __forceinline__ float16 store_f<float16>(float x) {
  return float16{__half_as_ushort(__float2half_rn(x))};
}

/// bfloat16 bits of x rounded to nearest even, exactly as the host's bfloat16::from_float.
__device__ __forceinline__ std::uint16_t bf16_bits_rn(float x) {
  std::uint32_t u = __float_as_uint(x);
  if ((u & 0x7fffffffu) > 0x7f800000u) return static_cast<std::uint16_t>((u >> 16) | 0x40u);
  u += 0x7fffu + ((u >> 16) & 1u);
  return static_cast<std::uint16_t>(u >> 16);
}

template <> __device__ __forceinline__ bfloat16 store_f<bfloat16>(float x) { return bfloat16{bf16_bits_rn(x)}; }

/// Elements of T in one 16-byte vector.
template <class T>
struct vec16 {
  static constexpr int n = 16 / static_cast<int>(sizeof(T));
};

/// Unpacks a 16-byte vector of T into floats.
__device__ __forceinline__ void unpack(const uint4& v, float (&out)[4], float) {
  out[0] = __uint_as_float(v.x);
  out[1] = __uint_as_float(v.y);
  out[2] = __uint_as_float(v.z);
  out[3] = __uint_as_float(v.w);
}
__device__ __forceinline__ void unpack_word(std::uint32_t w, float& lo, float& hi, bfloat16) {
  lo = __uint_as_float(w << 16);
  hi = __uint_as_float(w & 0xffff0000u);
}
__device__ __forceinline__ void unpack_word(std::uint32_t w, float& lo, float& hi, float16) {
  lo = __half2float(__ushort_as_half(static_cast<unsigned short>(w & 0xffffu)));
  hi = __half2float(__ushort_as_half(static_cast<unsigned short>(w >> 16)));
}
template <class H>
__device__ __forceinline__ void unpack(const uint4& v, float (&out)[8], H tag) {
  unpack_word(v.x, out[0], out[1], tag);
  unpack_word(v.y, out[2], out[3], tag);
  unpack_word(v.z, out[4], out[5], tag);
  unpack_word(v.w, out[6], out[7], tag);
}

__device__ __forceinline__ std::uint32_t pack_word(float lo, float hi, bfloat16) {
  return static_cast<std::uint32_t>(bf16_bits_rn(lo)) | (static_cast<std::uint32_t>(bf16_bits_rn(hi)) << 16);
}
__device__ __forceinline__ std::uint32_t pack_word(float lo, float hi, float16) {
  return static_cast<std::uint32_t>(__half_as_ushort(__float2half_rn(lo))) |
         (static_cast<std::uint32_t>(__half_as_ushort(__float2half_rn(hi))) << 16);
}

/// Stores `n` floats (n = 4 or 8) as consecutive elements of G at `p`, which is aligned to
/// n * sizeof(G) bytes (16 at most per store).
template <class G, int n>
__device__ __forceinline__ void store_vec(G* p, const float (&v)[n]) {
  if constexpr (sizeof(G) == 4) {
#pragma unroll
    for (int q = 0; q < n; q += 4)
      *reinterpret_cast<uint4*>(p + q) =
          make_uint4(__float_as_uint(v[q]), __float_as_uint(v[q + 1]), __float_as_uint(v[q + 2]), __float_as_uint(v[q + 3]));
  } else if constexpr (n == 8) {
    *reinterpret_cast<uint4*>(p) = make_uint4(pack_word(v[0], v[1], G{}), pack_word(v[2], v[3], G{}),
                                              pack_word(v[4], v[5], G{}), pack_word(v[6], v[7], G{}));
  } else {
    *reinterpret_cast<uint2*>(p) = make_uint2(pack_word(v[0], v[1], G{}), pack_word(v[2], v[3], G{}));
  }
}


// --- order keys ----------------------------------------------------------------------------

/// Unsigned key increasing with x; -0 and +0 equal; NaN above everything (0xffffffff, which no
/// number reaches: +inf gives 0xff800000).
__device__ __forceinline__ std::uint32_t ascending_key(float x) {
  if (x != x) return 0xffffffffu;
  const std::uint32_t u = x == 0.0f ? 0u : __float_as_uint(x);
  return (u & 0x80000000u) ? ~u : (u | 0x80000000u);
}

/// Unsigned key decreasing with x (larger first); -0 and +0 equal; NaN above everything.
__device__ __forceinline__ std::uint32_t descending_key(float x) {
  if (x != x) return 0xffffffffu;
  return ~ascending_key(x);  // a number never gives 0 here, so never 0xffffffff
}

// --- reductions ----------------------------------------------------------------------------

struct sum_op {
  template <class T>
  __device__ __forceinline__ T operator()(T a, T b) const { return a + b; }
};
struct min_op {
  template <class T>
  __device__ __forceinline__ T operator()(T a, T b) const { return b < a ? b : a; }
};
struct max_op {
  template <class T>
  __device__ __forceinline__ T operator()(T a, T b) const { return a < b ? b : a; }
};

/// Butterfly all-reduce inside a warp: every lane ends with the same value (each step combines
/// a and b commutatively, so the lanes of a pair compute the same bits).
template <class T, class Op>
__device__ __forceinline__ T warp_allreduce(T v, Op op) {
#pragma unroll
  for (int m = 16; m >= 1; m /= 2) v = op(v, __shfl_xor_sync(0xffffffffu, v, m));
  return v;
}

/// Block all-reduce in a fixed order: butterfly in each warp, then every thread combines the
/// warp results in warp order. Every thread gets the same bits; results are bitwise identical
/// run to run. `sh` holds at least BLOCK / 32 elements; it may be reused right after the call
/// (the next call's leading barrier protects it).
template <int BLOCK, class T, class Op>
__device__ __forceinline__ T block_allreduce(T v, Op op, T* sh) {
  static_assert(BLOCK % 32 == 0 && BLOCK <= 1024, "block size");
  v = warp_allreduce(v, op);
  __syncthreads();
  if ((threadIdx.x & 31u) == 0) sh[threadIdx.x >> 5] = v;
  __syncthreads();
  T r = sh[0];
#pragma unroll
  for (int w = 1; w < BLOCK / 32; ++w) r = op(r, sh[w]);
  return r;
}

/// Scratch a block reduction needs: one slot per warp of every type used.
template <int BLOCK>
struct reduce_scratch {
  union {
    double d[BLOCK / 32];
    float f[BLOCK / 32];
    unsigned long long u[BLOCK / 32];
    long long i[BLOCK / 32];
    int n[BLOCK / 32];
  };
};

/// Smallest tau in [lo, hi] with pred(tau), for a predicate monotone in tau (false ... true)
/// and true at hi. `pred` is evaluated by the whole block and returns the same value in every
/// thread, so every thread takes the same path.
template <class Pred>
__device__ __forceinline__ std::uint64_t block_search_smallest(std::uint64_t lo, std::uint64_t hi, Pred pred) {
  while (lo < hi) {
    const std::uint64_t mid = lo + (hi - lo) / 2;
    if (pred(mid)) hi = mid;
    else lo = mid + 1;
  }
  return lo;
}

/// Shared memory of block_select_kth.
struct select_scratch {
  unsigned hist[256];
  unsigned digit;
  unsigned before;
};

/// The key of rank k (1-based) among the keys key(t) of the positions t in [lo, lo + n) with
/// eligible(t), all distinct, mn and mx their minimum and maximum, 1 <= k <= their count: a
/// most-significant-digit radix select, 8 bits per pass from the highest bit where mn and mx
/// differ (about 5 passes for 40-bit keys), each a shared-memory histogram (integer counts:
/// deterministic) and a scan of its 256 bins by one warp. Collective: every thread calls it with
/// the same arguments and gets the same key.
template <int BLOCK, class Key, class Eligible>
__device__ std::uint64_t block_select_kth(std::int64_t lo, std::int64_t n, long long k, std::uint64_t mn,
                                          std::uint64_t mx, Key key, Eligible eligible, select_scratch& sh) {
  if (mn == mx) return mn;
  const int top = 63 - __clzll(static_cast<long long>(mn ^ mx));
  int shift = (top / 8) * 8;
  std::uint64_t prefix = shift + 8 >= 64 ? 0 : (mn >> (shift + 8)) << (shift + 8);
  unsigned rank = static_cast<unsigned>(k);  // rank among the keys that share the fixed high digits
  for (; shift >= 0; shift -= 8) {
    for (int b = static_cast<int>(threadIdx.x); b < 256; b += BLOCK) sh.hist[b] = 0;
    __syncthreads();
    const int hs = shift + 8;
    for (std::int64_t t = lo + threadIdx.x; t < lo + n; t += BLOCK)
      if (eligible(t)) {
        const std::uint64_t K = key(t);
        if (hs >= 64 || (K >> hs) == (prefix >> hs)) atomicAdd(&sh.hist[(K >> shift) & 255u], 1u);
      }
    __syncthreads();
    if (threadIdx.x < 32) {
      const unsigned lane = threadIdx.x;
      unsigned c[8], sum = 0;
#pragma unroll
      for (int j = 0; j < 8; ++j) {
        c[j] = sh.hist[lane * 8 + j];
        sum += c[j];
      }
      unsigned incl = sum;
#pragma unroll
      for (int o = 1; o < 32; o *= 2) {
        const unsigned v = __shfl_up_sync(0xffffffffu, incl, o);
        if (lane >= static_cast<unsigned>(o)) incl += v;
      }
      unsigned cum = incl - sum;
      if (cum < rank && rank <= incl) {  // exactly one lane holds the bin of rank `rank`
#pragma unroll
        for (int j = 0; j < 8; ++j) {
          if (cum + c[j] >= rank) {
            sh.digit = lane * 8 + static_cast<unsigned>(j);
            sh.before = cum;
            break;
          }
          cum += c[j];
        }
      }
    }
    __syncthreads();
    prefix |= static_cast<std::uint64_t>(sh.digit) << shift;
    rank -= sh.before;
  }
  return prefix;
}

}  // namespace cuda_impl
}  // namespace detail
}  // namespace gcpo
