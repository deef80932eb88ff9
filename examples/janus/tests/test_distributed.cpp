// examples/janus/tests/test_distributed.cpp - janus::dist (distributed.hpp): the launch
// variables, and c10d collectives over Gloo between real processes on 127.0.0.1: the test
// forks and execs janus_dist_worker (tests/distributed_worker.cpp) once per rank with exactly
// the variables torchrun sets, then checks exit codes, messages and timings. Also
// scripts/launch.sh. Timings are bounded generously (timeout + 20 s) for a loaded 2-core machine.
#include "distributed.hpp"
#include "launch_util.hpp"

#include <catch2/catch.hpp>

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <map>
#include <optional>
#include <sstream>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

namespace {

using janus::dist::LaunchEnv;
using Clock = std::chrono::steady_clock;

// ---------------------------------------------------------------- launch variables

std::optional<LaunchEnv> parse(const std::map<std::string, std::string>& vars) {
  return LaunchEnv::from_lookup([&](const char* name) -> const char* {
    const auto it = vars.find(name);
    return it == vars.end() ? nullptr : it->second.c_str();
  });
}

const std::map<std::string, std::string> valid = {{"RANK", "3"},        {"WORLD_SIZE", "8"},
                                                  {"LOCAL_RANK", "1"},  {"LOCAL_WORLD_SIZE", "2"},
                                                  {"MASTER_ADDR", "node0"}, {"MASTER_PORT", "29500"}};

std::string parse_error(std::map<std::string, std::string> vars) {
  try {
    parse(vars);
  } catch (const std::invalid_argument& e) {
    return e.what();
  }
  return "(no exception)";
}

std::map<std::string, std::string> with(const std::string& name, const std::string& value) {
  auto vars = valid;
  vars[name] = value;
  return vars;
}

// ---------------------------------------------------------------- processes

using namespace janus_launch;

const std::string worker = JANUS_DIST_WORKER_BIN;
const std::string launch_sh = JANUS_LAUNCH_SH;
const std::string slurm_sh = JANUS_SLURM_ENV_SH;

bool contains(const std::string& text, const std::string& needle) { return text.find(needle) != std::string::npos; }

}  // namespace

TEST_CASE("LaunchEnv: no variable set is a single-process run", "[dist]") {
  CHECK_FALSE(parse({}).has_value());
}

TEST_CASE("LaunchEnv: torchrun's variables are read", "[dist]") {
  const auto env = parse(valid);
  REQUIRE(env.has_value());
  CHECK(env->rank == 3);
  CHECK(env->world_size == 8);
  CHECK(env->local_rank == 1);
  CHECK(env->local_world_size == 2);
  CHECK(env->master_addr == "node0");
  CHECK(env->master_port == 29500);
  CHECK_FALSE(env->use_agent_store);
  CHECK(env->restart_count == 0);

  auto agent = valid;
  agent["TORCHELASTIC_USE_AGENT_STORE"] = "True";
  agent["TORCHELASTIC_RESTART_COUNT"] = "2";
  const auto with_agent = parse(agent);
  REQUIRE(with_agent.has_value());
  CHECK(with_agent->use_agent_store);
  CHECK(with_agent->restart_count == 2);
  agent["TORCHELASTIC_USE_AGENT_STORE"] = "False";
  CHECK_FALSE(parse(agent)->use_agent_store);

  // from_environment reads the real environment.
  for (const auto& [k, v] : valid) setenv(k.c_str(), v.c_str(), 1);
  const auto real = LaunchEnv::from_environment();
  for (const auto& [k, v] : valid) unsetenv(k.c_str());
  REQUIRE(real.has_value());
  CHECK(real->rank == 3);
  CHECK(real->master_addr == "node0");
  CHECK_FALSE(LaunchEnv::from_environment().has_value());
}

TEST_CASE("LaunchEnv: a variable missing is named", "[dist]") {
  for (const auto& [name, value] : valid) {
    auto vars = valid;
    vars.erase(name);
    const std::string what = parse_error(vars);
    INFO("without " << name << ": " << what);
    CHECK(contains(what, "environment variable " + name + " not set"));
  }
  const std::string two = parse_error({{"RANK", "0"}, {"WORLD_SIZE", "2"}});
  CHECK(contains(two, "LOCAL_RANK, LOCAL_WORLD_SIZE, MASTER_ADDR, MASTER_PORT not set"));
}

