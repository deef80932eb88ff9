// examples/janus/pickle.hpp - Python pickle for the reward-server protocol: a small value type,
// a writer (protocol 3) whose output CPython's pickle.loads reads, and a RESTRICTED unpickler.
//
// Why restricted: a pickle is a program for a stack machine, and CPython's unpickler imports any
// global and calls it (GLOBAL "posix system" + REDUCE runs a shell command). The reward server's
// reply comes over HTTP, so reading it with a full unpickler would let whoever answers on that
// port run code in the trainer. janus::unpickle accepts only the opcodes that build plain data
// (None, bool, int, float, str, bytes, list, tuple, dict, memo, marks, frames) and refuses every
// opcode that imports, calls or reaches outside the byte string, naming the opcode and its byte
// offset. Plain C++17; no Python needed at run time.
#pragma once

#include <cstddef>
#include <cstdint>
#include <stdexcept>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace janus {

/// A Python value of the kinds a reward server exchanges. Containers own their elements (a tree:
/// objects shared inside a pickle through its memo come out as copies). Dict keys are str or
/// int, kept in insertion order as Python does.
class PyValue {
 public:
  enum class Kind { None, Bool, Int, Float, Str, Bytes, List, Tuple, Dict };
  using Items = std::vector<PyValue>;
  using Entries = std::vector<std::pair<PyValue, PyValue>>;

  PyValue() = default;  ///< None
  static PyValue none() { return PyValue(); }
  static PyValue boolean(bool b);
  static PyValue integer(std::int64_t i);
  static PyValue real(double d);
  static PyValue str(std::string utf8);  ///< text; must be valid UTF-8 when written
  static PyValue bytes(std::string raw);
  static PyValue bytes(const std::vector<std::uint8_t>& raw);
  static PyValue list(Items items = {});
  static PyValue tuple(Items items = {});
  /// A dict; keys must be str or int (checked), a repeated key keeps its first position and its
  /// last value, as a Python dict literal does.
  static PyValue dict(Entries entries = {});

  Kind kind() const { return kind_; }
  bool is_none() const { return kind_ == Kind::None; }
  bool is_number() const { return kind_ == Kind::Int || kind_ == Kind::Float || kind_ == Kind::Bool; }

  // Accessors throw std::invalid_argument naming the expected and the actual kind.
  bool as_bool() const;
  std::int64_t as_int() const;
  double as_double() const;  ///< Float, Int or Bool (Python's numeric tower)
  const std::string& as_str() const;
  const std::string& as_bytes() const;
  const Items& items() const;      ///< List or Tuple
  const Entries& entries() const;  ///< Dict
  /// Dict lookup by str key; nullptr when absent (throws when this is not a dict).
  const PyValue* find(std::string_view key) const;

  // Mutators for building values (throw on the wrong kind).
  void append(PyValue v);                 ///< List
  void set(PyValue key, PyValue value);   ///< Dict (same rules as dict())

  /// Python-like repr, for messages and tests: None, True, 3, 0.75, 'a', b'\x00', [..], (..,), {..}.
  std::string repr() const;

  friend bool operator==(const PyValue& a, const PyValue& b);
  friend bool operator!=(const PyValue& a, const PyValue& b) { return !(a == b); }

 private:
  Kind kind_ = Kind::None;
  bool b_ = false;
  std::int64_t i_ = 0;
  double d_ = 0.0;
  std::string s_;   // Str (UTF-8) or Bytes
  Items items_;     // List, Tuple
  Entries entries_; // Dict
};

/// "None", "bool", "int", "float", "str", "bytes", "list", "tuple", "dict".
const char* kind_name(PyValue::Kind k);

/// Any pickle problem: a refused opcode, truncation, a limit, a malformed argument.
class PickleError : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

/// Serialise with pickle protocol 3 (CPython >= 3.0 loads it; bytes as BINBYTES, str as
/// BINUNICODE). Throws PickleError for a str that is not valid UTF-8 (CPython would refuse it)
/// or nesting deeper than 1000.
std::string pickle_dumps(const PyValue& v);

/// Bounds of the restricted unpickler; input beyond them is refused, never truncated silently.
struct UnpickleLimits {
  std::size_t max_bytes = std::size_t(256) << 20;  ///< whole pickle
  int max_depth = 100;                              ///< container nesting of the result (recursion depth of the reader)
  std::size_t max_values = 1'000'000;               ///< values created, and values in the result (checked before it is built)
};

/// Read a pickle of protocol 0 to 5 that holds only plain data. `source` names the input in
/// messages ("reply of http://127.0.0.1:18085 batch 0").
///
/// Accepted opcodes: PROTO, FRAME, STOP, MARK, POP, POP_MARK, DUP, memo (PUT, BINPUT, LONG_BINPUT,
/// MEMOIZE, GET, BINGET, LONG_BINGET), NONE, NEWTRUE, NEWFALSE, INT (incl. protocol 0's "01"/"00"
/// booleans), BININT, BININT1, BININT2, LONG, LONG1, LONG4 (values must fit in int64), FLOAT,
/// BINFLOAT, STRING, BINSTRING, SHORT_BINSTRING (ASCII only, as CPython's default encoding),
/// UNICODE, BINUNICODE, SHORT_BINUNICODE, BINUNICODE8, BINBYTES, SHORT_BINBYTES, BINBYTES8,
/// BYTEARRAY8 (read as bytes), EMPTY_LIST, LIST, APPEND, APPENDS, EMPTY_TUPLE, TUPLE, TUPLE1-3,
/// EMPTY_DICT, DICT, SETITEM, SETITEMS (keys str or int).
///
/// Refused, with PickleError "opcode NAME (0xHH) at byte N ...": GLOBAL, STACK_GLOBAL, INST, OBJ,
/// REDUCE, BUILD, NEWOBJ, NEWOBJ_EX, EXT1, EXT2, EXT4 (import or call), PERSID, BINPERSID,
/// NEXT_BUFFER, READONLY_BUFFER (reach outside the bytes), EMPTY_SET, ADDITEMS, FROZENSET (no set
/// kind here), and every unknown byte. Also errors: "truncated at byte N", bytes after STOP, a
/// stack or mark underflow, an unknown memo id, a result that is not exactly one value, and the
/// limits above (a self-containing list exceeds max_depth).
PyValue unpickle(std::string_view data, const UnpickleLimits& limits = {}, std::string_view source = "pickle");

/// The opcode's name as pickletools spells it ("GLOBAL"), or nullptr for a byte that is no opcode.
const char* pickle_opcode_name(unsigned char op);
/// Whether unpickle() accepts the opcode (false for refused and unknown bytes).
bool pickle_opcode_accepted(unsigned char op);

}  // namespace janus
