// tests/sim/selftest_kernels.hpp - the simulator's self-test kernels (selftest_kernels.cu).
#pragma once

#include <cuda_runtime_api.h>

namespace gcpo_sim_selftest {

enum class kernel {
  shuffles,
  votes,
  half_masks,
  divergent_barrier,
  early_exit,
  deadlock,
  exited_lane,
  dynamic_smem,
  dynamic_smem_overrun
};

/// Launches one block of `threads` threads of kernel `k` writing to `out`; the launch's error.
cudaError_t launch(kernel k, int* out, int threads, cudaStream_t stream);

}  // namespace gcpo_sim_selftest
