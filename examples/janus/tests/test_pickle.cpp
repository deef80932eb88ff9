// Tests of janus::PyValue, the pickle writer and the restricted unpickler (examples/janus/pickle.hpp).
// The references are CPython's own pickle module (run at test time as python3) and byte strings
// written by hand from the opcode documentation of CPython's Lib/pickletools.py; expected values
// are written out as literals, never produced by the code under test.
#include <catch2/catch.hpp>

#include <cstdint>
#include <map>
#include <random>
#include <set>
#include <sstream>
#include <string>
#include <vector>

#include "pickle.hpp"
#include "reward_test_util.hpp"

using janus::PickleError;
using janus::PyValue;
using janus_rw_test::read_file;
using janus_rw_test::run_python;
using janus_rw_test::TempDir;
using janus_rw_test::write_file;

namespace {

PyValue I(std::int64_t v) { return PyValue::integer(v); }
PyValue F(double v) { return PyValue::real(v); }
PyValue S(const std::string& v) { return PyValue::str(v); }
PyValue Bt(const std::string& v) { return PyValue::bytes(v); }
PyValue B(bool v) { return PyValue::boolean(v); }
PyValue L(PyValue::Items v) { return PyValue::list(std::move(v)); }
PyValue T(PyValue::Items v) { return PyValue::tuple(std::move(v)); }
PyValue D(PyValue::Entries v) { return PyValue::dict(std::move(v)); }
PyValue None() { return PyValue::none(); }

std::string bin(std::initializer_list<int> bytes) {
  std::string s;
  for (int b : bytes) s += static_cast<char>(b);
  return s;
}
// A literal with its embedded NUL bytes (std::string(const char*) would stop at the first).
template <std::size_t N>
std::string raw(const char (&s)[N]) {
  return std::string(s, N - 1);
}
std::string le8(std::uint64_t v) {
  std::string s;
  for (int k = 0; k < 8; ++k) s += static_cast<char>((v >> (8 * k)) & 0xff);
  return s;
}

std::string error_of(const std::string& data, const janus::UnpickleLimits& lim = {}) {
  try {
    const PyValue v = janus::unpickle(data, lim, "test pickle");
    return "no error; got " + v.repr();
  } catch (const PickleError& e) {
    return e.what();
  }
}

// The reply-shaped dict that the Python script below builds (keep the two in step).
PyValue representative() {
  PyValue::Items longlist;
  for (int i = 0; i < 1500; ++i) longlist.push_back(I(i));
  const double inf = std::numeric_limits<double>::infinity();
  return D({
      {S("scores"), L({F(0.75), F(1.0), F(0.0), F(-2.5), F(1e300), F(inf), F(0.1)})},
      {S("rewards"), L({F(0.0), F(1.0)})},
      {S("strict_rewards"), L({F(1.0), F(0.0)})},
      {S("group_rewards"), D({{S("single_object"), L({F(-10.0), F(1.0)})}, {S("counting"), L({F(0.0), F(-10.0)})}})},
      {S("ints"), L({I(0), I(1), I(255), I(256), I(65535), I(65536), I(-1), I(-256), I(2147483647), I(-2147483648LL), I(2147483648LL),
                     I(1099511627776LL), I(-1099511627776LL), I(INT64_MAX), I(INT64_MIN)})},
      {S("flags"), L({B(true), B(false), None()})},
      {S("text"), L({S(""), S("plain"), S("\xc3\xa9 \xc3\xbc"), S("\xe6\x97\xa5\xe6\x9c\xac"), S("\xf0\x9f\x98\x80"),
                     S(std::string("back\\slash\nnew line\r") + std::string(1, '\0') + "\x1a"), S("'quote\"")})},
      {S("tuple"), T({I(1), S("two"), F(3.0), T({}), T({I(4)}), T({I(5), I(6)}), T({I(7), I(8), I(9)}), T({I(1), I(2), I(3), I(4)})})},
      {S("nested"), D({{S("a"), D({{S("b"), D({{S("c"), L({})}})}})}})},
      {S("shared"), L({L({I(1), I(2)}), L({I(1), I(2)})})},
      {I(1), S("one")},
      {I(-2), S("minus two")},
      {S("long"), L(std::move(longlist))},
      {S("empty"), D({})},
  });
}

const char* kRepresentativePy = R"PY(
import pickle, sys
shared = [1, 2]
v = {
    "scores": [0.75, 1.0, 0.0, -2.5, 1e300, float("inf"), 0.1],
    "rewards": [0.0, 1.0],
    "strict_rewards": [1.0, 0.0],
    "group_rewards": {"single_object": [-10.0, 1.0], "counting": [0.0, -10.0]},
    "ints": [0, 1, 255, 256, 65535, 65536, -1, -256, 2**31 - 1, -2**31, 2**31, 2**40, -2**40, 2**63 - 1, -2**63],
    "flags": [True, False, None],
    "text": ["", "plain", "\u00e9 \u00fc", "\u65e5\u672c", "\U0001F600", "back\\slash\nnew line\r\x00\x1a", "'quote\""],
    "tuple": (1, "two", 3.0, (), (4,), (5, 6), (7, 8, 9), (1, 2, 3, 4)),
    "nested": {"a": {"b": {"c": []}}},
    "shared": [shared, shared],
    1: "one",
    -2: "minus two",
    "long": list(range(1500)),
    "empty": {},
}
proto = int(sys.argv[1])
with open(sys.argv[2], "wb") as f:
    f.write(pickle.dumps(v, protocol=proto))
if proto >= 3:
    b = {"b": b"\x00\xff", "e": b"", "all": bytes(range(256)) * 2}
    if proto >= 5:
        b["ba"] = bytearray(b"ab")
    with open(sys.argv[2] + ".bytes", "wb") as f:
        f.write(pickle.dumps(b, protocol=proto))
)PY";

}  // namespace

