// examples/janus/safetensors.cpp - see safetensors.hpp.
#include "safetensors.hpp"

#include <sys/stat.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <set>
#include <stdexcept>

#include <nlohmann/json.hpp>

#include "run_dir.hpp"

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

std::map<std::string, std::string> read_safetensors(const std::string& path,
                                                    const std::function<bool(const std::string&)>& want,
                                                    const std::function<void(const std::string&, at::Tensor)>& visit) {
  if (!little_endian()) throw std::runtime_error("safetensors: only little-endian hosts are supported");
  struct stat sb;
  if (::stat(path.c_str(), &sb) != 0) throw std::runtime_error("safetensors: cannot open " + path + ": " + std::strerror(errno));
  if (!S_ISREG(sb.st_mode)) throw std::runtime_error("safetensors: " + path + " is not a regular file");
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

  std::map<std::string, std::string> metadata;
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
        metadata[m.key()] = m.value().get<std::string>();
      }
      continue;
    }
    try {
      const auto& v = it.value();
      Entry e;
      e.name = it.key();
      if (!v.is_object()) throw fail("tensor '" + e.name + "': its header entry is not an object");
      if (!v.contains("dtype") || !v.at("dtype").is_string())
        throw fail("tensor '" + e.name + "': dtype is missing or not a string");
      e.type = dtype_from(v.at("dtype").get<std::string>(), path, e.name);
      if (!v.contains("shape") || !v.at("shape").is_array())
        throw fail("tensor '" + e.name + "': shape is missing or not an array");
      if (v.at("shape").size() > 8) throw fail("tensor '" + e.name + "': more than 8 dimensions");
      // Every extent a non-negative integer; numel and the byte size computed overflow-checked
      // and bounded by the file's data section (a shape [1e30] or [2^40, 2^40] is an error).
      std::uint64_t numel = 1;
      bool overflow = false;
      for (const auto& x : v.at("shape")) {
        if (!x.is_number_integer() || (x.is_number_integer() && !x.is_number_unsigned() && x.get<std::int64_t>() < 0))
          throw fail("tensor '" + e.name + "': shape " + v.at("shape").dump() +
                     " must hold non-negative integers");
        const std::uint64_t s = x.is_number_unsigned() ? x.get<std::uint64_t>()
                                                        : static_cast<std::uint64_t>(x.get<std::int64_t>());
        if (s > static_cast<std::uint64_t>(INT64_MAX)) overflow = true;
        e.shape.push_back(static_cast<std::int64_t>(s & static_cast<std::uint64_t>(INT64_MAX)));
        if (__builtin_mul_overflow(numel, s, &numel)) overflow = true;
      }
      std::uint64_t bytes = 0;
      if (overflow || __builtin_mul_overflow(numel, static_cast<std::uint64_t>(c10::elementSize(e.type)), &bytes) ||
          bytes > data_size)
        throw fail("tensor '" + e.name + "': shape " + v.at("shape").dump() + " of " + v.at("dtype").get<std::string>() +
                   " does not fit in the file's " + std::to_string(data_size) + " data bytes");
      const auto& offs = v.contains("data_offsets") ? v.at("data_offsets") : nlohmann::json();
      if (!offs.is_array() || offs.size() != 2 || !offs[0].is_number_unsigned() || !offs[1].is_number_unsigned())
        throw fail("tensor '" + e.name + "': data_offsets must be two non-negative integers");
      e.begin = offs[0].get<std::uint64_t>();
      e.end = offs[1].get<std::uint64_t>();
      if (e.begin > e.end || e.end > data_size || e.end - e.begin != bytes)
        throw fail("tensor '" + e.name + "': data_offsets [" + std::to_string(e.begin) + ", " + std::to_string(e.end) +
                   ") do not match its shape and dtype (" + std::to_string(bytes) + " bytes) or the file's " +
                   std::to_string(data_size) + " data bytes");
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
    if (want && !want(e.name)) continue;  // never read
    at::Tensor t = at::empty(e.shape, at::TensorOptions().dtype(e.type));
    const std::uint64_t bytes = e.end - e.begin;
    if (bytes > 0) {
      in.seekg(static_cast<std::streamoff>(data_start + e.begin), std::ios::beg);
      in.read(static_cast<char*>(t.data_ptr()), static_cast<std::streamsize>(bytes));
      if (!in) throw fail("cannot read the data of '" + e.name + "'");
    }
    visit(e.name, std::move(t));
  }
  return metadata;
}

bool all_finite(const at::Tensor& t) {
  if (!at::isFloatingType(t.scalar_type()) || t.numel() == 0) return true;
  const at::Tensor flat = t.reshape({-1});
  constexpr std::int64_t chunk = std::int64_t{1} << 22;
  for (std::int64_t i = 0; i < flat.numel(); i += chunk)
    if (!at::isfinite(flat.narrow(0, i, std::min(chunk, flat.numel() - i))).all().item<bool>()) return false;
  return true;
}

SafeTensors load_safetensors(const std::string& path, const std::function<bool(const std::string&)>& want) {
  SafeTensors out;
  out.metadata = read_safetensors(path, want, [&](const std::string& name, at::Tensor t) {
    out.tensors.emplace_back(name, std::move(t));
  });
  return out;
}

}  // namespace janus
