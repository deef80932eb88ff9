// gcpo/cuda.hpp - the CUDA twins of every operator. Plain C++17 (g++ can compile it: it only
// needs <cuda_runtime_api.h> from the CUDA toolkit); link the precompiled kernels library
// `gcpo::cuda` (kernels/*.cu) to get the definitions.
//
// Each CUDA twin takes the same views and the same options struct as its host twin in
// `gcpo::host`, plus a workspace where it needs scratch and an explicit stream:
//   status gcpo::cuda::op(inputs..., outputs..., const options&, [workspace,] cudaStream_t)
// Contract of every CUDA twin:
// - validation is the host twin's (`detail::validate_*`), done on the host before any launch;
//   views must be `memory_space::device`;
// - no allocation, no synchronisation, no host round trip: work is enqueued on `stream` and
//   the call returns; results are ready when the stream reaches that point. Every operator can
//   be captured in a CUDA graph;
// - every launch is checked; a failure returns `status_code::cuda_error` with the CUDA error
//   string, after clearing the sticky error state;
// - deterministic: reductions run in a fixed order without floating-point atomics, so results
//   are bitwise identical run to run on the same GPU; masks and sampled tokens are bitwise
//   identical to the host twin's, values agree within the spec's tolerances;
// - data-dependent checks the host twin makes (token ids in [0, V)) cannot be reported
//   without a round trip: the CUDA twins write NaN into the outputs of an out-of-range token's
//   row (log-prob, similarity) and zero into its gradient row instead. Validate ids upstream.
#pragma once

#include <cuda_runtime_api.h>

#include "gcpo.hpp"

namespace gcpo {
namespace cuda {

/// See host::token_stats. One pass over the logits (online max / sum), 16-byte vector loads
/// when rows are aligned, 64-bit offsets.
status token_stats(const_tensor_view logits, const_tensor_view tokens, tensor_view entropy, tensor_view logprob,
                   tensor_view lse, const token_stats_options& options, cudaStream_t stream) noexcept;

/// See host::token_stats_backward (overwrites; may run in place on `logits`).
status token_stats_backward(const_tensor_view logits, const_tensor_view tokens, const_tensor_view lse,
                            const_tensor_view grad_logprob, tensor_view grad_logits, const token_stats_options& options,
                            cudaStream_t stream) noexcept;

/// See host::group_similarity.
status group_similarity(const_tensor_view embeddings, tensor_view similarity, const similarity_options& options,
                        cudaStream_t stream) noexcept;

/// See host::group_similarity_from_tokens.
status group_similarity_from_tokens(const_tensor_view tokens, const_tensor_view table, tensor_view similarity,
                                    const similarity_options& options, cudaStream_t stream) noexcept;

/// See host::initial_mask.
status initial_mask(tensor_view mask, const selection_options& options, cudaStream_t stream) noexcept;

/// See host::smoothed_entropy.
status smoothed_entropy(const_tensor_view entropy, tensor_view smoothed, const selection_options& options,
                        cudaStream_t stream) noexcept;

/// See host::entropy_gradient.
status entropy_gradient(const_tensor_view smoothed, tensor_view gradient, const selection_options& options,
                        cudaStream_t stream) noexcept;

/// See host::gradient_topk.
status gradient_topk(const_tensor_view gradient, tensor_view mask, const selection_options& options,
                     cudaStream_t stream) noexcept;

/// See host::low_similarity_mask.
status low_similarity_mask(const_tensor_view similarity, const_tensor_view exclude, tensor_view mask,
                           const selection_options& options, cudaStream_t stream) noexcept;

/// See host::union_mask.
status union_mask(const_tensor_view a, const_tensor_view b, const_tensor_view c, tensor_view critical,
                  tensor_view counts, cudaStream_t stream) noexcept;

/// See host::select_critical_tokens; `ws`: select_critical_tokens_workspace_bytes(R, N) bytes
/// of device memory.
status select_critical_tokens(const selection_inputs& inputs, const selection_outputs& outputs,
                              const selection_options& options, workspace ws, cudaStream_t stream) noexcept;

/// See host::group_advantages.
status group_advantages(const_tensor_view rewards, tensor_view advantages, const advantage_options& options,
                        cudaStream_t stream) noexcept;

/// See host::advantage_weight.
status advantage_weight(const_tensor_view logp, const_tensor_view ref_logp, tensor_view weight,
                        const weight_options& options, cudaStream_t stream) noexcept;

/// See host::gcpo_loss_forward; `ws`: gcpo_loss_workspace_bytes(R, N) bytes of device memory.
status gcpo_loss_forward(const loss_inputs& inputs, const loss_outputs& outputs, const loss_options& options,
                         workspace ws, cudaStream_t stream) noexcept;

/// See host::gcpo_loss_backward; `ws`: gcpo_loss_workspace_bytes(R, N) bytes of device memory.
status gcpo_loss_backward(const loss_inputs& inputs, const_tensor_view grad_loss, tensor_view grad_logp,
                          const loss_options& options, workspace ws, cudaStream_t stream) noexcept;

/// See host::gcpo_loss_forward_backward: both in one pass over the inputs (N <= 1024: two
/// launches, the second a one-block reduction of the stats, where gcpo_loss_forward takes two and
/// gcpo_loss_backward one); `ws`: gcpo_loss_workspace_bytes(R, N) bytes of device memory.
status gcpo_loss_forward_backward(const loss_inputs& inputs, const loss_outputs& outputs, const_tensor_view grad_loss,
                                  tensor_view grad_logp, const loss_options& options, workspace ws,
                                  cudaStream_t stream) noexcept;

/// See host::generation_step; `ws`: generation_step_workspace_bytes(R, V) bytes of device
/// memory. Draws the same tokens as the host twin.
status generation_step(const_tensor_view cond_logits, const_tensor_view uncond_logits, tensor_view tokens,
                       tensor_view logprob, tensor_view entropy, const sampling_options& options, workspace ws,
                       cudaStream_t stream) noexcept;

/// See host::count_nonfinite (`count` in device memory).
status count_nonfinite(const_tensor_view x, tensor_view count, cudaStream_t stream) noexcept;

}  // namespace cuda
}  // namespace gcpo
