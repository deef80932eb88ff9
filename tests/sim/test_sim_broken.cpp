// tests/sim/test_sim_broken.cpp - the harness proves itself: three deliberately broken copies of
// real kernels (broken/broken_kernels.cu) must each be caught, and the real kernels on the same
// inputs must pass, so each input does discriminate.
// - a missing __syncthreads: a wrong result against the host twin (the serial schedule runs the
//   block's threads in a fixed order, so thread 0 reads the other warps' stale partials every
//   time), and under ThreadSanitizer (concurrent schedule) a reported data race;
// - an off-by-one tail: the guard zone after the cudaMalloc buffer, reported with the kernel's name;
// - a wrong shuffle mask: the simulator's mask checks, naming kernel, block and thread.
#include "cuda_support.hpp"

#include <gcpo_sim/runtime.hpp>

#include "broken/broken_kernels.hpp"

namespace {

using namespace gcpo_cuda_test;

/// The reports of `kind` about kernel `kernel` since the last clear.
std::vector<gcpo_sim::report> reports_of(gcpo_sim::report_kind kind, const std::string& kernel) {
  std::vector<gcpo_sim::report> r;
  for (const auto& x : gcpo_sim::reports())
    if (x.kind == kind && x.kernel.find(kernel) != std::string::npos) r.push_back(x);
  return r;
}

/// Every case starts clean and leaves the simulated device usable.
struct clean_device {
  clean_device() {
    gcpo_sim::clear_reports();
    gcpo_sim::clear_sticky_error();
  }
  ~clean_device() {
    gcpo_sim::clear_reports();
    gcpo_sim::clear_sticky_error();
  }
};

}  // namespace

TEST_CASE("sim harness: a missing __syncthreads is caught", "[sim][broken]") {
  clean_device clean;
  if (!gcpo_sim::under_thread_sanitizer()) gcpo_sim::set_schedule(gcpo_sim::schedule::serial);
  const std::int64_t R = 2, N = 3, V = 1500;  // the block-per-row path: R * N < 4096 rows, V >= 1024
  rng g(2024);
  std::vector<float> logits(static_cast<std::size_t>(R * N * V));
  for (auto& x : logits) x = g.normal(0.0f, 3.0f);
  std::vector<float> want(static_cast<std::size_t>(R * N));
  GCPO_OK(gcpo::host::token_stats(gcpo::make_view(logits.data(), {R, N, V}), {}, gcpo::make_view(want.data(), {R, N}),
                                  {}, {}));
  device_buffer<float> d_logits(logits), d_ent(R * N);
  stream s;

  // The real kernel passes on this input.
  GCPO_OK(gcpo::cuda::token_stats(gcpo::make_device_view(d_logits.get(), {R, N, V}), {},
                                  gcpo::make_device_view(d_ent.get(), {R, N}), {}, {}, {}, s));
  GCPO_CUDA_CHECK(cudaStreamSynchronize(s));
  check_close(d_ent.download(), want, value_atol, value_rtol, "entropy (real kernel)");
  const int races_before = gcpo_sim::race_reports();

  d_ent.poison();
  GCPO_OK(gcpo_sim_broken::token_stats_missing_barrier(gcpo::make_device_view(d_logits.get(), {R, N, V}),
                                                       gcpo::make_device_view(d_ent.get(), {R, N}), s));
  GCPO_CUDA_CHECK(cudaStreamSynchronize(s));
  const gcpo_test::comparison c = gcpo_test::compare(d_ent.download(), want, value_atol, value_rtol, "entropy");
  const int races = gcpo_sim::race_reports() - races_before;
  std::printf("missing barrier: %zu of %lld entropies wrong, %d data race report(s)\n", c.mismatches,
              static_cast<long long>(R * N), races);
  if (gcpo_sim::under_thread_sanitizer()) {
    CHECK(races > 0);  // ThreadSanitizer sees the unsynchronised shared-memory accesses
  } else {
    CHECK(c.mismatches > 0);  // serial schedule: thread 0 merges partials the other warps have not written
  }
}

TEST_CASE("sim harness: an off-by-one tail is caught by the guard zone", "[sim][broken]") {
  clean_device clean;
  const std::int64_t R = 3, N = 100;  // 300 bytes: the last block's thread 44 writes byte 300
  device_buffer<std::uint8_t> d_mask(R * N);
  stream s;
  // The real kernel stays inside the buffer.
  gcpo::selection_options opt;
  opt.grid = {10, 10};
  GCPO_OK(gcpo::cuda::initial_mask(gcpo::make_device_view(d_mask.get(), {R, N}), opt, s));
  CHECK(gcpo_sim::reports().empty());

  const int races_before = gcpo_sim::race_reports();
  const gcpo::status st =
      gcpo_sim_broken::initial_mask_off_by_one(gcpo::make_device_view(d_mask.get(), {R, N}), 10, s);
  CHECK(gcpo_sim::race_reports() == races_before);  // (ThreadSanitizer build) no race
  INFO(st.message());
  CHECK(!st.ok());
  CHECK(st.code() == gcpo::status_code::cuda_error);
  const auto r = reports_of(gcpo_sim::report_kind::out_of_bounds, "initial_mask_kernel_off_by_one");
  REQUIRE(r.size() == 1);
  INFO(r[0].text);
  CHECK(r[0].text.find("block (1,0,0)") != std::string::npos);  // 300 = 256 + 44: the second block
  CHECK(r[0].text.find("wrote bytes 0..0 past the end of a cudaMalloc buffer of 300 bytes") != std::string::npos);
}

TEST_CASE("sim harness: a wrong shuffle mask is caught", "[sim][broken]") {
  clean_device clean;
  std::vector<float> x(1000, 1.0f);
  x[7] = std::numeric_limits<float>::infinity();
  device_buffer<float> d_x(x);
  device_buffer<std::int64_t> d_count(1);
  stream s;
  GCPO_OK(gcpo::cuda::count_nonfinite(gcpo::make_device_view(d_x.get(), {1000}),
                                      gcpo::make_device_view(d_count.get(), {1}), s));
  CHECK(d_count.download()[0] == 1);
  CHECK(gcpo_sim::reports().empty());

  const int races_before = gcpo_sim::race_reports();
  const gcpo::status st = gcpo_sim_broken::count_nonfinite_wrong_mask(gcpo::make_device_view(d_x.get(), {1000}),
                                                                      gcpo::make_device_view(d_count.get(), {1}), s);
  INFO(st.message());
  CHECK(!st.ok());
  CHECK(gcpo_sim::race_reports() == races_before);  // (ThreadSanitizer build) no race
  // Whichever lane meets the simulator first: a lane of 0..15 whose xor partner (16..31) is not
  // in the mask, or a lane of 16..31 calling with a mask that leaves itself out.
  std::vector<gcpo_sim::report> r = reports_of(gcpo_sim::report_kind::shuffle_inactive, "count_nonfinite_kernel_wrong_mask");
  for (const auto& x : reports_of(gcpo_sim::report_kind::warp_mask, "count_nonfinite_kernel_wrong_mask")) r.push_back(x);
  REQUIRE(!r.empty());
  INFO(r[0].text);
  CHECK(r[0].text.find("block (0,0,0) thread (") != std::string::npos);
  CHECK(r[0].text.find("__shfl_xor_sync") != std::string::npos);
  CHECK(r[0].text.find("mask 0xffff") != std::string::npos);
}
