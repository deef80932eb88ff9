// tests/sim/broken/broken_kernels.hpp - launchers of three deliberately broken copies of real
// gcpo kernels (tests only): each must be caught by the simulator (see test_sim_broken.cpp).
#pragma once

#include <gcpo/gcpo.hpp>

#include <cuda_runtime_api.h>

namespace gcpo_sim_broken {

/// token_stats_block_kernel (a block per row) without the barrier between the warps' writes of
/// their partial states and thread 0's merge of them: thread 0 may read stale partials.
gcpo::status token_stats_missing_barrier(gcpo::const_tensor_view logits, gcpo::tensor_view entropy,
                                         cudaStream_t stream) noexcept;

/// initial_mask_kernel with its bound off by one (`i <= total`): writes one byte past the mask.
gcpo::status initial_mask_off_by_one(gcpo::tensor_view mask, std::int64_t n_init, cudaStream_t stream) noexcept;

/// count_nonfinite_kernel whose warp reduction shuffles with the mask 0x0000ffff while all 32
/// lanes call it (the upper half-warp is not in the mask).
gcpo::status count_nonfinite_wrong_mask(gcpo::const_tensor_view x, gcpo::tensor_view count,
                                        cudaStream_t stream) noexcept;

}  // namespace gcpo_sim_broken
