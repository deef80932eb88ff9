// examples/janus/pickle.cpp - PyValue, the protocol-3 pickle writer and the restricted unpickler.
// The opcode set and argument encodings follow CPython's Lib/pickletools.py (the documented
// opcode list) and Lib/pickle.py; nothing here imports, calls or resolves a name.
#include "pickle.hpp"

#include <array>
#include <charconv>
#include <cmath>
#include <cstring>
#include <map>
#include <memory>
#include <sstream>
#include <unordered_map>

namespace janus {

// ===== PyValue ==================================================================================

const char* kind_name(PyValue::Kind k) {
  switch (k) {
    case PyValue::Kind::None: return "None";
    case PyValue::Kind::Bool: return "bool";
    case PyValue::Kind::Int: return "int";
    case PyValue::Kind::Float: return "float";
    case PyValue::Kind::Str: return "str";
    case PyValue::Kind::Bytes: return "bytes";
    case PyValue::Kind::List: return "list";
    case PyValue::Kind::Tuple: return "tuple";
    case PyValue::Kind::Dict: return "dict";
  }
  return "?";
}

namespace {

[[noreturn]] void wrong_kind(const char* wanted, PyValue::Kind actual) {
  throw std::invalid_argument(std::string("PyValue: expected ") + wanted + ", got " + kind_name(actual));
}

bool keys_equal(const PyValue& a, const PyValue& b) {
  if (a.kind() != b.kind()) return false;
  return a.kind() == PyValue::Kind::Str ? a.as_str() == b.as_str() : a.as_int() == b.as_int();
}

void check_key(const PyValue& k) {
  if (k.kind() != PyValue::Kind::Str && k.kind() != PyValue::Kind::Int)
    throw std::invalid_argument(std::string("PyValue: dict keys must be str or int, got ") + kind_name(k.kind()));
}

}  // namespace

PyValue PyValue::boolean(bool b) { PyValue v; v.kind_ = Kind::Bool; v.b_ = b; return v; }
PyValue PyValue::integer(std::int64_t i) { PyValue v; v.kind_ = Kind::Int; v.i_ = i; return v; }
PyValue PyValue::real(double d) { PyValue v; v.kind_ = Kind::Float; v.d_ = d; return v; }
PyValue PyValue::str(std::string utf8) { PyValue v; v.kind_ = Kind::Str; v.s_ = std::move(utf8); return v; }
PyValue PyValue::bytes(std::string raw) { PyValue v; v.kind_ = Kind::Bytes; v.s_ = std::move(raw); return v; }
PyValue PyValue::bytes(const std::vector<std::uint8_t>& raw) {
  return bytes(std::string(reinterpret_cast<const char*>(raw.data()), raw.size()));
}
PyValue PyValue::list(Items items) { PyValue v; v.kind_ = Kind::List; v.items_ = std::move(items); return v; }
PyValue PyValue::tuple(Items items) { PyValue v; v.kind_ = Kind::Tuple; v.items_ = std::move(items); return v; }
PyValue PyValue::dict(Entries entries) {
  PyValue v;
  v.kind_ = Kind::Dict;
  v.entries_.reserve(entries.size());
  std::map<std::pair<int, std::string>, std::size_t> pos;  // key -> position, so that n keys cost n log n
  for (auto& e : entries) {
    check_key(e.first);
    std::pair<int, std::string> k = e.first.kind() == Kind::Str ? std::make_pair(0, e.first.as_str())
                                                                : std::make_pair(1, std::to_string(e.first.as_int()));
    auto it = pos.find(k);
    if (it != pos.end()) { v.entries_[it->second].second = std::move(e.second); continue; }
    pos.emplace(std::move(k), v.entries_.size());
    v.entries_.emplace_back(std::move(e.first), std::move(e.second));
  }
  return v;
}

bool PyValue::as_bool() const { if (kind_ != Kind::Bool) wrong_kind("bool", kind_); return b_; }
std::int64_t PyValue::as_int() const { if (kind_ != Kind::Int) wrong_kind("int", kind_); return i_; }
double PyValue::as_double() const {
  if (kind_ == Kind::Float) return d_;
  if (kind_ == Kind::Int) return static_cast<double>(i_);
  if (kind_ == Kind::Bool) return b_ ? 1.0 : 0.0;
  wrong_kind("a number", kind_);
}
const std::string& PyValue::as_str() const { if (kind_ != Kind::Str) wrong_kind("str", kind_); return s_; }
const std::string& PyValue::as_bytes() const { if (kind_ != Kind::Bytes) wrong_kind("bytes", kind_); return s_; }
const PyValue::Items& PyValue::items() const {
  if (kind_ != Kind::List && kind_ != Kind::Tuple) wrong_kind("list or tuple", kind_);
  return items_;
}
const PyValue::Entries& PyValue::entries() const { if (kind_ != Kind::Dict) wrong_kind("dict", kind_); return entries_; }
const PyValue* PyValue::find(std::string_view key) const {
  for (const auto& e : entries())
    if (e.first.kind_ == Kind::Str && e.first.s_ == key) return &e.second;
  return nullptr;
}
void PyValue::append(PyValue v) { if (kind_ != Kind::List) wrong_kind("list", kind_); items_.push_back(std::move(v)); }
void PyValue::set(PyValue key, PyValue value) {
  if (kind_ != Kind::Dict) wrong_kind("dict", kind_);
  check_key(key);
  for (auto& e : entries_)
    if (keys_equal(e.first, key)) { e.second = std::move(value); return; }
  entries_.emplace_back(std::move(key), std::move(value));
}

bool operator==(const PyValue& a, const PyValue& b) {
  if (a.kind_ != b.kind_) return false;
  switch (a.kind_) {
    case PyValue::Kind::None: return true;
    case PyValue::Kind::Bool: return a.b_ == b.b_;
    case PyValue::Kind::Int: return a.i_ == b.i_;
    case PyValue::Kind::Float: return a.d_ == b.d_ || (std::isnan(a.d_) && std::isnan(b.d_));
    case PyValue::Kind::Str:
    case PyValue::Kind::Bytes: return a.s_ == b.s_;
    case PyValue::Kind::List:
    case PyValue::Kind::Tuple: return a.items_ == b.items_;
    case PyValue::Kind::Dict: return a.entries_ == b.entries_;
  }
  return false;
}

namespace {

void repr_to(const PyValue& v, std::string& out) {
  auto quote = [&](const std::string& s, bool is_bytes) {
    if (is_bytes) out += 'b';
    out += '\'';
    for (unsigned char c : s) {
      if (c == '\\' || c == '\'') { out += '\\'; out += static_cast<char>(c); }
      else if (c == '\n') out += "\\n";
      else if (c >= 0x20 && c < 0x7f) out += static_cast<char>(c);
      else if (!is_bytes && c >= 0x80) out += static_cast<char>(c);  // UTF-8 passes through
      else { char buf[8]; std::snprintf(buf, sizeof buf, "\\x%02x", c); out += buf; }
    }
    out += '\'';
  };
  switch (v.kind()) {
    case PyValue::Kind::None: out += "None"; break;
    case PyValue::Kind::Bool: out += v.as_bool() ? "True" : "False"; break;
    case PyValue::Kind::Int: out += std::to_string(v.as_int()); break;
    case PyValue::Kind::Float: {
      char buf[32];
      std::snprintf(buf, sizeof buf, "%.17g", v.as_double());
      out += buf;
      break;
    }
    case PyValue::Kind::Str: quote(v.as_str(), false); break;
    case PyValue::Kind::Bytes: quote(v.as_bytes(), true); break;
    case PyValue::Kind::List:
    case PyValue::Kind::Tuple: {
      const bool list = v.kind() == PyValue::Kind::List;
      out += list ? '[' : '(';
      const auto& it = v.items();
      for (std::size_t i = 0; i < it.size(); ++i) { if (i) out += ", "; repr_to(it[i], out); }
      if (!list && it.size() == 1) out += ',';
      out += list ? ']' : ')';
      break;
    }
    case PyValue::Kind::Dict: {
      out += '{';
      bool first = true;
      for (const auto& e : v.entries()) {
        if (!first) out += ", ";
        first = false;
        repr_to(e.first, out);
        out += ": ";
        repr_to(e.second, out);
      }
      out += '}';
      break;
    }
  }
}

}  // namespace

std::string PyValue::repr() const { std::string s; repr_to(*this, s); return s; }

// ===== UTF-8 ====================================================================================

namespace {

/// Offset of the first byte of an invalid UTF-8 sequence (surrogates and overlongs are invalid,
/// as CPython's strict decoder has them), or npos when all is valid.
std::size_t utf8_error(std::string_view s) {
  std::size_t i = 0;
  const auto* p = reinterpret_cast<const unsigned char*>(s.data());
  const std::size_t n = s.size();
  while (i < n) {
    const unsigned c = p[i];
    if (c < 0x80) { ++i; continue; }
    int len;
    std::uint32_t cp;
    if (c >= 0xc2 && c <= 0xdf) { len = 2; cp = c & 0x1f; }
    else if (c >= 0xe0 && c <= 0xef) { len = 3; cp = c & 0x0f; }
    else if (c >= 0xf0 && c <= 0xf4) { len = 4; cp = c & 0x07; }
    else return i;
    if (i + len > n) return i;
    for (int k = 1; k < len; ++k) {
      if ((p[i + k] & 0xc0) != 0x80) return i;
      cp = (cp << 6) | (p[i + k] & 0x3f);
    }
    if ((len == 3 && cp < 0x800) || (len == 4 && (cp < 0x10000 || cp > 0x10ffff)) || (cp >= 0xd800 && cp <= 0xdfff))
      return i;
    i += len;
  }
  return std::string_view::npos;
}

void append_utf8(std::string& out, std::uint32_t cp) {
  if (cp < 0x80) out += static_cast<char>(cp);
  else if (cp < 0x800) { out += static_cast<char>(0xc0 | (cp >> 6)); out += static_cast<char>(0x80 | (cp & 0x3f)); }
  else if (cp < 0x10000) {
    out += static_cast<char>(0xe0 | (cp >> 12));
    out += static_cast<char>(0x80 | ((cp >> 6) & 0x3f));
    out += static_cast<char>(0x80 | (cp & 0x3f));
  } else {
    out += static_cast<char>(0xf0 | (cp >> 18));
    out += static_cast<char>(0x80 | ((cp >> 12) & 0x3f));
    out += static_cast<char>(0x80 | ((cp >> 6) & 0x3f));
    out += static_cast<char>(0x80 | (cp & 0x3f));
  }
}

}  // namespace

// ===== writer ===================================================================================

namespace {

void put_le(std::string& out, std::uint64_t v, int n) {
  for (int k = 0; k < n; ++k) out += static_cast<char>((v >> (8 * k)) & 0xff);
}

void dump(const PyValue& v, std::string& out, int depth) {
  if (depth > 1000) throw PickleError("pickle_dumps: nesting deeper than 1000");
  switch (v.kind()) {
    case PyValue::Kind::None: out += 'N'; break;
    case PyValue::Kind::Bool: out += static_cast<char>(v.as_bool() ? 0x88 : 0x89); break;  // NEWTRUE / NEWFALSE
    case PyValue::Kind::Int: {
      const std::int64_t i = v.as_int();
      if (i >= 0 && i < 256) { out += 'K'; put_le(out, static_cast<std::uint64_t>(i), 1); }
      else if (i >= 0 && i < 65536) { out += 'M'; put_le(out, static_cast<std::uint64_t>(i), 2); }
      else if (i >= INT32_MIN && i <= INT32_MAX) { out += 'J'; put_le(out, static_cast<std::uint32_t>(static_cast<std::int32_t>(i)), 4); }
      else {
        // LONG1: little-endian two's complement, shortest that keeps the sign.
        unsigned char b[8];
        const auto u = static_cast<std::uint64_t>(i);
        for (int k = 0; k < 8; ++k) b[k] = static_cast<unsigned char>((u >> (8 * k)) & 0xff);
        int n = 8;
        while (n > 1 && ((b[n - 1] == 0x00 && !(b[n - 2] & 0x80)) || (b[n - 1] == 0xff && (b[n - 2] & 0x80)))) --n;
        out += static_cast<char>(0x8a);
        out += static_cast<char>(n);
        out.append(reinterpret_cast<const char*>(b), static_cast<std::size_t>(n));
      }
      break;
    }
    case PyValue::Kind::Float: {  // BINFLOAT: IEEE 754 double, big-endian
      const double d = v.as_double();
      std::uint64_t bits;
      std::memcpy(&bits, &d, 8);
      out += 'G';
      for (int k = 7; k >= 0; --k) out += static_cast<char>((bits >> (8 * k)) & 0xff);
      break;
    }
    case PyValue::Kind::Str: {
      const std::string& s = v.as_str();
      const std::size_t bad = utf8_error(s);
      if (bad != std::string_view::npos)
        throw PickleError("pickle_dumps: str is not valid UTF-8 at byte " + std::to_string(bad) + " of " + std::to_string(s.size()));
      if (s.size() > 0xffffffffu) throw PickleError("pickle_dumps: str longer than 4 GiB");
      out += 'X';  // BINUNICODE
      put_le(out, s.size(), 4);
      out += s;
      break;
    }
    case PyValue::Kind::Bytes: {
      const std::string& s = v.as_bytes();
      if (s.size() > 0xffffffffu) throw PickleError("pickle_dumps: bytes longer than 4 GiB");
      out += 'B';  // BINBYTES
      put_le(out, s.size(), 4);
      out += s;
      break;
    }
    case PyValue::Kind::List: {
      out += ']';  // EMPTY_LIST
      const auto& it = v.items();
      for (std::size_t i = 0; i < it.size(); i += 1000) {  // batches of APPENDS, as CPython
        out += '(';
        for (std::size_t j = i; j < it.size() && j < i + 1000; ++j) dump(it[j], out, depth + 1);
        out += 'e';
      }
      break;
    }
    case PyValue::Kind::Tuple: {
      const auto& it = v.items();
      if (it.empty()) { out += ')'; break; }
      if (it.size() <= 3) {
        for (const auto& x : it) dump(x, out, depth + 1);
        out += static_cast<char>(0x84 + it.size());  // TUPLE1..3 = 0x85..0x87
        break;
      }
      out += '(';
      for (const auto& x : it) dump(x, out, depth + 1);
      out += 't';
      break;
    }
    case PyValue::Kind::Dict: {
      out += '}';  // EMPTY_DICT
      const auto& en = v.entries();
      for (std::size_t i = 0; i < en.size(); i += 1000) {
        out += '(';
        for (std::size_t j = i; j < en.size() && j < i + 1000; ++j) {
          dump(en[j].first, out, depth + 1);
          dump(en[j].second, out, depth + 1);
        }
        out += 'u';  // SETITEMS
      }
      break;
    }
  }
}

}  // namespace

std::string pickle_dumps(const PyValue& v) {
  std::string out = "\x80\x03";  // PROTO 3
  dump(v, out, 0);
  out += '.';  // STOP
  return out;
}

// ===== opcode table =============================================================================

namespace {

enum class Class { Unknown, Accepted, Imports, Outside, Set };

struct OpInfo {
  const char* name = nullptr;
  Class cls = Class::Unknown;
};

const std::array<OpInfo, 256>& op_table() {
  static const std::array<OpInfo, 256> t = [] {
    std::array<OpInfo, 256> a{};
    auto acc = [&](unsigned char c, const char* n) { a[c] = {n, Class::Accepted}; };
    auto imp = [&](unsigned char c, const char* n) { a[c] = {n, Class::Imports}; };
    acc('(', "MARK"); acc('.', "STOP"); acc('0', "POP"); acc('1', "POP_MARK"); acc('2', "DUP");
    acc('F', "FLOAT"); acc('I', "INT"); acc('J', "BININT"); acc('K', "BININT1"); acc('L', "LONG");
    acc('M', "BININT2"); acc('N', "NONE"); acc('S', "STRING"); acc('T', "BINSTRING");
    acc('U', "SHORT_BINSTRING"); acc('V', "UNICODE"); acc('X', "BINUNICODE"); acc('a', "APPEND");
    acc('d', "DICT"); acc('}', "EMPTY_DICT"); acc('e', "APPENDS"); acc('g', "GET"); acc('h', "BINGET");
    acc('j', "LONG_BINGET"); acc('l', "LIST"); acc(']', "EMPTY_LIST"); acc('p', "PUT"); acc('q', "BINPUT");
    acc('r', "LONG_BINPUT"); acc('s', "SETITEM"); acc('t', "TUPLE"); acc(')', "EMPTY_TUPLE");
    acc('u', "SETITEMS"); acc('G', "BINFLOAT"); acc(0x80, "PROTO"); acc(0x85, "TUPLE1");
    acc(0x86, "TUPLE2"); acc(0x87, "TUPLE3"); acc(0x88, "NEWTRUE"); acc(0x89, "NEWFALSE");
    acc(0x8a, "LONG1"); acc(0x8b, "LONG4"); acc('B', "BINBYTES"); acc('C', "SHORT_BINBYTES");
    acc(0x8c, "SHORT_BINUNICODE"); acc(0x8d, "BINUNICODE8"); acc(0x8e, "BINBYTES8");
    acc(0x94, "MEMOIZE"); acc(0x95, "FRAME"); acc(0x96, "BYTEARRAY8");
    imp('c', "GLOBAL"); imp(0x93, "STACK_GLOBAL"); imp('R', "REDUCE"); imp('b', "BUILD");
    imp('i', "INST"); imp('o', "OBJ"); imp(0x81, "NEWOBJ"); imp(0x92, "NEWOBJ_EX");
    imp(0x82, "EXT1"); imp(0x83, "EXT2"); imp(0x84, "EXT4");
    a['P'] = {"PERSID", Class::Outside}; a['Q'] = {"BINPERSID", Class::Outside};
    a[0x97] = {"NEXT_BUFFER", Class::Outside}; a[0x98] = {"READONLY_BUFFER", Class::Outside};
    a[0x8f] = {"EMPTY_SET", Class::Set}; a[0x90] = {"ADDITEMS", Class::Set}; a[0x91] = {"FROZENSET", Class::Set};
    return a;
  }();
  return t;
}

}  // namespace

const char* pickle_opcode_name(unsigned char op) { return op_table()[op].name; }
bool pickle_opcode_accepted(unsigned char op) { return op_table()[op].cls == Class::Accepted; }

// ===== restricted unpickler =====================================================================

namespace {

// Values under construction live in an arena and refer to each other by index, so that the memo
// can share them as CPython's does (a list memoised empty and filled later is seen filled by a
// later GET) and so that a hostile self-reference cannot leak memory; the tree is built at STOP.
struct Node {
  PyValue::Kind kind = PyValue::Kind::None;
  bool b = false;
  std::int64_t i = 0;
  double d = 0.0;
  std::string s;
  std::vector<std::size_t> items;                         // List, Tuple
  std::vector<std::pair<std::size_t, std::size_t>> entries;  // Dict
  std::map<std::string, std::size_t> key_pos;             // Dict: key -> position in entries
};

class Unpickler {
 public:
  Unpickler(std::string_view data, const UnpickleLimits& lim, std::string_view source)
      : d_(data), lim_(lim), src_(source) {}

