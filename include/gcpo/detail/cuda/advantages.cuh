// gcpo/detail/cuda/advantages.cuh - CUDA twin of group_advantages.
//
// One thread per group, the host twin's double-precision loops in the host twin's order with
// explicitly rounded operations (bitwise equal to the host twin). Bytes: R floats in, R out.
#pragma once

#include "common.cuh"

namespace gcpo {
namespace detail {
namespace cuda_impl {

__global__ void group_advantages_kernel(const float* in, float* out, std::int64_t P, std::int64_t G, int mode,
                                        double eps) {
  for (std::int64_t p = static_cast<std::int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; p < P;
       p += static_cast<std::int64_t>(gridDim.x) * blockDim.x) {
    const float* x = in + p * G;
    double mean = 0.0;
    for (std::int64_t g = 0; g < G; ++g) mean = __dadd_rn(mean, static_cast<double>(x[g]));
    mean = __ddiv_rn(mean, static_cast<double>(G));
    double scale = 1.0;
    if (mode != static_cast<int>(advantage_std::none)) {
      double ss = 0.0;
      for (std::int64_t g = 0; g < G; ++g) {
        const double d = __dsub_rn(static_cast<double>(x[g]), mean);
        ss = __dadd_rn(ss, __dmul_rn(d, d));
      }
      const double var = __ddiv_rn(ss, static_cast<double>(mode == static_cast<int>(advantage_std::unbiased) ? G - 1 : G));
      const double den = __dadd_rn(__dsqrt_rn(var), eps);
      scale = den > 0.0 ? __ddiv_rn(1.0, den) : 0.0;  // 0 only for equal rewards with eps = 0
    }
    for (std::int64_t g = 0; g < G; ++g)  // in place allowed: element g is read, then written
      out[p * G + g] = static_cast<float>(__dmul_rn(__dsub_rn(static_cast<double>(x[g]), mean), scale));
  }
}

inline status launch_group_advantages(const_tensor_view rewards, tensor_view advantages, const advantage_options& opt,
                                      cudaStream_t stream) noexcept {
  const std::int64_t P = rewards.shape[0] / opt.group;
  if (P == 0) return ok();
  GCPO_LAUNCH(grid_for(P, 128), 128, 0, stream, group_advantages_kernel)(rewards.as<const float>(), advantages.as<float>(), P,
                                                                 opt.group, static_cast<int>(opt.std),
                                                                 static_cast<double>(opt.eps));
  return check_launch("group_advantages_kernel");
}

}  // namespace cuda_impl
}  // namespace detail
}  // namespace gcpo