TEST_CASE("LaunchEnv: a malformed or out-of-range value is named", "[dist]") {
  struct Bad {
    std::string name, value, message;
  };
  const std::vector<Bad> bad = {
      {"RANK", "abc", "RANK (\"abc\") must be a decimal integer"},
      {"RANK", "", "RANK (\"\") must be a decimal integer"},
      {"RANK", " 1", "RANK (\" 1\") must be a decimal integer"},
      {"RANK", "1x", "RANK (\"1x\") must be a decimal integer"},
      {"RANK", "0x1", "RANK (\"0x1\") must be a decimal integer"},
      {"RANK", "-1", "RANK (-1) must be in [0, "},
      {"RANK", "8", "RANK (8) must be less than WORLD_SIZE (8)"},
      {"RANK", "99999999999999999999999", "RANK (99999999999999999999999) must be in"},
      {"WORLD_SIZE", "0", "WORLD_SIZE (0) must be in [1, "},
      {"WORLD_SIZE", "2.0", "WORLD_SIZE (\"2.0\") must be a decimal integer"},
      {"WORLD_SIZE", "3", "RANK (3) must be less than WORLD_SIZE (3)"},
      {"LOCAL_RANK", "2", "LOCAL_RANK (2) must be less than LOCAL_WORLD_SIZE (2)"},
      {"LOCAL_RANK", "-", "LOCAL_RANK (\"-\") must be a decimal integer"},
      {"LOCAL_WORLD_SIZE", "0", "LOCAL_WORLD_SIZE (0) must be in [1, "},
      {"LOCAL_WORLD_SIZE", "9", "LOCAL_WORLD_SIZE (9) must not exceed WORLD_SIZE (8)"},
      {"MASTER_ADDR", "", "MASTER_ADDR is empty"},
      {"MASTER_PORT", "0", "MASTER_PORT (0) must be in [1, 65535]"},
      {"MASTER_PORT", "65536", "MASTER_PORT (65536) must be in [1, 65535]"},
      {"MASTER_PORT", "port", "MASTER_PORT (\"port\") must be a decimal integer"},
      {"TORCHELASTIC_USE_AGENT_STORE", "yes", "TORCHELASTIC_USE_AGENT_STORE (\"yes\") must be True or False"},
      {"TORCHELASTIC_RESTART_COUNT", "-2", "TORCHELASTIC_RESTART_COUNT (-2) must be in [0, "},
  };
  for (const auto& b : bad) {
    const std::string what = parse_error(with(b.name, b.value));
    INFO(b.name << "=\"" << b.value << "\": " << what);
    CHECK(contains(what, "environment variable " + b.message));
  }
  auto agent = valid;
  agent["TORCHELASTIC_USE_AGENT_STORE"] = "True";
  CHECK(contains(parse_error(agent), "environment variable TORCHELASTIC_RESTART_COUNT not set"));
  CHECK(with("MASTER_PORT", "65535").size() == 6);
  CHECK(parse(with("MASTER_PORT", "65535"))->master_port == 65535);
  CHECK(parse(with("MASTER_PORT", "1"))->master_port == 1);
}

TEST_CASE("ProcessGroup: bad options are named before any connection", "[dist]") {
  LaunchEnv env;
  env.master_addr = "127.0.0.1";
  env.master_port = free_port();
  auto error = [&](janus::dist::Options o) -> std::string {
    try {
      janus::dist::ProcessGroup group(env, o);
    } catch (const std::invalid_argument& e) {
      return e.what();
    }
    return "(no exception)";
  };
  janus::dist::Options o;
  o.backend = "mpi";
  CHECK(contains(error(o), "options.backend (\"mpi\") must be auto, gloo or nccl"));
  o = {};
  o.timeout = std::chrono::milliseconds(0);
  CHECK(contains(error(o), "options.timeout (0 ms) must be positive"));
  o = {};
  o.bucket_bytes = 0;
  CHECK(contains(error(o), "options.bucket_bytes must be positive"));
  o = {};
  o.backend = "nccl";
  CHECK(contains(error(o), "nccl"));  // no NCCL in a CPU libtorch, or nccl needs a CUDA device
  env.rank = 1;
  CHECK(contains(error({}), "env.rank (1) must be in [0, env.world_size (1))"));
}