  PyValue run() {
    if (d_.size() > lim_.max_bytes)
      fail("is " + std::to_string(d_.size()) + " bytes, more than the limit of " + std::to_string(lim_.max_bytes));
    if (d_.empty()) fail("is empty");
    for (;;) {
      op_pos_ = pos_;
      const unsigned char op = static_cast<unsigned char>(take(1)[0]);
      op_ = op;
      const OpInfo& info = op_table()[op];
      if (info.cls != Class::Accepted) refuse(info);
      if (op == '.') {  // STOP
        if (!marks_.empty()) fail_op("a MARK is still open");
        if (stack_.size() != 1) fail_op(std::to_string(stack_.size()) + " values on the stack, expected exactly 1");
        if (pos_ != d_.size())
          fail(std::to_string(d_.size() - pos_) + " bytes after STOP (at byte " + std::to_string(op_pos_) + "), starting at byte " + std::to_string(pos_));
        // Size the tree first (memoised over the shared graph), so that a memo "bomb" or a
        // self-reference is refused before anything is copied.
        std::vector<std::uint64_t> sizes(nodes_.size(), 0);
        tree_size(stack_.back(), 0, sizes);
        std::size_t count = 0;
        return build(stack_.back(), 0, count);
      }
      step(op);
    }
  }

