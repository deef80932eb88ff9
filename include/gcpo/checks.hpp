// gcpo/checks.hpp - finding NaN and infinities before they silently steer a selection.
#pragma once

#include <cmath>
#include <cstdint>

#include "detail/dispatch.hpp"
#include "detail/validate.hpp"
#include "status.hpp"
#include "tensor_view.hpp"

namespace gcpo {
namespace detail {

inline status validate_count_nonfinite(const_tensor_view x, const_tensor_view count, memory_space space) noexcept {
  GCPO_TRY(check_present(x, "x"));
  GCPO_TRY(check_space(x, "x", space));
  GCPO_TRY(check_dtype(x, "x", {dtype::float32, dtype::bfloat16, dtype::float16}));
  GCPO_TRY(check_positive_strides(x, "x"));
  GCPO_TRY(check_rank(count, "count", 1, "[1]"));
  GCPO_TRY(check_space(count, "count", space));
  GCPO_TRY(check_dtype(count, "count", {dtype::int64}));
  GCPO_TRY(check_extent(count, "count", 0, 1, "1"));
  GCPO_TRY(check_no_overlap(count, "count", x, "x"));
  return ok();
}

/// Calls f(linear index, value) for every element of a strided host view, in row-major order;
/// stops when f returns false.
template <class T, class F>
void for_each_element(const_tensor_view x, F&& f) noexcept {
  const T* base = x.as<const T>();
  std::int64_t idx[max_rank] = {};
  const std::int64_t n = x.numel();
  for (std::int64_t i = 0; i < n; ++i) {
    std::int64_t off = 0;
    for (int d = 0; d < x.rank; ++d) off += idx[d] * x.strides[d];
    if (!f(i, to_float(base[off]))) return;
    for (int d = x.rank - 1; d >= 0; --d) {
      if (++idx[d] < x.shape[d]) break;
      idx[d] = 0;
    }
  }
}

}  // namespace detail

namespace host {

/// `count[0]` (int64 `[1]`) = number of NaN and +-inf elements of `x` (float32 / bfloat16 /
/// float16, any rank and positive strides). Overwritten.
inline status count_nonfinite(const_tensor_view x, tensor_view count) noexcept {
  GCPO_TRY(detail::validate_count_nonfinite(x, count, memory_space::host));
  std::int64_t c = 0;
  detail::dispatch_float(x.type, [&](auto tag) {
    detail::for_each_element<decltype(tag)>(x, [&](std::int64_t, float v) {
      c += std::isfinite(v) ? 0 : 1;
      return true;
    });
  });
  count.as<std::int64_t>()[0] = c;
  return ok();
}

/// `ok()` when every element of `x` is finite; otherwise `non_finite` naming `name` and the
/// first offending element by its row-major index ("`entropy` element 3 (row-major) is nan"). Host only.
/// `x`: float32 / bfloat16 / float16, any rank, positive strides. A null `name` reads "x".
inline status check_finite(const_tensor_view x, const char* name) noexcept {
  if (name == nullptr) name = "x";
  GCPO_TRY(detail::check_present(x, name));
  GCPO_TRY(detail::check_space(x, name, memory_space::host));
  GCPO_TRY(detail::check_dtype(x, name, {dtype::float32, dtype::bfloat16, dtype::float16}));
  GCPO_TRY(detail::check_positive_strides(x, name));
  std::int64_t bad = -1;
  float bad_v = 0.0f;
  detail::dispatch_float(x.type, [&](auto tag) {
    detail::for_each_element<decltype(tag)>(x, [&](std::int64_t i, float v) {
      if (std::isfinite(v)) return true;
      bad = i;
      bad_v = v;
      return false;
    });
  });
  if (bad < 0) return ok();
  return status::error(status_code::non_finite, "`%s` element %lld (row-major) is %s", name, static_cast<long long>(bad),
                       bad_v != bad_v ? "nan" : (bad_v > 0 ? "+inf" : "-inf"));
}

}  // namespace host
}  // namespace gcpo
