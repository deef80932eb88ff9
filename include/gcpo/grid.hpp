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
    // s = floor(sqrt(N)), corrected from the double estimate with overflow-checked squares
    // (N near 2^63 would overflow (s + 1)^2).
    std::int64_t s = N < 0 ? 0 : static_cast<std::int64_t>(std::llround(std::sqrt(static_cast<double>(N))));
    std::int64_t sq = 0;
    while (s > 0 && (!checked_mul(s, s, sq) || sq > N)) --s;
    while (checked_mul(s + 1, s + 1, sq) && sq <= N) ++s;
    if (!checked_mul(s, s, sq) || sq != N)
      return status::error(status_code::invalid_argument,
                           "`options.grid` was not given and %s (N = %lld) is not a perfect square: give height and width",
                           n_name, static_cast<long long>(N));
    out = grid_shape{s, s};
    return ok();
  }
  if (g.height < 1 || g.width < 1)
    return status::error(status_code::invalid_argument, "`options.grid` (%lld x %lld) must have height >= 1 and width >= 1",
                         static_cast<long long>(g.height), static_cast<long long>(g.width));
  std::int64_t hw = 0;
  if (!checked_mul(g.height, g.width, hw))
    return status::error(status_code::invalid_argument,
                         "`options.grid` height * width (%lld * %lld) overflows int64 and cannot equal %s (N = %lld)",
                         static_cast<long long>(g.height), static_cast<long long>(g.width), n_name,
                         static_cast<long long>(N));
  if (hw != N)
    return status::error(status_code::invalid_argument,
                         "`options.grid` height * width (%lld * %lld = %lld) must equal %s (N = %lld)",
                         static_cast<long long>(g.height), static_cast<long long>(g.width),
                         static_cast<long long>(hw), n_name, static_cast<long long>(N));
  out = g;
  return ok();
}

}  // namespace detail
}  // namespace gcpo