// ----- CPython's pickles, every protocol ----------------------------------------------------------

TEST_CASE("unpickle: CPython's pickle.dumps of a reply-shaped dict, protocols 0 to 5", "[pickle]") {
  TempDir dir("py_dumps");
  write_file(dir / "dump.py", kRepresentativePy);
  const PyValue expected = representative();
  std::string all_bytes;
  for (int b = 0; b < 256; ++b) all_bytes += static_cast<char>(b);
  for (int proto = 0; proto <= 5; ++proto) {
    INFO("protocol " << proto);
    const std::string path = dir / ("p" + std::to_string(proto) + ".pkl");
    const auto r = run_python(dir / "dump.py", {std::to_string(proto), path});
    REQUIRE(r.status == 0);
    const PyValue got = janus::unpickle(read_file(path));
    CHECK(got == expected);
    if (got != expected) FAIL_CHECK("got " << got.repr().substr(0, 2000));
    if (proto >= 3) {
      PyValue::Entries e = {{S("b"), Bt(std::string("\0\xff", 2))}, {S("e"), Bt("")}, {S("all"), Bt(all_bytes + all_bytes)}};
      if (proto >= 5) e.push_back({S("ba"), Bt("ab")});
      CHECK(janus::unpickle(read_file(path + ".bytes")) == D(e));
    }
  }
}

TEST_CASE("unpickle: CPython's pickles of shared and self-referencing objects", "[pickle]") {
  TempDir dir("py_shared");
  write_file(dir / "s.py", R"PY(
import pickle, sys
x = []
shared = {"a": x, "b": x}
x.append(7)                    # memoised while empty, filled before the second reference
cyc = []
cyc.append(cyc)                # a list that contains itself
bomb = [1]
for _ in range(40):
    bomb = [bomb, bomb]        # 2**40 leaves through the memo
for name, v in (("shared", shared), ("cyc", cyc), ("bomb", bomb)):
    for p in range(6):
        open(f"{sys.argv[1]}/{name}{p}.pkl", "wb").write(pickle.dumps(v, protocol=p))
)PY");
  REQUIRE(run_python(dir / "s.py", {dir.path.string()}).status == 0);
  for (int p = 0; p <= 5; ++p) {
    INFO("protocol " << p);
    CHECK(janus::unpickle(read_file(dir / ("shared" + std::to_string(p) + ".pkl"))) ==
          D({{S("a"), L({I(7)})}, {S("b"), L({I(7)})}}));
    CHECK_THAT(error_of(read_file(dir / ("cyc" + std::to_string(p) + ".pkl"))), Catch::Contains("contains itself"));
    CHECK_THAT(error_of(read_file(dir / ("bomb" + std::to_string(p) + ".pkl"))), Catch::Contains("max_values"));
  }
}

