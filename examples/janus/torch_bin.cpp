// examples/janus/torch_bin.cpp - pytorch_model.bin (see torch_bin.hpp).
#include "torch_bin.hpp"

#include <caffe2/serialize/inline_container.h>
#include <zlib.h>

#include <cstdio>
#include <cstring>
#include <fstream>
#include <map>
#include <memory>
#include <set>
#include <stdexcept>

namespace janus {

namespace {

[[noreturn]] void fail(const std::string& path, const std::string& what) {
  throw std::runtime_error(path + ": " + what);
}

/// The first bytes of a zip archive ("PK\3\4"); torch.save's legacy format starts with a pickle.
void check_zip(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  if (!f) fail(path, "cannot be opened");
  char magic[4] = {0, 0, 0, 0};
  f.read(magic, 4);
  if (f.gcount() == 4 && std::memcmp(magic, "PK\x03\x04", 4) == 0) return;
  if (f.gcount() >= 2 && static_cast<unsigned char>(magic[0]) == 0x80)
    fail(path, "is in torch.save's legacy (pre-1.6, non-zip) format, which is not supported: re-save it with "
               "torch.save(state_dict, path) from PyTorch >= 1.6");
  fail(path, "is not a torch.save zip archive");
}

/// Opens the archive (reads its directory only).
std::unique_ptr<caffe2::serialize::PyTorchStreamReader> open_archive(const std::string& path) {
  check_zip(path);
  try {
    return std::make_unique<caffe2::serialize::PyTorchStreamReader>(path);
  } catch (const std::exception& e) {
    fail(path, std::string("is not a readable torch.save archive: ") + e.what());
  }
}

// ---- the CRC-32 of every record, from the zip's central directory -------------------------------
// PyTorchStreamReader does not check the CRCs it reads; a flipped byte in a tensor's record would
// load silently. The central directory (zip64 too: shards past 4 GB) gives each record's CRC-32,
// checked after each read with zlib.

std::uint64_t le_at(const std::string& b, std::size_t at, std::size_t n) {
  std::uint64_t u = 0;
  for (std::size_t k = 0; k < n; ++k) u |= static_cast<std::uint64_t>(static_cast<unsigned char>(b[at + k])) << (8 * k);
  return u;
}

/// Record name (the part after the archive's top folder) -> CRC-32.
std::map<std::string, std::uint32_t> zip_crcs(const std::string& path) {
  std::ifstream f(path, std::ios::binary | std::ios::ate);
  if (!f) fail(path, "cannot be opened");
  const std::uint64_t size = static_cast<std::uint64_t>(f.tellg());
  auto read_at = [&](std::uint64_t at, std::size_t n) {
    if (at > size || n > size - at) fail(path, "has a zip directory that points outside the file (truncated?)");
    std::string b(n, '\0');
    f.seekg(static_cast<std::streamoff>(at));
    f.read(&b[0], static_cast<std::streamsize>(n));
    if (static_cast<std::size_t>(f.gcount()) != n) fail(path, "cannot be read");
    return b;
  };
  // the end-of-central-directory record: in the last 22 + 65535 bytes
  const std::size_t tail_n = static_cast<std::size_t>(std::min<std::uint64_t>(size, 22 + 65535));
  const std::string tail = read_at(size - tail_n, tail_n);
  std::size_t eocd = std::string::npos;
  for (std::size_t k = tail_n >= 22 ? tail_n - 22 + 1 : 0; k-- > 0;)
    if (le_at(tail, k, 4) == 0x06054b50) {
      eocd = k;
      break;
    }
  if (eocd == std::string::npos) fail(path, "has no zip directory (truncated?)");
  std::uint64_t count = le_at(tail, eocd + 10, 2), cd_size = le_at(tail, eocd + 12, 4), cd_at = le_at(tail, eocd + 16, 4);
  if (count == 0xFFFF || cd_size == 0xFFFFFFFF || cd_at == 0xFFFFFFFF) {  // zip64
    const std::uint64_t loc_at = size - tail_n + eocd;
    if (loc_at < 20) fail(path, "has a damaged zip64 directory");
    const std::string loc = read_at(loc_at - 20, 20);
    if (le_at(loc, 0, 4) != 0x07064b50) fail(path, "has a damaged zip64 directory locator");
    const std::string z = read_at(le_at(loc, 8, 8), 56);
    if (le_at(z, 0, 4) != 0x06064b50) fail(path, "has a damaged zip64 directory record");
    count = le_at(z, 32, 8);
    cd_size = le_at(z, 40, 8);
    cd_at = le_at(z, 48, 8);
  }
  if (cd_size > (std::uint64_t{1} << 30)) fail(path, "has a zip directory of " + std::to_string(cd_size) + " bytes");
  const std::string cd = read_at(cd_at, static_cast<std::size_t>(cd_size));
  std::map<std::string, std::uint32_t> out;
  std::size_t at = 0;
  for (std::uint64_t k = 0; k < count; ++k) {
    if (at + 46 > cd.size() || le_at(cd, at, 4) != 0x02014b50) fail(path, "has a damaged zip directory entry");
    const std::size_t name_n = le_at(cd, at + 28, 2), extra_n = le_at(cd, at + 30, 2), comment_n = le_at(cd, at + 32, 2);
    if (at + 46 + name_n > cd.size()) fail(path, "has a damaged zip directory entry");
    std::string name = cd.substr(at + 46, name_n);
    const std::size_t slash = name.find('/');
    if (slash != std::string::npos) name = name.substr(slash + 1);
    out[name] = static_cast<std::uint32_t>(le_at(cd, at + 16, 4));
    at += 46 + name_n + extra_n + comment_n;
  }
  return out;
}

/// n * m, or -1 when the product of these non-negative numbers passes 2^62.
std::int64_t mul_checked(std::int64_t n, std::int64_t m) {
  if (n < 0 || m < 0) return -1;
  if (m != 0 && n > (std::int64_t{1} << 62) / m) return -1;
  return n * m;
}

// ---- a restricted pickle reader -------------------------------------------------------------------
// libtorch 1.13's TorchScript unpickler cannot read the OrderedDict that torch.save(state_dict)
// writes (pytorch/pytorch#100741, fixed only in 2.6), nor the APPEND opcode; this reader takes the
// opcodes of pickle protocols 2-5 that hold plain data, and exactly these callables:
// collections.OrderedDict, torch._utils._rebuild_tensor_v2 and _rebuild_parameter, and the
// torch.*Storage types as persistent ids. Anything else (os.system, an arbitrary class, a
// TorchScript object) is refused by name before anything could be built from it.

struct Value;
using ValuePtr = std::shared_ptr<Value>;
struct Value {
  enum Kind { none, boolean, integer, real, string, tuple, list, dict, global, storage, tensor, mark } kind = none;
  std::int64_t i = 0;
  double f = 0;
  std::string s, s2;                 ///< string / bytes; global: module (s) and name (s2)
  std::vector<ValuePtr> items;       ///< tuple, list; dict: key, value, key, value, ...
  at::ScalarType dtype = at::kFloat; ///< storage, tensor
  TorchBinEntry entry;               ///< tensor (name filled in later); storage: key + bytes
};

const char* kind_name(Value::Kind k) {
  static const char* names[] = {"None", "bool", "int", "float", "str", "tuple", "list", "dict", "global",
                                "storage", "tensor", "mark"};
  return names[k];
}

/// The dtype of a torch.*Storage type name, or false.
bool storage_dtype(const std::string& name, at::ScalarType& out) {
  static const std::pair<const char*, at::ScalarType> table[] = {
      {"FloatStorage", at::kFloat},   {"DoubleStorage", at::kDouble}, {"HalfStorage", at::kHalf},
      {"BFloat16Storage", at::kBFloat16}, {"LongStorage", at::kLong}, {"IntStorage", at::kInt},
      {"ShortStorage", at::kShort},   {"CharStorage", at::kChar},     {"ByteStorage", at::kByte},
      {"BoolStorage", at::kBool}};
  for (const auto& e : table)
    if (name == e.first) {
      out = e.second;
      return true;
    }
  return false;
}

class PickleReader {
 public:
  PickleReader(const unsigned char* data, std::size_t size) : begin_(data), p_(data), end_(data + size) {}