TEST_CASE("Gloo, 2 processes: every collective gives the known result", "[dist]") {
  TempDir dir;
  const int port = free_port();
  std::vector<pid_t> pids;
  for (int r = 0; r < 2; ++r) {
    pids.push_back(spawn({worker, "collectives", "20000"}, torchrun_env(r, 2, port),
                         dir.path + "/rank" + std::to_string(r) + ".log"));
  }
  for (int r = 0; r < 2; ++r) {
    const Exit e = wait_for(pids[r], 120);
    const std::string log = slurp(dir.path + "/rank" + std::to_string(r) + ".log");
    INFO("rank " << r << " log:\n" << log);
    CHECK(e.exited);
    CHECK(e.code() == 0);
    for (const char* name : {"group_identity", "all_reduce_bucket_count", "all_reduce_small_buckets",
                             "all_reduce_strided_gaps_untouched", "all_reduce_keeps_strides",
                             "all_reduce_default_bucket_count", "all_reduce_default_buckets", "broadcast_float",
                             "broadcast_int64", "broadcast_non_contiguous", "all_gather_metrics", "all_gather_empty",
                             "reduce_scatter_all_gather_round_trip", "reduce_scatter_shard",
                             "error_names_tensor_index", "error_names_input_numel", "error_names_output_numel",
                             "barrier"}) {
      CHECK(contains(log, std::string("PASS ") + name + "\n"));
    }
    CHECK_FALSE(contains(log, "FAIL"));
  }
}

TEST_CASE("Gloo, 2 processes: a rank killed mid-run makes the other fail within the timeout", "[dist]") {
  TempDir dir;
  const int port = free_port();
  const double timeout_s = 10;  // also the rendezvous': start-up skew on a loaded machine
  std::vector<pid_t> pids;
  for (int r = 0; r < 2; ++r) {
    pids.push_back(spawn({worker, "kill", "10000"}, torchrun_env(r, 2, port),
                         dir.path + "/rank" + std::to_string(r) + ".log"));
  }
  const Exit killed = wait_for(pids[1], 120);  // rank 1 SIGKILLs itself after 5 all_reduces
  const Exit survivor = wait_for(pids[0], timeout_s + 20);
  const std::string log0 = slurp(dir.path + "/rank0.log");
  INFO("rank 0 log:\n" << log0 << "\nrank 1 log:\n" << slurp(dir.path + "/rank1.log"));
  WARN("kill test: rank 0 exited " << survivor.seconds << " s after rank 1 was killed (timeout " << timeout_s
                                    << " s, bound " << timeout_s + 20 << " s)");
  CHECK(killed.killed_by(SIGKILL));
  CHECK(contains(slurp(dir.path + "/rank1.log"), "rank 1 stops at iteration 5"));
  REQUIRE(survivor.exited);
  CHECK(survivor.code() == 1);
  CHECK(survivor.seconds < timeout_s + 20);
  CHECK(contains(log0, "iteration 4 done"));
  CHECK(contains(log0, "ERROR: janus::dist: all_reduce failed on rank 0 of 2 (backend gloo, timeout 10 s"));
}

TEST_CASE("Gloo, 2 processes: a rank that stops calling collectives makes the other time out", "[dist]") {
  TempDir dir;
  const int port = free_port();
  const double timeout_s = 10;
  std::vector<pid_t> pids;
  for (int r = 0; r < 2; ++r) {
    pids.push_back(spawn({worker, "hang", "10000"}, torchrun_env(r, 2, port),
                         dir.path + "/rank" + std::to_string(r) + ".log"));
  }
  const Exit survivor = wait_for(pids[0], timeout_s + 40);  // includes start-up and 3 iterations
  kill(pids[1], SIGKILL);
  waitpid(pids[1], nullptr, 0);
  const std::string log0 = slurp(dir.path + "/rank0.log");
  INFO("rank 0 log:\n" << log0 << "\nrank 1 log:\n" << slurp(dir.path + "/rank1.log"));
  WARN("hang test: rank 0 exited " << survivor.seconds << " s after the start (timeout " << timeout_s << " s)");
  REQUIRE(survivor.exited);
  CHECK(survivor.code() == 1);
  CHECK(contains(log0, "iteration 2 done"));
  CHECK(contains(log0, "ERROR: janus::dist: all_reduce failed on rank 0 of 2 (backend gloo, timeout 10 s"));
  CHECK((contains(log0, "imed out") || contains(log0, "imeout")));
}