// ----- the opcode table against pickletools ----------------------------------------------------------

TEST_CASE("unpickle: every pickletools opcode is named, and exactly the importing/calling/outside ones are refused", "[pickle]") {
  TempDir dir("optable");
  write_file(dir / "ops.py", "import pickletools\nfor op in pickletools.opcodes:\n    print(ord(op.code.encode('latin-1')), op.name)\n");
  const auto r = run_python(dir / "ops.py");
  REQUIRE(r.status == 0);
  const std::set<std::string> refused = {"GLOBAL", "STACK_GLOBAL", "REDUCE", "BUILD", "INST", "OBJ", "NEWOBJ", "NEWOBJ_EX",
                                         "EXT1", "EXT2", "EXT4", "PERSID", "BINPERSID", "EMPTY_SET", "ADDITEMS", "FROZENSET",
                                         "NEXT_BUFFER", "READONLY_BUFFER"};
  std::istringstream in(r.output);
  std::map<int, std::string> py;
  int code;
  std::string name;
  while (in >> code >> name) py[code] = name;
  REQUIRE(py.size() == 68);  // CPython 3.8+ (protocol 5)
  std::size_t n_refused = 0;
  for (int b = 0; b < 256; ++b) {
    const auto c = static_cast<unsigned char>(b);
    INFO("byte " << b);
    const std::string data = bin({0x80, 0x02, b, '.'});
    if (!py.count(b)) {
      CHECK(janus::pickle_opcode_name(c) == nullptr);
      CHECK_FALSE(janus::pickle_opcode_accepted(c));
      CHECK_THAT(error_of(data), Catch::Contains("<unknown>") && Catch::Contains("at byte 2 is refused"));
      continue;
    }
    REQUIRE(janus::pickle_opcode_name(c) != nullptr);
    CHECK(std::string(janus::pickle_opcode_name(c)) == py[b]);
    const bool is_refused = refused.count(py[b]) > 0;
    CHECK(janus::pickle_opcode_accepted(c) == !is_refused);
    if (is_refused) {
      ++n_refused;
      CHECK_THAT(error_of(data), Catch::Contains("opcode " + py[b] + " (0x") && Catch::Contains("at byte 2 is refused"));
    } else {
      CHECK_THAT(error_of(data), !Catch::Contains("is refused"));  // may fail otherwise (truncated, underflow), never refused
    }
  }
  CHECK(n_refused == refused.size());
}

// ----- refused opcodes, by hand -----------------------------------------------------------------------

TEST_CASE("unpickle refuses each importing or calling opcode, naming it and its byte offset", "[pickle]") {
  struct Case {
    std::string data, needle;
  };
  const std::vector<Case> cases = {
      {std::string("\x80\x02") + "cposix\nsystem\n(S'echo pwned'\ntR.", "opcode GLOBAL (0x63) at byte 2 is refused"},
      {std::string("\x80\x04\x8c\x05posix\x8c\x06system\x93."), "opcode STACK_GLOBAL (0x93) at byte 17 is refused"},
      {std::string("\x80\x02N)R."), "opcode REDUCE (0x52) at byte 4 is refused"},
      {std::string("\x80\x02}}b."), "opcode BUILD (0x62) at byte 4 is refused"},
      {std::string("(ios\nsystem\n."), "opcode INST (0x69) at byte 1 is refused"},
      {std::string("(N)o."), "opcode OBJ (0x6f) at byte 3 is refused"},
      {std::string("\x80\x02N)\x81."), "opcode NEWOBJ (0x81) at byte 4 is refused"},
      {std::string("\x80\x04N)}\x92."), "opcode NEWOBJ_EX (0x92) at byte 5 is refused"},
      {std::string("\x80\x02\x82\x01."), "opcode EXT1 (0x82) at byte 2 is refused"},
      {std::string("\x80\x02\x83\x01\x02."), "opcode EXT2 (0x83) at byte 2 is refused"},
      {bin({0x80, 0x02, 0x84, 1, 0, 0, 0, '.'}), "opcode EXT4 (0x84) at byte 2 is refused"},
      {std::string("Pid\n."), "opcode PERSID (0x50) at byte 0 is refused"},
      {std::string("\x80\x02NQ."), "opcode BINPERSID (0x51) at byte 3 is refused"},
      {std::string("\x80\x04\x8f."), "opcode EMPTY_SET (0x8f) at byte 2 is refused"},
      {std::string("\x80\x04](\x90."), "opcode ADDITEMS (0x90) at byte 4 is refused"},
      {std::string("\x80\x04(\x91."), "opcode FROZENSET (0x91) at byte 3 is refused"},
      {std::string("\x80\x05\x97."), "opcode NEXT_BUFFER (0x97) at byte 2 is refused"},
      {std::string("\x80\x05N\x98."), "opcode READONLY_BUFFER (0x98) at byte 3 is refused"},
      {bin({0x80, 0x02, 0xff, '.'}), "opcode <unknown> (0xff) at byte 2 is refused"},
      {bin({0x00}), "opcode <unknown> (0x00) at byte 0 is refused"},
      {std::string("<html>"), "opcode <unknown> (0x3c) at byte 0 is refused"},
  };
  for (const auto& c : cases) {
    INFO(c.needle);
    CHECK_THAT(error_of(c.data), Catch::Contains(c.needle));
  }
  // What was asked for is named, so a log shows the attempt.
  CHECK_THAT(error_of(cases[0].data), Catch::Contains("posix.system"));
  CHECK_THAT(error_of(cases[1].data), Catch::Contains("posix.system"));
  CHECK_THAT(error_of(cases[4].data), Catch::Contains("os.system"));
}

