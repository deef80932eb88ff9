// kernels/sampling.cu - gcpo::cuda::generation_step.
#include <gcpo/cuda.hpp>
#include <gcpo/detail/cuda/sampling.cuh>

namespace gcpo {
namespace detail {
namespace cuda_impl {
#define GCPO_GEN_INSTANTIATE(T)                                                                                    \
  template status launch_generation_step<T>(const_tensor_view, const_tensor_view, tensor_view, tensor_view,        \
                                            tensor_view, const sampling_options&, workspace, cudaStream_t) noexcept;
GCPO_GEN_INSTANTIATE(float)
GCPO_GEN_INSTANTIATE(bfloat16)
GCPO_GEN_INSTANTIATE(float16)
#undef GCPO_GEN_INSTANTIATE
}  // namespace cuda_impl
}  // namespace detail

namespace cuda {

status generation_step(const_tensor_view cond_logits, const_tensor_view uncond_logits, tensor_view tokens,
                       tensor_view logprob, tensor_view entropy, const sampling_options& options, workspace ws,
                       cudaStream_t stream) noexcept {
  GCPO_TRY(detail::validate_generation_step(cond_logits, uncond_logits, tokens, logprob, entropy, options,
                                            memory_space::device));
  GCPO_TRY(detail::check_generation_step_workspace(cond_logits, uncond_logits, tokens, logprob, entropy, ws,
                                                   memory_space::device));
  GCPO_TRY(detail::check_generation_step_rows(cond_logits, options));
  status result = status::error(status_code::unsupported_dtype, "generation_step: unsupported dtype");
  detail::dispatch_float(cond_logits.type, [&](auto t) {
    result = detail::cuda_impl::launch_generation_step<decltype(t)>(cond_logits, uncond_logits, tokens, logprob,
                                                                    entropy, options, ws, stream);
  });
  return result;
}

}  // namespace cuda
}  // namespace gcpo