 private:
  std::string_view d_;
  UnpickleLimits lim_;
  std::string_view src_;
  std::size_t pos_ = 0, op_pos_ = 0;
  unsigned char op_ = 0;
  std::vector<Node> nodes_;
  std::vector<std::size_t> stack_;
  std::vector<std::size_t> marks_;
  std::unordered_map<std::uint64_t, std::size_t> memo_;

  [[noreturn]] void fail(const std::string& what) const { throw PickleError(std::string(src_) + ": " + what); }
  std::string op_desc() const {
    char buf[16];
    std::snprintf(buf, sizeof buf, "0x%02x", op_);
    const char* n = op_table()[op_].name;
    return std::string("opcode ") + (n ? n : "<unknown>") + " (" + buf + ") at byte " + std::to_string(op_pos_);
  }
  [[noreturn]] void fail_op(const std::string& what) const { fail(op_desc() + ": " + what); }

  [[noreturn]] void refuse(const OpInfo& info) {
    std::string why;
    switch (info.cls) {
      case Class::Imports: {
        why = "it imports or calls a Python object, which is how a pickle runs code";
        if (op_ == 'c' || op_ == 'i') {  // GLOBAL/INST carry "module\nname\n": say what it asked for
          const std::size_t e1 = d_.find('\n', pos_);
          const std::size_t e2 = e1 == std::string_view::npos ? e1 : d_.find('\n', e1 + 1);
          if (e2 != std::string_view::npos && e2 - pos_ < 200)
            why += " (" + printable(d_.substr(pos_, e1 - pos_)) + "." + printable(d_.substr(e1 + 1, e2 - e1 - 1)) + ")";
        } else if (op_ == 0x93 && stack_.size() >= 2) {  // STACK_GLOBAL: module and name on the stack
          const Node& m = nodes_[stack_[stack_.size() - 2]];
          const Node& n = nodes_[stack_.back()];
          if (m.kind == PyValue::Kind::Str && n.kind == PyValue::Kind::Str && m.s.size() + n.s.size() < 200)
            why += " (" + printable(m.s) + "." + printable(n.s) + ")";
        }
        break;
      }
      case Class::Outside: why = "it refers to objects outside the pickle (persistent ids or out-of-band buffers)"; break;
      case Class::Set: why = "sets are not supported by this reader"; break;
      default: why = "no such opcode in pickle protocols 0-5"; break;
    }
    fail(op_desc() + " is refused: " + why + "; only plain data (None, bool, int, float, str, bytes, list, tuple, dict) is accepted");
  }

