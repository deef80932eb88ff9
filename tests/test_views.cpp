// Unit tests of gcpo/status.hpp, gcpo/dtype.hpp, gcpo/tensor_view.hpp, gcpo/dlpack.hpp and the
// workspace helpers of gcpo/detail/validate.hpp. Expected values come from the definitions
// (IEEE formats decoded by hand in unit_support.hpp, a brute-force nearest-even search over the
// 16-bit grids), never from the code under test.
#include <catch2/catch.hpp>

#include <gcpo/dlpack.hpp>
#include <gcpo/gcpo.hpp>

#include <cmath>
#include <cstdint>
#include <cstring>
#include <random>
#include <string>
#include <type_traits>
#include <vector>

#include "unit_support.hpp"

using namespace gcpo_test;

namespace {

float bits_float(std::uint32_t u) {
  float f;
  std::memcpy(&f, &u, 4);
  return f;
}
std::uint32_t float_bits(float f) {
  std::uint32_t u;
  std::memcpy(&u, &f, 4);
  return u;
}

/// Value of the non-negative 16-bit pattern h on its grid, where the pattern of +inf stands for
/// the first value of the next binade (so rounding past the largest finite value goes to inf).
double grid_value(std::uint16_t h, bool fp16) {
  if (fp16) return h == 0x7c00u ? 65536.0 : fp16_value(h);
  return h == 0x7f80u ? std::ldexp(1.0, 128) : bf16_value(h);
}

/// Round-to-nearest-even of a finite or infinite (non-NaN) float onto the 16-bit grid, by
/// binary search over the monotone non-negative patterns: the reference for from_float.
std::uint16_t nearest_even(float f, bool fp16) {
  const std::uint16_t sign = std::signbit(f) ? 0x8000u : 0u;
  const double a = std::fabs(static_cast<double>(f));
  const std::uint16_t top = fp16 ? 0x7c00u : 0x7f80u;
  if (a >= grid_value(top, fp16)) return static_cast<std::uint16_t>(sign | top);
  // largest h in [0, top) with value(h) <= a
  std::uint32_t lo = 0, hi = top;  // value(lo) <= a < value(hi)
  while (hi - lo > 1) {
    const std::uint32_t mid = (lo + hi) / 2;
    if (grid_value(static_cast<std::uint16_t>(mid), fp16) <= a) lo = mid;
    else hi = mid;
  }
  const double below = a - grid_value(static_cast<std::uint16_t>(lo), fp16);
  const double above = grid_value(static_cast<std::uint16_t>(hi), fp16) - a;
  std::uint32_t h = lo;
  if (above < below || (above == below && (lo & 1u))) h = hi;
  return static_cast<std::uint16_t>(sign | h);
}

template <class T>
std::uint16_t lib_bits(float f) {
  return T::from_float(f).bits;
}

/// Checks from_float against the reference on `inputs`; reports the first few mismatches.
template <class T>
void check_rounding(const std::vector<float>& inputs, bool fp16, const char* what) {
  std::size_t bad = 0;
  std::string report;
  for (float f : inputs) {
    if (std::isnan(f)) continue;
    const std::uint16_t want = nearest_even(f, fp16), got = lib_bits<T>(f);
    if (want != got) {
      if (bad < 5) {
        char buf[160];
        std::snprintf(buf, sizeof buf, "%s(%.9g = 0x%08x): got 0x%04x, expected 0x%04x\n", what, static_cast<double>(f),
                      float_bits(f), got, want);
        report += buf;
      }
      ++bad;
    }
  }
  INFO(report << bad << " of " << inputs.size() << " off");
  CHECK(bad == 0);
}

/// Every midpoint between neighbouring non-negative grid values (exact ties), one float ulp
/// either side of it, and the grid values themselves, with both signs.
std::vector<float> tie_inputs(bool fp16) {
  std::vector<float> v;
  const std::uint32_t top = fp16 ? 0x7c00u : 0x7f80u;
  bool exact = true;
  for (std::uint32_t h = 0; h < top; ++h) {
    const double a = grid_value(static_cast<std::uint16_t>(h), fp16);
    const double b = grid_value(static_cast<std::uint16_t>(h + 1), fp16);
    const float mid = static_cast<float>((a + b) / 2);  // exact: 12 (9) significant bits fit a float
    exact = exact && static_cast<double>(mid) == (a + b) / 2;
    for (float x : {static_cast<float>(a), mid, std::nextafter(mid, 0.0f), std::nextafter(mid, inf_f)}) {
      v.push_back(x);
      v.push_back(-x);
    }
  }
  REQUIRE(exact);
  return v;
}

}  // namespace

// ------------------------------------------------------------------------------------------
// status

TEST_CASE("status: success, codes and names", "[views][status]") {
  const gcpo::status s;
  CHECK(s.ok());
  CHECK(static_cast<bool>(s));
  CHECK(s.code() == gcpo::status_code::success);
  CHECK(std::string(s.message()).empty());
  CHECK(gcpo::ok().ok());
  STATIC_REQUIRE(std::is_trivially_copyable<gcpo::status>::value);

  CHECK(std::string(gcpo::to_string(gcpo::status_code::success)) == "success");
  CHECK(std::string(gcpo::to_string(gcpo::status_code::invalid_argument)) == "invalid_argument");
  CHECK(std::string(gcpo::to_string(gcpo::status_code::unsupported_dtype)) == "unsupported_dtype");
  CHECK(std::string(gcpo::to_string(gcpo::status_code::wrong_memory_space)) == "wrong_memory_space");
  CHECK(std::string(gcpo::to_string(gcpo::status_code::aliasing)) == "aliasing");
  CHECK(std::string(gcpo::to_string(gcpo::status_code::workspace_too_small)) == "workspace_too_small");
  CHECK(std::string(gcpo::to_string(gcpo::status_code::non_finite)) == "non_finite");
  CHECK(std::string(gcpo::to_string(gcpo::status_code::cuda_error)) == "cuda_error");
  CHECK(std::string(gcpo::to_string(gcpo::status_code::out_of_memory)) == "out_of_memory");
  CHECK(std::string(gcpo::to_string(static_cast<gcpo::status_code>(99))) == "unknown");
}

