// gcpo/detail/cuda/checks.cuh - CUDA twin of count_nonfinite.
//
// A memset of the counter, then a grid-stride pass (contiguous views by linear index, others
// through their strides), a fixed-order block reduction, and one 64-bit integer atomic add per
// block (integer sums are exact, so the count is the same whatever the order). Bytes: x once.
#pragma once

#include "common.cuh"

namespace gcpo {
namespace detail {
namespace cuda_impl {

constexpr int nf_block = 256;

struct nonfinite_args {
  const void* x;
  std::int64_t shape[max_rank];    ///< padded to rank 4 with leading 1s
  std::int64_t strides[max_rank];  ///< (0 for the padding)
  double inv_shape[max_rank];      ///< 1 / shape (division-free unravelling)
  std::int64_t numel;
  unsigned long long* count;
};

/// q = n / d, r = n % d for 0 <= n < 2^52, d >= 1, from a double reciprocal of d and an exact
/// correction (no 64-bit integer division, which the compiler turns into a subroutine call).
__device__ __forceinline__ void divmod_rcp(std::int64_t n, std::int64_t d, double inv_d, std::int64_t& q,
                                           std::int64_t& r) {
  q = static_cast<std::int64_t>(static_cast<double>(n) * inv_d);
  r = n - q * d;
  while (r < 0) {
    --q;
    r += d;
  }
  while (r >= d) {
    ++q;
    r -= d;
  }
}

template <class T, bool CONTIGUOUS>
__global__ void __launch_bounds__(nf_block) count_nonfinite_kernel(nonfinite_args a) {
  __shared__ reduce_scratch<nf_block> sc;
  const T* x = static_cast<const T*>(a.x);
  long long c = 0;
  for (std::int64_t i = static_cast<std::int64_t>(blockIdx.x) * nf_block + threadIdx.x; i < a.numel;
       i += static_cast<std::int64_t>(gridDim.x) * nf_block) {
    std::int64_t off = i;
    if constexpr (!CONTIGUOUS) {
      off = 0;
      std::int64_t rest = i;
#pragma unroll
      for (int d = max_rank - 1; d >= 1; --d) {
        std::int64_t q, rem;
        divmod_rcp(rest, a.shape[d], a.inv_shape[d], q, rem);
        off += rem * a.strides[d];
        rest = q;
      }
      off += rest * a.strides[0];
    }
    const float v = load_f(x[off]);
    c += (fabsf(v) < f_inf) ? 0 : 1;  // NaN fails the comparison too
  }
  c = block_allreduce<nf_block>(c, sum_op{}, sc.i);
  if (threadIdx.x == 0 && c != 0) atomicAdd(a.count, static_cast<unsigned long long>(c));
}

template <class T>
status launch_count_nonfinite(const_tensor_view x, tensor_view count, cudaStream_t stream) noexcept {
  nonfinite_args a{};
  a.x = x.data;
  const int pad = max_rank - x.rank;
  for (int d = 0; d < max_rank; ++d) {
    a.shape[d] = d < pad ? 1 : x.shape[d - pad];
    a.strides[d] = d < pad ? 0 : x.strides[d - pad];
    a.inv_shape[d] = a.shape[d] > 0 ? 1.0 / static_cast<double>(a.shape[d]) : 0.0;
  }
  a.numel = x.numel();
  a.count = static_cast<unsigned long long*>(count.data);
  GCPO_TRY(check_call(cudaMemsetAsync(count.data, 0, sizeof(std::int64_t), stream), "cudaMemsetAsync(count)"));
  if (a.numel == 0) return ok();
  if (x.is_contiguous()) GCPO_LAUNCH(grid_for(a.numel, nf_block * 8), nf_block, 0, stream, count_nonfinite_kernel<T, true>)(a);
  else GCPO_LAUNCH(grid_for(a.numel, nf_block * 8), nf_block, 0, stream, count_nonfinite_kernel<T, false>)(a);
  return check_launch("count_nonfinite_kernel");
}

}  // namespace cuda_impl
}  // namespace detail
}  // namespace gcpo