  ValuePtr run() {
    for (;;) {
      const unsigned char op = byte();
      switch (op) {
        case 0x80: byte(); break;                                   // PROTO
        case 0x95: skip(8); break;                                  // FRAME
        case '.': return stack_.size() == 1 ? pop() : bad("STOP with " + std::to_string(stack_.size()) + " values");
        case '(': push(make(Value::mark)); break;                   // MARK
        case 'N': push(make(Value::none)); break;
        case 0x88: case 0x89: { auto v = make(Value::boolean); v->i = op == 0x88; push(v); break; }
        case 'J': push(integer(static_cast<std::int32_t>(le(4)))); break;   // BININT
        case 'K': push(integer(le(1))); break;                               // BININT1
        case 'M': push(integer(le(2))); break;                               // BININT2
        case 0x8a: {                                                         // LONG1
          const std::size_t n = byte();
          if (n > 8) bad("an integer of " + std::to_string(n) + " bytes");
          std::uint64_t u = le(n);
          if (n && n < 8 && (u >> (8 * n - 1)) & 1) u |= ~std::uint64_t{0} << (8 * n);  // sign-extend
          push(integer(static_cast<std::int64_t>(u)));
          break;
        }
        case 'G': {                                                          // BINFLOAT (big-endian)
          std::uint64_t u = 0;
          for (int k = 0; k < 8; ++k) u = (u << 8) | byte();
          auto v = make(Value::real);
          std::memcpy(&v->f, &u, 8);
          push(v);
          break;
        }
        case 'X': push(str(le(4))); break;                                   // BINUNICODE
        case 0x8c: push(str(byte())); break;                                 // SHORT_BINUNICODE
        case 0x8d: push(str(le(8))); break;                                  // BINUNICODE8
        case 'B': push(str(le(4))); break;                                   // BINBYTES
        case 'C': push(str(byte())); break;                                  // SHORT_BINBYTES
        case ')': push(make(Value::tuple)); break;
        case ']': push(make(Value::list)); break;
        case '}': push(make(Value::dict)); break;
        case 't': { auto v = make(Value::tuple); v->items = pop_to_mark(); push(v); break; }
        case 0x85: case 0x86: case 0x87: {                                   // TUPLE1..3
          auto v = make(Value::tuple);
          v->items.resize(op - 0x84);
          for (std::size_t k = v->items.size(); k-- > 0;) v->items[k] = pop();
          push(v);
          break;
        }
        case 'a': { auto x = pop(); expect(top(), Value::list, "APPEND")->items.push_back(x); break; }
        case 'e': { auto xs = pop_to_mark(); auto& l = expect(top(), Value::list, "APPENDS")->items; l.insert(l.end(), xs.begin(), xs.end()); break; }
        case 's': { auto v = pop(); auto k = pop(); auto d = expect(top(), Value::dict, "SETITEM"); d->items.push_back(k); d->items.push_back(v); break; }
        case 'u': {
          auto xs = pop_to_mark();
          if (xs.size() % 2) bad("SETITEMS with an odd number of values");
          auto d = expect(top(), Value::dict, "SETITEMS");
          d->items.insert(d->items.end(), xs.begin(), xs.end());
          break;
        }
        case 'q': memo(byte()); break;                                       // BINPUT
        case 'r': memo(le(4)); break;                                        // LONG_BINPUT
        case 0x94: memo(memo_.size()); break;                                // MEMOIZE
        case 'h': push(recall(byte())); break;                               // BINGET
        case 'j': push(recall(le(4))); break;                                // LONG_BINGET
        case 'c': {                                                          // GLOBAL "module\nname\n"
          auto v = make(Value::global);
          v->s = line();
          v->s2 = line();
          push(check_global(v));
          break;
        }
        case 0x93: {                                                         // STACK_GLOBAL
          auto name = expect(pop(), Value::string, "STACK_GLOBAL");
          auto mod = expect(pop(), Value::string, "STACK_GLOBAL");
          auto v = make(Value::global);
          v->s = mod->s;
          v->s2 = name->s;
          push(check_global(v));
          break;
        }
        case 'Q': push(persistent(pop())); break;                            // BINPERSID
        case 'R': { auto args = expect(pop(), Value::tuple, "REDUCE"); push(reduce(expect(pop(), Value::global, "REDUCE"), *args)); break; }
        case 'b': {                                                          // BUILD: an OrderedDict's attributes (_metadata) are dropped
          auto state = pop();
          (void)state;
          if (top()->kind != Value::dict && top()->kind != Value::tensor) bad("BUILD on a " + std::string(kind_name(top()->kind)));
          break;
        }
        default: {
          char buf[8];
          std::snprintf(buf, sizeof buf, "0x%02x", op);
          bad(std::string("opcode ") + buf + " (not one of plain data)");
        }
      }
    }
  }