  static std::string printable(std::string_view s) {
    std::string o;
    for (unsigned char c : s) o += (c >= 0x20 && c < 0x7f) ? static_cast<char>(c) : '?';
    return o;
  }

  std::string_view take(std::uint64_t n) {
    if (n > d_.size() - pos_)
      fail("truncated at byte " + std::to_string(d_.size()) + (pos_ == op_pos_ ? std::string(" (expected an opcode)")
                                                                               : ": " + op_desc() + " needs " + std::to_string(n) + " more bytes, " +
                                                                                     std::to_string(d_.size() - pos_) + " left"));
    auto r = d_.substr(pos_, static_cast<std::size_t>(n));
    pos_ += static_cast<std::size_t>(n);
    return r;
  }
  std::uint64_t le(int n) {
    auto s = take(static_cast<std::uint64_t>(n));
    std::uint64_t v = 0;
    for (int k = n - 1; k >= 0; --k) v = (v << 8) | static_cast<unsigned char>(s[static_cast<std::size_t>(k)]);
    return v;
  }
  std::string_view line() {  // protocol-0 argument, up to (excluding) '\n'
    const std::size_t e = d_.find('\n', pos_);
    if (e == std::string_view::npos)
      fail("truncated at byte " + std::to_string(d_.size()) + ": " + op_desc() + " argument has no terminating newline");
    auto r = d_.substr(pos_, e - pos_);
    pos_ = e + 1;
    return r;
  }