TEST_CASE("status: formatted message, copy", "[views][status]") {
  const gcpo::status e =
      gcpo::status::error(gcpo::status_code::invalid_argument, "`%s.shape[%d]` (%lld) bad", "tokens", 1, 575LL);
  CHECK_FALSE(e.ok());
  CHECK_FALSE(static_cast<bool>(e));
  CHECK(e.code() == gcpo::status_code::invalid_argument);
  CHECK(std::string(e.message()) == "`tokens.shape[1]` (575) bad");
  const gcpo::status copy = e;
  CHECK(copy.code() == e.code());
  CHECK(std::string(copy.message()) == e.message());
}

TEST_CASE("status: long messages are truncated with an ellipsis", "[views][status]") {
  const std::size_t max = gcpo::status::max_message;
  REQUIRE(max == 256);
  // exactly max - 1 characters: fits, no ellipsis
  const std::string fits(max - 1, 'a');
  const gcpo::status a = gcpo::status::error(gcpo::status_code::aliasing, "%s", fits.c_str());
  CHECK(std::string(a.message()) == fits);
  // one more: truncated to max - 1 characters ending in "..."
  const std::string longer(max, 'b');
  const gcpo::status b = gcpo::status::error(gcpo::status_code::aliasing, "%s", longer.c_str());
  const std::string mb = b.message();
  CHECK(mb.size() == max - 1);
  CHECK(mb == std::string(max - 4, 'b') + "...");
  // far longer
  const std::string huge(5000, 'c');
  const gcpo::status c = gcpo::status::error(gcpo::status_code::aliasing, "x%sy", huge.c_str());
  const std::string mc = c.message();
  CHECK(mc.size() == max - 1);
  CHECK(mc.substr(0, 2) == "xc");
  CHECK(mc.substr(mc.size() - 3) == "...");
  CHECK(c.code() == gcpo::status_code::aliasing);
}

namespace {
int try_calls = 0;
gcpo::status fails() { return gcpo::status::error(gcpo::status_code::non_finite, "first"); }
gcpo::status succeeds() { return gcpo::ok(); }
gcpo::status chain(bool fail_first) {
  GCPO_TRY(succeeds());
  ++try_calls;
  if (fail_first) GCPO_TRY(fails());
  ++try_calls;
  return gcpo::status::error(gcpo::status_code::cuda_error, "end");
}
}  // namespace

TEST_CASE("status: GCPO_TRY returns the first failure", "[views][status]") {
  try_calls = 0;
  const gcpo::status a = chain(true);
  CHECK(a.code() == gcpo::status_code::non_finite);
  CHECK(std::string(a.message()) == "first");
  CHECK(try_calls == 1);
  try_calls = 0;
  const gcpo::status b = chain(false);
  CHECK(b.code() == gcpo::status_code::cuda_error);
  CHECK(try_calls == 2);
}

// ------------------------------------------------------------------------------------------
// dtypes

TEST_CASE("dtype: sizes, names, compile-time mapping", "[views][dtype]") {
  CHECK(gcpo::dtype_size(gcpo::dtype::float32) == 4);
  CHECK(gcpo::dtype_size(gcpo::dtype::bfloat16) == 2);
  CHECK(gcpo::dtype_size(gcpo::dtype::float16) == 2);
  CHECK(gcpo::dtype_size(gcpo::dtype::int32) == 4);
  CHECK(gcpo::dtype_size(gcpo::dtype::int64) == 8);
  CHECK(gcpo::dtype_size(gcpo::dtype::uint8) == 1);
  CHECK(std::string(gcpo::to_string(gcpo::dtype::float32)) == "float32");
  CHECK(std::string(gcpo::to_string(gcpo::dtype::bfloat16)) == "bfloat16");
  CHECK(std::string(gcpo::to_string(gcpo::dtype::float16)) == "float16");
  CHECK(std::string(gcpo::to_string(gcpo::dtype::int32)) == "int32");
  CHECK(std::string(gcpo::to_string(gcpo::dtype::int64)) == "int64");
  CHECK(std::string(gcpo::to_string(gcpo::dtype::uint8)) == "uint8");
  STATIC_REQUIRE(gcpo::dtype_of<float>::value == gcpo::dtype::float32);
  STATIC_REQUIRE(gcpo::dtype_of<const gcpo::bfloat16>::value == gcpo::dtype::bfloat16);
  STATIC_REQUIRE(gcpo::dtype_of<gcpo::float16>::value == gcpo::dtype::float16);
  STATIC_REQUIRE(gcpo::dtype_of<const std::int32_t>::value == gcpo::dtype::int32);
  STATIC_REQUIRE(gcpo::dtype_of<std::int64_t>::value == gcpo::dtype::int64);
  STATIC_REQUIRE(gcpo::dtype_of<std::uint8_t>::value == gcpo::dtype::uint8);
  STATIC_REQUIRE(sizeof(gcpo::bfloat16) == 2);
  STATIC_REQUIRE(sizeof(gcpo::float16) == 2);
}

TEST_CASE("dtype: bfloat16 widening is exact for every bit pattern", "[views][dtype]") {
  std::size_t bad = 0;
  for (std::uint32_t b = 0; b < 0x10000u; ++b) {
    const gcpo::bfloat16 x{static_cast<std::uint16_t>(b)};
    const double want = bf16_value(x.bits);
    const double got = x.to_float();
    const bool ok = std::isnan(want) ? std::isnan(got) : (got == want && std::signbit(got) == std::signbit(want));
    bad += ok ? 0 : 1;
    const float via_free = gcpo::to_float(x);
    bad += float_bits(via_free) == float_bits(x.to_float()) ? 0 : 1;
  }
  CHECK(bad == 0);
}

