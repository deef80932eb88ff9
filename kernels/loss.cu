// kernels/loss.cu - gcpo::cuda::group_advantages, advantage_weight, gcpo_loss_forward,
// gcpo_loss_backward and gcpo_loss_forward_backward.
#include <gcpo/cuda.hpp>
#include <gcpo/detail/cuda/advantages.cuh>
#include <gcpo/detail/cuda/loss.cuh>
#include <gcpo/detail/cuda/weight.cuh>

namespace gcpo {
namespace cuda {

status group_advantages(const_tensor_view rewards, tensor_view advantages, const advantage_options& options,
                        cudaStream_t stream) noexcept {
  GCPO_TRY(detail::validate_group_advantages(rewards, advantages, options, memory_space::device));
  return detail::cuda_impl::launch_group_advantages(rewards, advantages, options, stream);
}

status advantage_weight(const_tensor_view logp, const_tensor_view ref_logp, tensor_view weight,
                        const weight_options& options, cudaStream_t stream) noexcept {
  GCPO_TRY(detail::validate_advantage_weight(logp, ref_logp, weight, options, memory_space::device));
  return detail::cuda_impl::launch_advantage_weight(logp, ref_logp, weight, options.clip, stream);
}

status gcpo_loss_forward(const loss_inputs& inputs, const loss_outputs& outputs, const loss_options& options,
                         workspace ws, cudaStream_t stream) noexcept {
  GCPO_TRY(detail::validate_loss_forward(inputs, outputs, options, memory_space::device));
  GCPO_TRY(detail::check_loss_workspace(inputs, &outputs, {}, {}, ws, memory_space::device));
  return detail::cuda_impl::launch_loss(inputs, &outputs, {}, nullptr, options, ws, stream);
}

status gcpo_loss_backward(const loss_inputs& inputs, const_tensor_view grad_loss, tensor_view grad_logp,
                          const loss_options& options, workspace ws, cudaStream_t stream) noexcept {
  GCPO_TRY(detail::validate_loss_backward(inputs, grad_loss, grad_logp, options, memory_space::device));
  GCPO_TRY(detail::check_loss_workspace(inputs, nullptr, grad_loss, grad_logp, ws, memory_space::device));
  return detail::cuda_impl::launch_loss(inputs, nullptr, grad_loss, grad_logp.as<float>(), options, ws, stream);
}

status gcpo_loss_forward_backward(const loss_inputs& inputs, const loss_outputs& outputs, const_tensor_view grad_loss,
                                  tensor_view grad_logp, const loss_options& options, workspace ws,
                                  cudaStream_t stream) noexcept {
  GCPO_TRY(detail::validate_loss_forward_backward(inputs, outputs, grad_loss, grad_logp, options, memory_space::device));
  GCPO_TRY(detail::check_loss_workspace(inputs, &outputs, grad_loss, grad_logp, ws, memory_space::device));
  return detail::cuda_impl::launch_loss(inputs, &outputs, grad_loss, grad_logp.as<float>(), options, ws, stream);
}

}  // namespace cuda
}  // namespace gcpo
