// gcpo/detail/host/token_stats.hpp - host twin of token_stats (see gcpo/token_stats.hpp).
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <limits>

#include "../../token_stats.hpp"
#include "../dispatch.hpp"
#include "../math.hpp"

namespace gcpo {
namespace detail {
namespace host_impl {

/// Running state of the one-pass softmax statistics of one row:
/// m = max so far; per lane s = sum exp(x - m), t = sum exp(x - m) * (x - m).
constexpr int stats_lanes = 16;
constexpr int stats_chunk = 64;

struct row_stats {
  float lse;      ///< log sum exp(x)
  float entropy;  ///< lse - sum p x
  float max = std::numeric_limits<float>::quiet_NaN();      ///< m = max x (NaN when the row has none)
  float log_sum = std::numeric_limits<float>::quiet_NaN();  ///< log sum exp(x - m), so lse = m + log_sum
};

/// One pass over `V` elements of one row: the row is read once, in chunks that stay in L1.
template <class T>
inline row_stats softmax_row_stats(const T* row, std::int64_t V, float inv_t) noexcept {
  constexpr float neg_inf = -std::numeric_limits<float>::infinity();
  float m = neg_inf;
  float s[stats_lanes] = {}, t[stats_lanes] = {};
  float x[stats_chunk];
  for (std::int64_t base = 0; base < V; base += stats_chunk) {
    const int len = static_cast<int>(std::min<std::int64_t>(stats_chunk, V - base));
    float cm = neg_inf;
    for (int i = 0; i < len; ++i) {
      x[i] = to_float(row[base + i]) * inv_t;
      cm = (x[i] > cm || x[i] != x[i]) ? x[i] : cm;  // keeps a NaN
    }
    if (cm != cm) return row_stats{cm, cm};
    if (cm == neg_inf) continue;  // nothing but -inf here: contributes 0
    if (cm > m) {
      if (m != neg_inf) {
        const float delta = m - cm;  // < 0
        const float scale = std::exp(delta);
        for (int l = 0; l < stats_lanes; ++l) {
          t[l] = (t[l] + s[l] * delta) * scale;
          s[l] *= scale;
        }
      }
      m = cm;
    }
    if (m == std::numeric_limits<float>::infinity()) return row_stats{std::numeric_limits<float>::quiet_NaN(), std::numeric_limits<float>::quiet_NaN()};
    if (len == stats_chunk) {
      for (int j = 0; j < stats_chunk; j += stats_lanes)
        for (int l = 0; l < stats_lanes; ++l) {
          const float d = std::max(x[j + l] - m, -87.0f);
          const float e = exp_nonpos(d);
          s[l] += e;
          t[l] += e * d;
        }
    } else {
      for (int i = 0; i < len; ++i) {
        const float d = std::max(x[i] - m, -87.0f);
        const float e = exp_nonpos(d);
        s[i % stats_lanes] += e;
        t[i % stats_lanes] += e * d;
      }
    }
  }
  if (m == neg_inf) return row_stats{neg_inf, std::numeric_limits<float>::quiet_NaN()};
  float S = 0.0f, Tt = 0.0f;
  for (int l = 0; l < stats_lanes; ++l) {
    S += s[l];
    Tt += t[l];
  }
  const float log_s = std::log(S);
  return row_stats{m + log_s, log_s - Tt / S, m, log_s};
}

template <class T, class I>
status token_stats_typed(const_tensor_view logits, const_tensor_view tokens, tensor_view entropy, tensor_view logprob,
                         tensor_view lse, float inv_t) noexcept {
  const std::int64_t R = logits.shape[0], N = logits.shape[1], V = logits.shape[2];
  const T* base = logits.as<const T>();
  const I* tok = tokens.present() ? tokens.as<const I>() : nullptr;
  float* ent = entropy.present() ? entropy.as<float>() : nullptr;
  float* lp = logprob.present() ? logprob.as<float>() : nullptr;
  float* ls = lse.present() ? lse.as<float>() : nullptr;
  for (std::int64_t r = 0; r < R; ++r)
    for (std::int64_t n = 0; n < N; ++n) {
      const T* row = base + r * logits.strides[0] + n * logits.strides[1];
      const std::int64_t i = r * N + n;
      if (lp) {
        const std::int64_t k = static_cast<std::int64_t>(tok[i]);
        if (k < 0 || k >= V)
          return status::error(status_code::invalid_argument, "`tokens[%lld, %lld]` (%lld) must be in [0, V = %lld)",
                               static_cast<long long>(r), static_cast<long long>(n), static_cast<long long>(k),
                               static_cast<long long>(V));
      }
      const row_stats st = softmax_row_stats(row, V, inv_t);
      if (ent) ent[i] = st.entropy;
      if (ls) ls[i] = st.lse;
      // (x - m) - log_sum, not x - lse: lse rounds to the ulp of m (5e-4 at |x| = 1e4).
      if (lp) lp[i] = (to_float(row[tok[i]]) * inv_t - st.max) - st.log_sum;
    }
  return ok();
}

template <class T, class G, class I>
void token_stats_backward_typed(const_tensor_view logits, const_tensor_view tokens, const_tensor_view lse,
                                const_tensor_view grad_logprob, tensor_view grad_logits, float inv_t) noexcept {
  const std::int64_t R = logits.shape[0], N = logits.shape[1], V = logits.shape[2];
  const T* lbase = logits.as<const T>();
  G* gbase = grad_logits.as<G>();
  const I* tok = tokens.as<const I>();
  const float* ls = lse.as<const float>();
  const float* go = grad_logprob.as<const float>();
  for (std::int64_t r = 0; r < R; ++r)
    for (std::int64_t n = 0; n < N; ++n) {
      const std::int64_t i = r * N + n;
      const T* row = lbase + r * logits.strides[0] + n * logits.strides[1];
      G* grow = gbase + r * grad_logits.strides[0] + n * grad_logits.strides[1];
      const float g = go[i] * inv_t;
      const float l = ls[i];
      const std::int64_t k = static_cast<std::int64_t>(tok[i]);
      for (std::int64_t v = 0; v < V; ++v) {
        const float p = std::exp(to_float(row[v]) * inv_t - l);
        grow[v] = from_float<G>(g * ((v == k ? 1.0f : 0.0f) - p));
      }
    }
}

}  // namespace host_impl
}  // namespace detail

namespace host {

inline status token_stats(const_tensor_view logits, const_tensor_view tokens, tensor_view entropy, tensor_view logprob,
                          tensor_view lse, const token_stats_options& options) noexcept {
  GCPO_TRY(detail::validate_token_stats(logits, tokens, entropy, logprob, lse, options, memory_space::host));
  const float inv_t = 1.0f / options.temperature;
  status result;
  const dtype index_type = tokens.present() ? tokens.type : dtype::int32;
  detail::dispatch_float(logits.type, [&](auto t) {
    detail::dispatch_index(index_type, [&](auto i) {
      result = detail::host_impl::token_stats_typed<decltype(t), decltype(i)>(logits, tokens, entropy, logprob, lse,
                                                                               inv_t);
    });
  });
  return result;
}

inline status token_stats_backward(const_tensor_view logits, const_tensor_view tokens, const_tensor_view lse,
                                   const_tensor_view grad_logprob, tensor_view grad_logits,
                                   const token_stats_options& options) noexcept {
  GCPO_TRY(detail::validate_token_stats_backward(logits, tokens, lse, grad_logprob, grad_logits, options,
                                                 memory_space::host));
  const std::int64_t R = logits.shape[0], N = logits.shape[1], V = logits.shape[2];
  // Tokens are checked before anything is written, so a failure leaves grad_logits untouched.
  bool bad = false;
  std::int64_t bad_i = 0, bad_k = 0;
  detail::dispatch_index(tokens.type, [&](auto i) {
    using I = decltype(i);
    const I* tok = tokens.as<const I>();
    for (std::int64_t j = 0; j < R * N && !bad; ++j)
      if (tok[j] < 0 || static_cast<std::int64_t>(tok[j]) >= V) {
        bad = true;
        bad_i = j;
        bad_k = static_cast<std::int64_t>(tok[j]);
      }
  });
  if (bad)
    return status::error(status_code::invalid_argument, "`tokens[%lld, %lld]` (%lld) must be in [0, V = %lld)",
                         static_cast<long long>(bad_i / N), static_cast<long long>(bad_i % N),
                         static_cast<long long>(bad_k), static_cast<long long>(V));
  const float inv_t = 1.0f / options.temperature;
  detail::dispatch_float(logits.type, [&](auto t) {
    detail::dispatch_float(grad_logits.type, [&](auto g) {
      detail::dispatch_index(tokens.type, [&](auto i) {
        detail::host_impl::token_stats_backward_typed<decltype(t), decltype(g), decltype(i)>(
            logits, tokens, lse, grad_logprob, grad_logits, inv_t);
      });
    });
  });
  return ok();
}

}  // namespace host
}  // namespace gcpo