TEST_CASE("dtype: float16 widening is exact for every bit pattern (subnormals, inf, NaN)", "[views][dtype]") {
  std::size_t bad = 0;
  std::string report;
  for (std::uint32_t b = 0; b < 0x10000u; ++b) {
    const gcpo::float16 x{static_cast<std::uint16_t>(b)};
    const double want = fp16_value(x.bits);
    const double got = x.to_float();
    const bool ok = std::isnan(want) ? std::isnan(got) : (got == want && std::signbit(got) == std::signbit(want));
    if (!ok && bad++ < 5) report += std::to_string(b) + ": got " + std::to_string(got) + " want " + std::to_string(want) + "\n";
  }
  INFO(report);
  CHECK(bad == 0);
  // hand-picked values
  CHECK(gcpo::float16{0x0001}.to_float() == std::ldexp(1.0f, -24));  // smallest subnormal
  CHECK(gcpo::float16{0x03ff}.to_float() == 1023.0f * std::ldexp(1.0f, -24));
  CHECK(gcpo::float16{0x0400}.to_float() == std::ldexp(1.0f, -14));  // smallest normal
  CHECK(gcpo::float16{0x3c00}.to_float() == 1.0f);
  CHECK(gcpo::float16{0x7bff}.to_float() == 65504.0f);
  CHECK(gcpo::float16{0xc000}.to_float() == -2.0f);
  CHECK(gcpo::float16{0x7c00}.to_float() == inf_f);
  CHECK(gcpo::float16{0xfc00}.to_float() == -inf_f);
  CHECK(std::isnan(gcpo::float16{0x7e00}.to_float()));
  CHECK(std::isnan(gcpo::float16{0x7c01}.to_float()));
  CHECK(std::signbit(gcpo::float16{0x8000}.to_float()));
}

TEST_CASE("dtype: 16-bit round trip of every representable value", "[views][dtype]") {
  std::size_t bad_bf = 0, bad_h = 0;
  for (std::uint32_t b = 0; b < 0x10000u; ++b) {
    const std::uint16_t bits = static_cast<std::uint16_t>(b);
    const float fb = gcpo::bfloat16{bits}.to_float();
    const gcpo::bfloat16 rb = gcpo::bfloat16::from_float(fb);
    if (std::isnan(fb) ? !std::isnan(rb.to_float()) : rb.bits != bits) ++bad_bf;
    const float fh = gcpo::float16{bits}.to_float();
    const gcpo::float16 rh = gcpo::float16::from_float(fh);
    if (std::isnan(fh) ? !std::isnan(rh.to_float()) : rh.bits != bits) ++bad_h;
  }
  CHECK(bad_bf == 0);
  CHECK(bad_h == 0);
  CHECK(gcpo::from_float<float>(1.25f) == 1.25f);
  CHECK(gcpo::from_float<gcpo::bfloat16>(1.0f).bits == 0x3f80u);
  CHECK(gcpo::from_float<gcpo::float16>(1.0f).bits == 0x3c00u);
}

TEST_CASE("dtype: bfloat16 narrowing rounds to nearest even", "[views][dtype]") {
  // hand cases around 1.0 (ulp 2^-7)
  CHECK(lib_bits<gcpo::bfloat16>(bits_float(0x3f808000u)) == 0x3f80u);  // tie, even below
  CHECK(lib_bits<gcpo::bfloat16>(bits_float(0x3f818000u)) == 0x3f82u);  // tie, even above
  CHECK(lib_bits<gcpo::bfloat16>(bits_float(0x3f808001u)) == 0x3f81u);  // just above the tie
  CHECK(lib_bits<gcpo::bfloat16>(bits_float(0x3f807fffu)) == 0x3f80u);  // just below
  CHECK(lib_bits<gcpo::bfloat16>(bits_float(0xbf818000u)) == 0xbf82u);  // negative tie
  CHECK(lib_bits<gcpo::bfloat16>(-0.0f) == 0x8000u);
  CHECK(lib_bits<gcpo::bfloat16>(inf_f) == 0x7f80u);
  CHECK(lib_bits<gcpo::bfloat16>(-inf_f) == 0xff80u);
  CHECK(lib_bits<gcpo::bfloat16>(std::numeric_limits<float>::max()) == 0x7f80u);  // rounds to inf
  CHECK(lib_bits<gcpo::bfloat16>(bits_float(0x7f7f7fffu)) == 0x7f7fu);           // stays finite
  // float subnormals keep their top bits
  CHECK(lib_bits<gcpo::bfloat16>(bits_float(0x00010000u)) == 0x0001u);
  CHECK(lib_bits<gcpo::bfloat16>(bits_float(0x00008000u)) == 0x0000u);  // tie to even (0)
  CHECK(lib_bits<gcpo::bfloat16>(bits_float(0x00018000u)) == 0x0002u);  // tie to even (2)
  // NaN stays NaN, including a signalling NaN whose payload is only in the low bits
  CHECK(std::isnan(gcpo::bfloat16::from_float(nan_f).to_float()));
  CHECK(std::isnan(gcpo::bfloat16::from_float(bits_float(0x7f800001u)).to_float()));
  CHECK(std::isnan(gcpo::bfloat16::from_float(bits_float(0xff800001u)).to_float()));

  check_rounding<gcpo::bfloat16>(tie_inputs(false), false, "bfloat16 ties");
  std::mt19937_64 rng(20240601);
  CAPTURE(20240601);
  std::vector<float> random;
  std::uniform_int_distribution<std::uint32_t> bits;
  for (int i = 0; i < 200000; ++i) random.push_back(bits_float(bits(rng)));
  check_rounding<gcpo::bfloat16>(random, false, "bfloat16 random bits");
}

