// Unit tests of gcpo/checks.hpp (host): count_nonfinite and check_finite. Expected counts and
// positions are set by hand in the inputs.
#include <catch2/catch.hpp>

#include <gcpo/gcpo.hpp>

#include <cstdint>
#include <vector>

#include "unit_support.hpp"

using namespace gcpo_test;

namespace {
std::int64_t count(gcpo::const_tensor_view x) {
  std::vector<std::int64_t> c{-1};
  GCPO_REQUIRE_OK(gcpo::host::count_nonfinite(x, view(c, {1})));
  return c[0];
}
}  // namespace

TEST_CASE("count_nonfinite: float32, every rank", "[checks]") {
  std::vector<float> x(24, 1.0f);
  CHECK(count(cview(x, {24})) == 0);
  x[3] = nan_f;
  x[7] = inf_f;
  x[20] = -inf_f;
  x[21] = std::numeric_limits<float>::max();    // finite
  x[22] = std::numeric_limits<float>::denorm_min();  // finite
  CHECK(count(cview(x, {24})) == 3);
  CHECK(count(cview(x, {4, 6})) == 3);
  CHECK(count(cview(x, {2, 3, 4})) == 3);
  CHECK(count(cview(x, {2, 3, 2, 2})) == 3);
  CHECK(count(cview(x, {3})) == 0);  // a prefix
  CHECK(count(cview(x, {0})) == 0);  // empty
  CHECK(count(cview(x, {2, 0, 3})) == 0);
  // the counter is overwritten
  std::vector<std::int64_t> c{1000};
  GCPO_REQUIRE_OK(gcpo::host::count_nonfinite(cview(x, {24}), view(c, {1})));
  CHECK(c[0] == 3);
}

TEST_CASE("count_nonfinite: strided views count only their elements", "[checks]") {
  // a 3x4 view with row stride 6 inside a buffer whose gaps are NaN
  std::vector<float> buf(18, nan_f);
  for (int r = 0; r < 3; ++r)
    for (int c = 0; c < 4; ++c) buf[r * 6 + c] = 0.5f;
  buf[1 * 6 + 2] = inf_f;
  CHECK(count(gcpo::make_strided_view(static_cast<const float*>(buf.data()), {3, 4}, {6, 1})) == 1);
  // every other element of a row: 0, 2, 4 of row 0
  std::vector<float> v{nan_f, 1, 2, nan_f, nan_f, 5};
  CHECK(count(gcpo::make_strided_view(static_cast<const float*>(v.data()), {3}, {2})) == 2);
  // a transposed view
  std::vector<float> t{0, 1, nan_f, 3, 4, 5};
  CHECK(count(gcpo::make_strided_view(static_cast<const float*>(t.data()), {3, 2}, {1, 3})) == 1);
}

TEST_CASE("count_nonfinite: 16-bit types", "[checks]") {
  // float16: 0x7c00 +inf, 0xfc00 -inf, 0x7e00 NaN, 0x7c01 NaN; 0x7bff (65504) and 0x0001 finite
  std::vector<gcpo::float16> h{{0x3c00}, {0x7c00}, {0xfc00}, {0x7e00}, {0x7c01}, {0x7bff}, {0x0001}, {0x8000}};
  CHECK(count(cview(h, {8})) == 4);
  CHECK(count(cview(h, {2, 4})) == 4);
  // bfloat16: 0x7f80 +inf, 0xff80 -inf, 0x7fc0 NaN, 0xff81 NaN; 0x7f7f finite
  std::vector<gcpo::bfloat16> b{{0x3f80}, {0x7f80}, {0xff80}, {0x7fc0}, {0xff81}, {0x7f7f}};
  CHECK(count(cview(b, {6})) == 4);
  CHECK(count(cview(b, {1})) == 0);
}

