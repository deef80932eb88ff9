// kernels/similarity.cu - gcpo::cuda::group_similarity and group_similarity_from_tokens.
#include <gcpo/cuda.hpp>
#include <gcpo/detail/cuda/similarity.cuh>

namespace gcpo {
namespace detail {
namespace cuda_impl {

template status launch_group_similarity<float>(const_tensor_view, tensor_view, const similarity_options&,
                                               cudaStream_t) noexcept;
template status launch_group_similarity<bfloat16>(const_tensor_view, tensor_view, const similarity_options&,
                                                  cudaStream_t) noexcept;
template status launch_group_similarity<float16>(const_tensor_view, tensor_view, const similarity_options&,
                                                 cudaStream_t) noexcept;
#define GCPO_SIM_INSTANTIATE(T, I)                                                                                 \
  template status launch_group_similarity_from_tokens<T, I>(const_tensor_view, const_tensor_view, tensor_view,     \
                                                            const similarity_options&, cudaStream_t) noexcept;
GCPO_SIM_INSTANTIATE(float, std::int32_t)
GCPO_SIM_INSTANTIATE(float, std::int64_t)
GCPO_SIM_INSTANTIATE(bfloat16, std::int32_t)
GCPO_SIM_INSTANTIATE(bfloat16, std::int64_t)
GCPO_SIM_INSTANTIATE(float16, std::int32_t)
GCPO_SIM_INSTANTIATE(float16, std::int64_t)
#undef GCPO_SIM_INSTANTIATE

}  // namespace cuda_impl
}  // namespace detail

namespace cuda {

status group_similarity(const_tensor_view embeddings, tensor_view similarity, const similarity_options& options,
                        cudaStream_t stream) noexcept {
  GCPO_TRY(detail::validate_group_similarity(embeddings, similarity, options, memory_space::device));
  status result = status::error(status_code::unsupported_dtype, "group_similarity: unsupported dtype");
  detail::dispatch_float(embeddings.type, [&](auto t) {
    result = detail::cuda_impl::launch_group_similarity<decltype(t)>(embeddings, similarity, options, stream);
  });
  return result;
}

status group_similarity_from_tokens(const_tensor_view tokens, const_tensor_view table, tensor_view similarity,
                                    const similarity_options& options, cudaStream_t stream) noexcept {
  GCPO_TRY(detail::validate_group_similarity_from_tokens(tokens, table, similarity, options, memory_space::device));
  status result = status::error(status_code::unsupported_dtype, "group_similarity_from_tokens: unsupported dtype");
  detail::dispatch_float(table.type, [&](auto t) {
    detail::dispatch_index(tokens.type, [&](auto i) {
      result = detail::cuda_impl::launch_group_similarity_from_tokens<decltype(t), decltype(i)>(tokens, table,
                                                                                             similarity, options, stream);
    });
  });
  return result;
}

}  // namespace cuda
}  // namespace gcpo