TEST_CASE("dtype: float16 narrowing rounds to nearest even (subnormals, overflow)", "[views][dtype]") {
  CHECK(lib_bits<gcpo::float16>(1.0f + std::ldexp(1.0f, -11)) == 0x3c00u);                       // tie, even below
  CHECK(lib_bits<gcpo::float16>(1.0f + 3 * std::ldexp(1.0f, -11)) == 0x3c02u);                   // tie, even above
  CHECK(lib_bits<gcpo::float16>(std::nextafter(1.0f + std::ldexp(1.0f, -11), 2.0f)) == 0x3c01u);  // above the tie
  CHECK(lib_bits<gcpo::float16>(65504.0f) == 0x7bffu);
  CHECK(lib_bits<gcpo::float16>(65519.0f) == 0x7bffu);
  CHECK(lib_bits<gcpo::float16>(65520.0f) == 0x7c00u);  // tie between 65504 and 65536: even = inf
  CHECK(lib_bits<gcpo::float16>(-1e6f) == 0xfc00u);
  CHECK(lib_bits<gcpo::float16>(inf_f) == 0x7c00u);
  CHECK(lib_bits<gcpo::float16>(-0.0f) == 0x8000u);
  CHECK(lib_bits<gcpo::float16>(std::ldexp(1.0f, -24)) == 0x0001u);       // smallest subnormal
  CHECK(lib_bits<gcpo::float16>(std::ldexp(1.0f, -25)) == 0x0000u);       // tie with 0: even
  CHECK(lib_bits<gcpo::float16>(std::nextafter(std::ldexp(1.0f, -25), 1.0f)) == 0x0001u);
  CHECK(lib_bits<gcpo::float16>(3 * std::ldexp(1.0f, -25)) == 0x0002u);   // tie between 1 and 2
  CHECK(lib_bits<gcpo::float16>(std::ldexp(1.0f, -14)) == 0x0400u);       // smallest normal
  CHECK(lib_bits<gcpo::float16>(1023.5f * std::ldexp(1.0f, -24)) == 0x0400u);  // tie, rounds up into the normals
  CHECK(lib_bits<gcpo::float16>(std::ldexp(1.0f, -100)) == 0x0000u);
  CHECK(lib_bits<gcpo::float16>(-std::ldexp(1.0f, -100)) == 0x8000u);
  CHECK(std::isnan(gcpo::float16::from_float(nan_f).to_float()));
  CHECK(std::isnan(gcpo::float16::from_float(bits_float(0x7f800001u)).to_float()));

  check_rounding<gcpo::float16>(tie_inputs(true), true, "float16 ties");
  const std::uint64_t seed = 77;
  CAPTURE(seed);
  std::mt19937_64 rng(seed);
  std::vector<float> random;
  std::uniform_real_distribution<double> mant(1.0, 2.0);
  std::uniform_int_distribution<int> ex(-30, 17);
  for (int i = 0; i < 200000; ++i) {
    const float f = static_cast<float>(std::ldexp(mant(rng), ex(rng)));
    random.push_back(i % 2 ? f : -f);
  }
  std::uniform_int_distribution<std::uint32_t> bits;
  for (int i = 0; i < 50000; ++i) random.push_back(bits_float(bits(rng)));
  check_rounding<gcpo::float16>(random, true, "float16 random");
}

// ------------------------------------------------------------------------------------------
// views

TEST_CASE("views: make_view is row-major with the given shape", "[views]") {
  std::vector<float> buf(24);
  const gcpo::tensor_view v = gcpo::make_view(buf.data(), {2, 3, 4});
  CHECK(v.data == buf.data());
  CHECK(v.type == gcpo::dtype::float32);
  CHECK(v.space == gcpo::memory_space::host);
  CHECK(v.rank == 3);
  CHECK(v.shape[0] == 2);
  CHECK(v.shape[1] == 3);
  CHECK(v.shape[2] == 4);
  CHECK(v.strides[0] == 12);
  CHECK(v.strides[1] == 4);
  CHECK(v.strides[2] == 1);
  CHECK(v.numel() == 24);
  CHECK(v.is_contiguous());
  CHECK(v.present());
  CHECK_FALSE(v.absent());
  CHECK(v.as<float>() == buf.data());

  std::vector<std::int64_t> i64(5);
  const gcpo::tensor_view w = gcpo::make_view(i64.data(), {5});
  CHECK(w.type == gcpo::dtype::int64);
  CHECK(w.rank == 1);
  CHECK(w.strides[0] == 1);

  std::vector<std::uint8_t> u8(2 * 3 * 4 * 5);
  const gcpo::tensor_view r4 = gcpo::make_view(u8.data(), {2, 3, 4, 5});
  CHECK(r4.type == gcpo::dtype::uint8);
  CHECK(r4.strides[0] == 60);
  CHECK(r4.strides[1] == 20);
  CHECK(r4.strides[2] == 5);
  CHECK(r4.strides[3] == 1);
  CHECK(r4.numel() == 120);

  const gcpo::tensor_view d = gcpo::make_device_view(buf.data(), {4, 6});
  CHECK(d.space == gcpo::memory_space::device);
  CHECK(d.strides[0] == 6);
  CHECK(gcpo::make_view(buf.data(), {24}, gcpo::memory_space::device).space == gcpo::memory_space::device);
  CHECK(std::string(gcpo::to_string(gcpo::memory_space::host)) == "host");
  CHECK(std::string(gcpo::to_string(gcpo::memory_space::device)) == "device");
}

