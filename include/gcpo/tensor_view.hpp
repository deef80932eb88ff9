// gcpo/tensor_view.hpp - non-owning, trivially copyable views of host or device buffers.
//
// A view is a pointer, a runtime dtype, the memory space it lives in, a rank (1..4), 64-bit
// extents and strides counted in elements (as in DLPack). Views never own or allocate. Inputs
// are `const_tensor_view` (pointer to const), outputs `tensor_view`; an output view converts
// implicitly to an input view. A default-constructed view is "absent": optional arguments
// take it to mean "not given".
#pragma once

#include <cstddef>
#include <cstdint>
#include <initializer_list>
#include <type_traits>

#include "dtype.hpp"

namespace gcpo {

/// Where a buffer lives. CUDA operators reject host views and vice versa.
enum class memory_space : std::uint8_t { host, device };

inline const char* to_string(memory_space s) noexcept { return s == memory_space::host ? "host" : "device"; }

/// Largest rank a view can have.
constexpr int max_rank = 4;

namespace detail {
/// `out = a * b` and true, or false when the product does not fit in int64 (then `out` is
/// unspecified). Written out (no compiler builtin) so it stays constexpr everywhere.
constexpr bool checked_mul(std::int64_t a, std::int64_t b, std::int64_t& out) noexcept {
  out = 0;
  if (a == 0 || b == 0) return true;
  const std::uint64_t ua = a < 0 ? 0u - static_cast<std::uint64_t>(a) : static_cast<std::uint64_t>(a);
  const std::uint64_t ub = b < 0 ? 0u - static_cast<std::uint64_t>(b) : static_cast<std::uint64_t>(b);
  const bool negative = (a < 0) != (b < 0);
  const std::uint64_t limit = negative ? (std::uint64_t{1} << 63) : (std::uint64_t{1} << 63) - 1u;
  if (ua > limit / ub) return false;
  const std::uint64_t p = ua * ub;
  out = negative ? (p == (std::uint64_t{1} << 63) ? INT64_MIN : -static_cast<std::int64_t>(p))
                 : static_cast<std::int64_t>(p);
  return true;
}

/// `out = a + b` and true, or false when the sum does not fit in int64.
constexpr bool checked_add(std::int64_t a, std::int64_t b, std::int64_t& out) noexcept {
  out = 0;
  if ((b > 0 && a > INT64_MAX - b) || (b < 0 && a < INT64_MIN - b)) return false;
  out = a + b;
  return true;
}
}  // namespace detail

/// A view over `void*` (outputs) or `const void*` (inputs). See the file comment.
template <class VoidPtr>
struct basic_tensor_view {
  static_assert(std::is_same<VoidPtr, void*>::value || std::is_same<VoidPtr, const void*>::value,
                "basic_tensor_view holds void* or const void*");

  VoidPtr data = nullptr;                  ///< first element (not necessarily aligned)
  dtype type = dtype::float32;             ///< element type
  memory_space space = memory_space::host; ///< where `data` lives
  int rank = 0;                            ///< number of dimensions, 0 for an absent view
  std::int64_t shape[max_rank] = {};       ///< extents
  std::int64_t strides[max_rank] = {};     ///< strides in elements

  constexpr basic_tensor_view() noexcept = default;

  /// An output view converts to an input view.
  template <class P, class = std::enable_if_t<std::is_same<VoidPtr, const void*>::value && std::is_same<P, void*>::value>>
  constexpr basic_tensor_view(const basic_tensor_view<P>& o) noexcept  // NOLINT(google-explicit-constructor)
      : data(o.data), type(o.type), space(o.space), rank(o.rank), shape{}, strides{} {
    for (int i = 0; i < max_rank; ++i) {
      shape[i] = o.shape[i];
      strides[i] = o.strides[i];
    }
  }

  /// True for a default-constructed ("not given") view.
  constexpr bool absent() const noexcept { return rank == 0 && data == nullptr; }
  /// True unless absent.
  constexpr bool present() const noexcept { return !absent(); }

  /// Number of elements (1 for rank 0 with data, 0 when absent, 0 when any extent is 0), or
  /// -1 when the view is malformed, an extent is negative or the product of the extents does
  /// not fit in int64 (every operator rejects such a view by name).
  constexpr std::int64_t numel() const noexcept {
    if (absent()) return 0;
    if (rank < 0 || rank > max_rank) return -1;
    bool empty = false;
    for (int i = 0; i < rank; ++i) {
      if (shape[i] < 0) return -1;
      empty = empty || shape[i] == 0;
    }
    if (empty) return 0;
    std::int64_t n = 1;
    for (int i = 0; i < rank; ++i)
      if (!detail::checked_mul(n, shape[i], n)) return -1;
    return n;
  }

