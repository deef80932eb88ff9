// gcpo/detail/dispatch.hpp - one place that maps a runtime dtype to a template parameter.
#pragma once

#include <cstdint>

#include "../dtype.hpp"

namespace gcpo {
namespace detail {

/// Calls `f(T{})` with T = float, bfloat16 or float16 according to `t`. The caller has
/// validated `t`; any other value calls nothing and returns false.
template <class F>
bool dispatch_float(dtype t, F&& f) {
  switch (t) {
    case dtype::float32: f(float{}); return true;
    case dtype::bfloat16: f(bfloat16{}); return true;
    case dtype::float16: f(float16{}); return true;
    default: return false;
  }
}

/// Calls `f(T{})` with T = int32_t or int64_t.
template <class F>
bool dispatch_index(dtype t, F&& f) {
  switch (t) {
    case dtype::int32: f(std::int32_t{}); return true;
    case dtype::int64: f(std::int64_t{}); return true;
    default: return false;
  }
}

}  // namespace detail
}  // namespace gcpo
