// tests/sim/test_sim_primitives.cpp - the simulator's own primitives against the CUDA
// programming guide's definitions (the expected values are computed here from those formulas,
// independently of the simulator), and its reports on misuse, each on a small kernel
// (selftest_kernels.cu). Both schedules are checked where the result must not depend on it.
#include "cuda_support.hpp"

#include <gcpo_sim/runtime.hpp>

#include "selftest_kernels.hpp"

namespace {

using namespace gcpo_cuda_test;
using gcpo_sim_selftest::kernel;

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

std::vector<gcpo_sim::schedule> schedules() {
  if (gcpo_sim::under_thread_sanitizer()) return {gcpo_sim::schedule::concurrent};
  return {gcpo_sim::schedule::serial, gcpo_sim::schedule::concurrent};
}

/// Runs kernel k (one block of `threads`) and returns the launch error; `out` has n ints.
cudaError_t run(kernel k, int threads, device_buffer<int>& out) {
  out.poison(0);
  return gcpo_sim_selftest::launch(k, out.get(), threads, nullptr);
}

/// The single report, of `kind`, the last launch made.
gcpo_sim::report only_report(gcpo_sim::report_kind kind) {
  const auto r = gcpo_sim::reports();
  REQUIRE(r.size() == 1);
  INFO(r[0].text);
  CHECK(r[0].kind == kind);
  return r[0];
}

}  // namespace

TEST_CASE("sim primitives: shuffles follow the programming guide for every width", "[sim][primitives]") {
  const gcpo_sim::schedule before = gcpo_sim::current_schedule();
  for (const gcpo_sim::schedule sch : schedules()) {
    clean_device clean;
    gcpo_sim::set_schedule(sch);
    const int threads = 64;
    device_buffer<int> d(4 * 6 * 32 * threads);
    REQUIRE(run(kernel::shuffles, threads, d) == cudaSuccess);
    const std::vector<int> got = d.download();
    std::size_t bad = 0;
    int wi = 0;
    for (int w = 32; w >= 1; w /= 2, ++wi)
      for (int a = 0; a < 32; ++a)
        for (int tid = 0; tid < threads; ++tid) {
          const int lane = tid % 32, base = tid - lane, v = 1000 + tid;
          const int group = lane / w * w;  // first lane of this lane's width-segment
          const int want_idx = base + group + a % w;
          const int want_up = lane % w >= a ? v - a : v;
          const int want_down = lane % w + a < w ? v + a : v;
          const int x = lane ^ a;
          const int want_xor = x / w > lane / w ? v : 1000 + base + x;  // later segment: own value
          const int want[4] = {1000 + want_idx, want_up, want_down, want_xor};
          for (int op = 0; op < 4; ++op) {
            const int g = got[static_cast<std::size_t>(((op * 6 + wi) * 32 + a) * threads + tid)];
            if (g != want[op] && bad++ < 5)
              UNSCOPED_INFO("op " << op << " width " << w << " arg " << a << " thread " << tid << ": got " << g
                                  << ", expected " << want[op]);
          }
        }
    CHECK(bad == 0);
    CHECK(gcpo_sim::reports().empty());
  }
  gcpo_sim::set_schedule(before);
}