  /// True when the elements are dense and row-major.
  constexpr bool is_contiguous() const noexcept {
    if (rank < 0 || rank > max_rank) return false;
    std::int64_t expect = 1;
    bool representable = true;  // false once the row-major stride no longer fits in int64
    for (int i = rank - 1; i >= 0; --i) {
      if (shape[i] != 1 && (!representable || strides[i] != expect)) return false;
      representable = representable && detail::checked_mul(expect, shape[i], expect);
    }
    return true;
  }

  /// The data pointer as `T*` (no dtype check: validate first).
  template <class T>
  T* as() const noexcept {
    using Q = std::conditional_t<std::is_const<std::remove_pointer_t<VoidPtr>>::value, const T, T>;
    static_assert(std::is_same<Q*, T*>::value || std::is_const<T>::value, "an input view only yields const pointers");
    return static_cast<T*>(data);
  }
};

/// A view of an output (writable) buffer.
using tensor_view = basic_tensor_view<void*>;
/// A view of an input (read-only) buffer.
using const_tensor_view = basic_tensor_view<const void*>;

namespace detail {
template <class T>
using view_for = std::conditional_t<std::is_const<T>::value, const_tensor_view, tensor_view>;
}

/// Rank of a malformed view (more than `max_rank` extents, or more strides than extents):
/// every operator rejects it, naming the argument, instead of using a truncated shape.
constexpr int malformed_rank = -1;

/// A row-major contiguous view of `data` with the given extents (rank 1..4; more extents give
/// a malformed view that operators reject).
/// `T` is one of float, bfloat16, float16, int32_t, int64_t, uint8_t (optionally const).
template <class T>
detail::view_for<T> make_view(T* data, std::initializer_list<std::int64_t> shape,
                              memory_space space = memory_space::host) noexcept {
  detail::view_for<T> v;
  v.data = data;
  v.type = dtype_of<T>::value;
  v.space = space;
  if (shape.size() > static_cast<std::size_t>(max_rank)) {
    v.rank = malformed_rank;
    return v;
  }
  v.rank = static_cast<int>(shape.size());
  int i = 0;
  for (std::int64_t s : shape) v.shape[i++] = s;
  // Row-major strides; once their product overflows (a view that numel() reports as -1, or an
  // empty one), the outer strides are left 0 instead of wrapping.
  std::int64_t stride = 1;
  bool fits = true;
  for (int d = v.rank - 1; d >= 0; --d) {
    v.strides[d] = fits ? stride : 0;
    fits = fits && detail::checked_mul(stride, v.shape[d], stride);
  }
  return v;
}

/// A view with explicit strides (in elements), e.g. rows of logits inside a larger buffer.
/// Fewer strides than extents set the leading ones (the rest stay row-major); more strides than
/// extents give a malformed view that operators reject.
template <class T>
detail::view_for<T> make_strided_view(T* data, std::initializer_list<std::int64_t> shape,
                                      std::initializer_list<std::int64_t> strides,
                                      memory_space space = memory_space::host) noexcept {
  detail::view_for<T> v = make_view(data, shape, space);
  if (v.rank == malformed_rank) return v;
  if (strides.size() > shape.size()) {
    v.rank = malformed_rank;
    return v;
  }
  int i = 0;
  for (std::int64_t s : strides) v.strides[i++] = s;
  return v;
}

/// `make_view(data, shape, memory_space::device)`.
template <class T>
detail::view_for<T> make_device_view(T* data, std::initializer_list<std::int64_t> shape) noexcept {
  return make_view(data, shape, memory_space::device);
}

/// Caller-provided scratch memory (CUB-style two-phase use: ask `*_workspace_bytes`, allocate,
/// pass). The same memory may be reused by the next call once the previous one has finished
/// (on the same stream for CUDA). The bytes an operator uses (the first `*_workspace_bytes`)
/// shall not overlap any of its inputs or outputs (checked: `status_code::aliasing`). A
/// `*_workspace_bytes` query returns SIZE_MAX when the size does not fit in size_t; operators
/// refuse that with `invalid_argument`.
struct workspace {
  void* data = nullptr;
  std::size_t bytes = 0;
  memory_space space = memory_space::host;
};

/// Alignment of every sub-allocation carved from a workspace.
constexpr std::size_t workspace_alignment = 256;

namespace detail {
/// Rounds `n` up to the workspace alignment.
constexpr std::size_t align_up(std::size_t n) noexcept {
  return (n + workspace_alignment - 1) / workspace_alignment * workspace_alignment;
}
}  // namespace detail

}  // namespace gcpo