  std::size_t make(PyValue::Kind k) {
    if (nodes_.size() >= lim_.max_values) fail_op("more than " + std::to_string(lim_.max_values) + " values (limit max_values)");
    nodes_.emplace_back();
    nodes_.back().kind = k;
    return nodes_.size() - 1;
  }
  void push(std::size_t n) { stack_.push_back(n); }
  std::size_t floor() const { return marks_.empty() ? 0 : marks_.back(); }
  std::size_t pop() {
    if (stack_.size() <= floor()) fail_op(marks_.empty() ? "stack underflow" : "stack underflow (would pop below a MARK)");
    const std::size_t n = stack_.back();
    stack_.pop_back();
    return n;
  }
  std::size_t top() const {
    if (stack_.size() <= floor()) fail_op("stack underflow");
    return stack_.back();
  }
  std::vector<std::size_t> pop_mark() {
    if (marks_.empty()) fail_op("no MARK on the stack");
    const std::size_t m = marks_.back();
    marks_.pop_back();
    std::vector<std::size_t> items(stack_.begin() + static_cast<std::ptrdiff_t>(m), stack_.end());
    stack_.resize(m);
    return items;
  }

  void push_int(std::int64_t v) { const auto n = make(PyValue::Kind::Int); nodes_[n].i = v; push(n); }
  void push_bool(bool v) { const auto n = make(PyValue::Kind::Bool); nodes_[n].b = v; push(n); }
  void push_float(double v) { const auto n = make(PyValue::Kind::Float); nodes_[n].d = v; push(n); }
  void push_text(std::string s) {
    const std::size_t bad = utf8_error(s);
    if (bad != std::string_view::npos) fail_op("string is not valid UTF-8 at its byte " + std::to_string(bad));
    const auto n = make(PyValue::Kind::Str);
    nodes_[n].s = std::move(s);
    push(n);
  }
  void push_bytes(std::string_view s) { const auto n = make(PyValue::Kind::Bytes); nodes_[n].s = std::string(s); push(n); }
  void push_ascii(std::string_view s) {  // py2 str with CPython 3's default encoding="ASCII"
    for (std::size_t k = 0; k < s.size(); ++k)
      if (static_cast<unsigned char>(s[k]) >= 0x80)
        fail_op("8-bit string is not ASCII at its byte " + std::to_string(k) + " (CPython's default encoding='ASCII' refuses it too)");
    push_text(std::string(s));
  }