// ----- accepted opcodes, by hand -----------------------------------------------------------------------

TEST_CASE("unpickle accepts each data opcode with its documented argument encoding", "[pickle]") {
  struct Case {
    std::string name, data;
    PyValue want;
  };
  const std::vector<Case> cases = {
      {"NONE", "N.", None()},
      {"NEWTRUE", "\x80\x02\x88.", B(true)},
      {"NEWFALSE", "\x80\x02\x89.", B(false)},
      {"INT", "I42\n.", I(42)},
      {"INT negative", "I-7\n.", I(-7)},
      {"INT 01 is True", "I01\n.", B(true)},
      {"INT 00 is False", "I00\n.", B(false)},
      {"BININT", bin({'J', 0xfe, 0xff, 0xff, 0xff, '.'}), I(-2)},
      {"BININT1", bin({'K', 0xff, '.'}), I(255)},
      {"BININT2", bin({'M', 0x00, 0x01, '.'}), I(256)},
      {"LONG", "L12345678901234L\n.", I(12345678901234LL)},
      {"LONG without L", "L-5\n.", I(-5)},
      {"LONG1", bin({0x8a, 0x02, 0xff, 0x7f, '.'}), I(32767)},
      {"LONG1 -1", bin({0x8a, 0x01, 0xff, '.'}), I(-1)},
      {"LONG1 empty is 0", bin({0x8a, 0x00, '.'}), I(0)},
      {"LONG1 sign-extended 9 bytes", bin({0x8a, 0x09, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, '.'}), I(-1)},
      {"LONG1 int64 min", bin({0x8a, 0x08, 0, 0, 0, 0, 0, 0, 0, 0x80, '.'}), I(INT64_MIN)},
      {"LONG4", bin({0x8b, 0x02, 0x00, 0x00, 0x00, 0x00, 0x80, '.'}), I(-32768)},
      {"FLOAT", "F0.5\n.", F(0.5)},
      {"FLOAT exponent", "F1e+300\n.", F(1e300)},
      {"BINFLOAT", bin({'G', 0x3f, 0xe8, 0, 0, 0, 0, 0, 0, '.'}), F(0.75)},
      {"STRING", "S'a\\nb\\x41\\\\'\n.", S("a\nbA\\")},
      {"BINSTRING", bin({'T', 3, 0, 0, 0, 'a', 'b', 'c', '.'}), S("abc")},
      {"SHORT_BINSTRING", "U\x02hi.", S("hi")},
      {"UNICODE escapes", "V\\u00e9t\\U0001f600\n.", S("\xc3\xa9t\xf0\x9f\x98\x80")},
      {"UNICODE latin-1 byte", "V\xe9\n.", S("\xc3\xa9")},
      {"BINUNICODE", bin({'X', 2, 0, 0, 0, 0xc3, 0xa9, '.'}), S("\xc3\xa9")},
      {"SHORT_BINUNICODE", bin({0x8c, 1, 'a', '.'}), S("a")},
      {"BINUNICODE8", std::string("\x8d") + le8(1) + "z.", S("z")},
      {"BINBYTES", bin({'B', 2, 0, 0, 0, 0x00, 0xff, '.'}), Bt(std::string("\0\xff", 2))},
      {"SHORT_BINBYTES", bin({'C', 1, 7, '.'}), Bt("\x07")},
      {"BINBYTES8", std::string("\x8e") + le8(3) + "xyz.", Bt("xyz")},
      {"BYTEARRAY8", std::string("\x96") + le8(2) + "ab.", Bt("ab")},
      {"EMPTY_LIST + APPEND", "]K\x01" "a.", L({I(1)})},
      {"APPENDS", "](K\x01K\x02" "e.", L({I(1), I(2)})},
      {"LIST", "(K\x01K\x02l.", L({I(1), I(2)})},
      {"EMPTY_TUPLE", ").", T({})},
      {"TUPLE", "(K\x01K\x02K\x03K\x04t.", T({I(1), I(2), I(3), I(4)})},
      {"TUPLE1", "K\x01\x85.", T({I(1)})},
      {"TUPLE2", "K\x01K\x02\x86.", T({I(1), I(2)})},
      {"TUPLE3", "K\x01K\x02K\x03\x87.", T({I(1), I(2), I(3)})},
      {"EMPTY_DICT + SETITEM", "}U\x01" "aK\x01s.", D({{S("a"), I(1)}})},
      {"SETITEMS, int key", "}(U\x01" "aK\x01K\x02K\x03u.", D({{S("a"), I(1)}, {I(2), I(3)}})},
      {"DICT", "(U\x01" "aK\x01" "d.", D({{S("a"), I(1)}})},
      {"repeated key keeps first position, last value", "(U\x01" "aK\x01U\x01" "bK\x02U\x01" "aK\x03" "d.", D({{S("a"), I(3)}, {S("b"), I(2)}})},
      {"POP", "K\x01K\x02" "0.", I(1)},
      {"POP_MARK", "K\x01(K\x02K\x03" "1.", I(1)},
      {"DUP shares the object", "]2K\x05" "a0.", L({I(5)})},
      {"PUT/GET", "(]p0\nK\x01" "ag0\nt.", T({L({I(1)}), L({I(1)})})},
      {"BINPUT/BINGET", raw("(]q\x00K\x01" "ah\x00t."), T({L({I(1)}), L({I(1)})})},
      {"LONG_BINPUT/LONG_BINGET", bin({'(', ']', 'r', 5, 0, 0, 0, 'K', 1, 'a', 'j', 5, 0, 0, 0, 't', '.'}), T({L({I(1)}), L({I(1)})})},
      {"MEMOIZE", raw("\x80\x04(]\x94K\x01" "ah\x00t."), T({L({I(1)}), L({I(1)})})},
      {"PROTO 5", "\x80\x05N.", None()},
      {"FRAME", std::string("\x80\x04\x95") + le8(2) + "N.", None()},
  };
  for (const auto& c : cases) {
    INFO(c.name);
    PyValue got;
    REQUIRE_NOTHROW(got = janus::unpickle(c.data));
    CHECK(got.repr() == c.want.repr());
    CHECK(got == c.want);
  }
}