TEST_CASE("count_nonfinite: preconditions", "[checks]") {
  std::vector<float> x(6, 0.0f);
  std::vector<std::int64_t> c(2);
  std::vector<std::int32_t> c32(1);
  using sc = gcpo::status_code;
  using gcpo::host::count_nonfinite;
  GCPO_CHECK_ERROR(count_nonfinite({}, view(c, {1})), sc::invalid_argument, "`x` is required but was not given");
  GCPO_CHECK_ERROR(count_nonfinite(gcpo::make_view(static_cast<const float*>(nullptr), {3}), view(c, {1})), sc::invalid_argument,
                   "`x.data` is null but the view has 3 elements");
  GCPO_CHECK_ERROR(count_nonfinite(cview(c32, {1}), view(c, {1})), sc::unsupported_dtype,
                   "`x.dtype` is int32; expected one of: float32, bfloat16, float16");
  GCPO_CHECK_ERROR(count_nonfinite(gcpo::make_view(x.data(), {6}, gcpo::memory_space::device), view(c, {1})), sc::wrong_memory_space,
                   "`x` is a device view but this operator needs host memory");
  GCPO_CHECK_ERROR(count_nonfinite(gcpo::make_strided_view(static_cast<const float*>(x.data()), {2, 3}, {0, 1}), view(c, {1})),
                   sc::invalid_argument, "`x.strides[0]` (0) must be positive");
  GCPO_CHECK_ERROR(count_nonfinite(cview(x, {6}), view(c32, {1})), sc::unsupported_dtype,
                   "`count.dtype` is int32; expected one of: int64");
  GCPO_CHECK_ERROR(count_nonfinite(cview(x, {6}), view(c, {2})), sc::invalid_argument, "`count.shape[0]` (2) must equal 1 (1)");
  GCPO_CHECK_ERROR(count_nonfinite(cview(x, {6}), view(c, {1, 1})), sc::invalid_argument, "`count` must have rank 1 ([1]) but has rank 2");
  GCPO_CHECK_ERROR(count_nonfinite(cview(x, {6}), gcpo::tensor_view{}), sc::invalid_argument, "`count` is required but was not given");
  GCPO_CHECK_ERROR(count_nonfinite(cview(x, {6}), gcpo::make_view(reinterpret_cast<std::int64_t*>(x.data() + 2), {1})), sc::aliasing,
                   "`count` shall not overlap `x`");
  GCPO_CHECK_ERROR(count_nonfinite(cview(x, {6}), gcpo::make_view(c.data(), {1}, gcpo::memory_space::device)), sc::wrong_memory_space,
                   "`count` is a device view");
}

TEST_CASE("check_finite: ok, or the first offending element in row-major order", "[checks]") {
  using sc = gcpo::status_code;
  using gcpo::host::check_finite;
  std::vector<float> x(12, 0.25f);
  GCPO_REQUIRE_OK(check_finite(cview(x, {3, 4}), "entropy"));
  GCPO_REQUIRE_OK(check_finite(cview(x, {0}), "entropy"));
  x[9] = inf_f;
  x[5] = nan_f;
  {
    const gcpo::status s = check_finite(cview(x, {3, 4}), "entropy");
    CHECK(s.code() == sc::non_finite);
    CHECK(std::string(s.message()) == "`entropy` element 5 (row-major) is nan");
  }
  GCPO_REQUIRE_OK(check_finite(cview(x, {5}), "prefix"));  // elements 0..4 are finite
  GCPO_CHECK_ERROR(check_finite(cview(x, {6}), "a"), sc::non_finite, "`a` element 5 (row-major) is nan");
  x[5] = 0.0f;
  GCPO_CHECK_ERROR(check_finite(cview(x, {12}), "logits"), sc::non_finite, "`logits` element 9 (row-major) is +inf");
  x[9] = -inf_f;
  GCPO_CHECK_ERROR(check_finite(cview(x, {2, 2, 3}), "logits"), sc::non_finite, "`logits` element 9 (row-major) is -inf");
  // row-major in the view's order, not memory order: a transposed 3x4 view of x
  std::vector<float> m(12, 0.0f);
  m[1] = nan_f;  // view (1, 0)
  m[6] = inf_f;  // view (2, 1) -- and m[3] = (0, 1) is finite
  GCPO_CHECK_ERROR(check_finite(gcpo::make_strided_view(static_cast<const float*>(m.data()), {4, 3}, {1, 4}), "t"), sc::non_finite,
                   "`t` element 3 (row-major) is nan");
  // 16-bit
  std::vector<gcpo::float16> h{{0x3c00}, {0x7bff}, {0xfc00}};
  GCPO_CHECK_ERROR(check_finite(cview(h, {3}), "h"), sc::non_finite, "`h` element 2 (row-major) is -inf");
  std::vector<gcpo::bfloat16> b{{0x7fc1}};
  GCPO_CHECK_ERROR(check_finite(cview(b, {1}), "b"), sc::non_finite, "`b` element 0 (row-major) is nan");
  // preconditions
  GCPO_CHECK_ERROR(check_finite({}, "entropy"), sc::invalid_argument, "`entropy` is required but was not given");
  std::vector<std::int32_t> i(3);
  GCPO_CHECK_ERROR(check_finite(cview(i, {3}), "tokens"), sc::unsupported_dtype,
                   "`tokens.dtype` is int32; expected one of: float32, bfloat16, float16");
  GCPO_CHECK_ERROR(check_finite(gcpo::make_view(x.data(), {3}, gcpo::memory_space::device), "d"), sc::wrong_memory_space,
                   "`d` is a device view but this operator needs host memory");
}
