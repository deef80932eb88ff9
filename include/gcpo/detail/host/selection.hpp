// gcpo/detail/host/selection.hpp - host twins of the selection operators (see gcpo/selection.hpp).
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <new>

#include "../../selection.hpp"
#include "similarity.hpp"

namespace gcpo {
namespace detail {
namespace host_impl {

/// Causal 5-point local mean of one H x W map.
inline void smooth_map(const float* E, float* M, std::int64_t H, std::int64_t W) noexcept {
  for (std::int64_t i = 0; i < H; ++i)
    for (std::int64_t j = 0; j < W; ++j) {
      float sum = E[i * W + j];
      float cnt = 1.0f;
      if (j > 0) { sum += E[i * W + j - 1]; cnt += 1.0f; }
      if (i > 0) {
        if (j > 0) { sum += E[(i - 1) * W + j - 1]; cnt += 1.0f; }
        sum += E[(i - 1) * W + j];
        cnt += 1.0f;
        if (j + 1 < W) { sum += E[(i - 1) * W + j + 1]; cnt += 1.0f; }
      }
      M[i * W + j] = sum / cnt;
    }
}

/// Central-difference gradient magnitude of one H x W map.
inline void gradient_map(const float* M, float* Gm, std::int64_t H, std::int64_t W) noexcept {
  for (std::int64_t i = 0; i < H; ++i)
    for (std::int64_t j = 0; j < W; ++j) {
      float dx = 0.0f, dy = 0.0f;
      if (W > 1) {
        if (j == 0) dx = M[i * W + 1] - M[i * W];
        else if (j == W - 1) dx = M[i * W + j] - M[i * W + j - 1];
        else dx = (M[i * W + j + 1] - M[i * W + j - 1]) * 0.5f;
      }
      if (H > 1) {
        if (i == 0) dy = M[W + j] - M[j];
        else if (i == H - 1) dy = M[i * W + j] - M[(i - 1) * W + j];
        else dy = (M[(i + 1) * W + j] - M[(i - 1) * W + j]) * 0.5f;
      }
      Gm[i * W + j] = std::sqrt(dx * dx + dy * dy);
    }
}

/// Ordering of the selection top-k: better value first (larger or smaller), then the lower
/// index; NaN after every number. A strict weak order, so the result is unique.
struct topk_order {
  const float* key;
  bool largest;
  bool operator()(std::int32_t a, std::int32_t b) const noexcept {
    const float ka = key[a], kb = key[b];
    const bool na = ka != ka, nb = kb != kb;
    if (na || nb) return (na == nb) ? a < b : nb;
    if (ka != kb) return largest ? ka > kb : ka < kb;
    return a < b;
  }
};

/// Marks in `mask` (already zeroed) the k best positions among the eligible ones in [lo, lo + n).
template <class Eligible>
void topk_mark(const float* key, std::int64_t lo, std::int64_t n, std::int64_t k, bool largest, Eligible eligible,
               std::uint8_t* mask, std::int32_t* idx) noexcept {
  std::int64_t m = 0;
  for (std::int64_t t = lo; t < lo + n; ++t)
    if (eligible(t)) idx[m++] = static_cast<std::int32_t>(t);
  if (k <= 0 || m == 0) return;
  if (k < m) std::nth_element(idx, idx + k, idx + m, topk_order{key, largest});
  const std::int64_t take = k < m ? k : m;
  for (std::int64_t i = 0; i < take; ++i) mask[idx[i]] = 1;
}

}  // namespace host_impl
}  // namespace detail

namespace host {

inline status initial_mask(tensor_view mask, const selection_options& options) noexcept {
  GCPO_TRY(detail::check_rank(mask, "mask", 2, "[R, N]"));
  const std::int64_t R = mask.shape[0], N = mask.shape[1];
  GCPO_TRY(detail::check_map(mask, "mask", R, N, dtype::uint8, memory_space::host, "R"));
  grid_shape g;
  selection_counts c;
  GCPO_TRY(detail::resolve_selection(N, options, g, c));
  std::uint8_t* m = mask.as<std::uint8_t>();
  for (std::int64_t r = 0; r < R; ++r)
    for (std::int64_t t = 0; t < N; ++t) m[r * N + t] = t < c.initial ? 1 : 0;
  return ok();
}

inline status smoothed_entropy(const_tensor_view entropy, tensor_view smoothed, const selection_options& options) noexcept {
  GCPO_TRY(detail::validate_map_op(entropy, "entropy", dtype::float32, smoothed, "smoothed", dtype::float32,
                                   memory_space::host));
  const std::int64_t R = entropy.shape[0], N = entropy.shape[1];
  grid_shape g;
  GCPO_TRY(detail::resolve_grid(options.grid, N, g, "`entropy.shape[1]`"));
  for (std::int64_t r = 0; r < R; ++r)
    detail::host_impl::smooth_map(entropy.as<const float>() + r * N, smoothed.as<float>() + r * N, g.height, g.width);
  return ok();
}

inline status entropy_gradient(const_tensor_view smoothed, tensor_view gradient, const selection_options& options) noexcept {
  GCPO_TRY(detail::validate_map_op(smoothed, "smoothed", dtype::float32, gradient, "gradient", dtype::float32,
                                   memory_space::host));
  const std::int64_t R = smoothed.shape[0], N = smoothed.shape[1];
  grid_shape g;
  GCPO_TRY(detail::resolve_grid(options.grid, N, g, "`smoothed.shape[1]`"));
  for (std::int64_t r = 0; r < R; ++r)
    detail::host_impl::gradient_map(smoothed.as<const float>() + r * N, gradient.as<float>() + r * N, g.height, g.width);
  return ok();
}

inline status gradient_topk(const_tensor_view gradient, tensor_view mask, const selection_options& options) noexcept {
  GCPO_TRY(detail::validate_map_op(gradient, "gradient", dtype::float32, mask, "mask", dtype::uint8, memory_space::host));
  const std::int64_t R = gradient.shape[0], N = gradient.shape[1];
  grid_shape g;
  selection_counts c;
  GCPO_TRY(detail::resolve_selection(N, options, g, c));
  std::int32_t* idx = new (std::nothrow) std::int32_t[static_cast<std::size_t>(N > 0 ? N : 1)];
  if (!idx) return status::error(status_code::out_of_memory, "could not allocate %lld indices", static_cast<long long>(N));
  std::uint8_t* m = mask.as<std::uint8_t>();
  std::memset(m, 0, static_cast<std::size_t>(R * N));
  for (std::int64_t r = 0; r < R; ++r)
    detail::host_impl::topk_mark(gradient.as<const float>() + r * N, c.window_start, c.window, c.gradient, true,
                                 [](std::int64_t) { return true; }, m + r * N, idx);
  delete[] idx;
  return ok();
}

inline status low_similarity_mask(const_tensor_view similarity, const_tensor_view exclude, tensor_view mask,
                                  const selection_options& options) noexcept {
  GCPO_TRY(detail::validate_map_op(similarity, "similarity", dtype::float32, mask, "mask", dtype::uint8,
                                   memory_space::host));
  const std::int64_t R = similarity.shape[0], N = similarity.shape[1];
  if (exclude.present()) {
    GCPO_TRY(detail::check_map(exclude, "exclude", R, N, dtype::uint8, memory_space::host, "`similarity.shape[0]`"));
    GCPO_TRY(detail::check_no_overlap(mask, "mask", exclude, "exclude"));
  }
  grid_shape g;
  selection_counts c;
  GCPO_TRY(detail::resolve_selection(N, options, g, c));
  std::int32_t* idx = new (std::nothrow) std::int32_t[static_cast<std::size_t>(N > 0 ? N : 1)];
  if (!idx) return status::error(status_code::out_of_memory, "could not allocate %lld indices", static_cast<long long>(N));
  std::uint8_t* m = mask.as<std::uint8_t>();
  std::memset(m, 0, static_cast<std::size_t>(R * N));
  const std::uint8_t* ex = exclude.present() ? exclude.as<const std::uint8_t>() : nullptr;
  for (std::int64_t r = 0; r < R; ++r) {
    const std::uint8_t* exr = ex ? ex + r * N : nullptr;
    detail::host_impl::topk_mark(similarity.as<const float>() + r * N, 0, N, c.similarity, false,
                                 [exr](std::int64_t t) { return exr == nullptr || exr[t] == 0; }, m + r * N, idx);
  }
  delete[] idx;
  return ok();
}

inline status union_mask(const_tensor_view a, const_tensor_view b, const_tensor_view c, tensor_view critical,
                         tensor_view counts) noexcept {
  GCPO_TRY(detail::check_rank(a, "a", 2, "[R, N]"));
  const std::int64_t R = a.shape[0], N = a.shape[1];
  GCPO_TRY(detail::check_map(a, "a", R, N, dtype::uint8, memory_space::host, "`a.shape[0]`"));
  GCPO_TRY(detail::check_map(b, "b", R, N, dtype::uint8, memory_space::host, "`a.shape[0]`"));
  if (c.present()) GCPO_TRY(detail::check_map(c, "c", R, N, dtype::uint8, memory_space::host, "`a.shape[0]`"));
  GCPO_TRY(detail::check_map(critical, "critical", R, N, dtype::uint8, memory_space::host, "`a.shape[0]`"));
  const char* in_names[3] = {"a", "b", "c"};
  const const_tensor_view ins[3] = {a, b, c};
  for (int i = 0; i < 3; ++i)
    if (ins[i].data != critical.data) GCPO_TRY(detail::check_no_overlap(critical, "critical (unless exactly an input)", ins[i], in_names[i]));
  if (counts.present()) {
    GCPO_TRY(detail::check_rank(counts, "counts", 1, "[R]"));
    GCPO_TRY(detail::check_space(counts, "counts", memory_space::host));
    GCPO_TRY(detail::check_dtype(counts, "counts", {dtype::int32}));
    GCPO_TRY(detail::check_extent(counts, "counts", 0, R, "`a.shape[0]`"));
    GCPO_TRY(detail::check_contiguous(counts, "counts"));
    for (int i = 0; i < 3; ++i) GCPO_TRY(detail::check_no_overlap(counts, "counts", ins[i], in_names[i]));
    GCPO_TRY(detail::check_no_overlap(counts, "counts", critical, "critical"));
  }
  const std::uint8_t* pa = a.as<const std::uint8_t>();
  const std::uint8_t* pb = b.as<const std::uint8_t>();
  const std::uint8_t* pc = c.present() ? c.as<const std::uint8_t>() : nullptr;
  std::uint8_t* out = critical.as<std::uint8_t>();
  for (std::int64_t r = 0; r < R; ++r) {
    std::int32_t cnt = 0;
    for (std::int64_t t = 0; t < N; ++t) {
      const std::int64_t i = r * N + t;
      const std::uint8_t v = (pa[i] | pb[i] | (pc ? pc[i] : 0)) ? 1 : 0;
      out[i] = v;
      cnt += v;
    }
    if (counts.present()) counts.as<std::int32_t>()[r] = cnt;
  }
  return ok();
}

inline status select_critical_tokens(const selection_inputs& in, const selection_outputs& out,
                                     const selection_options& options, workspace ws) noexcept {
  grid_shape g;
  selection_counts c;
  GCPO_TRY(detail::validate_select_critical_tokens(in, out, options, memory_space::host, g, c));
  const std::int64_t R = in.entropy.shape[0], N = in.entropy.shape[1];
  GCPO_TRY(detail::check_workspace(ws, select_critical_tokens_workspace_bytes(R, N), memory_space::host,
                                   "select_critical_tokens_workspace_bytes(R, N)"));
  detail::workspace_carver carve(ws);
  const std::size_t rn = static_cast<std::size_t>(R * N);
  float* smooth_ws = carve.take<float>(rn);
  float* grad_ws = carve.take<float>(rn);
  float* sim_ws = carve.take<float>(rn);
  std::uint8_t* init_ws = carve.take<std::uint8_t>(rn);
  std::uint8_t* gmask_ws = carve.take<std::uint8_t>(rn);
  std::uint8_t* smask_ws = carve.take<std::uint8_t>(rn);
  std::int32_t* idx = carve.take<std::int32_t>(static_cast<std::size_t>(N));

  float* smooth = out.smoothed_entropy.present() ? out.smoothed_entropy.as<float>() : smooth_ws;
  float* grad = out.entropy_gradient.present() ? out.entropy_gradient.as<float>() : grad_ws;
  std::uint8_t* init = out.initial.present() ? out.initial.as<std::uint8_t>() : init_ws;
  std::uint8_t* gmask = out.gradient.present() ? out.gradient.as<std::uint8_t>() : gmask_ws;
  std::uint8_t* smask = out.low_similarity.present() ? out.low_similarity.as<std::uint8_t>() : smask_ws;

  // Similarity: given, or computed from embeddings / tokens + table.
  const float* sim = nullptr;
  if (in.similarity.present()) {
    sim = in.similarity.as<const float>();
    if (out.similarity.present()) std::memcpy(out.similarity.as<float>(), sim, rn * sizeof(float));
  } else {
    tensor_view sim_view = out.similarity.present()
                               ? out.similarity
                               : make_view(sim_ws, {R, N}, memory_space::host);
    if (in.embeddings.present())
      GCPO_TRY(host::group_similarity(in.embeddings, sim_view, in.similarity_opts));
    else
      GCPO_TRY(host::group_similarity_from_tokens(in.tokens, in.embedding_table, sim_view, in.similarity_opts));
    sim = sim_view.as<const float>();
  }

  const float* ent = in.entropy.as<const float>();
  std::uint8_t* crit = out.critical.as<std::uint8_t>();
  for (std::int64_t r = 0; r < R; ++r) {
    const std::int64_t o = r * N;
    std::memset(gmask + o, 0, static_cast<std::size_t>(N));
    std::memset(smask + o, 0, static_cast<std::size_t>(N));
    for (std::int64_t t = 0; t < N; ++t) init[o + t] = t < c.initial ? 1 : 0;
    detail::host_impl::smooth_map(ent + o, smooth + o, g.height, g.width);
    detail::host_impl::gradient_map(smooth + o, grad + o, g.height, g.width);
    detail::host_impl::topk_mark(grad + o, c.window_start, c.window, c.gradient, true,
                                 [](std::int64_t) { return true; }, gmask + o, idx);
    const std::uint8_t* ir = init + o;
    const std::uint8_t* gr = gmask + o;
    detail::host_impl::topk_mark(sim + o, 0, N, c.similarity, false,
                                 [ir, gr](std::int64_t t) { return (ir[t] | gr[t]) == 0; }, smask + o, idx);
    std::int32_t cnt = 0;
    for (std::int64_t t = 0; t < N; ++t) {
      const std::uint8_t v = (init[o + t] | gmask[o + t] | smask[o + t]) ? 1 : 0;
      crit[o + t] = v;
      cnt += v;
    }
    if (out.counts.present()) out.counts.as<std::int32_t>()[r] = cnt;
  }
  return ok();
}

}  // namespace host
}  // namespace gcpo
