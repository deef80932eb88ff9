// examples/janus/torch_bin.hpp - reading `pytorch_model.bin` (the zip archive torch.save writes
// since PyTorch 1.6) with libtorch's own reader, safely and lazily.
//
// The archive holds `data.pkl`, a pickle of the state dict, and one record `data/<key>` per
// storage. The archive is read with libtorch's own zip reader (caffe2's PyTorchStreamReader);
// the pickle with a restricted reader of our own, because libtorch 1.13's TorchScript unpickler
// cannot read the OrderedDict that torch.save(model.state_dict()) writes (pytorch#100741). It
// takes plain data only (dicts, lists, tuples, numbers, strings) and exactly these callables:
// collections.OrderedDict, torch._utils._rebuild_tensor_v2 / _rebuild_parameter and the
// torch.*Storage types; a pickle that names anything else (`os.system`, an arbitrary class, a
// TorchScript object) is refused by name, and nothing in a checkpoint is ever executed.
// The storages are not read while unpickling: each tensor remembers its record's key, then only
// the tensors a caller wants are read, one record at a time, straight into the tensor's memory
// (peak memory: the kept tensors plus one record).
#pragma once

#include <cstdint>
#include <functional>
#include <string>
#include <utility>
#include <vector>

#include <ATen/ATen.h>

namespace janus {

/// One tensor of a checkpoint, as its pickle describes it (no data read).
struct TorchBinEntry {
  std::string name;
  at::ScalarType dtype = at::kFloat;
  std::vector<std::int64_t> sizes, strides;
  std::int64_t storage_offset = 0;  ///< in elements
  std::string storage_key;          ///< the record `data/<key>`; "" for a tensor without elements
  std::int64_t storage_bytes = 0;   ///< what the pickle says the storage holds
};

/// The tensors of the state dict in `path`, in pickle order, without reading their data.
/// Throws std::runtime_error naming `path` (and the tensor, where one is at fault) when the
/// file is not a torch.save zip archive (the legacy pre-1.6 format is refused by name), its
/// pickle names a class other than tensors, storages and OrderedDict, its top level is not a
/// dict of tensors keyed by strings, or a tensor's sizes/strides reach outside its storage.
std::vector<TorchBinEntry> list_torch_bin(const std::string& path);

/// Reads the tensors of `path` whose name `want` accepts (all when `want` is empty) as
/// contiguous CPU tensors, in pickle order. Each record is read once per tensor that uses it;
/// its size is checked against the pickle (a truncated or corrupted archive is an error naming
/// the file and the tensor). The tensors not wanted are never read.
std::vector<std::pair<std::string, at::Tensor>> load_torch_bin(const std::string& path,
                                                               const std::function<bool(const std::string&)>& want = {});

/// load_torch_bin one tensor at a time: each wanted tensor is read and handed to `visit` (then it
/// is the visitor's), so a caller that copies it into a model holds one record at a time.
void read_torch_bin(const std::string& path, const std::function<bool(const std::string&)>& want,
                    const std::function<void(const std::string&, at::Tensor)>& visit);

}  // namespace janus
