// kernels/selection.cu - gcpo::cuda selection operators: initial_mask, smoothed_entropy,
// entropy_gradient, gradient_topk, low_similarity_mask, union_mask, select_critical_tokens.
// Validation is the host twins' (same checks, device memory).
#include <gcpo/cuda.hpp>
#include <gcpo/detail/cuda/selection.cuh>

namespace gcpo {
namespace cuda {

namespace {

constexpr memory_space dev = memory_space::device;
using detail::cuda_impl::grid_for;
using detail::cuda_impl::sel_block;

constexpr int elementwise_block = 256;

}  // namespace

status initial_mask(tensor_view mask, const selection_options& options, cudaStream_t stream) noexcept {
  GCPO_TRY(detail::check_rank(mask, "mask", 2, "[R, N]"));
  const std::int64_t R = mask.shape[0], N = mask.shape[1];
  GCPO_TRY(detail::check_map(mask, "mask", R, N, dtype::uint8, dev, "R"));
  grid_shape g;
  selection_counts c;
  GCPO_TRY(detail::resolve_selection(N, options, g, c));
  if (R * N == 0) return ok();
  GCPO_LAUNCH(grid_for(R * N, elementwise_block), elementwise_block, 0, stream, detail::cuda_impl::initial_mask_kernel)(
      mask.as<std::uint8_t>(), R * N, N, c.initial);
  return detail::cuda_impl::check_launch("initial_mask_kernel");
}

status smoothed_entropy(const_tensor_view entropy, tensor_view smoothed, const selection_options& options,
                        cudaStream_t stream) noexcept {
  GCPO_TRY(detail::validate_map_op(entropy, "entropy", dtype::float32, smoothed, "smoothed", dtype::float32, dev));
  const std::int64_t R = entropy.shape[0], N = entropy.shape[1];
  grid_shape g;
  GCPO_TRY(detail::resolve_grid(options.grid, N, g, "`entropy.shape[1]`"));
  if (R * N == 0) return ok();
  GCPO_LAUNCH(grid_for(R * N, elementwise_block), elementwise_block, 0, stream, detail::cuda_impl::smoothed_entropy_kernel)(
      entropy.as<const float>(), smoothed.as<float>(), R * N, N, g.width);
  return detail::cuda_impl::check_launch("smoothed_entropy_kernel");
}

status entropy_gradient(const_tensor_view smoothed, tensor_view gradient, const selection_options& options,
                        cudaStream_t stream) noexcept {
  GCPO_TRY(detail::validate_map_op(smoothed, "smoothed", dtype::float32, gradient, "gradient", dtype::float32, dev));
  const std::int64_t R = smoothed.shape[0], N = smoothed.shape[1];
  grid_shape g;
  GCPO_TRY(detail::resolve_grid(options.grid, N, g, "`smoothed.shape[1]`"));
  if (R * N == 0) return ok();
  GCPO_LAUNCH(grid_for(R * N, elementwise_block), elementwise_block, 0, stream, detail::cuda_impl::entropy_gradient_kernel)(
      smoothed.as<const float>(), gradient.as<float>(), R * N, N, g.height, g.width);
  return detail::cuda_impl::check_launch("entropy_gradient_kernel");
}

status gradient_topk(const_tensor_view gradient, tensor_view mask, const selection_options& options,
                     cudaStream_t stream) noexcept {
  GCPO_TRY(detail::validate_map_op(gradient, "gradient", dtype::float32, mask, "mask", dtype::uint8, dev));
  const std::int64_t R = gradient.shape[0], N = gradient.shape[1];
  grid_shape g;
  selection_counts c;
  GCPO_TRY(detail::resolve_selection(N, options, g, c));
  if (R == 0) return ok();
  GCPO_LAUNCH(grid_for(R, 1), sel_block, 0, stream, detail::cuda_impl::gradient_topk_kernel<sel_block>)(
      gradient.as<const float>(), mask.as<std::uint8_t>(), detail::cuda_impl::make_geometry(R, N, g, c));
  return detail::cuda_impl::check_launch("gradient_topk_kernel");
}

status low_similarity_mask(const_tensor_view similarity, const_tensor_view exclude, tensor_view mask,
                           const selection_options& options, cudaStream_t stream) noexcept {
  GCPO_TRY(detail::validate_map_op(similarity, "similarity", dtype::float32, mask, "mask", dtype::uint8, dev));
  const std::int64_t R = similarity.shape[0], N = similarity.shape[1];
  if (exclude.present()) {
    GCPO_TRY(detail::check_map(exclude, "exclude", R, N, dtype::uint8, dev, "`similarity.shape[0]`"));
    GCPO_TRY(detail::check_no_overlap(mask, "mask", exclude, "exclude"));
  }
  grid_shape g;
  selection_counts c;
  GCPO_TRY(detail::resolve_selection(N, options, g, c));
  if (R == 0) return ok();
  GCPO_LAUNCH(grid_for(R, 1), sel_block, 0, stream, detail::cuda_impl::low_similarity_kernel<sel_block>)(
      similarity.as<const float>(), exclude.present() ? exclude.as<const std::uint8_t>() : nullptr,
      mask.as<std::uint8_t>(), detail::cuda_impl::make_geometry(R, N, g, c));
  return detail::cuda_impl::check_launch("low_similarity_kernel");
}

status union_mask(const_tensor_view a, const_tensor_view b, const_tensor_view c, tensor_view critical,
                  tensor_view counts, cudaStream_t stream) noexcept {
  GCPO_TRY(detail::validate_union_mask(a, b, c, critical, counts, dev));
  const std::int64_t R = a.shape[0], N = a.shape[1];
  if (R == 0) return ok();
  GCPO_LAUNCH(grid_for(R, 1), sel_block, 0, stream, detail::cuda_impl::union_mask_kernel<sel_block>)(
      a.as<const std::uint8_t>(), b.as<const std::uint8_t>(), c.present() ? c.as<const std::uint8_t>() : nullptr,
      critical.as<std::uint8_t>(), counts.present() ? counts.as<std::int32_t>() : nullptr, R, N);
  return detail::cuda_impl::check_launch("union_mask_kernel");
}

status select_critical_tokens(const selection_inputs& in, const selection_outputs& out,
                              const selection_options& options, workspace ws, cudaStream_t stream) noexcept {
  grid_shape g;
  selection_counts c;
  GCPO_TRY(detail::validate_select_critical_tokens(in, out, options, dev, g, c));
  const std::int64_t R = in.entropy.shape[0], N = in.entropy.shape[1];
  GCPO_TRY(detail::check_select_critical_tokens_workspace(in, out, ws, dev));
  // The host twin's workspace layout; the device uses the two maps (N > select_smem_tokens)
  // and the similarity (computed and not requested).
  detail::workspace_carver carve(ws);
  const std::size_t rn = static_cast<std::size_t>(R * N);
  float* smooth_ws = carve.take<float>(rn);
  float* grad_ws = carve.take<float>(rn);
  float* sim_ws = carve.take<float>(rn);

  detail::cuda_impl::select_args a{};
  a.geo = detail::cuda_impl::make_geometry(R, N, g, c);
  a.entropy = in.entropy.as<const float>();
  if (in.similarity.present()) {
    a.sim = in.similarity.as<const float>();
    a.sim_copy = out.similarity.present() ? out.similarity.as<float>() : nullptr;
  } else {
    tensor_view sim_view = out.similarity.present() ? out.similarity : make_view(sim_ws, {R, N}, dev);
    if (in.embeddings.present()) GCPO_TRY(cuda::group_similarity(in.embeddings, sim_view, in.similarity_opts, stream));
    else
      GCPO_TRY(cuda::group_similarity_from_tokens(in.tokens, in.embedding_table, sim_view, in.similarity_opts, stream));
    a.sim = sim_view.as<const float>();
    a.sim_copy = nullptr;
  }
  a.smooth_out = out.smoothed_entropy.present() ? out.smoothed_entropy.as<float>() : nullptr;
  a.grad_out = out.entropy_gradient.present() ? out.entropy_gradient.as<float>() : nullptr;
  a.smooth_ws = smooth_ws;
  a.grad_ws = grad_ws;
  a.initial_out = out.initial.present() ? out.initial.as<std::uint8_t>() : nullptr;
  a.gradient_out = out.gradient.present() ? out.gradient.as<std::uint8_t>() : nullptr;
  a.lowsim_out = out.low_similarity.present() ? out.low_similarity.as<std::uint8_t>() : nullptr;
  a.critical = out.critical.as<std::uint8_t>();
  a.counts = out.counts.present() ? out.counts.as<std::int32_t>() : nullptr;
  a.use_smem = N <= detail::cuda_impl::select_smem_tokens;
  return detail::cuda_impl::launch_select_critical(a, stream);
}

}  // namespace cuda
}  // namespace gcpo
