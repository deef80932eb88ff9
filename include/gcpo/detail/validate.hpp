// gcpo/detail/validate.hpp - checks shared by the validators of every operator.
//
// Each helper returns a status whose message names the argument, e.g.
// "`tokens.shape[1]` (575) must equal `logits.shape[1]` (576)".
#pragma once

#include <cmath>
#include <cstdint>
#include <initializer_list>

#include "../status.hpp"
#include "../tensor_view.hpp"

namespace gcpo {
namespace detail {


/// Writes "d0 x d1 x ..." (the first `n` values) into `buf`.
inline void format_dims(const std::int64_t* d, int n, char* buf, std::size_t size) noexcept {
  std::size_t pos = 0;
  buf[0] = '\0';
  for (int i = 0; i < n && pos < size; ++i) {
    const int w = std::snprintf(buf + pos, size - pos, "%s%lld", i ? " x " : "", static_cast<long long>(d[i]));
    if (w < 0) break;
    pos += static_cast<std::size_t>(w);
  }
}

/// The lowest and highest element offsets of a view with elements, from its extents and
/// strides; false when one of them does not fit in int64.
template <class P>
bool element_offsets(const basic_tensor_view<P>& v, std::int64_t& lo, std::int64_t& hi) noexcept {
  lo = hi = 0;
  for (int i = 0; i < v.rank; ++i) {
    std::int64_t reach = 0;
    if (!checked_mul(v.shape[i] - 1, v.strides[i], reach)) return false;
    std::int64_t& side = reach < 0 ? lo : hi;
    if (!checked_add(side, reach, side)) return false;
  }
  return true;
}

/// A present, well-formed view: rank 1..4, a known dtype and memory space, no negative extent,
/// a number of elements and a byte span that fit in int64 and an address range that does not
/// wrap around, and data, aligned to the element size, unless it has no elements. Every operator calls this (through
/// check_rank) on every view it is given, so no later product of extents can overflow.
template <class P>
status check_present(const basic_tensor_view<P>& v, const char* name) noexcept {
  if (v.absent()) return status::error(status_code::invalid_argument, "`%s` is required but was not given", name);
  if (v.rank < 0 || v.rank > max_rank)
    return status::error(status_code::invalid_argument,
                         "`%s` is malformed (rank %d): a view has at most %d extents and no more strides than extents",
                         name, v.rank, max_rank);
  if (static_cast<unsigned>(v.type) > static_cast<unsigned>(dtype::uint8))
    return status::error(status_code::invalid_argument, "`%s.dtype` (%u) is not a gcpo::dtype value", name,
                         static_cast<unsigned>(v.type));
  if (static_cast<unsigned>(v.space) > static_cast<unsigned>(memory_space::device))
    return status::error(status_code::invalid_argument, "`%s.space` (%u) is not a gcpo::memory_space value", name,
                         static_cast<unsigned>(v.space));
  for (int i = 0; i < v.rank; ++i)
    if (v.shape[i] < 0)
      return status::error(status_code::invalid_argument, "`%s.shape[%d]` (%lld) must not be negative", name, i,
                           static_cast<long long>(v.shape[i]));
  const std::int64_t n = v.numel();
  if (n < 0) {
    char dims[128];
    format_dims(v.shape, v.rank, dims, sizeof dims);
    return status::error(status_code::invalid_argument, "`%s.shape` (%s) has more elements than fit in int64", name,
                         dims);
  }
  if (n == 0) return ok();  // touches no memory: data and strides are not used
  if (v.data == nullptr)
    return status::error(status_code::invalid_argument, "`%s.data` is null but the view has %lld elements", name,
                         static_cast<long long>(n));
  if (reinterpret_cast<std::uintptr_t>(v.data) % static_cast<std::uintptr_t>(dtype_size(v.type)) != 0)
    return status::error(status_code::invalid_argument, "`%s.data` (%p) is not aligned to its element size (%d bytes)",
                         name, static_cast<const void*>(v.data), dtype_size(v.type));
  std::int64_t lo = 0, hi = 0, minus_lo = 0, span = 0, bytes = 0;
  if (!element_offsets(v, lo, hi) || !checked_mul(lo, -1, minus_lo) || !checked_add(hi, minus_lo, span) ||
      !checked_add(span, 1, span) || !checked_mul(span, dtype_size(v.type), bytes)) {
    char dims[128], strides[128];
    format_dims(v.shape, v.rank, dims, sizeof dims);
    format_dims(v.strides, v.rank, strides, sizeof strides);
    return status::error(status_code::invalid_argument,
                         "`%s.strides` (%s) with `%s.shape` (%s) span more bytes than fit in int64", name, strides,
                         name, dims);
  }
  const std::uintptr_t p = reinterpret_cast<std::uintptr_t>(v.data);
  const std::uintptr_t below = static_cast<std::uintptr_t>(-lo) * static_cast<std::uintptr_t>(dtype_size(v.type));
  const std::uintptr_t above = static_cast<std::uintptr_t>(hi + 1) * static_cast<std::uintptr_t>(dtype_size(v.type));
  if (p < below || UINTPTR_MAX - p < above)
    return status::error(status_code::invalid_argument,
                         "`%s` (data %p, %lld bytes) wraps around the end of the address space", name,
                         static_cast<const void*>(v.data), static_cast<long long>(bytes));
  return ok();
}

template <class P>
status check_rank(const basic_tensor_view<P>& v, const char* name, int rank, const char* layout) noexcept {
  GCPO_TRY(check_present(v, name));
  if (v.rank != rank)
    return status::error(status_code::invalid_argument, "`%s` must have rank %d (%s) but has rank %d", name, rank,
                         layout, v.rank);
  return ok();
}

template <class P>
status check_space(const basic_tensor_view<P>& v, const char* name, memory_space space) noexcept {
  if (v.space != space)
    return status::error(status_code::wrong_memory_space, "`%s` is a %s view but this operator needs %s memory", name,
                         to_string(v.space), to_string(space));
  return ok();
}

template <class P>
status check_dtype(const basic_tensor_view<P>& v, const char* name, std::initializer_list<dtype> allowed) noexcept {
  for (dtype t : allowed)
    if (v.type == t) return ok();
  char list[96] = {};
  int pos = 0;
  for (dtype t : allowed) {
    pos += std::snprintf(list + pos, sizeof(list) - static_cast<std::size_t>(pos), "%s%s", pos ? ", " : "", to_string(t));
    if (pos >= static_cast<int>(sizeof(list))) break;
  }
  return status::error(status_code::unsupported_dtype, "`%s.dtype` is %s; expected one of: %s", name,
                       to_string(v.type), list);
}

/// `v.shape[dim] == value`, where `value` is `other_name`'s extent (named in the message).
template <class P>
status check_extent(const basic_tensor_view<P>& v, const char* name, int dim, std::int64_t value,
                    const char* other_name) noexcept {
  if (v.shape[dim] != value)
    return status::error(status_code::invalid_argument, "`%s.shape[%d]` (%lld) must equal %s (%lld)", name, dim,
                         static_cast<long long>(v.shape[dim]), other_name, static_cast<long long>(value));
  return ok();
}

/// The innermost dimension must be contiguous (stride 1) unless it has extent <= 1.
template <class P>
status check_inner_contiguous(const basic_tensor_view<P>& v, const char* name) noexcept {
  const int d = v.rank - 1;
  if (d >= 0 && v.shape[d] > 1 && v.strides[d] != 1)
    return status::error(status_code::invalid_argument, "`%s.strides[%d]` (%lld) must be 1: the last dimension must be contiguous",
                         name, d, static_cast<long long>(v.strides[d]));
  return ok();
}

/// Every stride must be positive (negative and zero strides are rejected: zero would make
/// outputs race, negative ones are not worth the complexity).
template <class P>
status check_positive_strides(const basic_tensor_view<P>& v, const char* name) noexcept {
  // An empty view touches no memory; make_view gives its outer dimensions stride 0.
  if (v.numel() == 0) return ok();
  for (int i = 0; i < v.rank; ++i)
    if (v.shape[i] > 1 && v.strides[i] <= 0)
      return status::error(status_code::invalid_argument, "`%s.strides[%d]` (%lld) must be positive", name, i,
                           static_cast<long long>(v.strides[i]));
  return ok();
}

template <class P>
status check_contiguous(const basic_tensor_view<P>& v, const char* name) noexcept {
  if (!v.is_contiguous())
    return status::error(status_code::invalid_argument, "`%s` must be contiguous (row-major, no gaps)", name);
  return ok();
}

/// True when two different elements of `v` share memory. Sufficient test for disjointness
/// (O(rank), conservative): with the dimensions of extent > 1 ordered by |stride|, each
/// |stride| must exceed the largest offset the smaller ones reach. Negative strides are
/// mirrored (that changes no collision); a zero stride on an extent > 1 overlaps; a view with
/// an extent 0 has no elements and never overlaps. Views that interleave without collisions
/// (e.g. extents {3, 2}, strides {2, 3}) are reported as overlapping.
template <class P>
bool self_overlaps(const basic_tensor_view<P>& v) noexcept {
  if (v.absent() || v.rank < 0 || v.rank > max_rank || v.numel() <= 0) return false;
  std::uint64_t stride[max_rank] = {};
  std::int64_t extent[max_rank] = {};
  int m = 0;
  for (int i = 0; i < v.rank; ++i) {
    if (v.shape[i] <= 1) continue;
    const std::int64_t s = v.strides[i];
    stride[m] = s < 0 ? 0u - static_cast<std::uint64_t>(s) : static_cast<std::uint64_t>(s);
    extent[m++] = v.shape[i];
  }
  for (int i = 1; i < m; ++i)  // insertion sort by |stride|
    for (int j = i; j > 0 && stride[j] < stride[j - 1]; --j) {
      const std::uint64_t ts = stride[j];
      stride[j] = stride[j - 1];
      stride[j - 1] = ts;
      const std::int64_t te = extent[j];
      extent[j] = extent[j - 1];
      extent[j - 1] = te;
    }
  std::uint64_t reach = 0;  // largest offset the dimensions so far reach
  for (int i = 0; i < m; ++i) {
    if (stride[i] <= reach) return true;
    const std::uint64_t e = static_cast<std::uint64_t>(extent[i] - 1);
    if (stride[i] > (UINT64_MAX - reach) / e) return i + 1 < m;  // beyond 2^64: nothing larger follows safely
    reach += e * stride[i];
  }
  return false;
}

/// An output shall not overlap itself (two of its elements in the same memory).
template <class P>
status check_no_self_overlap(const basic_tensor_view<P>& v, const char* name) noexcept {
  if (self_overlaps(v)) {
    char dims[128], strides[128];
    format_dims(v.shape, v.rank, dims, sizeof dims);
    format_dims(v.strides, v.rank, strides, sizeof strides);
    return status::error(status_code::aliasing,
                         "`%s` overlaps itself: strides (%s) over shape (%s) give different elements the same memory",
                         name, strides, dims);
  }
  return ok();
}

/// The byte range [first, last) a view touches (empty when it has no elements): the bounding
/// range of its elements, negative strides included. The view must have passed check_present.
template <class P>
void byte_range(const basic_tensor_view<P>& v, std::uintptr_t& first, std::uintptr_t& last) noexcept {
  first = last = reinterpret_cast<std::uintptr_t>(v.data);
  if (v.numel() <= 0) return;
  std::int64_t lo = 0, hi = 0;
  if (!element_offsets(v, lo, hi)) {  // not a validated view: take the whole address space
    first = 0;
    last = UINTPTR_MAX;
    return;
  }
  const std::uintptr_t size = static_cast<std::uintptr_t>(dtype_size(v.type));
  first -= static_cast<std::uintptr_t>(-lo) * size;
  last += static_cast<std::uintptr_t>(hi + 1) * size;
}

/// Two views overlap in memory. Conservative: compares the bounding byte ranges, so two views
/// that interleave without sharing a byte (e.g. the even and the odd columns of one matrix)
/// count as overlapping. Views in different memory spaces never overlap.
template <class P, class Q>
bool overlaps(const basic_tensor_view<P>& a, const basic_tensor_view<Q>& b) noexcept {
  if (a.absent() || b.absent() || a.numel() <= 0 || b.numel() <= 0 || a.space != b.space) return false;
  std::uintptr_t a0, a1, b0, b1;
  byte_range(a, a0, a1);
  byte_range(b, b0, b1);
  return a0 < b1 && b0 < a1;
}

template <class P, class Q>
status check_no_overlap(const basic_tensor_view<P>& out, const char* out_name, const basic_tensor_view<Q>& other,
                        const char* other_name) noexcept {
  if (overlaps(out, other))
    return status::error(status_code::aliasing, "`%s` shall not overlap `%s`", out_name, other_name);
  return ok();
}

/// As check_no_overlap, where the output may also be exactly the input (in place); `exact` says
/// whether it is.
template <class P, class Q>
status check_no_overlap_unless_exact(const basic_tensor_view<P>& out, const char* out_name,
                                     const basic_tensor_view<Q>& other, const char* other_name, bool exact) noexcept {
  if (!exact && overlaps(out, other))
    return status::error(status_code::aliasing, "`%s` shall not overlap `%s` unless it is exactly `%s` (in place)",
                         out_name, other_name, other_name);
  return ok();
}

/// `value` is one of the `count` enumerators 0..count-1 of `E` (named `type_name`).
template <class E>
status check_enum(E value, int count, const char* name, const char* type_name) noexcept {
  const long long v = static_cast<long long>(value);
  if (v < 0 || v >= count)
    return status::error(status_code::invalid_argument, "`%s` (%lld) is not a %s value (0..%d)", name, v, type_name,
                         count - 1);
  return ok();
}

/// `frac` must be a finite number in [0, 1].
inline status check_fraction(double frac, const char* name) noexcept {
  if (!(frac >= 0.0 && frac <= 1.0))
    return status::error(status_code::invalid_argument, "`%s` (%g) must be in [0, 1]", name, frac);
  return ok();
}

/// `floor(n * frac)` computed in double, as the official code's `int(N * frac)`, for n >= 0 and
/// frac in [0, 1]; never more than n (doubles round n above 2^53).
inline std::int64_t count_of(std::int64_t n, double frac) noexcept {
  const double x = std::floor(static_cast<double>(n) * frac);
  if (!(x < 9223372036854775808.0)) return n;  // 2^63 and above (n near INT64_MAX): n
  const std::int64_t c = static_cast<std::int64_t>(x);
  return c < n ? c : n;
}

/// A view paired with the name of its argument, for checks over several views.
struct named_view {
  const_tensor_view view;
  const char* name;
};

/// Checks that a workspace holds at least `needed` bytes in the right memory space and that
/// the bytes the operator uses (the first `needed`) overlap none of `views`. `needed` is
/// SIZE_MAX when the `*_workspace_bytes` query overflowed.
inline status check_workspace(const workspace& ws, std::size_t needed, memory_space space, const char* query,
                              std::initializer_list<named_view> views = {}) noexcept {
  if (needed == SIZE_MAX)
    return status::error(status_code::invalid_argument,
                         "`%s` does not fit in size_t (it returned SIZE_MAX): the shapes are too large", query);
  if (needed == 0) return ok();
  if (ws.data == nullptr || ws.bytes < needed)
    return status::error(status_code::workspace_too_small,
                         "`workspace.bytes` (%llu) is smaller than the %llu bytes `%s` asks for%s",
                         static_cast<unsigned long long>(ws.data ? ws.bytes : 0), static_cast<unsigned long long>(needed),
                         query, ws.data ? "" : " (workspace.data is null)");
  if (static_cast<unsigned>(ws.space) > static_cast<unsigned>(memory_space::device))
    return status::error(status_code::invalid_argument, "`workspace.space` (%u) is not a gcpo::memory_space value",
                         static_cast<unsigned>(ws.space));
  if (ws.space != space)
    return status::error(status_code::wrong_memory_space, "`workspace` is %s memory but this operator needs %s memory",
                         to_string(ws.space), to_string(space));
  const std::uintptr_t w0 = reinterpret_cast<std::uintptr_t>(ws.data);
  if (UINTPTR_MAX - w0 < needed)
    return status::error(status_code::invalid_argument,
                         "`workspace` (data %p, %llu bytes) wraps around the end of the address space", ws.data,
                         static_cast<unsigned long long>(needed));
  const std::uintptr_t w1 = w0 + needed;
  for (const named_view& nv : views) {
    if (nv.view.absent() || nv.view.numel() <= 0 || nv.view.space != ws.space) continue;
    std::uintptr_t v0, v1;
    byte_range(nv.view, v0, v1);
    if (w0 < v1 && v0 < w1)
      return status::error(status_code::aliasing, "`workspace` (the %llu bytes from workspace.data) shall not overlap `%s`",
                           static_cast<unsigned long long>(needed), nv.name);
  }
  return ok();
}

/// Hands out aligned pieces of a workspace, in order.
class workspace_carver {
 public:
  explicit workspace_carver(const workspace& ws) noexcept
      : base_(reinterpret_cast<std::uintptr_t>(ws.data)), end_(base_ + ws.bytes) {
    cur_ = (base_ + workspace_alignment - 1) / workspace_alignment * workspace_alignment;
  }
  template <class T>
  T* take(std::size_t count) noexcept {
    T* p = reinterpret_cast<T*>(cur_);
    cur_ += align_up(count * sizeof(T));
    return p;
  }
  bool overflowed() const noexcept { return cur_ > end_; }