  std::int64_t parse_decimal(std::string_view t, const char* what) {
    std::int64_t v = 0;
    const char* b = t.data();
    const char* e = t.data() + t.size();
    if (b != e && *b == '+') ++b;
    auto r = std::from_chars(b, e, v);
    if (r.ec == std::errc::result_out_of_range)
      fail_op(std::string(what) + " '" + printable(t) + "' does not fit in a 64-bit signed integer (big ints are not supported)");
    if (r.ec != std::errc() || r.ptr != e || b == e) fail_op(std::string("malformed ") + what + " '" + printable(t) + "'");
    return v;
  }

  void long_bytes(std::uint64_t n) {
    if (n == 0) { push_int(0); return; }
    auto s = take(n);
    const auto* p = reinterpret_cast<const unsigned char*>(s.data());
    const bool neg = p[n - 1] & 0x80;
    if (n > 8) {
      for (std::uint64_t k = 8; k < n; ++k)
        if (p[k] != (neg ? 0xff : 0x00) || ((p[7] & 0x80) != 0) != neg)
          fail_op("integer of " + std::to_string(n) + " bytes does not fit in a 64-bit signed integer (big ints are not supported)");
      n = 8;
    }
    std::uint64_t u = neg ? ~std::uint64_t{0} : 0;
    for (std::uint64_t k = 0; k < n; ++k) {
      u &= ~(std::uint64_t{0xff} << (8 * k));
      u |= std::uint64_t{p[k]} << (8 * k);
    }
    push_int(static_cast<std::int64_t>(u));
  }

  // STRING's argument: a Python 2 repr, quoted, with backslash escapes (codecs.escape_decode).
  void string_repr(std::string_view t) {
    if (t.size() < 2 || (t.front() != '\'' && t.front() != '"') || t.back() != t.front())
      fail_op("STRING argument is not a quoted string");
    t = t.substr(1, t.size() - 2);
    std::string o;
    for (std::size_t k = 0; k < t.size(); ++k) {
      if (t[k] != '\\') { o += t[k]; continue; }
      if (++k == t.size()) fail_op("STRING ends with a lone backslash");
      const char c = t[k];
      switch (c) {
        case '\\': o += '\\'; break;
        case '\'': o += '\''; break;
        case '"': o += '"'; break;
        case 'n': o += '\n'; break;
        case 'r': o += '\r'; break;
        case 't': o += '\t'; break;
        case 'a': o += '\a'; break;
        case 'b': o += '\b'; break;
        case 'f': o += '\f'; break;
        case 'v': o += '\v'; break;
        case '\n': break;
        case 'x': {
          if (k + 2 >= t.size()) fail_op("STRING has a truncated \\x escape");
          unsigned v = 0;
          auto r = std::from_chars(t.data() + k + 1, t.data() + k + 3, v, 16);
          if (r.ec != std::errc() || r.ptr != t.data() + k + 3) fail_op("STRING has an invalid \\x escape");
          o += static_cast<char>(v);
          k += 2;
          break;
        }
        default:
          if (c >= '0' && c <= '7') {
            unsigned v = 0;
            std::size_t m = 0;
            while (m < 3 && k + m < t.size() && t[k + m] >= '0' && t[k + m] <= '7') { v = v * 8 + unsigned(t[k + m] - '0'); ++m; }
            o += static_cast<char>(v & 0xff);
            k += m - 1;
          } else {
            o += '\\';
            o += c;
          }
      }
    }
    push_ascii(o);
  }

  // UNICODE's argument: raw-unicode-escape (latin-1 bytes, \uXXXX and \UXXXXXXXX escapes).
  void unicode_raw(std::string_view t) {
    std::string o;
    for (std::size_t k = 0; k < t.size(); ++k) {
      const unsigned char c = static_cast<unsigned char>(t[k]);
      if (c == '\\' && k + 1 < t.size() && (t[k + 1] == 'u' || t[k + 1] == 'U')) {
        const std::size_t nd = t[k + 1] == 'u' ? 4 : 8;
        if (k + 2 + nd > t.size()) fail_op("UNICODE has a truncated \\u escape");
        std::uint32_t cp = 0;
        auto r = std::from_chars(t.data() + k + 2, t.data() + k + 2 + nd, cp, 16);
        if (r.ec != std::errc() || r.ptr != t.data() + k + 2 + nd) fail_op("UNICODE has an invalid \\u escape");
        if (cp > 0x10ffff) fail_op("UNICODE escape beyond U+10FFFF");
        if (cp >= 0xd800 && cp <= 0xdfff) fail_op("UNICODE escape is a lone surrogate, which UTF-8 cannot hold");
        append_utf8(o, cp);
        k += 1 + nd;
      } else {
        append_utf8(o, c);
      }
    }
    push_text(std::move(o));
  }

