// kernels/token_stats.cu - gcpo::cuda::token_stats and token_stats_backward: validation,
// dtype dispatch, and the explicit instantiations of the kernels' launchers.
#include <gcpo/cuda.hpp>
#include <gcpo/detail/cuda/token_stats.cuh>

namespace gcpo {
namespace detail {
namespace cuda_impl {

#define GCPO_TS_INSTANTIATE(T, I)                                                                                  \
  template status launch_token_stats<T, I>(const_tensor_view, const_tensor_view, tensor_view, tensor_view,        \
                                           tensor_view, float, cudaStream_t) noexcept;
GCPO_TS_INSTANTIATE(float, std::int32_t)
GCPO_TS_INSTANTIATE(float, std::int64_t)
GCPO_TS_INSTANTIATE(bfloat16, std::int32_t)
GCPO_TS_INSTANTIATE(bfloat16, std::int64_t)
GCPO_TS_INSTANTIATE(float16, std::int32_t)
GCPO_TS_INSTANTIATE(float16, std::int64_t)
#undef GCPO_TS_INSTANTIATE

#define GCPO_TSB_INSTANTIATE(T, G)                                                                                 \
  template status launch_token_stats_backward<T, G, std::int32_t>(const_tensor_view, const_tensor_view,            \
                                                                  const_tensor_view, const_tensor_view, tensor_view, \
                                                                  float, cudaStream_t) noexcept;                   \
  template status launch_token_stats_backward<T, G, std::int64_t>(const_tensor_view, const_tensor_view,            \
                                                                  const_tensor_view, const_tensor_view, tensor_view, \
                                                                  float, cudaStream_t) noexcept;
GCPO_TSB_INSTANTIATE(float, float)
GCPO_TSB_INSTANTIATE(float, bfloat16)
GCPO_TSB_INSTANTIATE(float, float16)
GCPO_TSB_INSTANTIATE(bfloat16, float)
GCPO_TSB_INSTANTIATE(bfloat16, bfloat16)
GCPO_TSB_INSTANTIATE(bfloat16, float16)
GCPO_TSB_INSTANTIATE(float16, float)
GCPO_TSB_INSTANTIATE(float16, bfloat16)
GCPO_TSB_INSTANTIATE(float16, float16)
#undef GCPO_TSB_INSTANTIATE

}  // namespace cuda_impl
}  // namespace detail

namespace cuda {

status token_stats(const_tensor_view logits, const_tensor_view tokens, tensor_view entropy, tensor_view logprob,
                   tensor_view lse, const token_stats_options& options, cudaStream_t stream) noexcept {
  GCPO_TRY(detail::validate_token_stats(logits, tokens, entropy, logprob, lse, options, memory_space::device));
  const float inv_t = 1.0f / options.temperature;
  status result = status::error(status_code::unsupported_dtype, "token_stats: unsupported dtype");
  const dtype index_type = tokens.present() ? tokens.type : dtype::int32;
  detail::dispatch_float(logits.type, [&](auto t) {
    detail::dispatch_index(index_type, [&](auto i) {
      result = detail::cuda_impl::launch_token_stats<decltype(t), decltype(i)>(logits, tokens, entropy, logprob, lse,
                                                                               inv_t, stream);
    });
  });
  return result;
}

status token_stats_backward(const_tensor_view logits, const_tensor_view tokens, const_tensor_view lse,
                            const_tensor_view grad_logprob, tensor_view grad_logits, const token_stats_options& options,
                            cudaStream_t stream) noexcept {
  GCPO_TRY(detail::validate_token_stats_backward(logits, tokens, lse, grad_logprob, grad_logits, options,
                                                 memory_space::device));
  const float inv_t = 1.0f / options.temperature;
  status result = status::error(status_code::unsupported_dtype, "token_stats_backward: unsupported dtype");
  detail::dispatch_float(logits.type, [&](auto t) {
    detail::dispatch_float(grad_logits.type, [&](auto g) {
      detail::dispatch_index(tokens.type, [&](auto i) {
        result = detail::cuda_impl::launch_token_stats_backward<decltype(t), decltype(g), decltype(i)>(
            logits, tokens, lse, grad_logprob, grad_logits, inv_t, stream);
      });
    });
  });
  return result;
}

}  // namespace cuda
}  // namespace gcpo