TEST_CASE("Gloo: a rendezvous where a rank never arrives times out with a clear error", "[dist]") {
  const double timeout_s = 3;
  for (const int present : {0, 1}) {  // rank 0 (the store's server) alone, then rank 1 alone
    TempDir dir;
    const int port = free_port();
    const pid_t pid = spawn({worker, "rendezvous", "3000"}, torchrun_env(present, 2, port), dir.path + "/log");
    const Exit e = wait_for(pid, timeout_s + 20);
    const std::string log = slurp(dir.path + "/log");
    INFO("rank " << present << " alone, log:\n" << log);
    WARN("rendezvous test: rank " << present << " alone failed after " << e.seconds << " s (timeout " << timeout_s
                                  << " s)");
    REQUIRE(e.exited);
    CHECK(e.code() == 1);
    CHECK(e.seconds >= timeout_s * 0.5);  // c10d's client counts its 3 s from its own start
    CHECK(e.seconds < timeout_s + 20);
    CHECK(contains(log, "ERROR: janus::dist: rendezvous at 127.0.0.1:" + std::to_string(port) + " failed on rank " +
                            std::to_string(present) + " of 2 (backend gloo, timeout 3 s"));
  }
}

TEST_CASE("scripts/launch.sh: 2 ranks with torchrun's variables", "[dist]") {
  TempDir dir;
  const pid_t pid = spawn({"/bin/bash", launch_sh, "2", worker, "launch_ok", "20000"}, {}, dir.path + "/log");
  const Exit e = wait_for(pid, 120);
  const std::string log = slurp(dir.path + "/log");
  INFO("launch.sh output:\n" << log);
  REQUIRE(e.exited);
  CHECK(e.code() == 0);
  for (int r = 0; r < 2; ++r) {
    const std::string p = "[rank " + std::to_string(r) + "] ";
    CHECK(contains(log, p + "PASS launch rank " + std::to_string(r) + " of 2\n"));
    CHECK(contains(log, p + "env RANK=" + std::to_string(r) + "\n"));
    CHECK(contains(log, p + "env LOCAL_RANK=" + std::to_string(r) + "\n"));
    CHECK(contains(log, p + "env WORLD_SIZE=2\n"));
    CHECK(contains(log, p + "env LOCAL_WORLD_SIZE=2\n"));
    CHECK(contains(log, p + "env MASTER_ADDR=127.0.0.1\n"));
    CHECK(contains(log, p + "env GROUP_RANK=0\n"));
    CHECK(contains(log, p + "env ROLE_RANK=" + std::to_string(r) + "\n"));
    CHECK(contains(log, p + "env TORCHELASTIC_USE_AGENT_STORE=False\n"));
    CHECK(contains(log, p + "env OMP_NUM_THREADS=1\n"));
  }
}

