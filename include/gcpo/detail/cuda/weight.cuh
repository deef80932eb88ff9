// gcpo/detail/cuda/weight.cuh - CUDA twin of advantage_weight.
//
// One block per rollout: tiles of scan_tile tokens, an inclusive cub::BlockScan of the clipped
// ratios per tile plus the running total of the tiles before it (a fixed order, so results are
// bitwise identical run to run; they differ from the host's sequential float sum by rounding
// only). Bytes: two [R, N] float maps read, one written.
#pragma once

#include <cub/block/block_scan.cuh>

#include "common.cuh"

namespace gcpo {
namespace detail {
namespace cuda_impl {

constexpr int scan_block = 256;
constexpr int scan_items = 4;
constexpr std::int64_t scan_tile = static_cast<std::int64_t>(scan_block) * scan_items;

/// Inclusive scan of one tile (blocked arrangement) continuing `carry`; returns the tile total.
template <class T, class Scan>
__device__ __forceinline__ T tile_inclusive_scan(T (&v)[scan_items], typename Scan::TempStorage& tmp) {
  T total;
  Scan(tmp).InclusiveSum(v, v, total);
  return total;
}

__global__ void __launch_bounds__(scan_block) advantage_weight_kernel(const float* lp, const float* ref, float* w,
                                                                      std::int64_t R, std::int64_t N, float clip) {
  using Scan = cub::BlockScan<float, scan_block>;
  __shared__ typename Scan::TempStorage tmp;
  for (std::int64_t r = blockIdx.x; r < R; r += gridDim.x) {
    float carry = 0.0f;
    for (std::int64_t t0 = 0; t0 < N; t0 += scan_tile) {
      float e[scan_items];
#pragma unroll
      for (int i = 0; i < scan_items; ++i) {
        const std::int64_t t = t0 + static_cast<std::int64_t>(threadIdx.x) * scan_items + i;
        e[i] = t < N ? clipped_ratio_term(lp[r * N + t], ref[r * N + t], clip).value : 0.0f;
      }
      const float total = tile_inclusive_scan<float, Scan>(e, tmp);
#pragma unroll
      for (int i = 0; i < scan_items; ++i) {
        const std::int64_t t = t0 + static_cast<std::int64_t>(threadIdx.x) * scan_items + i;
        if (t < N) w[r * N + t] = __fdiv_rn(__fadd_rn(carry, e[i]), static_cast<float>(t + 1));
      }
      carry = __fadd_rn(carry, total);
      __syncthreads();  // tmp is reused by the next tile
    }
  }
}

inline status launch_advantage_weight(const_tensor_view logp, const_tensor_view ref, tensor_view weight, float clip,
                                      cudaStream_t stream) noexcept {
  const std::int64_t R = logp.shape[0], N = logp.shape[1];
  if (R == 0 || N == 0) return ok();
  GCPO_LAUNCH(grid_for(R, 1), scan_block, 0, stream, advantage_weight_kernel)(logp.as<const float>(), ref.as<const float>(),
                                                                       weight.as<float>(), R, N, clip);
  return check_launch("advantage_weight_kernel");
}

}  // namespace cuda_impl
}  // namespace detail
}  // namespace gcpo