 private:
  [[noreturn]] ValuePtr bad(const std::string& what) const {
    throw std::runtime_error("data.pkl, byte " + std::to_string(pos()) + ": " + what);
  }
  std::size_t pos() const { return static_cast<std::size_t>(p_ - begin_); }
  unsigned char byte() {
    if (p_ >= end_) bad("unexpected end");
    return *p_++;
  }
  void skip(std::size_t n) {
    if (static_cast<std::size_t>(end_ - p_) < n) bad("unexpected end");
    p_ += n;
  }
  std::uint64_t le(std::size_t n) {
    std::uint64_t u = 0;
    for (std::size_t k = 0; k < n; ++k) u |= static_cast<std::uint64_t>(byte()) << (8 * k);
    return u;
  }
  std::string line() {
    std::string out;
    for (unsigned char c; (c = byte()) != '\n';) {
      if (out.size() > 256) bad("a GLOBAL name longer than 256 bytes");
      out += static_cast<char>(c);
    }
    return out;
  }
  static ValuePtr make(Value::Kind k) {
    auto v = std::make_shared<Value>();
    v->kind = k;
    return v;
  }
  static ValuePtr integer(std::int64_t x) {
    auto v = make(Value::integer);
    v->i = x;
    return v;
  }
  ValuePtr str(std::uint64_t n) {
    if (n > static_cast<std::uint64_t>(end_ - p_)) bad("a string of " + std::to_string(n) + " bytes past the end");
    auto v = make(Value::string);
    v->s.assign(reinterpret_cast<const char*>(p_), n);
    p_ += n;
    return v;
  }
  void push(ValuePtr v) {
    if (stack_.size() > 100000) bad("more than 100000 values on the stack");
    stack_.push_back(std::move(v));
  }
  ValuePtr pop() {
    if (stack_.empty() || stack_.back()->kind == Value::mark) bad("a value is missing");
    ValuePtr v = std::move(stack_.back());
    stack_.pop_back();
    return v;
  }
  const ValuePtr& top() {
    if (stack_.empty() || stack_.back()->kind == Value::mark) bad("a value is missing");
    return stack_.back();
  }
  std::vector<ValuePtr> pop_to_mark() {
    std::size_t k = stack_.size();
    while (k > 0 && stack_[k - 1]->kind != Value::mark) --k;
    if (k == 0) bad("no MARK");
    std::vector<ValuePtr> out(stack_.begin() + static_cast<std::ptrdiff_t>(k), stack_.end());
    stack_.resize(k - 1);
    return out;
  }
  const ValuePtr& expect(const ValuePtr& v, Value::Kind k, const char* op) const {
    if (v->kind != k) bad(std::string(op) + " on a " + kind_name(v->kind) + " where a " + kind_name(k) + " belongs");
    return v;
  }
  void memo(std::uint64_t i) {
    if (i > 10000000) bad("a memo index of " + std::to_string(i));
    if (memo_.size() <= i) memo_.resize(i + 1);
    memo_[i] = top();
  }
  ValuePtr recall(std::uint64_t i) {
    if (i >= memo_.size() || !memo_[i]) bad("memo " + std::to_string(i) + " was never stored");
    return memo_[i];
  }
  ValuePtr check_global(const ValuePtr& g) const {
    const std::string full = g->s + "." + g->s2;
    at::ScalarType t;
    if (full == "collections.OrderedDict" || full == "torch._utils._rebuild_tensor_v2" ||
        full == "torch._utils._rebuild_parameter" || (g->s == "torch" && storage_dtype(g->s2, t)))
      return g;
    bad("refuses `" + full + "`: a state dict holds only tensors (nothing in a checkpoint is ever executed)");
  }
  ValuePtr persistent(const ValuePtr& pid) {
    // ('storage', torch.<Type>Storage, key, location, numel)
    if (pid->kind != Value::tuple || pid->items.size() != 5 || pid->items[0]->kind != Value::string ||
        pid->items[0]->s != "storage" || pid->items[1]->kind != Value::global || pid->items[2]->kind != Value::string ||
        pid->items[4]->kind != Value::integer)
      bad("a persistent id that is not a storage");
    auto v = make(Value::storage);
    if (!storage_dtype(pid->items[1]->s2, v->dtype)) bad("storage type " + pid->items[1]->s2);
    v->entry.storage_key = pid->items[2]->s;
    const std::int64_t numel = pid->items[4]->i;
    v->entry.storage_bytes = mul_checked(numel, static_cast<std::int64_t>(at::elementSize(v->dtype)));
    if (v->entry.storage_bytes < 0) bad("storage " + v->entry.storage_key + " of " + std::to_string(numel) + " elements");
    return v;
  }
  static std::vector<std::int64_t> ints(const ValuePtr& t, const char* what, const PickleReader& r) {
    if (t->kind != Value::tuple) r.bad(std::string("_rebuild_tensor_v2: ") + what + " is not a tuple");
    std::vector<std::int64_t> out;
    for (const auto& x : t->items) {
      if (x->kind != Value::integer) r.bad(std::string("_rebuild_tensor_v2: ") + what + " holds a " + kind_name(x->kind));
      out.push_back(x->i);
    }
    return out;
  }
  ValuePtr reduce(const ValuePtr& f, const Value& args) {
    const std::string full = f->s + "." + f->s2;
    if (full == "collections.OrderedDict") {
      if (!args.items.empty()) bad("OrderedDict with arguments");
      return make(Value::dict);
    }
    if (full == "torch._utils._rebuild_parameter") {  // (data, requires_grad, backward_hooks)
      if (args.items.empty() || args.items[0]->kind != Value::tensor) bad("_rebuild_parameter without a tensor");
      return args.items[0];
    }
    if (full == "torch._utils._rebuild_tensor_v2") {  // (storage, offset, size, stride, requires_grad, hooks[, metadata])
      if (args.items.size() < 4 || args.items[0]->kind != Value::storage || args.items[1]->kind != Value::integer)
        bad("_rebuild_tensor_v2 with arguments that are not (storage, offset, size, stride, ...)");
      auto t = make(Value::tensor);
      t->entry = args.items[0]->entry;
      t->entry.dtype = args.items[0]->dtype;
      t->entry.storage_offset = args.items[1]->i;
      t->entry.sizes = ints(args.items[2], "size", *this);
      t->entry.strides = ints(args.items[3], "stride", *this);
      if (t->entry.sizes.size() != t->entry.strides.size()) bad("_rebuild_tensor_v2: size and stride differ in length");
      return t;
    }
    bad("refuses to call `" + full + "`");
  }