TEST_CASE("views: const data gives an input view, output views convert to input views", "[views]") {
  const std::vector<gcpo::bfloat16> cbuf(6);
  auto cv = gcpo::make_view(cbuf.data(), {2, 3});
  STATIC_REQUIRE(std::is_same<decltype(cv), gcpo::const_tensor_view>::value);
  CHECK(cv.type == gcpo::dtype::bfloat16);
  CHECK(cv.as<const gcpo::bfloat16>() == cbuf.data());

  std::vector<gcpo::float16> buf(30);
  auto v = gcpo::make_strided_view(buf.data(), {2, 3}, {15, 4});
  STATIC_REQUIRE(std::is_same<decltype(v), gcpo::tensor_view>::value);
  const gcpo::const_tensor_view c = v;  // implicit conversion
  CHECK(c.data == v.data);
  CHECK(c.type == gcpo::dtype::float16);
  CHECK(c.space == v.space);
  CHECK(c.rank == 2);
  CHECK(c.shape[0] == 2);
  CHECK(c.shape[1] == 3);
  CHECK(c.strides[0] == 15);
  CHECK(c.strides[1] == 4);
  STATIC_REQUIRE(std::is_convertible<gcpo::tensor_view, gcpo::const_tensor_view>::value);
  STATIC_REQUIRE_FALSE(std::is_convertible<gcpo::const_tensor_view, gcpo::tensor_view>::value);
  STATIC_REQUIRE(std::is_trivially_copyable<gcpo::tensor_view>::value);
  STATIC_REQUIRE(std::is_trivially_copyable<gcpo::const_tensor_view>::value);
}

TEST_CASE("views: absent views, numel, rank 0", "[views]") {
  const gcpo::const_tensor_view a;
  CHECK(a.absent());
  CHECK_FALSE(a.present());
  CHECK(a.numel() == 0);
  CHECK(a.rank == 0);
  CHECK(a.data == nullptr);

  float x = 1.0f;
  const gcpo::tensor_view scalar = gcpo::make_view(&x, {});
  CHECK(scalar.rank == 0);
  CHECK(scalar.present());
  CHECK(scalar.numel() == 1);
  CHECK(scalar.is_contiguous());

  std::vector<float> buf(4);
  const gcpo::tensor_view empty = gcpo::make_view(buf.data(), {3, 0, 2});
  CHECK(empty.present());
  CHECK(empty.numel() == 0);

  // a view with a null pointer but a shape is present (and rejected by validators, see below)
  const gcpo::tensor_view nul = gcpo::make_view(static_cast<float*>(nullptr), {2});
  CHECK(nul.present());
  CHECK(nul.numel() == 2);
}

TEST_CASE("views: make_strided_view and is_contiguous", "[views]") {
  std::vector<float> buf(100);
  // rows of 4 inside rows of 7: not contiguous
  const gcpo::tensor_view padded = gcpo::make_strided_view(buf.data(), {3, 4}, {7, 1});
  CHECK(padded.strides[0] == 7);
  CHECK(padded.strides[1] == 1);
  CHECK(padded.numel() == 12);
  CHECK_FALSE(padded.is_contiguous());
  // explicit row-major strides: contiguous
  CHECK(gcpo::make_strided_view(buf.data(), {3, 4}, {4, 1}).is_contiguous());
  // transposed: not contiguous
  CHECK_FALSE(gcpo::make_strided_view(buf.data(), {3, 4}, {1, 3}).is_contiguous());
  // extents of 1 may have any stride
  CHECK(gcpo::make_strided_view(buf.data(), {1, 4}, {999, 1}).is_contiguous());
  CHECK(gcpo::make_strided_view(buf.data(), {4, 1}, {1, 5}).is_contiguous());
  // a gap in the innermost dimension
  CHECK_FALSE(gcpo::make_strided_view(buf.data(), {4}, {2}).is_contiguous());
  // fewer strides than dimensions: the rest keep their row-major values
  const gcpo::tensor_view partial = gcpo::make_strided_view(buf.data(), {2, 3, 4}, {50});
  CHECK(partial.strides[0] == 50);
  CHECK(partial.strides[1] == 4);
  CHECK(partial.strides[2] == 1);
}

TEST_CASE("views: too many extents or strides give a malformed view that operators reject", "[views][validate]") {
  std::vector<float> buf(64);
  // 5 extents: not truncated to 4, but marked malformed
  const gcpo::tensor_view five = gcpo::make_view(buf.data(), {1, 2, 2, 2, 2});
  CHECK(five.rank == gcpo::malformed_rank);
  CHECK(five.present());
  GCPO_CHECK_ERROR(gcpo::detail::check_rank(five, "x", 4, "[a, b, c, d]"), gcpo::status_code::invalid_argument,
                   "`x` is malformed (rank -1): a view has at most 4 extents and no more strides than extents");
  // more strides than extents
  const gcpo::tensor_view extra = gcpo::make_strided_view(buf.data(), {2, 4}, {8, 2, 1});
  CHECK(extra.rank == gcpo::malformed_rank);
  GCPO_CHECK_ERROR(gcpo::detail::check_present(extra, "y"), gcpo::status_code::invalid_argument, "`y` is malformed");
  // 4 extents and as many strides are fine
  GCPO_REQUIRE_OK(gcpo::detail::check_rank(gcpo::make_strided_view(buf.data(), {1, 2, 2, 2}, {8, 4, 2, 1}), "z", 4, "[4]"));
  // an operator names the argument
  std::vector<float> out(4);
  const gcpo::const_tensor_view logits5 = gcpo::make_view(static_cast<const float*>(buf.data()), {1, 1, 2, 2, 2});
  GCPO_CHECK_ERROR(gcpo::host::token_stats(logits5, {}, gcpo::make_view(out.data(), {1, 1}), {}, {}, {}),
                   gcpo::status_code::invalid_argument, "`logits` is malformed");
  GCPO_CHECK_ERROR(gcpo::host::count_nonfinite(five, gcpo::make_view(reinterpret_cast<std::int64_t*>(out.data()), {1})),
                   gcpo::status_code::invalid_argument, "is malformed");
}

// ------------------------------------------------------------------------------------------
// DLPack

