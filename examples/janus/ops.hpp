// examples/janus/ops.hpp - libtorch glue around gcpo's operators: tensor views, dispatch to
// the host twins (CPU tensors) or the CUDA twins (CUDA tensors, when the trainer is built with
// gcpo::cuda), and the GCPO/GRPO loss as a torch::autograd::Function.
//
// Every function takes and returns torch tensors on one device; a gcpo status that is not ok
// throws std::runtime_error with the operator's message (examples may throw; the library
// never does).
#pragma once

#include <cstdint>

#include <torch/torch.h>

#include <gcpo/gcpo.hpp>

namespace janus {
namespace ops {

/// True when this build can run gcpo's CUDA twins (built with gcpo::cuda).
bool cuda_available() noexcept;

/// One decoding step through gcpo's fused generation step. `logits` float32 `[2R, V]` holds
/// interleaved conditional/unconditional rows when `cfg`, else `[R, V]` conditional rows.
/// Writes `tokens` int64 `[R]`, `logprob` and `entropy` float32 `[R]` (preallocated, same
/// device). `opt.step` must be the token position.
void generation_step(const torch::Tensor& logits, bool cfg, const gcpo::sampling_options& opt, torch::Tensor& tokens,
                     torch::Tensor& logprob, torch::Tensor& entropy);

/// Entropy, log-prob and logsumexp of `logits` `[R, N, V]` (float32) at `tokens` `[R, N]`.
struct TokenStats {
  torch::Tensor entropy, logprob, lse;  ///< float32 `[R, N]`
};
TokenStats token_stats(const torch::Tensor& logits, const torch::Tensor& tokens, float temperature = 1.0f);

/// `[R, N]` group similarity of the sampled tokens' embeddings `table[tokens]` (G per group).
torch::Tensor group_similarity_from_tokens(const torch::Tensor& tokens, const torch::Tensor& table, std::int64_t group);

/// Critical-token selection (section 3 of the operator spec) from entropy and similarity maps.
struct Selection {
  torch::Tensor critical;  ///< uint8 `[R, N]`
  torch::Tensor counts;    ///< int32 `[R]`
};
Selection select_critical_tokens(const torch::Tensor& entropy, const torch::Tensor& similarity,
                                 const gcpo::selection_options& opt);

/// Group-normalised advantages `[R]` of `rewards` `[R]` (float32).
torch::Tensor group_advantages(const torch::Tensor& rewards, const gcpo::advantage_options& opt);

/// What the loss function returns besides the loss.
struct LossResult {
  torch::Tensor loss;     ///< 0-d, differentiable w.r.t. the logits
  torch::Tensor logprob;  ///< float32 `[R, N]` policy log-probs (no grad)
  torch::Tensor stats;    ///< float32 `[gcpo::loss_stat_count]` (no grad)
};

/// The GCPO / GRPO loss of the policy `logits` `[R, N, V]` (float32, requires grad) as a
/// custom autograd function. Forward: token_stats (log-probs of `tokens`) then
/// gcpo_loss_forward. Backward: gcpo_loss_backward then token_stats_backward, giving
/// dL/dlogits. `mask` uint8 `[R, N]` or undefined (all tokens).
LossResult policy_loss(const torch::Tensor& logits, const torch::Tensor& tokens, const torch::Tensor& ref_logprob,
                       const torch::Tensor& advantages, const torch::Tensor& mask, const gcpo::loss_options& opt);

}  // namespace ops
}  // namespace janus
