// gcpo/similarity.hpp - mean pairwise cosine similarity of each token position across a group.
//
// Shapes: `R = P * G` rollouts stored prompt-major (rollout r = p * G + g), `N` tokens,
// `D` embedding dimension, `V` codebook entries.
#pragma once

#include "detail/validate.hpp"
#include "status.hpp"
#include "tensor_view.hpp"

namespace gcpo {

/// Options of `group_similarity` and `group_similarity_from_tokens`.
/// Largest group size the similarity operators accept.
constexpr std::int64_t max_similarity_group = 1024;

struct similarity_options {
  /// Group size G (rollouts per prompt), 2 <= G <= max_similarity_group; R must be a multiple of it.
  std::int64_t group = 0;
  /// cos(a, b) = a.b / max(|a| |b|, eps), as torch.nn.functional.cosine_similarity. > 0.
  float eps = 1e-8f;
};

namespace detail {

/// The options of a similarity computed for R rollouts; `prefix` names the struct as the
/// caller wrote it ("options", or "inputs.similarity_opts" inside select_critical_tokens).
inline status check_similarity_options(const similarity_options& opt, std::int64_t R, const char* r_name,
                                       const char* prefix) noexcept {
  if (opt.group < 2 || opt.group > max_similarity_group)
    return status::error(status_code::invalid_argument, "`%s.group` (%lld) must be in [2, %lld]", prefix,
                         static_cast<long long>(opt.group), static_cast<long long>(max_similarity_group));
  if (R % opt.group != 0)
    return status::error(status_code::invalid_argument, "%s (R = %lld) must be a multiple of `%s.group` (%lld)", r_name,
                         static_cast<long long>(R), prefix, static_cast<long long>(opt.group));
  if (!(opt.eps > 0.0f) || !std::isfinite(opt.eps))
    return status::error(status_code::invalid_argument, "`%s.eps` (%g) must be finite and > 0", prefix,
                         static_cast<double>(opt.eps));
  return ok();
}

/// Vectors of width D (the innermost dimension) of rank `rank` laid out as `layout`: float32 /
/// bfloat16 / float16, each vector contiguous, positive strides.
inline status check_vectors(const_tensor_view t, const char* name, memory_space space, int rank,
                            const char* layout) noexcept {
  GCPO_TRY(check_rank(t, name, rank, layout));
  GCPO_TRY(check_space(t, name, space));
  GCPO_TRY(check_dtype(t, name, {dtype::float32, dtype::bfloat16, dtype::float16}));
  GCPO_TRY(check_inner_contiguous(t, name));
  GCPO_TRY(check_positive_strides(t, name));
  return ok();
}

/// `embeddings` `[R, N, D]` float32 / bfloat16 / float16, rows of D contiguous, positive strides.
inline status check_embeddings(const_tensor_view embeddings, const char* name, memory_space space) noexcept {
  return check_vectors(embeddings, name, space, 3, "[R, N, D]");
}

/// `tokens` `[R, N]` int32 / int64 contiguous.
inline status check_token_ids(const_tensor_view tokens, const char* name, memory_space space) noexcept {
  GCPO_TRY(check_rank(tokens, name, 2, "[R, N]"));
  GCPO_TRY(check_space(tokens, name, space));
  GCPO_TRY(check_dtype(tokens, name, {dtype::int32, dtype::int64}));
  GCPO_TRY(check_contiguous(tokens, name));
  return ok();
}

/// `table` `[V, D]` float32 / bfloat16 / float16, rows contiguous, positive strides.
inline status check_embedding_table(const_tensor_view table, const char* name, memory_space space) noexcept {
  return check_vectors(table, name, space, 2, "[V, D]");
}

inline status validate_similarity_common(std::int64_t R, std::int64_t N, const_tensor_view similarity,
                                         const similarity_options& opt, const char* r_name,
                                         memory_space space) noexcept {
  GCPO_TRY(check_similarity_options(opt, R, r_name, "options"));
  GCPO_TRY(check_rank(similarity, "similarity", 2, "[R, N]"));
  GCPO_TRY(check_space(similarity, "similarity", space));
  GCPO_TRY(check_dtype(similarity, "similarity", {dtype::float32}));
  GCPO_TRY(check_extent(similarity, "similarity", 0, R, r_name));
  GCPO_TRY(check_extent(similarity, "similarity", 1, N, "N"));
  GCPO_TRY(check_contiguous(similarity, "similarity"));
  return ok();
}

/// Validation shared by the host and CUDA twins of `group_similarity`.
inline status validate_group_similarity(const_tensor_view embeddings, const_tensor_view similarity,
                                        const similarity_options& opt, memory_space space) noexcept {
  GCPO_TRY(check_embeddings(embeddings, "embeddings", space));
  GCPO_TRY(validate_similarity_common(embeddings.shape[0], embeddings.shape[1], similarity, opt, "`embeddings.shape[0]`",
                                      space));
  GCPO_TRY(check_no_overlap(similarity, "similarity", embeddings, "embeddings"));
  return ok();
}

/// Validation shared by the host and CUDA twins of `group_similarity_from_tokens`.
inline status validate_group_similarity_from_tokens(const_tensor_view tokens, const_tensor_view table,
                                                    const_tensor_view similarity, const similarity_options& opt,
                                                    memory_space space) noexcept {
  GCPO_TRY(check_token_ids(tokens, "tokens", space));
  GCPO_TRY(check_embedding_table(table, "table", space));
  GCPO_TRY(validate_similarity_common(tokens.shape[0], tokens.shape[1], similarity, opt, "`tokens.shape[0]`", space));
  GCPO_TRY(check_no_overlap(similarity, "similarity", tokens, "tokens"));
  GCPO_TRY(check_no_overlap(similarity, "similarity", table, "table"));
  return ok();
}

}  // namespace detail

namespace host {

/// `similarity[p*G + g, t] = mean over ordered pairs i != j of cos(e_i, e_j)` with
/// `e_i = embeddings[p*G + i, t, :]` and `cos(a, b) = a.b / max(|a| |b|, eps)`; the same value
/// is written for all G rollouts of prompt p.
///
/// Uses the identity `sum_{i != j} cos = |sum_i u_i|^2 - sum_i |u_i|^2` (u_i = e_i / |e_i|,
/// zero vectors give u = 0), O(G*D) per position; positions where some pair has
/// `|e_i| |e_j| < eps` fall back to the pairwise formula so the clamp is honoured exactly.
///
/// - `embeddings` `[R, N, D]` float32 / bfloat16 / float16, rows of D contiguous, R and N strided
///   freely; accumulation float32.
/// - `similarity` `[R, N]` float32 contiguous, overwritten; shall not overlap `embeddings`.
/// - `options.group` = G in [2, 1024], R a multiple of G.
/// - NaN in an embedding makes its position's similarity NaN. Deterministic, single-threaded.
inline status group_similarity(const_tensor_view embeddings, tensor_view similarity,
                               const similarity_options& options) noexcept;

/// `group_similarity` with `embeddings[r, t, :] = table[tokens[r, t], :]`, without
/// materialising `[R, N, D]` (Janus-Pro: the table is `gen_aligner(gen_embed.weight)`, `[V, D]`).
///
/// - `tokens` `[R, N]` int32 / int64 contiguous, each in `[0, V)` (checked: `invalid_argument`).
/// - `table` `[V, D]` float32 / bfloat16 / float16, rows contiguous, may be strided.
/// - `similarity` as for `group_similarity`.
inline status group_similarity_from_tokens(const_tensor_view tokens, const_tensor_view table, tensor_view similarity,
                                           const similarity_options& options) noexcept;

}  // namespace host
}  // namespace gcpo

#include "detail/host/similarity.hpp"
