// tests/sim/selftest_kernels.cu - small kernels that check the simulator's own primitives and
// reports (tests only; compiled like kernels/*.cu). See test_sim_primitives.cpp.
#include <gcpo/detail/cuda/common.cuh>

#include "selftest_kernels.hpp"

namespace gcpo_sim_selftest {

// Every lane of a block of `threads` threads writes, for each width w in {32, 16, 8, 4, 2, 1}
// and argument a, what each shuffle returns: out[((op * 6 + wi) * 32 + a) * threads + tid].
__global__ void shuffles_kernel(int* out, int threads) {
  const int tid = static_cast<int>(threadIdx.x);
  const int v = 1000 + tid;
  int wi = 0;
  for (int w = 32; w >= 1; w /= 2, ++wi)
    for (int a = 0; a < 32; ++a) {
      out[((0 * 6 + wi) * 32 + a) * threads + tid] = __shfl_sync(0xffffffffu, v, a, w);
      out[((1 * 6 + wi) * 32 + a) * threads + tid] = __shfl_up_sync(0xffffffffu, v, static_cast<unsigned>(a), w);
      out[((2 * 6 + wi) * 32 + a) * threads + tid] = __shfl_down_sync(0xffffffffu, v, static_cast<unsigned>(a), w);
      out[((3 * 6 + wi) * 32 + a) * threads + tid] = __shfl_xor_sync(0xffffffffu, v, a, w);
    }
}

// Votes and barrier reductions: out[tid * 6 + k].
__global__ void votes_kernel(int* out) {
  const int tid = static_cast<int>(threadIdx.x);
  const int p = (tid % 3) == 0;
  out[tid * 6 + 0] = static_cast<int>(__ballot_sync(0xffffffffu, p));
  out[tid * 6 + 1] = __any_sync(0xffffffffu, tid == 40);
  out[tid * 6 + 2] = __all_sync(0xffffffffu, tid < 1000);
  out[tid * 6 + 3] = __syncthreads_count(p);
  out[tid * 6 + 4] = __syncthreads_or(tid == 63);
  out[tid * 6 + 5] = __syncthreads_and(tid != 17);
}

// Half-warp shuffles with a half mask (legal): lanes 0..15 and 16..31 each among themselves.
__global__ void half_masks_kernel(int* out) {
  const int lane = static_cast<int>(threadIdx.x & 31);
  const unsigned mask = lane < 16 ? 0x0000ffffu : 0xffff0000u;
  out[threadIdx.x] = __shfl_xor_sync(mask, static_cast<int>(threadIdx.x), 1);
}

// Threads of a block at two different barriers.
__global__ void divergent_barrier_kernel(int* out) {
  if (threadIdx.x < 32) {
    __syncthreads();
  } else {
    __syncthreads();
  }
  out[threadIdx.x] = 1;
}

// A thread returns early; the others wait at a barrier.
__global__ void early_exit_kernel(int* out) {
  if (threadIdx.x == 5) return;
  __syncthreads();
  out[threadIdx.x] = 1;
}

// Lanes 32..62 shuffle with a full mask while lane 63 waits at a barrier with warp 0: deadlock.
__global__ void deadlock_kernel(int* out) {
  const int tid = static_cast<int>(threadIdx.x);
  if (tid < 32 || tid == 63) __syncthreads();
  else out[tid] = __shfl_sync(0xffffffffu, tid, 0);
}

// Lane 0 shuffles with a full mask; the other lanes have exited.
__global__ void exited_lane_kernel(int* out) {
  if (threadIdx.x != 0) return;
  out[0] = __shfl_sync(0xffffffffu, 7, 1);
}

// Dynamic shared memory: each thread writes its slot, then one past the end (thread 0 only).
__global__ void dynamic_smem_kernel(int* out, int overrun) {
  GCPO_DYNAMIC_SHARED(int, buf);
  buf[threadIdx.x] = static_cast<int>(threadIdx.x) * 2;
  __syncthreads();
  out[threadIdx.x] = buf[(threadIdx.x + 1) % blockDim.x];
  if (overrun && threadIdx.x == 0) buf[blockDim.x] = 1;
}

cudaError_t launch(kernel k, int* out, int threads, cudaStream_t stream) {
  switch (k) {
    case kernel::shuffles: GCPO_LAUNCH(1, threads, 0, stream, shuffles_kernel)(out, threads); break;
    case kernel::votes: GCPO_LAUNCH(1, threads, 0, stream, votes_kernel)(out); break;
    case kernel::half_masks: GCPO_LAUNCH(1, threads, 0, stream, half_masks_kernel)(out); break;
    case kernel::divergent_barrier: GCPO_LAUNCH(1, threads, 0, stream, divergent_barrier_kernel)(out); break;
    case kernel::early_exit: GCPO_LAUNCH(1, threads, 0, stream, early_exit_kernel)(out); break;
    case kernel::deadlock: GCPO_LAUNCH(1, threads, 0, stream, deadlock_kernel)(out); break;
    case kernel::exited_lane: GCPO_LAUNCH(1, threads, 0, stream, exited_lane_kernel)(out); break;
    case kernel::dynamic_smem:
      GCPO_LAUNCH(1, threads, threads * sizeof(int), stream, dynamic_smem_kernel)(out, 0);
      break;
    case kernel::dynamic_smem_overrun:
      GCPO_LAUNCH(1, threads, threads * sizeof(int), stream, dynamic_smem_kernel)(out, 1);
      break;
  }
  return cudaGetLastError();
}

}  // namespace gcpo_sim_selftest