// ----- malformed input ---------------------------------------------------------------------------------

TEST_CASE("unpickle: truncation, trailing bytes and malformed streams are errors that say where", "[pickle]") {
  CHECK_THAT(error_of(""), Catch::Contains("is empty"));
  CHECK_THAT(error_of("N"), Catch::Contains("truncated at byte 1"));
  CHECK_THAT(error_of(bin({'X', 5, 0, 0, 0, 'a', 'b'})), Catch::Contains("truncated at byte 7") && Catch::Contains("BINUNICODE"));
  CHECK_THAT(error_of("I12"), Catch::Contains("truncated at byte 3") && Catch::Contains("newline"));
  CHECK_THAT(error_of(std::string("\x8e") + le8(std::uint64_t(1) << 60) + "."), Catch::Contains("truncated at byte 10"));
  CHECK_THAT(error_of(std::string("\x80\x04\x95") + le8(100) + "N."), Catch::Contains("truncated at byte 13") && Catch::Contains("FRAME"));
  CHECK_THAT(error_of("\x80\x02" "G\x3f\xe8"), Catch::Contains("truncated at byte 5") && Catch::Contains("BINFLOAT"));
  CHECK_THAT(error_of("N.N"), Catch::Contains("1 bytes after STOP"));
  CHECK_THAT(error_of("N.garbage"), Catch::Contains("7 bytes after STOP"));
  CHECK_THAT(error_of("a."), Catch::Contains("APPEND") && Catch::Contains("stack underflow"));
  CHECK_THAT(error_of("](K\x01" "a."), Catch::Contains("stack underflow"));  // the list is below the MARK
  CHECK_THAT(error_of("e."), Catch::Contains("no MARK"));
  CHECK_THAT(error_of("h\x07."), Catch::Contains("memo id 7 was never stored"));
  CHECK_THAT(error_of("NN."), Catch::Contains("2 values on the stack"));
  CHECK_THAT(error_of("(N."), Catch::Contains("MARK is still open"));
  CHECK_THAT(error_of("\x80\x06N."), Catch::Contains("protocol 6 is not supported"));
  CHECK_THAT(error_of("}K\x01" "a."), Catch::Contains("APPEND needs a list"));
  CHECK_THAT(error_of("]K\x01K\x01s."), Catch::Contains("SETITEM needs a dict"));
  CHECK_THAT(error_of("}]K\x01s."), Catch::Contains("dict key of kind list"));
  CHECK_THAT(error_of("}(K\x01u."), Catch::Contains("odd number of items (1)"));
  CHECK_THAT(error_of(bin({'X', 1, 0, 0, 0, 0xff, '.'})), Catch::Contains("not valid UTF-8"));
  CHECK_THAT(error_of(bin({'X', 3, 0, 0, 0, 0xed, 0xa0, 0x80, '.'})), Catch::Contains("not valid UTF-8"));  // a surrogate
  CHECK_THAT(error_of("U\x01\xe9."), Catch::Contains("not ASCII"));
  CHECK_THAT(error_of("V\\ud800\n."), Catch::Contains("lone surrogate"));
  CHECK_THAT(error_of("V\\u00e\n."), Catch::Contains("\\u escape"));
  CHECK_THAT(error_of("Iabc\n."), Catch::Contains("malformed INT"));
  CHECK_THAT(error_of("F1.5x\n."), Catch::Contains("malformed FLOAT"));
  CHECK_THAT(error_of("S'abc\n."), Catch::Contains("not a quoted string"));
  CHECK_THAT(error_of(bin({'T', 0xff, 0xff, 0xff, 0xff, '.'})), Catch::Contains("negative length"));
  // Integers beyond int64 are refused, not wrapped.
  CHECK_THAT(error_of(bin({0x8a, 9, 0, 0, 0, 0, 0, 0, 0, 0x80, 0, '.'})), Catch::Contains("does not fit"));  // 2**63
  CHECK_THAT(error_of("L99999999999999999999L\n."), Catch::Contains("does not fit"));
  CHECK_THAT(error_of("I9223372036854775808\n."), Catch::Contains("does not fit"));
}

