// gcpo/selection.hpp - critical-token selection: initial tokens, entropy-gradient tokens,
// low-similarity tokens and their union (spec section 3).
//
// Shapes: `R` rollouts, `N = H * W` tokens in raster order, masks are `[R, N]` uint8 (0/1),
// per-token maps `[R, N]` float32, all contiguous.
#pragma once

#include "detail/validate.hpp"
#include "grid.hpp"
#include "similarity.hpp"
#include "status.hpp"
#include "tensor_view.hpp"

namespace gcpo {

/// Options of every selection operator (shared by the host and CUDA twins). The defaults are
/// the official implementation's. Every count is `floor(N * frac)` computed in double.
struct selection_options {
  grid_shape grid{};                 ///< H x W with H * W = N; {0, 0}: square grid
  double initial_frac = 0.1;         ///< initial tokens: t < floor(N * initial_frac)
  double gradient_frac = 0.1;        ///< k of the entropy-gradient top-k
  double similarity_frac = 0.1;      ///< k of the low-similarity selection
  double window_start_frac = 0.1;    ///< gradient window starts at floor(N * window_start_frac)
  double window_frac = 0.8;          ///< and is floor(N * window_frac) long
};

/// The counts a `selection_options` gives for N tokens.
struct selection_counts {
  std::int64_t initial = 0;       ///< floor(N * initial_frac)
  std::int64_t gradient = 0;      ///< min(floor(N * gradient_frac), window)
  std::int64_t similarity = 0;    ///< floor(N * similarity_frac) (fewer when not enough remain)
  std::int64_t window_start = 0;  ///< floor(N * window_start_frac)
  std::int64_t window = 0;        ///< floor(N * window_frac)
};

/// Inputs of `select_critical_tokens`. The similarity comes from exactly one of: a precomputed
/// `similarity` map, `embeddings`, or `tokens` + `embedding_table` (with `group`).
struct selection_inputs {
  const_tensor_view entropy;          ///< `[R, N]` float32 (token_stats or generation_step)
  const_tensor_view similarity;       ///< `[R, N]` float32 (group_similarity), or absent
  const_tensor_view embeddings;       ///< `[R, N, D]`, or absent
  const_tensor_view tokens;           ///< `[R, N]` int32/int64, with `embedding_table`, or absent
  const_tensor_view embedding_table;  ///< `[V, D]`, or absent
  similarity_options similarity_opts{};  ///< used when the similarity is computed here
};

/// Outputs of `select_critical_tokens`; all but `critical` optional (absent views).
struct selection_outputs {
  tensor_view critical;          ///< `[R, N]` uint8: initial | gradient | similarity
  tensor_view counts;            ///< `[R]` int32: critical tokens per rollout
  tensor_view initial;           ///< `[R, N]` uint8
  tensor_view gradient;          ///< `[R, N]` uint8
  tensor_view low_similarity;    ///< `[R, N]` uint8
  tensor_view smoothed_entropy;  ///< `[R, N]` float32: causal 5-point local mean
  tensor_view entropy_gradient;  ///< `[R, N]` float32: central-difference gradient magnitude
  tensor_view similarity;        ///< `[R, N]` float32: the similarity used (computed or copied)
};

/// Largest N the selection operators accept (positions and counts are int32).
constexpr std::int64_t max_selection_tokens = (std::int64_t{1} << 31) - 1;

namespace detail {

/// Resolves the grid and the counts; validates the fractions and the window.
inline status resolve_selection(std::int64_t N, const selection_options& opt, grid_shape& grid,
                                selection_counts& counts) noexcept {
  if (N > max_selection_tokens)
    return status::error(status_code::invalid_argument,
                         "`N` (%lld) must be at most 2^31 - 1: positions and counts are int32",
                         static_cast<long long>(N));
  GCPO_TRY(resolve_grid(opt.grid, N, grid, "N"));
  GCPO_TRY(check_fraction(opt.initial_frac, "options.initial_frac"));
  GCPO_TRY(check_fraction(opt.gradient_frac, "options.gradient_frac"));
  GCPO_TRY(check_fraction(opt.similarity_frac, "options.similarity_frac"));
  GCPO_TRY(check_fraction(opt.window_start_frac, "options.window_start_frac"));
  GCPO_TRY(check_fraction(opt.window_frac, "options.window_frac"));
  counts.initial = count_of(N, opt.initial_frac);
  counts.window_start = count_of(N, opt.window_start_frac);
  counts.window = count_of(N, opt.window_frac);
  if (counts.window > N - counts.window_start)
    return status::error(status_code::invalid_argument,
                         "the gradient window [floor(N * `options.window_start_frac`), + floor(N * `options.window_frac`)) "
                         "= [%lld, %lld) must lie within N (%lld)",
                         static_cast<long long>(counts.window_start),
                         static_cast<long long>(counts.window_start + counts.window), static_cast<long long>(N));
  const std::int64_t kg = count_of(N, opt.gradient_frac);
  counts.gradient = kg < counts.window ? kg : counts.window;
  counts.similarity = count_of(N, opt.similarity_frac);
  return ok();
}

/// `v` is a `[R, N]` contiguous view of `type` in `space`.
template <class P>
status check_map(const basic_tensor_view<P>& v, const char* name, std::int64_t R, std::int64_t N, dtype type,
                 memory_space space, const char* r_name) noexcept {
  GCPO_TRY(check_rank(v, name, 2, "[R, N]"));
  GCPO_TRY(check_space(v, name, space));
  GCPO_TRY(check_dtype(v, name, {type}));
  GCPO_TRY(check_extent(v, name, 0, R, r_name));
  GCPO_TRY(check_extent(v, name, 1, N, "N"));
  GCPO_TRY(check_contiguous(v, name));
  return ok();
}

/// `[R, N]` -> `[R, N]` map operators (smoothing, gradient, top-k): shapes, dtypes, aliasing.
inline status validate_map_op(const_tensor_view in, const char* in_name, dtype in_type, const_tensor_view out,
                              const char* out_name, dtype out_type, memory_space space) noexcept {
  GCPO_TRY(check_rank(in, in_name, 2, "[R, N]"));
  const std::int64_t R = in.shape[0], N = in.shape[1];
  GCPO_TRY(check_map(in, in_name, R, N, in_type, space, "R"));
  GCPO_TRY(check_map(out, out_name, R, N, out_type, space, "R"));
  GCPO_TRY(check_no_overlap(out, out_name, in, in_name));
  return ok();
}

/// Validation shared by the twins of `union_mask`.
inline status validate_union_mask(const_tensor_view a, const_tensor_view b, const_tensor_view c,
                                  const_tensor_view critical, const_tensor_view counts, memory_space space) noexcept {
  GCPO_TRY(check_rank(a, "a", 2, "[R, N]"));
  const std::int64_t R = a.shape[0], N = a.shape[1];
  GCPO_TRY(check_map(a, "a", R, N, dtype::uint8, space, "`a.shape[0]`"));
  GCPO_TRY(check_map(b, "b", R, N, dtype::uint8, space, "`a.shape[0]`"));
  if (c.present()) GCPO_TRY(check_map(c, "c", R, N, dtype::uint8, space, "`a.shape[0]`"));
  GCPO_TRY(check_map(critical, "critical", R, N, dtype::uint8, space, "`a.shape[0]`"));
  if (N > max_selection_tokens)
    return status::error(status_code::invalid_argument,
                         "`a.shape[1]` (N = %lld) must be at most 2^31 - 1: counts are int32", static_cast<long long>(N));
  const char* in_names[3] = {"a", "b", "c"};
  const const_tensor_view ins[3] = {a, b, c};
  for (int i = 0; i < 3; ++i)
    GCPO_TRY(check_no_overlap_unless_exact(critical, "critical", ins[i], in_names[i], ins[i].data == critical.data));
  if (counts.present()) {
    GCPO_TRY(check_rank(counts, "counts", 1, "[R]"));
    GCPO_TRY(check_space(counts, "counts", space));
    GCPO_TRY(check_dtype(counts, "counts", {dtype::int32}));
    GCPO_TRY(check_extent(counts, "counts", 0, R, "`a.shape[0]`"));
    GCPO_TRY(check_contiguous(counts, "counts"));
    for (int i = 0; i < 3; ++i) GCPO_TRY(check_no_overlap(counts, "counts", ins[i], in_names[i]));
    GCPO_TRY(check_no_overlap(counts, "counts", critical, "critical"));
  }
  return ok();
}

/// Validation shared by the twins of `select_critical_tokens`.
inline status validate_select_critical_tokens(const selection_inputs& in, const selection_outputs& out,
                                              const selection_options& opt, memory_space space,
                                              grid_shape& grid, selection_counts& counts) noexcept {
  GCPO_TRY(check_rank(in.entropy, "inputs.entropy", 2, "[R, N]"));
  const std::int64_t R = in.entropy.shape[0], N = in.entropy.shape[1];
  GCPO_TRY(check_map(in.entropy, "inputs.entropy", R, N, dtype::float32, space, "`inputs.entropy.shape[0]`"));
  GCPO_TRY(resolve_selection(N, opt, grid, counts));
  const int sources = (in.similarity.present() ? 1 : 0) + (in.embeddings.present() ? 1 : 0) +
                      ((in.tokens.present() || in.embedding_table.present()) ? 1 : 0);
  if (sources != 1)
    return status::error(status_code::invalid_argument,
                         "give exactly one similarity source: `inputs.similarity`, `inputs.embeddings`, or "
                         "`inputs.tokens` with `inputs.embedding_table` (%d given)", sources);
  if (in.similarity.present()) {
    GCPO_TRY(check_map(in.similarity, "inputs.similarity", R, N, dtype::float32, space, "`inputs.entropy.shape[0]`"));
  } else if (in.embeddings.present()) {
    // Everything group_similarity would check, named as the caller wrote it.
    GCPO_TRY(check_embeddings(in.embeddings, "inputs.embeddings", space));
    GCPO_TRY(check_extent(in.embeddings, "inputs.embeddings", 0, R, "`inputs.entropy.shape[0]`"));
    GCPO_TRY(check_extent(in.embeddings, "inputs.embeddings", 1, N, "`inputs.entropy.shape[1]`"));
  } else {
    GCPO_TRY(check_present(in.tokens, "inputs.tokens"));
    GCPO_TRY(check_present(in.embedding_table, "inputs.embedding_table"));
    GCPO_TRY(check_token_ids(in.tokens, "inputs.tokens", space));
    GCPO_TRY(check_extent(in.tokens, "inputs.tokens", 0, R, "`inputs.entropy.shape[0]`"));
    GCPO_TRY(check_extent(in.tokens, "inputs.tokens", 1, N, "`inputs.entropy.shape[1]`"));
    GCPO_TRY(check_embedding_table(in.embedding_table, "inputs.embedding_table", space));
  }
  if (!in.similarity.present())  // computed here: name the options as the caller wrote them
    GCPO_TRY(check_similarity_options(in.similarity_opts, R, "`inputs.entropy.shape[0]`", "inputs.similarity_opts"));
  GCPO_TRY(check_map(out.critical, "outputs.critical", R, N, dtype::uint8, space, "`inputs.entropy.shape[0]`"));
  if (out.counts.present()) {
    GCPO_TRY(check_rank(out.counts, "outputs.counts", 1, "[R]"));
    GCPO_TRY(check_space(out.counts, "outputs.counts", space));
    GCPO_TRY(check_dtype(out.counts, "outputs.counts", {dtype::int32}));
    GCPO_TRY(check_extent(out.counts, "outputs.counts", 0, R, "`inputs.entropy.shape[0]`"));
    GCPO_TRY(check_contiguous(out.counts, "outputs.counts"));
  }
  const char* names[8] = {"outputs.critical", "outputs.counts", "outputs.initial", "outputs.gradient",
                          "outputs.low_similarity", "outputs.smoothed_entropy", "outputs.entropy_gradient",
                          "outputs.similarity"};
  const tensor_view views[8] = {out.critical, out.counts, out.initial, out.gradient, out.low_similarity,
                                out.smoothed_entropy, out.entropy_gradient, out.similarity};
  for (int i = 2; i < 8; ++i)
    if (views[i].present())
      GCPO_TRY(check_map(views[i], names[i], R, N, i < 5 ? dtype::uint8 : dtype::float32, space,
                         "`inputs.entropy.shape[0]`"));
  const char* in_names[5] = {"inputs.entropy", "inputs.similarity", "inputs.embeddings", "inputs.tokens",
                             "inputs.embedding_table"};
  const const_tensor_view in_views[5] = {in.entropy, in.similarity, in.embeddings, in.tokens, in.embedding_table};
  for (int i = 0; i < 8; ++i) {
    for (int j = 0; j < 5; ++j) GCPO_TRY(check_no_overlap(views[i], names[i], in_views[j], in_names[j]));
    for (int j = 0; j < i; ++j) GCPO_TRY(check_no_overlap(views[i], names[i], views[j], names[j]));
  }
  return ok();
}

}  // namespace detail

/// Workspace bytes `select_critical_tokens` needs for R rollouts of N tokens (host and CUDA;
/// the intermediate maps and masks that are not requested as outputs live here). SIZE_MAX when
/// the size does not fit in size_t (the operator then returns `invalid_argument`); negative
/// extents count as 0.
inline std::size_t select_critical_tokens_workspace_bytes(std::int64_t R, std::int64_t N) noexcept {
  const std::size_t n = detail::extent_size(N);
  const std::size_t rn = detail::saturating_mul(detail::extent_size(R), n);
  const std::size_t rn4 = detail::saturating_mul(rn, 4);
  return detail::carved_bytes({rn4, rn4, rn4, rn, rn, rn, detail::saturating_mul(n, 4)});
}

namespace detail {

/// The workspace of `select_critical_tokens` (host and CUDA): large enough, in `space`, and its
/// used bytes overlap no input or output.
inline status check_select_critical_tokens_workspace(const selection_inputs& in, const selection_outputs& out,
                                                     const workspace& ws, memory_space space) noexcept {
  const std::int64_t R = in.entropy.shape[0], N = in.entropy.shape[1];
  return check_workspace(ws, select_critical_tokens_workspace_bytes(R, N), space,
                         "select_critical_tokens_workspace_bytes(R, N)",
                         {{in.entropy, "inputs.entropy"}, {in.similarity, "inputs.similarity"},
                          {in.embeddings, "inputs.embeddings"}, {in.tokens, "inputs.tokens"},
                          {in.embedding_table, "inputs.embedding_table"}, {out.critical, "outputs.critical"},
                          {out.counts, "outputs.counts"}, {out.initial, "outputs.initial"},
                          {out.gradient, "outputs.gradient"}, {out.low_similarity, "outputs.low_similarity"},
                          {out.smoothed_entropy, "outputs.smoothed_entropy"},
                          {out.entropy_gradient, "outputs.entropy_gradient"}, {out.similarity, "outputs.similarity"}});
}

}  // namespace detail

/// Counts for N tokens under `options` (validates the fractions and the window).
inline status selection_counts_for(std::int64_t N, const selection_options& options, selection_counts& counts) noexcept {
  grid_shape g;
  return detail::resolve_selection(N, options, g, counts);
}


namespace host {

/// `mask[r, t] = 1` for `t < floor(N * options.initial_frac)`, else 0.
/// `mask` `[R, N]` uint8 contiguous, overwritten.
inline status initial_mask(tensor_view mask, const selection_options& options = {}) noexcept;

/// Causal local mean: `smoothed[r, (i,j)]` = mean of the entries of `entropy[r]`'s H x W map
/// that exist among (i,j), (i,j-1), (i-1,j-1), (i-1,j), (i-1,j+1) (divisor 1..5).
/// `entropy`, `smoothed`: `[R, N]` float32 contiguous; `smoothed` overwritten, shall not
/// overlap `entropy`. Only `options.grid` is used.
inline status smoothed_entropy(const_tensor_view entropy, tensor_view smoothed,
                               const selection_options& options = {}) noexcept;

/// Central-difference gradient magnitude `sqrt(dx^2 + dy^2)` of each H x W map; one-sided
/// differences at the borders; `dx = 0` when W = 1 and `dy = 0` when H = 1.
/// `smoothed`, `gradient`: `[R, N]` float32 contiguous; `gradient` overwritten, no overlap.
inline status entropy_gradient(const_tensor_view smoothed, tensor_view gradient,
                               const selection_options& options = {}) noexcept;

/// Windowed top-k: among positions `[lo, lo + n)` (lo = floor(N * window_start_frac),
/// n = floor(N * window_frac)) marks the `min(floor(N * gradient_frac), n)` largest
/// `gradient` values; ties go to the lower position, NaN ranks below every number.
/// `gradient` `[R, N]` float32, `mask` `[R, N]` uint8 overwritten; contiguous, no overlap.
inline status gradient_topk(const_tensor_view gradient, tensor_view mask, const selection_options& options = {}) noexcept;

/// Marks, per rollout, the `floor(N * similarity_frac)` positions with the lowest `similarity`
/// among those where `exclude` is 0 (all of them when fewer remain); ties go to the lower
/// position, NaN ranks after every number. `similarity` `[R, N]` float32; `exclude` `[R, N]`
/// uint8 or absent (nothing excluded); `mask` `[R, N]` uint8 overwritten, no overlap.
inline status low_similarity_mask(const_tensor_view similarity, const_tensor_view exclude, tensor_view mask,
                                  const selection_options& options = {}) noexcept;

/// `critical = a | b | c` (each `[R, N]` uint8, nonzero = selected; `c` may be absent) and,
/// when given, `counts[r]` (int32 `[R]`) = number of selected positions of rollout r.
/// `critical` may be exactly one of the inputs (in place); `counts` shall not overlap anything.
inline status union_mask(const_tensor_view a, const_tensor_view b, const_tensor_view c, tensor_view critical,
                         tensor_view counts) noexcept;

/// The whole selection of the official trainer in one call: initial tokens, causal local mean,
/// gradient, windowed top-k, group similarity (when not given), low-similarity tokens excluding
/// the first two sets, union and per-rollout counts. See `selection_inputs` / `selection_outputs`.
/// `ws` must hold `select_critical_tokens_workspace_bytes(R, N)` bytes of host memory, which
/// shall not overlap any input or output (checked).
/// Deterministic (ties to the lower index). Outputs are overwritten.
inline status select_critical_tokens(const selection_inputs& inputs, const selection_outputs& outputs,
                                     const selection_options& options, workspace ws) noexcept;

}  // namespace host
}  // namespace gcpo

#include "detail/host/selection.hpp"