TEST_CASE("sim primitives: votes, barrier reductions, half-warp masks", "[sim][primitives]") {
  const gcpo_sim::schedule before = gcpo_sim::current_schedule();
  for (const gcpo_sim::schedule sch : schedules()) {
    clean_device clean;
    gcpo_sim::set_schedule(sch);
    device_buffer<int> d(64 * 6);
    REQUIRE(run(kernel::votes, 64, d) == cudaSuccess);
    const std::vector<int> got = d.download();
    for (int tid = 0; tid < 64; ++tid) {
      INFO("thread " << tid);
      const int base = tid / 32 * 32;
      unsigned ballot = 0;
      for (int l = 0; l < 32; ++l)
        if ((base + l) % 3 == 0) ballot |= 1u << l;
      CHECK(static_cast<unsigned>(got[static_cast<std::size_t>(tid * 6 + 0)]) == ballot);
      CHECK(got[static_cast<std::size_t>(tid * 6 + 1)] == (base == 32 ? 1 : 0));  // thread 40 is in warp 1
      CHECK(got[static_cast<std::size_t>(tid * 6 + 2)] == 1);
      CHECK(got[static_cast<std::size_t>(tid * 6 + 3)] == 22);  // 0, 3, ..., 63
      CHECK(got[static_cast<std::size_t>(tid * 6 + 4)] != 0);
      CHECK(got[static_cast<std::size_t>(tid * 6 + 5)] == 0);
    }
    device_buffer<int> h(64);
    REQUIRE(run(kernel::half_masks, 64, h) == cudaSuccess);
    const std::vector<int> hg = h.download();
    for (int tid = 0; tid < 64; ++tid) CHECK(hg[static_cast<std::size_t>(tid)] == (tid ^ 1));
    device_buffer<int> s(96);
    REQUIRE(run(kernel::dynamic_smem, 96, s) == cudaSuccess);
    const std::vector<int> sg = s.download();
    for (int tid = 0; tid < 96; ++tid) CHECK(sg[static_cast<std::size_t>(tid)] == (tid + 1) % 96 * 2);
    CHECK(gcpo_sim::reports().empty());
  }
  gcpo_sim::set_schedule(before);
}

TEST_CASE("sim reports: divergent barriers, early exit, deadlock, exited lanes, shared overrun", "[sim][primitives]") {
  const gcpo_sim::schedule before = gcpo_sim::current_schedule();
  for (const gcpo_sim::schedule sch : schedules()) {
    gcpo_sim::set_schedule(sch);
    device_buffer<int> d(64);
    {
      clean_device clean;
      CHECK(run(kernel::divergent_barrier, 64, d) == cudaErrorLaunchFailure);
      const auto r = only_report(gcpo_sim::report_kind::divergent_barrier);
      CHECK(r.kernel == "divergent_barrier_kernel");
      CHECK(r.text.find("block (0,0,0) thread (") != std::string::npos);
      CHECK(r.text.find("selftest_kernels.cu:") != std::string::npos);
      CHECK(cudaGetLastError() == cudaErrorLaunchFailure);  // sticky, as a device fault
    }
    {
      clean_device clean;
      CHECK(run(kernel::early_exit, 64, d) == cudaErrorLaunchFailure);
      const auto r = only_report(gcpo_sim::report_kind::divergent_barrier);
      CHECK(r.text.find("thread (5,0,0)") != std::string::npos);
      CHECK(r.text.find("exited without reaching __syncthreads") != std::string::npos);
    }
    {
      clean_device clean;
      CHECK(run(kernel::deadlock, 64, d) == cudaErrorLaunchFailure);
      const auto r = only_report(gcpo_sim::report_kind::deadlock);
      CHECK(r.text.find("33 thread(s) at __syncthreads") != std::string::npos);
      CHECK(r.text.find("31 thread(s) at __shfl_sync") != std::string::npos);
    }
    {
      clean_device clean;
      CHECK(run(kernel::exited_lane, 32, d) == cudaErrorLaunchFailure);
      const auto r = only_report(gcpo_sim::report_kind::warp_exited_lane);
      CHECK(r.kernel == "exited_lane_kernel");
    }
    {
      clean_device clean;
      CHECK(run(kernel::dynamic_smem_overrun, 64, d) == cudaErrorLaunchFailure);
      const auto r = only_report(gcpo_sim::report_kind::out_of_bounds);
      CHECK(r.text.find("past the end of its 256 bytes of dynamic shared memory") != std::string::npos);
    }
  }
  gcpo_sim::set_schedule(before);
}