TEST_CASE("unpickle: the limits on depth, values and size hold", "[pickle]") {
  auto nested = [](int n) {  // n lists, each holding the next
    return std::string(static_cast<std::size_t>(n), ']') + std::string(static_cast<std::size_t>(n - 1), 'a') + ".";
  };
  janus::UnpickleLimits lim;
  lim.max_depth = 10;
  CHECK_NOTHROW(janus::unpickle(nested(11), lim));  // the outer list at depth 0, the innermost at 10
  CHECK_THAT(error_of(nested(12), lim), Catch::Contains("nesting deeper than 10"));
  CHECK_THAT(error_of(nested(200)), Catch::Contains("nesting deeper than 100"));
  CHECK_THAT(error_of(raw("]q\x00h\x00" "a.")), Catch::Contains("contains itself"));
  // Memo references copied into the tree count: 2**40 leaves from a few hundred bytes.
  std::string bomb = raw("]K\x01" "aq\x00" "0");
  for (int i = 0; i < 40; ++i) bomb += raw("(h\x00h\x00lq\x00" "0");
  bomb += raw("h\x00.");
  CHECK_THAT(error_of(bomb), Catch::Contains("max_values"));
  janus::UnpickleLimits small;
  small.max_values = 3;
  CHECK_NOTHROW(janus::unpickle("(K\x01K\x02l.", small));
  CHECK_THAT(error_of("(K\x01K\x02K\x03l.", small), Catch::Contains("max_values"));
  janus::UnpickleLimits bytes;
  bytes.max_bytes = 4;
  CHECK_NOTHROW(janus::unpickle("K\x01.", bytes));
  CHECK_THAT(error_of("(K\x01K\x02l.", bytes), Catch::Contains("more than the limit of 4"));
}

