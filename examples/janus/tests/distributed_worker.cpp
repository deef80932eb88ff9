// examples/janus/tests/distributed_worker.cpp - one rank of test_distributed's multi-process runs.
// Started by the test (or by scripts/launch.sh) with torchrun's variables; reads them with
// LaunchEnv::from_environment. Usage: janus_dist_worker SCENARIO TIMEOUT_MS [ARGS...]
//   collectives   every collective against values known in closed form; prints "PASS <check>"
//   kill          all_reduce in a loop; rank 1 SIGKILLs itself after 5 iterations
//   hang          all_reduce in a loop; rank 1 stops calling collectives after 3 iterations
//   rendezvous    only the rendezvous and a barrier
//   launch_ok     prints the launch variables, one all_reduce
//   launch_fail F DIR  rank F exits 3 once every other rank has written DIR/rank<r>.pid, the
//                 others write their pid there and sleep (scripts/launch.sh must stop them)
// Exit: 0 all checks passed, 1 an exception (its message on stderr), 2 a failed check.
#include "distributed.hpp"

#include <torch/torch.h>

#include <signal.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <iostream>
#include <optional>
#include <stdexcept>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

namespace {

using janus::dist::LaunchEnv;
using janus::dist::Options;
using janus::dist::ProcessGroup;

int failures = 0;

void check(bool ok, const std::string& name, const std::string& detail = "") {
  if (ok) {
    std::cout << "PASS " << name << std::endl;
  } else {
    std::cout << "FAIL " << name << (detail.empty() ? "" : ": " + detail) << std::endl;
    ++failures;
  }
}

std::string first_mismatch(const at::Tensor& actual, const at::Tensor& expected) {
  if (!actual.sizes().equals(expected.sizes())) return "shape differs";
  const at::Tensor a = actual.to(at::kDouble).contiguous().view({-1});
  const at::Tensor e = expected.to(at::kDouble).contiguous().view({-1});
  for (std::int64_t i = 0; i < a.numel(); ++i) {
    const double x = a[i].item<double>(), y = e[i].item<double>();
    if (x != y) {
      std::ostringstream s;
      s << "index " << i << ": expected " << y << ", actual " << x;
      return s.str();
    }
  }
  return "";
}

// Rank r's tensor i: (r + 1) * 1000 * (i + 1) + j at flat index j (exact in float32).
at::Tensor rank_values(int rank, int i, at::IntArrayRef shape, at::ScalarType dtype) {
  std::int64_t n = 1;
  for (auto d : shape) n *= d;
  return (at::arange(n, at::TensorOptions().dtype(at::kDouble)) + (rank + 1) * 1000.0 * (i + 1))
      .to(dtype)
      .view(shape);
}
at::Tensor summed_values(int world, int i, at::IntArrayRef shape, at::ScalarType dtype) {
  std::int64_t n = 1;
  for (auto d : shape) n *= d;
  const double ranks_sum = world * (world + 1) / 2.0;
  return (at::arange(n, at::TensorOptions().dtype(at::kDouble)) * world + ranks_sum * 1000.0 * (i + 1))
      .to(dtype)
      .view(shape);
}

// The all_reduce inputs: mixed sizes and dtypes, a non-contiguous tensor inside a bucket, a
// float tensor larger than a 256-byte bucket (100 x 4 bytes), a non-contiguous float64 one
// larger than it (200 x 8 bytes), an empty one.
struct Case {
  std::vector<std::int64_t> shape;
  at::ScalarType dtype;
  bool transposed;  // stored as the transpose of a contiguous tensor
  bool strided;     // every other element of a twice-as-long tensor
};
const std::vector<Case> cases = {
    {{3}, at::kFloat, false, false},  {{17}, at::kFloat, false, false},  {{100}, at::kFloat, false, false},
    {{5, 7}, at::kFloat, true, false}, {{2, 3}, at::kDouble, false, false}, {{64}, at::kFloat, false, false},
    {{200}, at::kDouble, false, true}, {{0}, at::kFloat, false, false},    {{1}, at::kFloat, false, false},
};

// `gaps` receives the twice-as-long tensors behind the strided ones (their odd elements, -1,
// must survive the all_reduce).
std::vector<at::Tensor> make_inputs(int rank, std::vector<at::Tensor>* gaps = nullptr) {
  std::vector<at::Tensor> tensors;
  for (std::size_t i = 0; i < cases.size(); ++i) {
    const Case& c = cases[i];
    at::Tensor v = rank_values(rank, static_cast<int>(i), c.shape, c.dtype);
    if (c.transposed) {
      v = v.t().contiguous().t();  // same values, column-major storage
    } else if (c.strided) {
      at::Tensor wide = at::full({2 * c.shape[0]}, -1.0, at::TensorOptions().dtype(c.dtype));
      wide.slice(0, 0, 2 * c.shape[0], 2).copy_(v);
      v = wide.slice(0, 0, 2 * c.shape[0], 2);
      if (gaps != nullptr) gaps->push_back(wide.slice(0, 1, 2 * c.shape[0], 2));
    }
    tensors.push_back(v);
  }
  return tensors;
}

void check_sums(const std::vector<at::Tensor>& tensors, int world, const std::string& name) {
  std::string detail;
  for (std::size_t i = 0; i < cases.size() && detail.empty(); ++i) {
    const std::string m = first_mismatch(tensors[i], summed_values(world, static_cast<int>(i), cases[i].shape,
                                                                   cases[i].dtype));
    if (!m.empty()) detail = "tensors[" + std::to_string(i) + "] " + m;
    if (tensors[i].scalar_type() != cases[i].dtype) detail = "tensors[" + std::to_string(i) + "] dtype changed";
  }
  check(detail.empty(), name, detail);
}

template <class F>
void check_throws(F&& f, const std::string& needle, const std::string& name) {
  try {
    f();
    check(false, name, "no exception");
  } catch (const std::invalid_argument& e) {
    const std::string what = e.what();
    check(what.find(needle) != std::string::npos, name, "message \"" + what + "\" lacks \"" + needle + "\"");
  }
}

int collectives(const LaunchEnv& env, std::chrono::milliseconds timeout) {
  const int r = env.rank, w = env.world_size;
  Options o;
  o.timeout = timeout;
  o.bucket_bytes = 256;  // 64 float32 or 32 float64 per bucket
  ProcessGroup group(env, o);
  check(group.backend() == "gloo" && group.rank() == r && group.world_size() == w && group.timeout() == timeout,
        "group_identity");

  // Small buckets, in order: 3, 17 (20 of 64), 100 (> 64: alone, in place), 5x7 = 35 (55), 64 (does not fit:
  // flush, then 64), 0 (skipped), 1 (does not fit: flush, then 1), end: flush -> 4 collectives;
  // float64: 2x3 = 6 (of 32), 200 strided (> 32: alone through a copy), end: flush -> 2.
  std::vector<at::Tensor> gaps;
  std::vector<at::Tensor> small = make_inputs(r, &gaps);
  const std::size_t issued_small = group.all_reduce_sum(small);
  check(issued_small == 6, "all_reduce_bucket_count", "issued " + std::to_string(issued_small) + ", expected 6");
  check_sums(small, w, "all_reduce_small_buckets");
  check(gaps.size() == 1 && at::all(gaps[0] == -1.0).item<bool>(), "all_reduce_strided_gaps_untouched");
  check(!small[3].is_contiguous(), "all_reduce_keeps_strides");

  // The group's default bucket bound (25 MiB): one collective per dtype.
  std::vector<at::Tensor> large = make_inputs(r);
  const std::size_t issued_large = group.all_reduce_sum(large, std::size_t{25} << 20);
  check(issued_large == 2, "all_reduce_default_bucket_count", "issued " + std::to_string(issued_large) + ", expected 2");
  check_sums(large, w, "all_reduce_default_buckets");

  // broadcast from rank 0: float, int64, non-contiguous; other ranks start from other values.
  at::Tensor bf = r == 0 ? at::arange(20, at::kFloat).view({4, 5}) : at::full({4, 5}, 7.0f);
  at::Tensor bi = r == 0 ? at::arange(6, at::kLong) * static_cast<std::int64_t>(1000000007) : at::zeros({6}, at::kLong);
  at::Tensor bt = (r == 0 ? at::arange(12, at::kDouble).view({3, 4}) : at::zeros({3, 4}, at::kDouble)).t();
  group.broadcast({bf, bi, bt});
  check(first_mismatch(bf, at::arange(20, at::kFloat).view({4, 5})).empty(), "broadcast_float");
  check(first_mismatch(bi, at::arange(6, at::kLong) * static_cast<std::int64_t>(1000000007)).empty(), "broadcast_int64");
  check(first_mismatch(bt, at::arange(12, at::kDouble).view({3, 4}).t()).empty(), "broadcast_non_contiguous");

  // all_gather of metrics, lengths differing by rank (rank q sends q + 1 values).
  std::vector<double> mine;
  std::vector<std::int64_t> mine_i;
  for (int k = 0; k <= r; ++k) {
    mine.push_back(r + 0.5 + k * 1e-3);
    mine_i.push_back(static_cast<std::int64_t>(r) * 1000000000000LL + k);
  }
  const auto got = group.all_gather(mine);
  const auto got_i = group.all_gather(mine_i);
  bool ok = got.size() == static_cast<std::size_t>(w) && got_i.size() == static_cast<std::size_t>(w);
  for (int q = 0; ok && q < w; ++q) {
    ok = got[q].size() == static_cast<std::size_t>(q + 1) && got_i[q].size() == static_cast<std::size_t>(q + 1);
    for (int k = 0; ok && k <= q; ++k) {
      ok = got[q][k] == q + 0.5 + k * 1e-3 && got_i[q][k] == static_cast<std::int64_t>(q) * 1000000000000LL + k;
    }
  }
  check(ok, "all_gather_metrics");
  const auto empty = group.all_gather(std::vector<double>{});
  check(empty.size() == static_cast<std::size_t>(w) && empty[0].empty(), "all_gather_empty");

  // reduce-scatter + all-gather round trip against an all_reduce (random values, seed by rank).
  const std::int64_t shard = 7;
  auto gen = at::make_generator<at::CPUGeneratorImpl>(1234 + r);
  at::Tensor x = at::randn({shard * w}, gen, at::kFloat);
  at::Tensor reduced = at::empty({shard}, at::kFloat);
  group.reduce_scatter_sum(x, reduced);
  at::Tensor gathered = at::empty({shard * w}, at::kFloat);
  group.all_gather(reduced, gathered);
  at::Tensor reference = x.clone();
  group.all_reduce_sum({reference});
  check(at::equal(gathered, reference), "reduce_scatter_all_gather_round_trip", first_mismatch(gathered, reference));
  check(at::equal(reduced, reference.narrow(0, r * shard, shard)), "reduce_scatter_shard");

  // Argument errors (local, no collective issued, so every rank takes the same path).
  check_throws([&] { group.all_reduce_sum({at::zeros({2}), at::zeros({2}, at::kInt)}); }, "tensors[1]",
               "error_names_tensor_index");
  check_throws([&] { group.reduce_scatter_sum(at::zeros({5}), at::zeros({2})); }, "input.numel() (5)",
               "error_names_input_numel");
  check_throws([&] { group.all_gather(at::zeros({2}), at::zeros({5})); }, "output.numel() (5)",
               "error_names_output_numel");

  group.barrier();
  check(true, "barrier");
  return failures == 0 ? 0 : 2;
}

// A small all_reduce whose sum is checked (the loop scenarios).
void step(ProcessGroup& group, int iteration) {
  at::Tensor t = at::full({1000}, static_cast<float>(group.rank() + 1 + iteration));
  group.all_reduce_sum({t});
  const int w = group.world_size();
  const float expected = static_cast<float>(w * (w + 1) / 2 + w * iteration);
  if (t[999].item<float>() != expected) throw std::runtime_error("wrong sum in iteration " + std::to_string(iteration));
}

int loop(const LaunchEnv& env, std::chrono::milliseconds timeout, bool kill) {
  Options o;
  o.timeout = timeout;
  ProcessGroup group(env, o);
  for (int i = 0;; ++i) {
    if (env.rank == 1 && i == (kill ? 5 : 3)) {
      std::cout << "rank 1 stops at iteration " << i << std::endl;
      if (kill) raise(SIGKILL);
      std::this_thread::sleep_for(std::chrono::seconds(600));  // alive, but no more collectives
      return 0;
    }
    step(group, i);
    if (i < 8) std::cout << "iteration " << i << " done" << std::endl;
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
}

int launch_ok(const LaunchEnv& env, std::chrono::milliseconds timeout) {
  for (const char* name : {"RANK", "WORLD_SIZE", "LOCAL_RANK", "LOCAL_WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT",
                           "GROUP_RANK", "GROUP_WORLD_SIZE", "ROLE_RANK", "ROLE_WORLD_SIZE", "ROLE_NAME",
                           "TORCHELASTIC_USE_AGENT_STORE", "TORCHELASTIC_RESTART_COUNT", "OMP_NUM_THREADS"}) {
    const char* value = std::getenv(name);
    std::cout << "env " << name << "=" << (value != nullptr ? value : "(unset)") << std::endl;
  }
  Options o;
  o.timeout = timeout;
  ProcessGroup group(env, o);
  step(group, 0);
  group.barrier();
  std::cout << "PASS launch rank " << env.rank << " of " << env.world_size << std::endl;
  return 0;
}

int launch_fail(const LaunchEnv& env, int failing_rank, const std::string& dir) {
  if (env.rank != failing_rank) {
    std::ofstream(dir + "/rank" + std::to_string(env.rank) + ".pid") << getpid() << "\n";
    std::cout << "rank " << env.rank << " waits to be stopped" << std::endl;
    std::this_thread::sleep_for(std::chrono::seconds(300));
    return 0;
  }
  for (int waited = 0; waited < 6000; ++waited) {  // until every other rank has written its pid (60 s)
    int written = 0;
    for (int q = 0; q < env.world_size; ++q) {
      written += q != failing_rank && std::ifstream(dir + "/rank" + std::to_string(q) + ".pid").good();
    }
    if (written == env.world_size - 1) break;
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  std::cout << "rank " << env.rank << " exits 3" << std::endl;
  return 3;
}

}  // namespace

int main(int argc, char** argv) {
  if (argc < 3) {
    std::cerr << "usage: janus_dist_worker SCENARIO TIMEOUT_MS [ARGS...]" << std::endl;
    return 64;
  }
  const std::string scenario = argv[1];
  const std::chrono::milliseconds timeout(std::atol(argv[2]));
  try {
    const std::optional<LaunchEnv> env = LaunchEnv::from_environment();
    if (!env) throw std::runtime_error("no launch environment (RANK, WORLD_SIZE, ... unset)");
    if (scenario == "collectives") return collectives(*env, timeout);
    if (scenario == "kill") return loop(*env, timeout, true);
    if (scenario == "hang") return loop(*env, timeout, false);
    if (scenario == "rendezvous") {
      Options o;
      o.timeout = timeout;
      ProcessGroup group(*env, o);
      group.barrier();
      std::cout << "rendezvous done" << std::endl;
      return 0;
    }
    if (scenario == "launch_ok") return launch_ok(*env, timeout);
    if (scenario == "launch_fail" && argc == 5) return launch_fail(*env, std::atoi(argv[3]), argv[4]);
    std::cerr << "unknown scenario " << scenario << std::endl;
    return 64;
  } catch (const std::exception& e) {
    std::cerr << "ERROR: " << e.what() << std::endl;
    return 1;
  }
}