  void memo_put(std::uint64_t id) {
    memo_[id] = top();
  }
  void memo_get(std::uint64_t id) {
    auto it = memo_.find(id);
    if (it == memo_.end()) fail_op("memo id " + std::to_string(id) + " was never stored");
    push(it->second);
  }

  std::string key_of(std::size_t k) {
    const Node& n = nodes_[k];
    if (n.kind == PyValue::Kind::Str) return "s" + n.s;
    if (n.kind == PyValue::Kind::Int) return "i" + std::to_string(n.i);
    fail_op(std::string("dict key of kind ") + kind_name(n.kind) + " is not supported (str or int only)");
  }
  void set_item(std::size_t dict, std::size_t k, std::size_t v) {
    std::string key = key_of(k);
    Node& dn = nodes_[dict];
    auto it = dn.key_pos.find(key);
    if (it != dn.key_pos.end()) { dn.entries[it->second].second = v; return; }
    dn.key_pos.emplace(std::move(key), dn.entries.size());
    dn.entries.emplace_back(k, v);
  }
  std::size_t need(std::size_t n, PyValue::Kind k, const char* what) {
    if (nodes_[n].kind != k) fail_op(std::string(what) + " needs a " + kind_name(k) + " on the stack, found a " + kind_name(nodes_[n].kind));
    return n;
  }

  void step(unsigned char op) {
    using K = PyValue::Kind;
    switch (op) {
      case 0x80: {  // PROTO
        const auto v = le(1);
        if (v > 5) fail_op("protocol " + std::to_string(v) + " is not supported (0-5)");
        break;
      }
      case 0x95: {  // FRAME: length of the next frame; framing is optional, so only bound-checked
        const auto n = le(8);
        if (n > d_.size() - pos_) fail("truncated at byte " + std::to_string(d_.size()) + ": " + op_desc() + " announces " + std::to_string(n) + " bytes, " + std::to_string(d_.size() - pos_) + " left");
        break;
      }
      case '(': marks_.push_back(stack_.size()); break;
      case '0':  // POP (CPython also pops a bare MARK)
        if (stack_.size() > floor()) stack_.pop_back();
        else if (!marks_.empty()) marks_.pop_back();
        else fail_op("stack underflow");
        break;
      case '1': pop_mark(); break;
      case '2': push(top()); break;
      case 'N': push(make(K::None)); break;
      case 0x88: push_bool(true); break;
      case 0x89: push_bool(false); break;
      case 'I': {
        const auto t = line();
        if (t == "01") push_bool(true);
        else if (t == "00") push_bool(false);
        else push_int(parse_decimal(t, "INT"));
        break;
      }
      case 'J': push_int(static_cast<std::int32_t>(static_cast<std::uint32_t>(le(4)))); break;
      case 'K': push_int(static_cast<std::int64_t>(le(1))); break;
      case 'M': push_int(static_cast<std::int64_t>(le(2))); break;
      case 'L': {
        auto t = line();
        if (!t.empty() && t.back() == 'L') t.remove_suffix(1);
        push_int(parse_decimal(t, "LONG"));
        break;
      }
      case 0x8a: long_bytes(le(1)); break;
      case 0x8b: {
        const auto n = static_cast<std::int32_t>(static_cast<std::uint32_t>(le(4)));
        if (n < 0) fail_op("negative length " + std::to_string(n));
        long_bytes(static_cast<std::uint64_t>(n));
        break;
      }
      case 'F': {
        const auto t = line();
        double v = 0;
        auto r = std::from_chars(t.data(), t.data() + t.size(), v);
        if (r.ec == std::errc::result_out_of_range) v = (t.find('-') == 0 ? -HUGE_VAL : HUGE_VAL);
        else if (r.ec != std::errc() || r.ptr != t.data() + t.size() || t.empty()) fail_op("malformed FLOAT '" + printable(t) + "'");
        push_float(v);
        break;
      }
      case 'G': {
        auto s = take(8);
        std::uint64_t bits = 0;
        for (int k = 0; k < 8; ++k) bits = (bits << 8) | static_cast<unsigned char>(s[static_cast<std::size_t>(k)]);
        double v;
        std::memcpy(&v, &bits, 8);
        push_float(v);
        break;
      }
      case 'S': string_repr(line()); break;
      case 'T': {
        const auto n = static_cast<std::int32_t>(static_cast<std::uint32_t>(le(4)));
        if (n < 0) fail_op("negative length " + std::to_string(n));
        push_ascii(take(static_cast<std::uint64_t>(n)));
        break;
      }
      case 'U': push_ascii(take(le(1))); break;
      case 'V': unicode_raw(line()); break;
      case 'X': push_text(std::string(take(le(4)))); break;
      case 0x8c: push_text(std::string(take(le(1)))); break;
      case 0x8d: push_text(std::string(take(le(8)))); break;
      case 'B': push_bytes(take(le(4))); break;
      case 'C': push_bytes(take(le(1))); break;
      case 0x8e: push_bytes(take(le(8))); break;
      case 0x96: push_bytes(take(le(8))); break;  // BYTEARRAY8, read as bytes
      case ']': push(make(K::List)); break;
      case 'l': {
        auto items = pop_mark();
        const auto n = make(K::List);
        nodes_[n].items = std::move(items);
        push(n);
        break;
      }
      case 'a': {
        const auto v = pop();
        nodes_[need(top(), K::List, "APPEND")].items.push_back(v);
        break;
      }
      case 'e': {
        auto items = pop_mark();
        auto& l = nodes_[need(top(), K::List, "APPENDS")].items;
        l.insert(l.end(), items.begin(), items.end());
        break;
      }
      case ')': push(make(K::Tuple)); break;
      case 't': {
        auto items = pop_mark();
        const auto n = make(K::Tuple);
        nodes_[n].items = std::move(items);
        push(n);
        break;
      }
      case 0x85: case 0x86: case 0x87: {
        const std::size_t k = op - 0x84u;
        if (stack_.size() < floor() + k) fail_op("stack underflow");
        std::vector<std::size_t> items(stack_.end() - static_cast<std::ptrdiff_t>(k), stack_.end());
        stack_.resize(stack_.size() - k);
        const auto n = make(K::Tuple);
        nodes_[n].items = std::move(items);
        push(n);
        break;
      }
      case '}': push(make(K::Dict)); break;
      case 'd': {
        auto items = pop_mark();
        if (items.size() % 2) fail_op("odd number of items (" + std::to_string(items.size()) + ") for a dict");
        const auto n = make(K::Dict);
        for (std::size_t k = 0; k < items.size(); k += 2) set_item(n, items[k], items[k + 1]);
        push(n);
        break;
      }
      case 's': {
        const auto v = pop();
        const auto k = pop();
        set_item(need(top(), K::Dict, "SETITEM"), k, v);
        break;
      }
      case 'u': {
        auto items = pop_mark();
        if (items.size() % 2) fail_op("odd number of items (" + std::to_string(items.size()) + ") for a dict");
        const auto dict = need(top(), K::Dict, "SETITEMS");
        for (std::size_t k = 0; k < items.size(); k += 2) set_item(dict, items[k], items[k + 1]);
        break;
      }
      case 'p': {
        const auto t = line();
        const auto id = parse_decimal(t, "PUT id");
        if (id < 0) fail_op("negative memo id");
        memo_put(static_cast<std::uint64_t>(id));
        break;
      }
      case 'q': memo_put(le(1)); break;
      case 'r': memo_put(le(4)); break;
      case 0x94: memo_put(memo_.size()); break;
      case 'g': {
        const auto t = line();
        const auto id = parse_decimal(t, "GET id");
        if (id < 0) fail_op("negative memo id");
        memo_get(static_cast<std::uint64_t>(id));
        break;
      }
      case 'h': memo_get(le(1)); break;
      case 'j': memo_get(le(4)); break;
      default: fail_op("internal error: accepted opcode without a handler");
    }
  }

