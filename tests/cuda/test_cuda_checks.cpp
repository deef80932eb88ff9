// CUDA count_nonfinite against the host twin: ranks 1 to 4, contiguous and strided views,
// every dtype, NaN / +inf / -inf at random places, empty views, CUDA-graph capture.
#include "cuda_support.hpp"

namespace {

using namespace gcpo_cuda_test;

template <class T>
void check_count(const std::vector<std::int64_t>& shape, bool padded, std::size_t offset, double p_bad,
                 std::uint64_t seed) {
  INFO("rank=" << shape.size() << " dtype=" << gcpo::to_string(gcpo::dtype_of<T>::value) << " padded=" << padded
               << " offset=" << offset << " p_bad=" << p_bad << " seed=" << seed);
  rng g(seed);
  const int rank = static_cast<int>(shape.size());
  gcpo::const_tensor_view hv;
  hv.type = gcpo::dtype_of<T>::value;
  hv.rank = rank;
  std::int64_t stride = 1, elems = 1;
  for (int d = rank - 1; d >= 0; --d) {
    hv.shape[d] = shape[d];
    hv.strides[d] = stride;
    stride = stride * shape[d] + (padded && d > 0 ? d + 1 : 0);  // gaps between rows
  }
  for (int d = 0; d < rank; ++d) elems += (shape[d] - 1) * hv.strides[d];
  for (int d = 0; d < rank; ++d)
    if (shape[d] == 0) elems = 0;
  std::vector<float> f(static_cast<std::size_t>(elems));
  const float specials[3] = {std::numeric_limits<float>::quiet_NaN(), std::numeric_limits<float>::infinity(),
                             -std::numeric_limits<float>::infinity()};
  for (auto& x : f) x = g.chance(p_bad) ? specials[g.integer(0, 2)] : g.normal(0.0f, 100.0f);
  const std::vector<T> data = narrow<T>(f);
  hv.data = data.data();
  hv.space = host;
  std::int64_t want = -1;
  GCPO_OK(gcpo::host::count_nonfinite(hv, gcpo::make_view(&want, {1})));
  device_buffer<T> d_x(data, offset);
  device_buffer<std::int64_t> d_count(1);
  gcpo::const_tensor_view dv = hv;
  dv.data = d_x.get();
  dv.space = device;
  auto got = run_checked(
      [&](cudaStream_t s) { return gcpo::cuda::count_nonfinite(dv, gcpo::make_device_view(d_count.get(), {1}), s); },
      {out(d_count)});
  CHECK(as<std::int64_t>(got[0])[0] == want);
}

}  // namespace

TEST_CASE("cuda count_nonfinite: smoke (contiguous and strided)", "[cuda][checks]") {
  GCPO_REQUIRE_CUDA_DEVICE();
  check_count<float>({1000}, false, 0, 0.01, 61);
  check_count<gcpo::bfloat16>({3, 2, 1, 37}, true, 1, 0.1, 62);
}

TEST_CASE("cuda count_nonfinite: ranks, strides, dtypes", "[cuda][checks][slow]") {
  GCPO_REQUIRE_CUDA_DEVICE();
  std::uint64_t seed = 1;
  const std::vector<std::vector<std::int64_t>> shapes{{1},       {7},         {1000},      {3, 5},        {17, 33},
                                                      {2, 3, 4}, {4, 1, 257}, {2, 3, 5, 7}, {3, 2, 1, 1031}, {2, 0, 3},
                                                      {gpu_or_sim<std::int64_t>(300000, 20011)}};
  for (const auto& sh : shapes)
    for (const double p : {0.0, 0.01, 0.5}) {
      check_count<float>(sh, false, 0, p, ++seed);
      check_count<float>(sh, true, 1, p, ++seed);
      check_count<gcpo::bfloat16>(sh, true, 0, p, ++seed);
      check_count<gcpo::float16>(sh, false, 3, p, ++seed);
      check_count<gcpo::float16>(sh, true, 0, p, ++seed);
    }
}