TEST_CASE("scripts/slurm_env.sh: 2 ranks from SLURM's variables", "[dist]") {
  TempDir dir;
  const int port = free_port();
  std::vector<pid_t> pids;
  for (int r = 0; r < 2; ++r) {
    // what srun sets for task r of a 2-task step on one node (MASTER_ADDR given: no scontrol here)
    pids.push_back(spawn({"/bin/bash", slurm_sh, worker, "launch_ok", "20000"},
                         {{"SLURM_PROCID", std::to_string(r)}, {"SLURM_NTASKS", "2"}, {"SLURM_LOCALID", std::to_string(r)},
                          {"SLURM_TASKS_PER_NODE", "2(x1)"}, {"SLURM_JOB_ID", "4242"},
                          {"MASTER_ADDR", "127.0.0.1"}, {"MASTER_PORT", std::to_string(port)}},
                         dir.path + "/rank" + std::to_string(r) + ".log"));
  }
  for (int r = 0; r < 2; ++r) {
    const Exit e = wait_for(pids[static_cast<std::size_t>(r)], 120);
    const std::string log = slurp(dir.path + "/rank" + std::to_string(r) + ".log");
    INFO("rank " << r << ":\n" << log);
    REQUIRE(e.exited);
    CHECK(e.code() == 0);
    CHECK(contains(log, "PASS launch rank " + std::to_string(r) + " of 2\n"));
    CHECK(contains(log, "env RANK=" + std::to_string(r) + "\n"));
    CHECK(contains(log, "env LOCAL_RANK=" + std::to_string(r) + "\n"));
    CHECK(contains(log, "env WORLD_SIZE=2\n"));
    CHECK(contains(log, "env LOCAL_WORLD_SIZE=2\n"));
    CHECK(contains(log, "env MASTER_PORT=" + std::to_string(port) + "\n"));
    CHECK(contains(log, "env TORCHELASTIC_USE_AGENT_STORE=False\n"));
    CHECK(contains(log, "env OMP_NUM_THREADS=1\n"));
  }
  // no MASTER_PORT: one per job, 20000 + SLURM_JOB_ID mod 10000
  {
    const pid_t pid = spawn({"/bin/bash", slurm_sh, "/usr/bin/env"},
                            {{"SLURM_PROCID", "1"}, {"SLURM_NTASKS", "4"}, {"SLURM_LOCALID", "0"},
                             {"SLURM_NTASKS_PER_NODE", "2"}, {"SLURM_JOB_ID", "123456"}, {"MASTER_ADDR", "node7"}},
                            dir.path + "/env");
    CHECK(wait_for(pid, 60).code() == 0);
    const std::string env = slurp(dir.path + "/env");
    INFO(env);
    for (const char* line : {"\nMASTER_PORT=23456\n", "\nRANK=1\n", "\nWORLD_SIZE=4\n", "\nLOCAL_RANK=0\n",
                             "\nLOCAL_WORLD_SIZE=2\n", "\nMASTER_ADDR=node7\n"})
      CHECK(contains("\n" + env, line));
  }
  // outside srun: the missing variable is named, nothing started
  const pid_t pid = spawn({"/bin/bash", slurm_sh, worker, "launch_ok", "20000"}, {{"SLURM_NTASKS", "2"}}, dir.path + "/bad");
  const Exit e = wait_for(pid, 60);
  CHECK(e.code() == 64);
  CHECK(contains(slurp(dir.path + "/bad"), "SLURM_PROCID (\"\") is not set or not a non-negative integer"));
}

TEST_CASE("scripts/launch.sh: a rank exiting 3 stops the others and is named", "[dist]") {
  TempDir dir;
  const auto start = Clock::now();
  const pid_t pid =
      spawn({"/bin/bash", launch_sh, "2", worker, "launch_fail", "20000", "1", dir.path}, {{"LAUNCH_GRACE_S", "5"}},
            dir.path + "/log");
  const Exit e = wait_for(pid, 60);
  const std::string log = slurp(dir.path + "/log");
  INFO("launch.sh output:\n" << log);
  REQUIRE(e.exited);
  CHECK(e.code() == 3);
  CHECK(contains(log, "[rank 1] rank 1 exits 3"));
  CHECK(contains(log, "launch.sh: rank 1 (pid "));
  CHECK(contains(log, ") exited with code 3; stopping the other ranks"));
  CHECK(contains(log, "launch.sh: failed: rank 1 exited non-zero"));
  // rank 0 sleeps 300 s unless stopped: it was, and well before that.
  const std::string pid0 = slurp(dir.path + "/rank0.pid");
  REQUIRE_FALSE(pid0.empty());
  CHECK(kill(std::stoi(pid0), 0) == -1);
  CHECK(std::chrono::duration<double>(Clock::now() - start).count() < 60);
}

TEST_CASE("scripts/launch.sh: bad arguments", "[dist]") {
  TempDir dir;
  const pid_t pid = spawn({"/bin/bash", launch_sh, "0", "/bin/true"}, {}, dir.path + "/log");
  const Exit e = wait_for(pid, 30);
  CHECK(e.code() == 64);
  CHECK(contains(slurp(dir.path + "/log"), "K (\"0\") must be a positive integer"));
}