namespace {
DLTensor dl(void* data, std::vector<std::int64_t>& shape, std::int64_t* strides, DLDataTypeCode code, int bits,
            DLDeviceType dev = kDLCPU, std::uint64_t byte_offset = 0, int lanes = 1) {
  DLTensor t{};
  t.data = data;
  t.device = DLDevice{dev, 0};
  t.ndim = static_cast<int>(shape.size());
  t.dtype = DLDataType{static_cast<std::uint8_t>(code), static_cast<std::uint8_t>(bits), static_cast<std::uint16_t>(lanes)};
  t.shape = shape.data();
  t.strides = strides;
  t.byte_offset = byte_offset;
  return t;
}
}  // namespace

TEST_CASE("dlpack: dtype codes map to gcpo dtypes", "[views][dlpack]") {
  std::vector<std::int64_t> shape{2, 3};
  std::vector<unsigned char> buf(64);
  struct row {
    DLDataTypeCode code;
    int bits;
    gcpo::dtype want;
  };
  for (const row r : {row{kDLFloat, 32, gcpo::dtype::float32}, row{kDLBfloat, 16, gcpo::dtype::bfloat16},
                      row{kDLFloat, 16, gcpo::dtype::float16}, row{kDLInt, 32, gcpo::dtype::int32},
                      row{kDLInt, 64, gcpo::dtype::int64}, row{kDLUInt, 8, gcpo::dtype::uint8}}) {
    CAPTURE(static_cast<int>(r.code), r.bits);
    gcpo::tensor_view v;
    GCPO_REQUIRE_OK(gcpo::from_dlpack(dl(buf.data(), shape, nullptr, r.code, r.bits), v, "x"));
    CHECK(v.type == r.want);
    CHECK(v.rank == 2);
    CHECK(v.shape[0] == 2);
    CHECK(v.shape[1] == 3);
    CHECK(v.strides[0] == 3);  // null strides: row-major
    CHECK(v.strides[1] == 1);
    CHECK(v.space == gcpo::memory_space::host);
    CHECK(v.data == buf.data());
  }
  gcpo::tensor_view v;
  GCPO_CHECK_ERROR(gcpo::from_dlpack(dl(buf.data(), shape, nullptr, kDLFloat, 64), v, "x"),
                   gcpo::status_code::unsupported_dtype, "`x` has DLPack dtype code 2, 64 bits: not supported");
  GCPO_CHECK_ERROR(gcpo::from_dlpack(dl(buf.data(), shape, nullptr, kDLInt, 8), v, "x"),
                   gcpo::status_code::unsupported_dtype, "dtype code 0, 8 bits");
  GCPO_CHECK_ERROR(gcpo::from_dlpack(dl(buf.data(), shape, nullptr, kDLComplex, 64), v, "x"),
                   gcpo::status_code::unsupported_dtype, "dtype code 5, 64 bits");
  GCPO_CHECK_ERROR(gcpo::from_dlpack(dl(buf.data(), shape, nullptr, kDLFloat, 32, kDLCPU, 0, 4), v, "logits"),
                   gcpo::status_code::unsupported_dtype, "`logits` has 4 lanes; only 1 is supported");
}

TEST_CASE("dlpack: devices, strides, byte_offset, rank", "[views][dlpack]") {
  std::vector<float> buf(64);
  std::vector<std::int64_t> shape{2, 3, 4};
  std::int64_t strides[3] = {20, 5, 1};
  gcpo::tensor_view v;
  GCPO_REQUIRE_OK(gcpo::from_dlpack(dl(buf.data(), shape, strides, kDLFloat, 32, kDLCPU, 8), v));
  CHECK(v.data == static_cast<void*>(buf.data() + 2));  // 8 bytes = 2 floats
  CHECK(v.strides[0] == 20);
  CHECK(v.strides[1] == 5);
  CHECK(v.strides[2] == 1);
  CHECK_FALSE(v.is_contiguous());

  GCPO_REQUIRE_OK(gcpo::from_dlpack(dl(buf.data(), shape, nullptr, kDLFloat, 32, kDLCPU, 3), v));
  CHECK(v.data == static_cast<void*>(reinterpret_cast<char*>(buf.data()) + 3));  // unaligned offsets are kept
  CHECK(v.strides[0] == 12);
  CHECK(v.strides[1] == 4);
  CHECK(v.strides[2] == 1);

  GCPO_REQUIRE_OK(gcpo::from_dlpack(dl(buf.data(), shape, nullptr, kDLFloat, 32, kDLCUDAHost), v));
  CHECK(v.space == gcpo::memory_space::host);
  GCPO_REQUIRE_OK(gcpo::from_dlpack(dl(buf.data(), shape, nullptr, kDLFloat, 32, kDLCUDA), v));
  CHECK(v.space == gcpo::memory_space::device);
  GCPO_REQUIRE_OK(gcpo::from_dlpack(dl(buf.data(), shape, nullptr, kDLFloat, 32, kDLCUDAManaged), v));
  CHECK(v.space == gcpo::memory_space::device);

  // failures leave `out` untouched
  gcpo::tensor_view keep = gcpo::make_view(buf.data(), {7});
  GCPO_CHECK_ERROR(gcpo::from_dlpack(dl(buf.data(), shape, nullptr, kDLFloat, 32, kDLOpenCL), keep, "emb"),
                   gcpo::status_code::wrong_memory_space, "`emb` is on DLPack device type 4: not supported");
  GCPO_CHECK_ERROR(gcpo::from_dlpack(dl(buf.data(), shape, nullptr, kDLFloat, 32, kDLROCM), keep, "emb"),
                   gcpo::status_code::wrong_memory_space, "device type 10");
  CHECK(keep.rank == 1);
  CHECK(keep.shape[0] == 7);

  std::vector<std::int64_t> s0{};
  GCPO_CHECK_ERROR(gcpo::from_dlpack(dl(buf.data(), s0, nullptr, kDLFloat, 32), v, "t"),
                   gcpo::status_code::invalid_argument, "`t` has rank 0; gcpo views have rank 1..4");
  std::vector<std::int64_t> s5{1, 1, 1, 1, 2};
  GCPO_CHECK_ERROR(gcpo::from_dlpack(dl(buf.data(), s5, nullptr, kDLFloat, 32), v, "t"),
                   gcpo::status_code::invalid_argument, "`t` has rank 5");
  std::vector<std::int64_t> s4{1, 2, 2, 2};
  GCPO_REQUIRE_OK(gcpo::from_dlpack(dl(buf.data(), s4, nullptr, kDLFloat, 32), v));
  CHECK(v.rank == 4);
  CHECK(v.strides[0] == 8);
}

