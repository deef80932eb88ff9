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


template <class P>
status check_present(const basic_tensor_view<P>& v, const char* name) noexcept {
  if (v.absent()) return status::error(status_code::invalid_argument, "`%s` is required but was not given", name);
  if (v.rank < 0 || v.rank > max_rank)
    return status::error(status_code::invalid_argument,
                         "`%s` is malformed (rank %d): a view has at most %d extents and no more strides than extents",
                         name, v.rank, max_rank);
  if (v.data == nullptr && v.numel() > 0)
    return status::error(status_code::invalid_argument, "`%s.data` is null but the view has %lld elements", name,
                         static_cast<long long>(v.numel()));
  return ok();
}

template <class P>
status check_rank(const basic_tensor_view<P>& v, const char* name, int rank, const char* layout) noexcept {
  GCPO_TRY(check_present(v, name));
  if (v.rank != rank)
    return status::error(status_code::invalid_argument, "`%s` must have rank %d (%s) but has rank %d", name, rank,
                         layout, v.rank);
  for (int i = 0; i < rank; ++i)
    if (v.shape[i] < 0)
      return status::error(status_code::invalid_argument, "`%s.shape[%d]` (%lld) must not be negative", name, i,
                           static_cast<long long>(v.shape[i]));
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

/// The byte range [first, last) a view touches (empty when it has no elements).
template <class P>
void byte_range(const basic_tensor_view<P>& v, std::uintptr_t& first, std::uintptr_t& last) noexcept {
  first = last = reinterpret_cast<std::uintptr_t>(v.data);
  if (v.numel() == 0) return;
  std::int64_t hi = 0;
  for (int i = 0; i < v.rank; ++i) hi += (v.shape[i] - 1) * v.strides[i];
  last = first + static_cast<std::uintptr_t>((hi + 1) * dtype_size(v.type));
}

/// Two views overlap in memory (conservative: compares the byte ranges they span).
template <class P, class Q>
bool overlaps(const basic_tensor_view<P>& a, const basic_tensor_view<Q>& b) noexcept {
  if (a.absent() || b.absent() || a.numel() == 0 || b.numel() == 0 || a.space != b.space) return false;
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

/// `frac` must be a finite number in [0, 1].
inline status check_fraction(double frac, const char* name) noexcept {
  if (!(frac >= 0.0 && frac <= 1.0))
    return status::error(status_code::invalid_argument, "`%s` (%g) must be in [0, 1]", name, frac);
  return ok();
}

/// `floor(n * frac)` computed in double, as the official code's `int(N * frac)`.
inline std::int64_t count_of(std::int64_t n, double frac) noexcept {
  return static_cast<std::int64_t>(std::floor(static_cast<double>(n) * frac));
}

/// Checks that a workspace holds at least `needed` bytes in the right memory space.
inline status check_workspace(const workspace& ws, std::size_t needed, memory_space space, const char* query) noexcept {
  if (needed == 0) return ok();
  if (ws.data == nullptr || ws.bytes < needed)
    return status::error(status_code::workspace_too_small,
                         "`workspace.bytes` (%llu) is smaller than the %llu bytes `%s` asks for%s",
                         static_cast<unsigned long long>(ws.data ? ws.bytes : 0), static_cast<unsigned long long>(needed),
                         query, ws.data ? "" : " (workspace.data is null)");
  if (ws.space != space)
    return status::error(status_code::wrong_memory_space, "`workspace` is %s memory but this operator needs %s memory",
                         to_string(ws.space), to_string(space));
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

/// Bytes for a list of arrays carved with `workspace_carver` (includes slack for an unaligned base).
inline std::size_t carved_bytes(std::initializer_list<std::size_t> sizes) noexcept {
  std::size_t total = 0;
  for (std::size_t s : sizes) total += align_up(s);
  return total == 0 ? 0 : total + workspace_alignment;
}

}  // namespace detail
}  // namespace gcpo
