// kernels/checks.cu - gcpo::cuda::count_nonfinite.
#include <gcpo/cuda.hpp>
#include <gcpo/detail/cuda/checks.cuh>

namespace gcpo {
namespace detail {
namespace cuda_impl {
template status launch_count_nonfinite<float>(const_tensor_view, tensor_view, cudaStream_t) noexcept;
template status launch_count_nonfinite<bfloat16>(const_tensor_view, tensor_view, cudaStream_t) noexcept;
template status launch_count_nonfinite<float16>(const_tensor_view, tensor_view, cudaStream_t) noexcept;
}  // namespace cuda_impl
}  // namespace detail

namespace cuda {

status count_nonfinite(const_tensor_view x, tensor_view count, cudaStream_t stream) noexcept {
  GCPO_TRY(detail::validate_count_nonfinite(x, count, memory_space::device));
  status result = status::error(status_code::unsupported_dtype, "count_nonfinite: unsupported dtype");
  detail::dispatch_float(x.type, [&](auto t) {
    result = detail::cuda_impl::launch_count_nonfinite<decltype(t)>(x, count, stream);
  });
  return result;
}

}  // namespace cuda
}  // namespace gcpo
