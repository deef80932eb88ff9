// bench/bench_bandwidth.cpp - this machine's single-thread memory bandwidth, measured in the
// same binary as the operators so that their bytes/s can be read as a fraction of it.
//
// read:  sum of 512 MiB of 64-bit integers (integer adds vectorise at plain -O2/-O3, so the
//        loop is limited by memory, not by a floating-point dependency chain).
// copy:  memcpy of 256 MiB; bytes counted = read + written (2 x 256 MiB).
#include "bench_common.hpp"

#include <cstdint>
#include <cstring>
#include <vector>

namespace {

constexpr std::size_t read_bytes = std::size_t{512} << 20;  // far above the 32 MiB L3
constexpr std::size_t copy_bytes = std::size_t{256} << 20;

std::vector<std::uint64_t> filled(std::size_t bytes, std::uint64_t seed) {
  std::vector<std::uint64_t> x(bytes / sizeof(std::uint64_t));
  gcpo_bench::rng g(seed);
  for (auto& v : x) v = g.next() >> 8;  // touches every page
  return x;
}

void BM_read_bandwidth(benchmark::State& state) {
  const std::vector<std::uint64_t> buf = filled(read_bytes, 11);
  const std::uint64_t* p = buf.data();
  const std::size_t n = buf.size();
  for (auto _ : state) {
    std::uint64_t s0 = 0, s1 = 0, s2 = 0, s3 = 0;
    for (std::size_t i = 0; i < n; i += 4) {
      s0 += p[i];
      s1 += p[i + 1];
      s2 += p[i + 2];
      s3 += p[i + 3];
    }
    std::uint64_t s = s0 + s1 + s2 + s3;
    benchmark::DoNotOptimize(s);
  }
  gcpo_bench::set_rates(state, static_cast<double>(read_bytes));
}
BENCHMARK(BM_read_bandwidth)->Name("bandwidth/read_sum/512MiB")->Unit(benchmark::kMillisecond)->MinTime(1.0);

void BM_copy_bandwidth(benchmark::State& state) {
  const std::vector<std::uint64_t> src = filled(copy_bytes, 12);
  std::vector<std::uint64_t> dst(src.size(), 1);
  for (auto _ : state) {
    std::memcpy(dst.data(), src.data(), copy_bytes);
    benchmark::DoNotOptimize(dst.data());
    benchmark::ClobberMemory();
  }
  gcpo_bench::set_rates(state, 2.0 * static_cast<double>(copy_bytes));
}
BENCHMARK(BM_copy_bandwidth)->Name("bandwidth/memcpy/256MiB")->Unit(benchmark::kMillisecond)->MinTime(1.0);

}  // namespace
