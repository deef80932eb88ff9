// tests/sim/broken/broken_kernels.cu - three deliberately broken copies of real gcpo kernels
// (tests only; compiled like kernels/*.cu, under the simulator). Each differs from the original
// by the one line marked BROKEN.
#include <gcpo/detail/cuda/checks.cuh>
#include <gcpo/detail/cuda/selection.cuh>
#include <gcpo/detail/cuda/token_stats.cuh>

#include "broken_kernels.hpp"

namespace gcpo_sim_broken {

using namespace gcpo;
using namespace gcpo::detail::cuda_impl;

// --- token_stats_block_kernel<float, int32_t> without its second barrier -----------------------
__global__ void __launch_bounds__(ts_block) token_stats_block_kernel_missing_barrier(token_stats_args a) {
  constexpr int warps = ts_block / 32;
  __shared__ float sm[warps], ss[warps], st_[warps];
  using T = float;
  using I = std::int32_t;
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
  for (std::int64_t row = blockIdx.x; row < a.rows; row += gridDim.x) {
    const std::int64_t r = row / a.N, n = row - r * a.N;
    const T* p = static_cast<const T*>(a.logits) + r * a.s0 + n * a.s1;
    bool tok_ok = false;
    const float x_tok = threadIdx.x == 0 ? token_logit<T, I>(a, p, row, tok_ok) : 0.0f;
    ts_state st = ts_empty();
    row_stats<T, ts_block>(p, a.V, a.c, static_cast<int>(threadIdx.x), st);
    float M = ts_offset(st), S = st.s, Tt = st.t;
    ts_warp_merge(M, S, Tt);
    __syncthreads();  // the previous row's reads of the scratch are done
    if (lane == 0) {
      sm[warp] = M;
      ss[warp] = S;
      st_[warp] = Tt;
    }
    // BROKEN: the __syncthreads() that publishes the warps' partial states to warp 0 is missing.
    if (warp == 0) {
      M = lane < warps ? sm[lane] : -f_inf;
      S = lane < warps ? ss[lane] : 0.0f;
      Tt = lane < warps ? st_[lane] : 0.0f;
      ts_warp_merge(M, S, Tt);
      if (lane == 0) write_row_stats<T, I>(a, row, M, S, Tt, x_tok, tok_ok);
    }
  }
}

status token_stats_missing_barrier(const_tensor_view logits, tensor_view entropy, cudaStream_t stream) noexcept {
  token_stats_args a{};
  a.logits = logits.data;
  a.s0 = logits.strides[0];
  a.s1 = logits.strides[1];
  a.N = logits.shape[1];
  a.V = logits.shape[2];
  a.rows = logits.shape[0] * logits.shape[1];
  a.entropy = entropy.as<float>();
  a.c = ts_scale(1.0f);
  GCPO_LAUNCH(grid_for(a.rows, 1), ts_block, 0, stream, token_stats_block_kernel_missing_barrier)(a);
  return check_launch("token_stats_block_kernel_missing_barrier");
}

// --- initial_mask_kernel with an off-by-one bound ----------------------------------------------
__global__ void initial_mask_kernel_off_by_one(std::uint8_t* mask, std::int64_t total, std::int64_t N,
                                               std::int64_t n_init) {
  for (std::int64_t i = static_cast<std::int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
       i <= total;  // BROKEN: `<=`, one element past the end
       i += static_cast<std::int64_t>(gridDim.x) * blockDim.x)
    mask[i] = (i % N) < n_init ? 1 : 0;
}

status initial_mask_off_by_one(tensor_view mask, std::int64_t n_init, cudaStream_t stream) noexcept {
  const std::int64_t R = mask.shape[0], N = mask.shape[1];
  GCPO_LAUNCH(grid_for(R * N, 256), 256, 0, stream, initial_mask_kernel_off_by_one)(mask.as<std::uint8_t>(), R * N, N,
                                                                                     n_init);
  return check_launch("initial_mask_kernel_off_by_one");
}

// --- count_nonfinite_kernel with a wrong shuffle mask ------------------------------------------
template <class T, class Op>
__device__ __forceinline__ T warp_allreduce_wrong_mask(T v, Op op) {
#pragma unroll
  for (int m = 16; m >= 1; m /= 2) v = op(v, __shfl_xor_sync(0x0000ffffu, v, m));  // BROKEN: half the warp
  return v;
}

template <int BLOCK, class T, class Op>
__device__ __forceinline__ T block_allreduce_wrong_mask(T v, Op op, T* sh) {
  v = warp_allreduce_wrong_mask(v, op);
  __syncthreads();
  if ((threadIdx.x & 31u) == 0) sh[threadIdx.x >> 5] = v;
  __syncthreads();
  T r = sh[0];
#pragma unroll
  for (int w = 1; w < BLOCK / 32; ++w) r = op(r, sh[w]);
  return r;
}

__global__ void __launch_bounds__(nf_block) count_nonfinite_kernel_wrong_mask(nonfinite_args a) {
  __shared__ reduce_scratch<nf_block> sc;
  const float* x = static_cast<const float*>(a.x);
  long long c = 0;
  for (std::int64_t i = static_cast<std::int64_t>(blockIdx.x) * nf_block + threadIdx.x; i < a.numel;
       i += static_cast<std::int64_t>(gridDim.x) * nf_block) {
    const float v = load_f(x[i]);
    c += (fabsf(v) < f_inf) ? 0 : 1;
  }
  c = block_allreduce_wrong_mask<nf_block>(c, sum_op{}, sc.i);
  if (threadIdx.x == 0 && c != 0) atomicAdd(a.count, static_cast<unsigned long long>(c));
}

status count_nonfinite_wrong_mask(const_tensor_view x, tensor_view count, cudaStream_t stream) noexcept {
  nonfinite_args a{};
  a.x = x.data;
  a.numel = x.numel();
  a.count = static_cast<unsigned long long*>(count.data);
  GCPO_TRY(check_call(cudaMemsetAsync(count.data, 0, sizeof(std::int64_t), stream), "cudaMemsetAsync(count)"));
  GCPO_LAUNCH(grid_for(a.numel, nf_block * 8), nf_block, 0, stream, count_nonfinite_kernel_wrong_mask)(a);
  return check_launch("count_nonfinite_kernel_wrong_mask");
}

}  // namespace gcpo_sim_broken
