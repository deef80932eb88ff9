// tests/sim/include/cub/block/block_scan.cuh - cub::BlockScan as the gcpo SIMT simulator provides
// it (tests only): the interface gcpo's kernels use (InclusiveSum over a blocked arrangement with
// the block aggregate), implemented with the block's shared TempStorage and one __syncthreads,
// so that, as with CUB, reusing TempStorage without a barrier in between is a race the
// simulator's ThreadSanitizer build reports. The sums run in a fixed order (each thread's items,
// then the threads in index order): not CUB's tree, so float results agree with the GPU's to
// rounding, not bitwise.
#pragma once

#include <cuda_runtime.h>

namespace cub {

enum BlockScanAlgorithm { BLOCK_SCAN_RAKING, BLOCK_SCAN_RAKING_MEMOIZE, BLOCK_SCAN_WARP_SCANS };

template <typename T, int BLOCK_DIM_X, BlockScanAlgorithm ALGORITHM = BLOCK_SCAN_RAKING, int BLOCK_DIM_Y = 1,
          int BLOCK_DIM_Z = 1>
class BlockScan {
  static constexpr int threads = BLOCK_DIM_X * BLOCK_DIM_Y * BLOCK_DIM_Z;

 public:
  struct TempStorage {
    T partial[threads];
  };

  explicit BlockScan(TempStorage& storage) : s_(storage) {}

  /// Inclusive prefix sums of a blocked arrangement; `aggregate` gets the block total.
  template <int ITEMS>
  void InclusiveSum(T (&in)[ITEMS], T (&out)[ITEMS], T& aggregate) {
    const int tid = static_cast<int>(threadIdx.x + blockDim.x * (threadIdx.y + blockDim.y * threadIdx.z));
    T run = in[0];
    out[0] = run;
    for (int i = 1; i < ITEMS; ++i) {
      run = run + in[i];
      out[i] = run;
    }
    s_.partial[tid] = run;
    __syncthreads();
    T prefix = T();
    for (int j = 0; j < tid; ++j) prefix = j == 0 ? s_.partial[0] : prefix + s_.partial[j];
    T total = s_.partial[0];
    for (int j = 1; j < threads; ++j) total = total + s_.partial[j];
    if (tid > 0)
      for (int i = 0; i < ITEMS; ++i) out[i] = prefix + out[i];
    aggregate = total;
  }

 private:
  TempStorage& s_;
};

}  // namespace cub
