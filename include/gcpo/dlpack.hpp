// gcpo/dlpack.hpp - optional: views from DLPack tensors (PyTorch, JAX, CuPy buffers), without
// gcpo depending on any of them. Needs <dlpack/dlpack.h> (Debian: libdlpack-dev).
#pragma once

#include <dlpack/dlpack.h>

#include <cstdint>

#include "status.hpp"
#include "tensor_view.hpp"

namespace gcpo {

/// Converts a DLTensor to a view: float32/bfloat16/float16/int32/int64/uint8 (lanes 1), rank
/// 1..4, on CPU (or CUDA host-pinned) -> host, CUDA -> device. Null strides mean row-major.
/// `byte_offset` is applied. Fails with a message naming `name` on anything else.
inline status from_dlpack(const DLTensor& t, tensor_view& out, const char* name = "tensor") noexcept {
  dtype type;
  const DLDataType d = t.dtype;
  if (d.lanes != 1)
    return status::error(status_code::unsupported_dtype, "`%s` has %u lanes; only 1 is supported", name,
                         static_cast<unsigned>(d.lanes));
  if (d.code == kDLFloat && d.bits == 32) type = dtype::float32;
  else if (d.code == kDLBfloat && d.bits == 16) type = dtype::bfloat16;
  else if (d.code == kDLFloat && d.bits == 16) type = dtype::float16;
  else if (d.code == kDLInt && d.bits == 32) type = dtype::int32;
  else if (d.code == kDLInt && d.bits == 64) type = dtype::int64;
  else if (d.code == kDLUInt && d.bits == 8) type = dtype::uint8;
#if defined(DLPACK_VERSION) && DLPACK_VERSION >= 80
  else if (d.code == kDLBool && d.bits == 8) type = dtype::uint8;
#endif
  else
    return status::error(status_code::unsupported_dtype, "`%s` has DLPack dtype code %u, %u bits: not supported", name,
                         static_cast<unsigned>(d.code), static_cast<unsigned>(d.bits));
  memory_space space;
  switch (t.device.device_type) {
    case kDLCPU:
    case kDLCUDAHost: space = memory_space::host; break;
    case kDLCUDA:
    case kDLCUDAManaged: space = memory_space::device; break;
    default:
      return status::error(status_code::wrong_memory_space, "`%s` is on DLPack device type %d: not supported", name,
                           static_cast<int>(t.device.device_type));
  }
  if (t.ndim < 1 || t.ndim > max_rank)
    return status::error(status_code::invalid_argument, "`%s` has rank %d; gcpo views have rank 1..%d", name, t.ndim,
                         max_rank);
  tensor_view v;
  // Offset as an address (a null data pointer with an offset is no pointer arithmetic here).
  v.data = reinterpret_cast<void*>(reinterpret_cast<std::uintptr_t>(t.data) + static_cast<std::uintptr_t>(t.byte_offset));
  v.type = type;
  v.space = space;
  v.rank = t.ndim;
  std::int64_t stride = 1;
  bool fits = true;  // row-major strides stop (0) where their product overflows; the view is then refused
  for (int i = t.ndim - 1; i >= 0; --i) {
    v.shape[i] = t.shape[i];
    v.strides[i] = t.strides ? t.strides[i] : (fits ? stride : 0);
    fits = fits && detail::checked_mul(stride, t.shape[i], stride);
  }
  out = v;
  return ok();
}

/// As `from_dlpack`, for an input.
inline status from_dlpack(const DLTensor& t, const_tensor_view& out, const char* name = "tensor") noexcept {
  tensor_view v;
  GCPO_TRY(from_dlpack(t, v, name));
  out = v;
  return ok();
}

}  // namespace gcpo