TEST_CASE("unpickle: random corruptions of CPython pickles fail cleanly", "[pickle]") {
  TempDir dir("fuzz");
  write_file(dir / "dump.py", kRepresentativePy);
  std::mt19937 rng(20251205);
  std::size_t accepted = 0, refused = 0;
  for (int proto = 0; proto <= 5; ++proto) {
    const std::string path = dir / ("p" + std::to_string(proto) + ".pkl");
    REQUIRE(run_python(dir / "dump.py", {std::to_string(proto), path}).status == 0);
    const std::string good = read_file(path);
    for (int it = 0; it < 1000; ++it) {
      std::string bad = good;
      const int kind = static_cast<int>(rng() % 3);
      if (kind == 0) {
        bad.resize(rng() % bad.size());
      } else {
        const int n = 1 + static_cast<int>(rng() % 4);
        for (int k = 0; k < n; ++k) bad[rng() % bad.size()] = static_cast<char>(rng() & 0xff);
      }
      INFO("protocol " << proto << " iteration " << it << " (seed 20251205)");
      try {
        janus::unpickle(bad);
        ++accepted;
      } catch (const PickleError&) {
        ++refused;
      }
    }
  }
  CHECK(refused > 0);
  CHECK(accepted + refused == 6 * 1000);
}

TEST_CASE("unpickle: random opcode soup fails cleanly (no crash, no hang, only PickleError)", "[pickle]") {
  std::vector<unsigned char> ops;
  for (int b = 0; b < 256; ++b)
    if (janus::pickle_opcode_accepted(static_cast<unsigned char>(b))) ops.push_back(static_cast<unsigned char>(b));
  REQUIRE(ops.size() == 50);  // 68 opcodes of pickletools less the 18 refused
  std::mt19937 rng(7);
  std::size_t accepted = 0;
  for (int it = 0; it < 200000; ++it) {
    std::string s;
    const int n = 1 + static_cast<int>(rng() % 48);
    for (int k = 0; k < n; ++k) {
      const unsigned r = rng() % 10;
      if (r < 6) s += static_cast<char>(ops[rng() % ops.size()]);
      else if (r < 8) s += static_cast<char>(rng() % 4);  // small lengths and memo ids
      else if (r < 9) s += '\n';
      else s += static_cast<char>(rng() & 0xff);
    }
    s += '.';
    try {
      janus::unpickle(s);
      ++accepted;
    } catch (const PickleError&) {
    }
  }
  CHECK(accepted > 0);
}

// ----- the writer ---------------------------------------------------------------------------------------

