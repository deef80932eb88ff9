// examples/janus/safetensors.cpp - see safetensors.hpp.
#include "safetensors.hpp"

#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <set>
#include <stdexcept>

#include <nlohmann/json.hpp>

namespace janus {
namespace {

struct DtypeName {
  at::ScalarType type;
  const char* name;
};

constexpr DtypeName kDtypes[] = {
    {at::kDouble, "F64"}, {at::kFloat, "F32"}, {at::kHalf, "F16"}, {at::kBFloat16, "BF16"}, {at::kLong, "I64"},
    {at::kInt, "I32"},    {at::kShort, "I16"}, {at::kChar, "I8"},  {at::kByte, "U8"},       {at::kBool, "BOOL"},
};

const char* dtype_name(at::ScalarType t) {
  for (const auto& d : kDtypes)
    if (d.type == t) return d.name;
  throw std::runtime_error(std::string("safetensors: unsupported dtype ") + c10::toString(t));
}

at::ScalarType dtype_from(const std::string& name, const std::string& path, const std::string& tensor) {
  for (const auto& d : kDtypes)
    if (name == d.name) return d.type;
  throw std::runtime_error("safetensors: " + path + ": tensor '" + tensor + "' has unsupported dtype '" + name + "'");
}

bool little_endian() {
  const std::uint16_t x = 1;
  unsigned char c;
  std::memcpy(&c, &x, 1);
  return c == 1;
}

std::string errno_text() { return std::strerror(errno); }

/// A file written under a temporary name and renamed into place on commit().
class AtomicFile {
 public:
  explicit AtomicFile(const std::string& path) : path_(path), tmp_(path + ".tmp." + std::to_string(::getpid())) {
    fd_ = ::open(tmp_.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
    if (fd_ < 0) throw std::runtime_error("cannot create " + tmp_ + ": " + errno_text());
  }
  ~AtomicFile() {
    if (fd_ >= 0) {
      ::close(fd_);
      ::unlink(tmp_.c_str());
    }
  }
  AtomicFile(const AtomicFile&) = delete;
  AtomicFile& operator=(const AtomicFile&) = delete;

  void write(const void* data, std::size_t n) {
    const char* p = static_cast<const char*>(data);
    while (n > 0) {
      const ssize_t w = ::write(fd_, p, n);
      if (w < 0) {
        if (errno == EINTR) continue;
        throw std::runtime_error("cannot write " + tmp_ + ": " + errno_text());
      }
      p += w;
      n -= static_cast<std::size_t>(w);
    }
  }
  void commit() {
    if (::fsync(fd_) != 0) throw std::runtime_error("cannot flush " + tmp_ + ": " + errno_text());
    if (::close(fd_) != 0) {
      fd_ = -1;
      ::unlink(tmp_.c_str());
      throw std::runtime_error("cannot close " + tmp_ + ": " + errno_text());
    }
    fd_ = -1;
    if (std::rename(tmp_.c_str(), path_.c_str()) != 0) {
      ::unlink(tmp_.c_str());
      throw std::runtime_error("cannot rename " + tmp_ + " to " + path_ + ": " + errno_text());
    }
  }

 private:
  std::string path_, tmp_;
  int fd_ = -1;
};

}  // namespace

const at::Tensor& SafeTensors::at(const std::string& name) const {
  for (const auto& kv : tensors)
    if (kv.first == name) return kv.second;
  throw std::out_of_range("safetensors: no tensor named '" + name + "'");
}

bool SafeTensors::contains(const std::string& name) const {
  for (const auto& kv : tensors)
    if (kv.first == name) return true;
  return false;
}

void write_file_atomic(const std::string& path, const std::string& bytes) {
  AtomicFile f(path);
  f.write(bytes.data(), bytes.size());
  f.commit();
}

void save_safetensors(const std::string& path, const std::vector<std::pair<std::string, at::Tensor>>& tensors,
                      const std::map<std::string, std::string>& metadata) {
  if (!little_endian()) throw std::runtime_error("safetensors: only little-endian hosts are supported");
  std::vector<at::Tensor> cpu;
  cpu.reserve(tensors.size());
  nlohmann::json header = nlohmann::json::object();
  std::set<std::string> names;
  std::uint64_t offset = 0;
  for (const auto& kv : tensors) {
    if (kv.first == "__metadata__" || !names.insert(kv.first).second)
      throw std::runtime_error("safetensors: duplicate or reserved tensor name '" + kv.first + "'");
    at::Tensor t = kv.second.detach().to(at::kCPU).contiguous();
    const std::uint64_t bytes = static_cast<std::uint64_t>(t.numel()) * t.element_size();
    header[kv.first] = {{"dtype", dtype_name(t.scalar_type())},
                        {"shape", t.sizes().vec()},
                        {"data_offsets", {offset, offset + bytes}}};
    offset += bytes;
    cpu.push_back(t);
  }
  if (!metadata.empty()) header["__metadata__"] = metadata;
  std::string h = header.dump();
  while (h.size() % 8 != 0) h.push_back(' ');  // the data section starts 8-byte aligned
  unsigned char len[8];
  std::uint64_t n = h.size();
  for (int i = 0; i < 8; ++i) len[i] = static_cast<unsigned char>((n >> (8 * i)) & 0xff);

  AtomicFile f(path);
  f.write(len, 8);
  f.write(h.data(), h.size());
  for (const auto& t : cpu)
    if (t.numel() > 0) f.write(t.data_ptr(), static_cast<std::size_t>(t.numel()) * t.element_size());
  f.commit();
}

SafeTensors load_safetensors(const std::string& path) {
  if (!little_endian()) throw std::runtime_error("safetensors: only little-endian hosts are supported");
  std::ifstream in(path, std::ios::binary);
  if (!in) throw std::runtime_error("safetensors: cannot open " + path);
  in.seekg(0, std::ios::end);
  const std::uint64_t file_size = static_cast<std::uint64_t>(in.tellg());
  in.seekg(0, std::ios::beg);
  auto fail = [&](const std::string& what) { return std::runtime_error("safetensors: " + path + ": " + what); };
  if (file_size < 8) throw fail("shorter than the 8-byte header length");
  unsigned char len[8];
  in.read(reinterpret_cast<char*>(len), 8);
  std::uint64_t n = 0;
  for (int i = 0; i < 8; ++i) n |= static_cast<std::uint64_t>(len[i]) << (8 * i);
  if (n > file_size - 8 || n > (std::uint64_t{100} << 20)) throw fail("header length " + std::to_string(n) + " is invalid");
  std::string h(n, '\0');
  in.read(&h[0], static_cast<std::streamsize>(n));
  if (!in) throw fail("cannot read the header");
  nlohmann::json header;
  try {
    header = nlohmann::json::parse(h);
  } catch (const std::exception& e) {
    throw fail(std::string("header is not JSON: ") + e.what());
  }
  if (!header.is_object()) throw fail("header is not a JSON object");
  const std::uint64_t data_start = 8 + n, data_size = file_size - data_start;

  SafeTensors out;
  struct Entry {
    std::string name;
    at::ScalarType type;
    std::vector<std::int64_t> shape;
    std::uint64_t begin, end;
  };
  std::vector<Entry> entries;
  for (auto it = header.begin(); it != header.end(); ++it) {
    if (it.key() == "__metadata__") {
      if (!it.value().is_object()) throw fail("__metadata__ is not an object");
      for (auto m = it.value().begin(); m != it.value().end(); ++m) {
        if (!m.value().is_string()) throw fail("__metadata__ value of '" + m.key() + "' is not a string");
        out.metadata[m.key()] = m.value().get<std::string>();
      }
      continue;
    }
    try {
      const auto& v = it.value();
      Entry e;
      e.name = it.key();
      e.type = dtype_from(v.at("dtype").get<std::string>(), path, e.name);
      e.shape = v.at("shape").get<std::vector<std::int64_t>>();
      const auto off = v.at("data_offsets").get<std::vector<std::uint64_t>>();
      if (off.size() != 2) throw fail("tensor '" + e.name + "': data_offsets must have two entries");
      e.begin = off[0];
      e.end = off[1];
      std::uint64_t numel = 1;
      for (auto s : e.shape) {
        if (s < 0) throw fail("tensor '" + e.name + "': negative extent");
        numel *= static_cast<std::uint64_t>(s);
      }
      const std::uint64_t bytes = numel * static_cast<std::uint64_t>(c10::elementSize(e.type));
      if (e.begin > e.end || e.end > data_size || e.end - e.begin != bytes)
        throw fail("tensor '" + e.name + "': data_offsets [" + std::to_string(e.begin) + ", " + std::to_string(e.end) +
                   ") do not match its shape and dtype (" + std::to_string(bytes) + " bytes) or the file");
      entries.push_back(std::move(e));
    } catch (const nlohmann::json::exception& ex) {
      throw fail("tensor '" + it.key() + "': " + ex.what());
    }
  }
  std::sort(entries.begin(), entries.end(), [](const Entry& a, const Entry& b) { return a.begin < b.begin; });
  for (std::size_t i = 1; i < entries.size(); ++i)
    if (entries[i].begin < entries[i - 1].end && entries[i].end > entries[i].begin)
      throw fail("tensors '" + entries[i - 1].name + "' and '" + entries[i].name + "' overlap");
  for (const auto& e : entries) {
    at::Tensor t = at::empty(e.shape, at::TensorOptions().dtype(e.type));
    const std::uint64_t bytes = e.end - e.begin;
    if (bytes > 0) {
      in.seekg(static_cast<std::streamoff>(data_start + e.begin), std::ios::beg);
      in.read(static_cast<char*>(t.data_ptr()), static_cast<std::streamsize>(bytes));
      if (!in) throw fail("cannot read the data of '" + e.name + "'");
    }
    out.tensors.emplace_back(e.name, t);
  }
  return out;
}

}  // namespace janus