  const unsigned char* begin_;
  const unsigned char* p_;
  const unsigned char* end_;
  std::vector<ValuePtr> stack_, memo_;
};

/// An archive and the CRC-32 of each of its records.
struct Archive {
  std::unique_ptr<caffe2::serialize::PyTorchStreamReader> reader;
  std::map<std::string, std::uint32_t> crcs;
};

Archive open_checked(const std::string& path) {
  Archive a;
  a.reader = open_archive(path);
  a.crcs = zip_crcs(path);
  return a;
}

/// The bytes of `record`, checked against the zip directory's CRC-32; `what` names it in errors.
std::pair<at::DataPtr, std::size_t> read_record(const std::string& path, Archive& a, const std::string& record,
                                                const std::string& what) {
  if (!a.reader->hasRecord(record)) fail(path, what + ": record " + record + " is missing");
  at::DataPtr data;
  std::size_t n = 0;
  try {
    std::tie(data, n) = a.reader->getRecord(record);
  } catch (const std::exception& ex) {
    std::string msg = ex.what();
    const std::size_t nl = msg.find('\n');
    if (nl != std::string::npos) msg.resize(nl);
    fail(path, what + ": record " + record + " cannot be read (truncated or corrupted?): " + msg);
  }
  const auto crc = a.crcs.find(record);
  if (crc == a.crcs.end()) fail(path, what + ": record " + record + " is not in the zip directory");
  std::uint64_t sum = crc32(0L, Z_NULL, 0);
  for (std::size_t done = 0; done < n;) {  // zlib takes at most 4 GB a call
    const std::size_t k = std::min<std::size_t>(n - done, std::size_t{1} << 30);
    sum = crc32(sum, static_cast<const Bytef*>(data.get()) + done, static_cast<uInt>(k));
    done += k;
  }
  if (sum != crc->second) fail(path, what + ": record " + record + " is corrupted (CRC-32 differs from the zip directory's)");
  return {std::move(data), n};
}

std::vector<TorchBinEntry> list_entries(const std::string& path, Archive& a) {
  if (!a.reader->hasRecord("data.pkl")) fail(path, "has no data.pkl record (not a torch.save state dict)");
  const auto pkl = read_record(path, a, "data.pkl", "the state dict's pickle");
  const std::size_t pkl_size = pkl.second;
  if (a.reader->hasRecord("byteorder")) {
    const auto bo = read_record(path, a, "byteorder", "the byte order");
    if (std::string(static_cast<const char*>(bo.first.get()), bo.second) != "little")
      fail(path, "was written on a big-endian machine (byteorder record), which is not supported");
  }
  ValuePtr top;
  try {
    top = PickleReader(static_cast<const unsigned char*>(pkl.first.get()), pkl_size).run();
  } catch (const std::exception& e) {
    fail(path, std::string("is not a plain state dict: ") + e.what());
  }
  if (top->kind != Value::dict) fail(path, std::string("data.pkl holds a ") + kind_name(top->kind) + ", not a dict of tensors");
  std::vector<TorchBinEntry> out;
  std::set<std::string> names;
  for (std::size_t k = 0; k + 1 < top->items.size(); k += 2) {
    const Value& key = *top->items[k];
    const Value& val = *top->items[k + 1];
    if (key.kind != Value::string) fail(path, std::string("data.pkl: a key of the state dict is a ") + kind_name(key.kind) + ", not a string");
    if (!names.insert(key.s).second) fail(path, "`" + key.s + "` appears twice");
    if (val.kind != Value::tensor) fail(path, "`" + key.s + "` is a " + kind_name(val.kind) + ", not a tensor");
    TorchBinEntry e = val.entry;
    e.name = key.s;
    // The elements it reaches must lie inside its storage.
    const std::int64_t item = static_cast<std::int64_t>(at::elementSize(e.dtype));
    std::int64_t last = e.storage_offset, numel = 1;
    bool ok = e.storage_offset >= 0;
    for (std::size_t d = 0; d < e.sizes.size() && ok; ++d) {
      ok = e.sizes[d] >= 0 && e.strides[d] >= 0;
      numel = mul_checked(numel, e.sizes[d]);
      if (ok && e.sizes[d] > 0) {
        const std::int64_t span = mul_checked(e.sizes[d] - 1, e.strides[d]);
        ok = span >= 0 && last <= (std::int64_t{1} << 62) - span;
        last += span;
      }
    }
    ok = ok && numel >= 0;
    if (ok && numel > 0) {
      const std::int64_t end = mul_checked(last + 1, item);
      ok = end >= 0 && end <= e.storage_bytes;
    }
    if (!ok)
      fail(path, "`" + e.name + "` (sizes " + c10::str(at::IntArrayRef(e.sizes)) + ", strides " +
                     c10::str(at::IntArrayRef(e.strides)) + ", offset " + std::to_string(e.storage_offset) +
                     ") reaches outside its storage of " + std::to_string(e.storage_bytes) + " bytes");
    if (numel == 0) e.storage_key.clear();  // nothing to read
    out.push_back(std::move(e));
  }
  return out;
}

}  // namespace

std::vector<TorchBinEntry> list_torch_bin(const std::string& path) {
  Archive a = open_checked(path);
  return list_entries(path, a);
}

std::vector<std::pair<std::string, at::Tensor>> load_torch_bin(const std::string& path,
                                                               const std::function<bool(const std::string&)>& want) {
  std::vector<std::pair<std::string, at::Tensor>> out;
  read_torch_bin(path, want, [&](const std::string& name, at::Tensor t) { out.emplace_back(name, std::move(t)); });
  return out;
}

void read_torch_bin(const std::string& path, const std::function<bool(const std::string&)>& want,
                    const std::function<void(const std::string&, at::Tensor)>& visit) {
  Archive a = open_checked(path);
  const std::vector<TorchBinEntry> entries = list_entries(path, a);
  for (const TorchBinEntry& e : entries) {
    if (want && !want(e.name)) continue;
    const auto opts = at::TensorOptions().dtype(e.dtype);
    if (e.storage_key.empty()) {  // no elements
      visit(e.name, at::empty(e.sizes, opts));
      continue;
    }
    const std::string record = "data/" + e.storage_key;
    auto rec = read_record(path, a, record, "`" + e.name + "`");
    at::DataPtr data = std::move(rec.first);
    const std::size_t n = rec.second;
    if (static_cast<std::int64_t>(n) < e.storage_bytes)
      fail(path, "`" + e.name + "`: its storage record " + record + " holds " + std::to_string(n) +
                     " bytes, the pickle says " + std::to_string(e.storage_bytes));
    at::Storage storage(at::Storage::use_byte_size_t(), n, std::move(data), nullptr, false);
    at::Tensor t = at::empty({0}, opts).set_(storage, e.storage_offset, e.sizes, e.strides);
    // Own exactly its elements (a view of a larger or shared storage is copied out).
    const bool exact = t.is_contiguous() && e.storage_offset == 0 &&
                       static_cast<std::int64_t>(t.numel() * t.element_size()) == static_cast<std::int64_t>(n);
    visit(e.name, exact ? t : t.clone(at::MemoryFormat::Contiguous));
  }
}

}  // namespace janus