TEST_CASE("dlpack: input views and use with an operator", "[views][dlpack]") {
  // rewards [4] -> advantages [4] through DLPack views
  std::vector<float> rewards{1, 3, 0, 0}, adv(4);
  std::vector<std::int64_t> shape{4};
  gcpo::const_tensor_view in;
  gcpo::tensor_view out;
  GCPO_REQUIRE_OK(gcpo::from_dlpack(dl(rewards.data(), shape, nullptr, kDLFloat, 32), in, "rewards"));
  GCPO_REQUIRE_OK(gcpo::from_dlpack(dl(adv.data(), shape, nullptr, kDLFloat, 32), out, "advantages"));
  CHECK(in.data == rewards.data());
  gcpo::advantage_options opt;
  opt.group = 2;
  opt.std = gcpo::advantage_std::none;
  GCPO_REQUIRE_OK(gcpo::host::group_advantages(in, out, opt));
  CHECK(adv == std::vector<float>{-1, 1, 0, 0});
  gcpo::const_tensor_view bad;
  GCPO_CHECK_ERROR(gcpo::from_dlpack(dl(rewards.data(), shape, nullptr, kDLFloat, 32, kDLCPU, 0, 2), bad, "r"),
                   gcpo::status_code::unsupported_dtype, "`r` has 2 lanes");
  CHECK(bad.absent());
}

// ------------------------------------------------------------------------------------------
// workspaces

TEST_CASE("workspace: carving is aligned and fits carved_bytes from any base", "[views][workspace]") {
  using gcpo::detail::align_up;
  using gcpo::detail::carved_bytes;
  CHECK(gcpo::workspace_alignment == 256);
  CHECK(align_up(0) == 0);
  CHECK(align_up(1) == 256);
  CHECK(align_up(256) == 256);
  CHECK(align_up(257) == 512);
  CHECK(carved_bytes({}) == 0);
  CHECK(carved_bytes({0, 0}) == 0);
  CHECK(carved_bytes({1}) == 512);
  CHECK(carved_bytes({256, 1}) == 768);
  CHECK(carved_bytes({1000, 4, 0}) == 1024 + 256 + 256);

  const std::vector<std::size_t> counts{37, 1, 0, 300};
  const std::size_t need = carved_bytes({37 * 4, 1 * 8, 0, 300 * 2});
  std::vector<unsigned char> mem(need + 512);
  for (std::size_t off = 0; off < 256; ++off) {
    CAPTURE(off);
    gcpo::workspace ws{mem.data() + off, need, gcpo::memory_space::host};
    gcpo::detail::workspace_carver carve(ws);
    float* a = carve.take<float>(37);
    double* b = carve.take<double>(1);
    std::int32_t* c = carve.take<std::int32_t>(0);
    std::uint16_t* d = carve.take<std::uint16_t>(300);
    CHECK_FALSE(carve.overflowed());
    const auto base = reinterpret_cast<std::uintptr_t>(mem.data() + off);
    for (std::uintptr_t p : {reinterpret_cast<std::uintptr_t>(a), reinterpret_cast<std::uintptr_t>(b),
                             reinterpret_cast<std::uintptr_t>(d)}) {
      CHECK(p % 256 == 0);
      CHECK(p >= base);
    }
    CHECK(reinterpret_cast<std::uintptr_t>(b) >= reinterpret_cast<std::uintptr_t>(a + 37));
    CHECK(reinterpret_cast<std::uintptr_t>(d) >= reinterpret_cast<std::uintptr_t>(c));
    CHECK(reinterpret_cast<std::uintptr_t>(d + 300) <= base + need);
  }
  // one byte short of what an unaligned base needs overflows
  gcpo::workspace small{mem.data() + 1, need - 256, gcpo::memory_space::host};
  gcpo::detail::workspace_carver carve(small);
  (void)carve.take<float>(37);
  (void)carve.take<double>(1);
  (void)carve.take<std::uint16_t>(300);
  CHECK(carve.overflowed());
}

TEST_CASE("workspace: check_workspace messages", "[views][workspace]") {
  std::vector<unsigned char> mem(100);
  const gcpo::workspace none{};
  GCPO_REQUIRE_OK(gcpo::detail::check_workspace(none, 0, gcpo::memory_space::host, "q(R)"));
  GCPO_CHECK_ERROR(gcpo::detail::check_workspace(none, 64, gcpo::memory_space::host, "q(R)"),
                   gcpo::status_code::workspace_too_small,
                   "`workspace.bytes` (0) is smaller than the 64 bytes `q(R)` asks for (workspace.data is null)");
  const gcpo::workspace null_but_sized{nullptr, 1000, gcpo::memory_space::host};
  GCPO_CHECK_ERROR(gcpo::detail::check_workspace(null_but_sized, 64, gcpo::memory_space::host, "q(R)"),
                   gcpo::status_code::workspace_too_small, "`workspace.bytes` (0) is smaller than the 64 bytes");
  const gcpo::workspace small{mem.data(), 63, gcpo::memory_space::host};
  const gcpo::status s = gcpo::detail::check_workspace(small, 64, gcpo::memory_space::host, "q(R)");
  CHECK(s.code() == gcpo::status_code::workspace_too_small);
  CHECK(std::string(s.message()) == "`workspace.bytes` (63) is smaller than the 64 bytes `q(R)` asks for");
  const gcpo::workspace fits{mem.data(), 64, gcpo::memory_space::host};
  GCPO_REQUIRE_OK(gcpo::detail::check_workspace(fits, 64, gcpo::memory_space::host, "q(R)"));
  const gcpo::workspace dev{mem.data(), 100, gcpo::memory_space::device};
  GCPO_CHECK_ERROR(gcpo::detail::check_workspace(dev, 64, gcpo::memory_space::host, "q(R)"),
                   gcpo::status_code::wrong_memory_space, "`workspace` is device memory but this operator needs host memory");
}