 private:
  std::uintptr_t base_, end_, cur_;
};

/// `a * b`, or SIZE_MAX when it does not fit in size_t.
constexpr std::size_t saturating_mul(std::size_t a, std::size_t b) noexcept {
  return (a != 0 && b > SIZE_MAX / a) ? SIZE_MAX : a * b;
}

/// `a + b`, or SIZE_MAX when it does not fit (SIZE_MAX stays SIZE_MAX).
constexpr std::size_t saturating_add(std::size_t a, std::size_t b) noexcept {
  return (a == SIZE_MAX || b > SIZE_MAX - a) ? SIZE_MAX : a + b;
}

/// A non-negative int64 extent as size_t (negative ones count as 0, as in the queries).
constexpr std::size_t extent_size(std::int64_t n) noexcept {
  return n < 0 ? 0 : static_cast<std::size_t>(n);
}

/// Bytes for a list of arrays carved with `workspace_carver` (includes slack for an unaligned
/// base); SIZE_MAX when the total (or any size, SIZE_MAX itself) does not fit in size_t.
inline std::size_t carved_bytes(std::initializer_list<std::size_t> sizes) noexcept {
  std::size_t total = 0;
  for (std::size_t s : sizes)
    total = saturating_add(total, s > SIZE_MAX - (workspace_alignment - 1) ? SIZE_MAX : align_up(s));
  return total == 0 ? 0 : saturating_add(total, workspace_alignment);
}

}  // namespace detail
}  // namespace gcpo