TEST_CASE("pickle_dumps: opcodes and argument encodings, byte for byte", "[pickle]") {
  auto body = [](const PyValue& v) {
    const std::string s = janus::pickle_dumps(v);
    REQUIRE(s.substr(0, 2) == "\x80\x03");
    REQUIRE(s.back() == '.');
    return s.substr(2, s.size() - 3);
  };
  CHECK(body(None()) == "N");
  CHECK(body(B(true)) == "\x88");
  CHECK(body(B(false)) == "\x89");
  CHECK(body(I(1)) == "K\x01");
  CHECK(body(I(300)) == bin({'M', 0x2c, 0x01}));
  CHECK(body(I(-1)) == bin({'J', 0xff, 0xff, 0xff, 0xff}));
  CHECK(body(I(2147483648LL)) == bin({0x8a, 5, 0, 0, 0, 0x80, 0}));
  CHECK(body(I(-2147483649LL)) == bin({0x8a, 5, 0xff, 0xff, 0xff, 0x7f, 0xff}));
  CHECK(body(I(INT64_MIN)) == bin({0x8a, 8, 0, 0, 0, 0, 0, 0, 0, 0x80}));
  CHECK(body(F(0.75)) == bin({'G', 0x3f, 0xe8, 0, 0, 0, 0, 0, 0}));
  CHECK(body(S("\xc3\xa9")) == bin({'X', 2, 0, 0, 0, 0xc3, 0xa9}));
  CHECK(body(Bt("ab")) == bin({'B', 2, 0, 0, 0, 'a', 'b'}));
  CHECK(body(L({})) == "]");
  CHECK(body(L({I(1)})) == "](K\x01" "e");
  CHECK(body(T({})) == ")");
  CHECK(body(T({I(1)})) == "K\x01\x85");
  CHECK(body(D({})) == "}");
  CHECK(body(D({{S("a"), I(1)}})) == bin({'}', '(', 'X', 1, 0, 0, 0, 'a', 'K', 1, 'u'}));
  CHECK_THROWS_WITH(janus::pickle_dumps(S("\xff")), Catch::Contains("not valid UTF-8"));
}

TEST_CASE("pickle_dumps: CPython's pickle.loads reads our bytes as the same value, types included", "[pickle]") {
  TempDir dir("py_loads");
  std::string all_bytes;
  for (int b = 0; b < 256; ++b) all_bytes += static_cast<char>(b);
  PyValue::Items longlist;
  for (int i = 0; i < 2500; ++i) longlist.push_back(I(i * 7 - 3000));
  PyValue::Entries bigdict;
  for (int i = 0; i < 1500; ++i) bigdict.push_back({S("k" + std::to_string(i)), I(i)});
  PyValue v = representative();
  v.set(S("bytes"), L({Bt(all_bytes), Bt("")}));
  v.set(S("longlist"), L(longlist));
  v.set(S("bigdict"), D(bigdict));
  write_file(dir / "ours.pkl", janus::pickle_dumps(v));
  write_file(dir / "check.py", std::string(kRepresentativePy).substr(0, std::string(kRepresentativePy).find("proto = ")) + R"PY(
v["bytes"] = [bytes(range(256)), b""]
v["longlist"] = [i * 7 - 3000 for i in range(2500)]
v["bigdict"] = {"k%d" % i: i for i in range(1500)}
def same(a, b, path="v"):
    assert type(a) is type(b), f"{path}: {type(a).__name__} vs {type(b).__name__}"
    if isinstance(a, dict):
        assert list(a.keys()) == list(b.keys()), f"{path}: keys or their order differ"
        for k in a:
            same(a[k], b[k], f"{path}[{k!r}]")
    elif isinstance(a, (list, tuple)):
        assert len(a) == len(b), f"{path}: length {len(a)} vs {len(b)}"
        for i, (x, y) in enumerate(zip(a, b)):
            same(x, y, f"{path}[{i}]")
    else:
        assert a == b, f"{path}: {a!r} vs {b!r}"
got = pickle.loads(open(sys.argv[1], "rb").read())
same(got, v)
print("same")
)PY");
  const auto r = run_python(dir / "check.py", {dir / "ours.pkl"});
  INFO(r.output);
  CHECK(r.status == 0);
  CHECK(r.output == "same\n");
  // And our reader reads our writer.
  CHECK(janus::unpickle(janus::pickle_dumps(v)) == v);
}

TEST_CASE("PyValue: accessors name the kinds, dict keys are checked", "[pickle]") {
  CHECK_THROWS_WITH(I(1).as_str(), Catch::Contains("expected str, got int"));
  CHECK(I(3).as_double() == 3.0);
  CHECK(B(true).as_double() == 1.0);
  CHECK_THROWS_AS(D({{L({}), I(1)}}), std::invalid_argument);
  PyValue d = D({{S("x"), I(1)}});
  CHECK(d.find("x") != nullptr);
  CHECK(d.find("y") == nullptr);
  CHECK(D({{S("a"), I(1)}, {S("a"), I(2)}}).entries().size() == 1);
  CHECK(T({I(1)}).repr() == "(1,)");
  CHECK(D({{S("a"), Bt(std::string("\0", 1))}}).repr() == "{'a': b'\\x00'}");
}