  std::uint64_t tree_size(std::size_t n, int depth, std::vector<std::uint64_t>& sizes) {
    if (depth > lim_.max_depth)
      fail("nesting deeper than " + std::to_string(lim_.max_depth) + " (limit max_depth), or a container that contains itself");
    if (sizes[n]) return sizes[n];
    const std::uint64_t cap = static_cast<std::uint64_t>(lim_.max_values) + 1;
    std::uint64_t s = 1;
    const Node& x = nodes_[n];
    for (auto c : x.items) s = std::min(cap, s + tree_size(c, depth + 1, sizes));
    for (const auto& e : x.entries) {
      s = std::min(cap, s + tree_size(e.first, depth + 1, sizes));
      s = std::min(cap, s + tree_size(e.second, depth + 1, sizes));
    }
    if (s > lim_.max_values)
      fail("more than " + std::to_string(lim_.max_values) + " values in the result (limit max_values; shared memo references count each time)");
    sizes[n] = s;
    return s;
  }

  PyValue build(std::size_t n, int depth, std::size_t& count) {
    if (depth > lim_.max_depth)
      fail("nesting deeper than " + std::to_string(lim_.max_depth) + " (limit max_depth), or a container that contains itself");
    if (++count > lim_.max_values)
      fail("more than " + std::to_string(lim_.max_values) + " values in the result (limit max_values; shared memo references count each time)");
    const Node& x = nodes_[n];
    switch (x.kind) {
      case PyValue::Kind::None: return PyValue();
      case PyValue::Kind::Bool: return PyValue::boolean(x.b);
      case PyValue::Kind::Int: return PyValue::integer(x.i);
      case PyValue::Kind::Float: return PyValue::real(x.d);
      case PyValue::Kind::Str: return PyValue::str(x.s);
      case PyValue::Kind::Bytes: return PyValue::bytes(x.s);
      case PyValue::Kind::List:
      case PyValue::Kind::Tuple: {
        PyValue::Items items;
        items.reserve(x.items.size());
        for (auto c : x.items) items.push_back(build(c, depth + 1, count));
        return x.kind == PyValue::Kind::List ? PyValue::list(std::move(items)) : PyValue::tuple(std::move(items));
      }
      case PyValue::Kind::Dict: {
        PyValue::Entries en;
        en.reserve(x.entries.size());
        for (const auto& e : x.entries) {
          PyValue k = build(e.first, depth + 1, count);
          en.emplace_back(std::move(k), build(e.second, depth + 1, count));
        }
        return PyValue::dict(std::move(en));
      }
    }
    return PyValue();
  }
};

}  // namespace

PyValue unpickle(std::string_view data, const UnpickleLimits& limits, std::string_view source) {
  return Unpickler(data, limits, source).run();
}

}  // namespace janus
