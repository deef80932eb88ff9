// gcpo/token_stats.hpp - entropy, log-prob of the sampled token and logsumexp from logits,
// and the backward of the log-prob to the logits.
//
// Shapes: `R` rollouts, `N` tokens per rollout, `V` codebook entries.
#pragma once

#include "detail/validate.hpp"
#include "status.hpp"
#include "tensor_view.hpp"

namespace gcpo {

/// Options of `token_stats` and `token_stats_backward` (shared by the host and CUDA twins).
struct token_stats_options {
  /// Logits are divided by this before the softmax. Must be finite and > 0.
  float temperature = 1.0f;
};

namespace detail {

/// Validation shared by the host and CUDA twins of `token_stats`.
inline status validate_token_stats(const_tensor_view logits, const_tensor_view tokens, const_tensor_view entropy,
                                   const_tensor_view logprob, const_tensor_view lse, const token_stats_options& opt,
                                   memory_space space) noexcept {
  GCPO_TRY(check_rank(logits, "logits", 3, "[R, N, V]"));
  GCPO_TRY(check_space(logits, "logits", space));
  GCPO_TRY(check_dtype(logits, "logits", {dtype::float32, dtype::bfloat16, dtype::float16}));
  GCPO_TRY(check_inner_contiguous(logits, "logits"));
  GCPO_TRY(check_positive_strides(logits, "logits"));
  if (logits.shape[2] < 1)
    return status::error(status_code::invalid_argument, "`logits.shape[2]` (V = %lld) must be at least 1",
                         static_cast<long long>(logits.shape[2]));
  if (!(opt.temperature > 0.0f) || !std::isfinite(opt.temperature))
    return status::error(status_code::invalid_argument, "`options.temperature` (%g) must be finite and > 0",
                         static_cast<double>(opt.temperature));
  const std::int64_t R = logits.shape[0], N = logits.shape[1];
  if (tokens.present()) {
    GCPO_TRY(check_rank(tokens, "tokens", 2, "[R, N]"));
    GCPO_TRY(check_space(tokens, "tokens", space));
    GCPO_TRY(check_dtype(tokens, "tokens", {dtype::int32, dtype::int64}));
    GCPO_TRY(check_extent(tokens, "tokens", 0, R, "`logits.shape[0]`"));
    GCPO_TRY(check_extent(tokens, "tokens", 1, N, "`logits.shape[1]`"));
    GCPO_TRY(check_contiguous(tokens, "tokens"));
  }
  if (logprob.present() && tokens.absent())
    return status::error(status_code::invalid_argument, "`logprob` was requested but `tokens` was not given");
  if (entropy.absent() && logprob.absent() && lse.absent())
    return status::error(status_code::invalid_argument, "none of `entropy`, `logprob`, `lse` was given: nothing to compute");
  const char* names[3] = {"entropy", "logprob", "lse"};
  const_tensor_view outs[3] = {entropy, logprob, lse};
  for (int i = 0; i < 3; ++i) {
    if (outs[i].absent()) continue;
    GCPO_TRY(check_rank(outs[i], names[i], 2, "[R, N]"));
    GCPO_TRY(check_space(outs[i], names[i], space));
    GCPO_TRY(check_dtype(outs[i], names[i], {dtype::float32}));
    GCPO_TRY(check_extent(outs[i], names[i], 0, R, "`logits.shape[0]`"));
    GCPO_TRY(check_extent(outs[i], names[i], 1, N, "`logits.shape[1]`"));
    GCPO_TRY(check_contiguous(outs[i], names[i]));
    GCPO_TRY(check_no_overlap(outs[i], names[i], logits, "logits"));
    GCPO_TRY(check_no_overlap(outs[i], names[i], tokens, "tokens"));
    for (int j = 0; j < i; ++j) GCPO_TRY(check_no_overlap(outs[i], names[i], outs[j], names[j]));
  }
  return ok();
}

/// Validation shared by the host and CUDA twins of `token_stats_backward`.
inline status validate_token_stats_backward(const_tensor_view logits, const_tensor_view tokens, const_tensor_view lse,
                                            const_tensor_view grad_logprob, const_tensor_view grad_logits,
                                            const token_stats_options& opt, memory_space space) noexcept {
  // `lse` first: validate_token_stats would otherwise report "nothing to compute" for it.
  GCPO_TRY(check_present(lse, "lse"));
  GCPO_TRY(validate_token_stats(logits, tokens, const_tensor_view{}, const_tensor_view{}, lse, opt, space));
  GCPO_TRY(check_present(tokens, "tokens"));
  const std::int64_t R = logits.shape[0], N = logits.shape[1], V = logits.shape[2];
  GCPO_TRY(check_rank(grad_logprob, "grad_logprob", 2, "[R, N]"));
  GCPO_TRY(check_space(grad_logprob, "grad_logprob", space));
  GCPO_TRY(check_dtype(grad_logprob, "grad_logprob", {dtype::float32}));
  GCPO_TRY(check_extent(grad_logprob, "grad_logprob", 0, R, "`logits.shape[0]`"));
  GCPO_TRY(check_extent(grad_logprob, "grad_logprob", 1, N, "`logits.shape[1]`"));
  GCPO_TRY(check_contiguous(grad_logprob, "grad_logprob"));
  GCPO_TRY(check_rank(grad_logits, "grad_logits", 3, "[R, N, V]"));
  GCPO_TRY(check_space(grad_logits, "grad_logits", space));
  GCPO_TRY(check_dtype(grad_logits, "grad_logits", {dtype::float32, dtype::bfloat16, dtype::float16}));
  GCPO_TRY(check_extent(grad_logits, "grad_logits", 0, R, "`logits.shape[0]`"));
  GCPO_TRY(check_extent(grad_logits, "grad_logits", 1, N, "`logits.shape[1]`"));
  GCPO_TRY(check_extent(grad_logits, "grad_logits", 2, V, "`logits.shape[2]`"));
  GCPO_TRY(check_inner_contiguous(grad_logits, "grad_logits"));
  GCPO_TRY(check_positive_strides(grad_logits, "grad_logits"));
  GCPO_TRY(check_no_self_overlap(grad_logits, "grad_logits"));
  // In place is allowed only as an exact alias: same pointer, dtype and strides.
  const bool in_place = grad_logits.data == logits.data && grad_logits.type == logits.type &&
                        grad_logits.strides[0] == logits.strides[0] && grad_logits.strides[1] == logits.strides[1];
  GCPO_TRY(check_no_overlap_unless_exact(grad_logits, "grad_logits", logits, "logits", in_place));
  GCPO_TRY(check_no_overlap(grad_logits, "grad_logits", tokens, "tokens"));
  GCPO_TRY(check_no_overlap(grad_logits, "grad_logits", lse, "lse"));
  GCPO_TRY(check_no_overlap(grad_logits, "grad_logits", grad_logprob, "grad_logprob"));
  return ok();
}

}  // namespace detail

namespace host {

/// Entropy, log-prob of the sampled token and logsumexp of every row of `logits`, in one pass.
///
/// With `x = logits[r, t, :] / temperature`:
///   `lse[r, t] = log(sum_v exp(x_v))`, `logprob[r, t] = x[tokens[r, t]] - lse[r, t]`,
///   `entropy[r, t] = lse - sum_v softmax(x)_v * x_v` (nats).
///
/// - `logits`  `[R, N, V]` float32 / bfloat16 / float16; each row of `V` contiguous, rows may be
///   strided (any positive `strides[0]`, `strides[1]`); accumulation is float32.
/// - `tokens`  `[R, N]` int32 / int64, contiguous; needed only for `logprob`; each in `[0, V)`
///   (checked: an out-of-range token returns `invalid_argument` naming it).
/// - `entropy`, `logprob`, `lse`: `[R, N]` float32 contiguous outputs, each optional (absent view),
///   at least one given; they are overwritten and shall not overlap each other or the inputs.
/// - `-inf` logits have probability 0 and contribute 0. A row of only `-inf` gives `lse = -inf`
///   and NaN entropy / log-prob; a NaN or `+inf` logit makes its row's outputs NaN.
/// - Deterministic: a fixed summation order, identical results run to run. Single-threaded.
inline status token_stats(const_tensor_view logits, const_tensor_view tokens, tensor_view entropy, tensor_view logprob,
                          tensor_view lse, const token_stats_options& options = {}) noexcept;

/// Backward of `logprob` (from `token_stats`) to the logits, in one pass from the saved `lse`:
///   `grad_logits[r, t, v] = (grad_logprob[r, t] / T) * (onehot(tokens[r, t])_v - softmax(x)_v)`.
///
/// - `logits`, `tokens`, `options`: as given to `token_stats`; `lse` `[R, N]` float32 its output.
/// - `grad_logprob` `[R, N]` float32 contiguous: dLoss/dlogprob.
/// - `grad_logits` `[R, N, V]` float32 / bfloat16 / float16, rows of V contiguous, rows may be
///   strided. **Overwritten** (`=`, not `+=`). It may be exactly `logits` (same pointer, dtype and
///   strides: in place); otherwise it shall not overlap any input.
inline status token_stats_backward(const_tensor_view logits, const_tensor_view tokens, const_tensor_view lse,
                                   const_tensor_view grad_logprob, tensor_view grad_logits,
                                   const token_stats_options& options = {}) noexcept;

}  // namespace host
}  // namespace gcpo

#include "detail/host/token_stats.hpp"
