// gcpo/detail/host/similarity.hpp - host twin of group_similarity (see gcpo/similarity.hpp).
#pragma once

#include <cmath>
#include <cstdint>

#include "../../similarity.hpp"
#include "../dispatch.hpp"

namespace gcpo {
namespace detail {
namespace host_impl {

/// Mean pairwise cosine of the G vectors rows[0..G) (each D long), float32 accumulation.
template <class T>
float group_mean_cosine(const T* const* rows, std::int64_t G, std::int64_t D, float eps, float* norms) noexcept {
  bool small = false;
  for (std::int64_t g = 0; g < G; ++g) {
    float ss = 0.0f;
    for (std::int64_t d = 0; d < D; ++d) {
      const float x = to_float(rows[g][d]);
      ss += x * x;
    }
    norms[g] = std::sqrt(ss);
  }
  for (std::int64_t i = 0; i < G && !small; ++i)
    for (std::int64_t j = i + 1; j < G; ++j)
      if (norms[i] * norms[j] < eps) {
        small = true;
        break;
      }
  const float pairs = static_cast<float>(G) * static_cast<float>(G - 1);
  if (!small) {
    // |sum u|^2 - sum |u|^2, with |u|^2 = 1 for every vector here (all norms are > 0).
    float sum_sq = 0.0f;
    for (std::int64_t d = 0; d < D; ++d) {
      float s = 0.0f;
      for (std::int64_t g = 0; g < G; ++g) s += to_float(rows[g][d]) / norms[g];
      sum_sq += s * s;
    }
    return (sum_sq - static_cast<float>(G)) / pairs;
  }
  float total = 0.0f;
  for (std::int64_t i = 0; i < G; ++i)
    for (std::int64_t j = i + 1; j < G; ++j) {
      float dot = 0.0f;
      for (std::int64_t d = 0; d < D; ++d) dot += to_float(rows[i][d]) * to_float(rows[j][d]);
      const float den = norms[i] * norms[j];
      total += dot / (den > eps ? den : eps);
    }
  return 2.0f * total / pairs;
}

/// Shared driver: `row_of(r, t)` yields the embedding row of rollout r at position t.
template <class T, class RowOf>
void group_similarity_driver(std::int64_t R, std::int64_t N, std::int64_t D, const similarity_options& opt,
                             float* sim, RowOf row_of) noexcept {
  const std::int64_t G = opt.group;
  const T* rows[max_similarity_group];
  float norms[max_similarity_group];
  for (std::int64_t p = 0; p < R / G; ++p)
    for (std::int64_t t = 0; t < N; ++t) {
      for (std::int64_t g = 0; g < G; ++g) rows[g] = row_of(p * G + g, t);
      const float value = group_mean_cosine(rows, G, D, opt.eps, norms);
      for (std::int64_t g = 0; g < G; ++g) sim[(p * G + g) * N + t] = value;
    }
}

/// group_similarity on validated views.
inline void group_similarity_unchecked(const_tensor_view embeddings, tensor_view similarity,
                                       const similarity_options& options) noexcept {
  const std::int64_t R = embeddings.shape[0], N = embeddings.shape[1], D = embeddings.shape[2];
  dispatch_float(embeddings.type, [&](auto tag) {
    using T = decltype(tag);
    const T* base = embeddings.as<const T>();
    const std::int64_t s0 = embeddings.strides[0], s1 = embeddings.strides[1];
    if (D == 0)  // no element is read; the data pointer may be null (no offsets from it)
      group_similarity_driver<T>(R, N, D, options, similarity.as<float>(), [&](std::int64_t, std::int64_t) { return base; });
    else
      group_similarity_driver<T>(R, N, D, options, similarity.as<float>(),
                                 [&](std::int64_t r, std::int64_t t) { return base + r * s0 + t * s1; });
  });
}

/// group_similarity_from_tokens on validated views; an out-of-range id is reported as
/// `tokens_name[r, t]` (the argument as the caller wrote it).
inline status group_similarity_from_tokens_unchecked(const_tensor_view tokens, const_tensor_view table,
                                                     tensor_view similarity, const similarity_options& options,
                                                     const char* tokens_name) noexcept {
  const std::int64_t R = tokens.shape[0], N = tokens.shape[1], V = table.shape[0], D = table.shape[1];
  status result;
  dispatch_index(tokens.type, [&](auto itag) {
    using I = decltype(itag);
    const I* tok = tokens.as<const I>();
    for (std::int64_t i = 0; i < R * N; ++i)
      if (tok[i] < 0 || static_cast<std::int64_t>(tok[i]) >= V) {
        result = status::error(status_code::invalid_argument, "`%s[%lld, %lld]` (%lld) must be in [0, V = %lld)",
                               tokens_name, static_cast<long long>(i / N), static_cast<long long>(i % N),
                               static_cast<long long>(tok[i]), static_cast<long long>(V));
        return;
      }
    dispatch_float(table.type, [&](auto tag) {
      using T = decltype(tag);
      const T* base = table.as<const T>();
      const std::int64_t s0 = table.strides[0];
      if (D == 0)  // no element is read; the data pointer may be null (no offsets from it)
        group_similarity_driver<T>(R, N, D, options, similarity.as<float>(),
                                   [&](std::int64_t, std::int64_t) { return base; });
      else
        group_similarity_driver<T>(
            R, N, D, options, similarity.as<float>(),
            [&](std::int64_t r, std::int64_t t) { return base + static_cast<std::int64_t>(tok[r * N + t]) * s0; });
    });
  });
  return result;
}

}  // namespace host_impl
}  // namespace detail

namespace host {

inline status group_similarity(const_tensor_view embeddings, tensor_view similarity,
                               const similarity_options& options) noexcept {
  GCPO_TRY(detail::validate_group_similarity(embeddings, similarity, options, memory_space::host));
  detail::host_impl::group_similarity_unchecked(embeddings, similarity, options);
  return ok();
}

inline status group_similarity_from_tokens(const_tensor_view tokens, const_tensor_view table, tensor_view similarity,
                                           const similarity_options& options) noexcept {
  GCPO_TRY(detail::validate_group_similarity_from_tokens(tokens, table, similarity, options, memory_space::host));
  return detail::host_impl::group_similarity_from_tokens_unchecked(tokens, table, similarity, options, "tokens");
}

}  // namespace host
}  // namespace gcpo
