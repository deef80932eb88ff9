// gcpo/grid.hpp - the H x W token grid of an image and the counts derived from fractions.
#pragma once

#include <cmath>
#include <cstdint>

#include "detail/validate.hpp"
#include "status.hpp"

namespace gcpo {

/// An image of `N = height * width` tokens in raster order: token t at row t / W, column t % W.
struct grid_shape {
  std::int64_t height = 0;  ///< H (rows). 0 together with width = 0: square, sqrt(N).
  std::int64_t width = 0;   ///< W (columns).
};

namespace detail {

/// Resolves `g` against `N` tokens: checks `H * W == N`, or, when both are 0, that N is a
/// perfect square (the official code's assumption) and fills in the side.
inline status resolve_grid(grid_shape g, std::int64_t N, grid_shape& out, const char* n_name) noexcept {
  if (g.height == 0 && g.width == 0) {
    std::int64_t s = static_cast<std::int64_t>(std::llround(std::sqrt(static_cast<double>(N))));
    while (s * s > N) --s;
    while ((s + 1) * (s + 1) <= N) ++s;
    if (s * s != N)
      return status::error(status_code::invalid_argument,
                           "`options.grid` was not given and %s (N = %lld) is not a perfect square: give height and width",
                           n_name, static_cast<long long>(N));
    out = grid_shape{s, s};
    return ok();
  }
  if (g.height < 1 || g.width < 1)
    return status::error(status_code::invalid_argument, "`options.grid` (%lld x %lld) must have height >= 1 and width >= 1",
                         static_cast<long long>(g.height), static_cast<long long>(g.width));
  if (g.height * g.width != N)
    return status::error(status_code::invalid_argument,
                         "`options.grid` height * width (%lld * %lld = %lld) must equal %s (N = %lld)",
                         static_cast<long long>(g.height), static_cast<long long>(g.width),
                         static_cast<long long>(g.height * g.width), n_name, static_cast<long long>(N));
  out = g;
  return ok();
}

}  // namespace detail
}  // namespace gcpo
