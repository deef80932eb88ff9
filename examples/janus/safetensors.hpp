// examples/janus/safetensors.hpp - a small reader and writer of the safetensors format
// (https://huggingface.co/docs/safetensors): an 8-byte little-endian header length, a JSON
// header ({"name": {"dtype", "shape", "data_offsets": [begin, end]}, ..., "__metadata__":
// {string: string}}), then the raw little-endian bytes of every tensor.
//
// Writes are atomic: the file is written under a temporary name in the same directory,
// flushed to disk, then renamed over the destination, so a reader never sees half a file.
#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <string>
#include <utility>
#include <vector>

#include <ATen/ATen.h>

#include "run_dir.hpp"  // AtomicFile, write_file_atomic

namespace janus {

/// Tensors by name plus the header's `__metadata__`.
struct SafeTensors {
  std::vector<std::pair<std::string, at::Tensor>> tensors;  ///< in file (data) order
  std::map<std::string, std::string> metadata;

  /// The tensor called `name`; throws std::out_of_range naming it when absent.
  const at::Tensor& at(const std::string& name) const;
  bool contains(const std::string& name) const;
};

/// True when a floating-point tensor holds no NaN and no infinity (other dtypes: true). Checked in
/// chunks of 4M elements, so that checking a large weight as it is read costs a few MB of
/// temporaries, not several times the tensor (at::isfinite of a 210M-element bf16 embedding
/// table made about 1 GB of them, the largest part of loading's peak memory).
bool all_finite(const at::Tensor& t);

/// Writes `tensors` (any device, any supported dtype: F64 F32 F16 BF16 I64 I32 I16 I8 U8 BOOL;
/// made contiguous on the CPU first) and `metadata` to `path`, atomically. Names must be unique
/// and must not be "__metadata__". Throws std::runtime_error on an I/O error.
void save_safetensors(const std::string& path, const std::vector<std::pair<std::string, at::Tensor>>& tensors,
                      const std::map<std::string, std::string>& metadata = {});

/// Reads a whole file into CPU tensors. Validates the header: a regular file, known dtypes,
/// shapes of non-negative integers whose byte size (computed overflow-checked) fits in the
/// file, offsets inside the data section equal to numel * element size, no overlaps. Throws
/// std::runtime_error naming the file, the tensor and the problem. (Whether a dtype, a shape or
/// the values suit their use is the caller's check: see load_parameters.) With `want`, only the
/// tensors it accepts are read (the header is still checked whole); the others never leave the disk.
SafeTensors load_safetensors(const std::string& path, const std::function<bool(const std::string&)>& want = {});

/// load_safetensors one tensor at a time: each wanted tensor is read and handed to `visit`
/// (then it is the visitor's), so a caller that copies it into a model holds one at a time.
/// Returns the header's `__metadata__`.
std::map<std::string, std::string> read_safetensors(const std::string& path,
                                                    const std::function<bool(const std::string&)>& want,
                                                    const std::function<void(const std::string&, at::Tensor)>& visit);

}  // namespace janus