TEST_CASE("views: shared validators name the argument", "[views][validate]") {
  using namespace gcpo::detail;
  std::vector<float> buf(64);
  const gcpo::const_tensor_view v = gcpo::make_view(buf.data(), {2, 3, 4});
  GCPO_CHECK_ERROR(check_rank(gcpo::const_tensor_view{}, "x", 2, "[R, N]"), gcpo::status_code::invalid_argument,
                   "`x` is required but was not given");
  GCPO_CHECK_ERROR(check_rank(gcpo::make_view(static_cast<const float*>(nullptr), {2, 2}), "x", 2, "[R, N]"),
                   gcpo::status_code::invalid_argument, "`x.data` is null but the view has 4 elements");
  GCPO_CHECK_ERROR(check_rank(v, "x", 2, "[R, N]"), gcpo::status_code::invalid_argument,
                   "`x` must have rank 2 ([R, N]) but has rank 3");
  GCPO_CHECK_ERROR(check_rank(gcpo::make_view(buf.data(), {2, -1}), "x", 2, "[R, N]"), gcpo::status_code::invalid_argument,
                   "`x.shape[1]` (-1) must not be negative");
  GCPO_CHECK_ERROR(check_space(v, "x", gcpo::memory_space::device), gcpo::status_code::wrong_memory_space,
                   "`x` is a host view but this operator needs device memory");
  GCPO_CHECK_ERROR(check_dtype(v, "x", {gcpo::dtype::int32, gcpo::dtype::int64}), gcpo::status_code::unsupported_dtype,
                   "`x.dtype` is float32; expected one of: int32, int64");
  GCPO_CHECK_ERROR(check_extent(v, "x", 1, 5, "`y.shape[0]`"), gcpo::status_code::invalid_argument,
                   "`x.shape[1]` (3) must equal `y.shape[0]` (5)");
  GCPO_CHECK_ERROR(check_inner_contiguous(gcpo::make_strided_view(buf.data(), {2, 4}, {8, 2}), "x"),
                   gcpo::status_code::invalid_argument, "`x.strides[1]` (2) must be 1: the last dimension must be contiguous");
  GCPO_REQUIRE_OK(check_inner_contiguous(gcpo::make_strided_view(buf.data(), {2, 1}, {8, 7}), "x"));
  GCPO_CHECK_ERROR(check_positive_strides(gcpo::make_strided_view(buf.data(), {2, 4}, {0, 1}), "x"),
                   gcpo::status_code::invalid_argument, "`x.strides[0]` (0) must be positive");
  GCPO_CHECK_ERROR(check_positive_strides(gcpo::make_strided_view(buf.data() + 8, {2, 4}, {-4, 1}), "x"),
                   gcpo::status_code::invalid_argument, "`x.strides[0]` (-4) must be positive");
  GCPO_REQUIRE_OK(check_positive_strides(gcpo::make_view(buf.data(), {2, 0, 3}), "x"));  // empty: strides {0, 3, 1}
  GCPO_CHECK_ERROR(check_contiguous(gcpo::make_strided_view(buf.data(), {2, 4}, {5, 1}), "x"),
                   gcpo::status_code::invalid_argument, "`x` must be contiguous (row-major, no gaps)");
  GCPO_CHECK_ERROR(check_fraction(1.5, "options.f"), gcpo::status_code::invalid_argument, "`options.f` (1.5) must be in [0, 1]");
  GCPO_CHECK_ERROR(check_fraction(std::nan(""), "options.f"), gcpo::status_code::invalid_argument, "must be in [0, 1]");
  GCPO_REQUIRE_OK(check_fraction(0.0, "f"));
  GCPO_REQUIRE_OK(check_fraction(1.0, "f"));

  // overlap is judged on the byte ranges the views span
  const gcpo::const_tensor_view a = gcpo::make_view(buf.data(), {8});
  CHECK(overlaps(a, gcpo::make_view(buf.data() + 7, {2})));
  CHECK_FALSE(overlaps(a, gcpo::make_view(buf.data() + 8, {2})));
  CHECK_FALSE(overlaps(a, gcpo::const_tensor_view{}));
  CHECK_FALSE(overlaps(a, gcpo::make_view(buf.data(), {0})));
  CHECK_FALSE(overlaps(a, gcpo::make_view(buf.data(), {8}, gcpo::memory_space::device)));
  // a strided view spans from its first to its last element
  CHECK(overlaps(gcpo::make_strided_view(buf.data(), {2, 2}, {10, 1}), gcpo::make_view(buf.data() + 5, {1})));
  GCPO_CHECK_ERROR(check_no_overlap(a, "out", gcpo::make_view(buf.data() + 3, {1}), "in"), gcpo::status_code::aliasing,
                   "`out` shall not overlap `in`");
  // counts are floor(N * frac) in double, as Python's int(N * frac)
  CHECK(count_of(576, 0.1) == 57);
  CHECK(count_of(576, 0.8) == 460);
  CHECK(count_of(100, 0.29) == 28);  // 100 * 0.29 = 28.999999999999996 in double
  CHECK(count_of(10, 0.0) == 0);
  CHECK(count_of(10, 1.0) == 10);
}
