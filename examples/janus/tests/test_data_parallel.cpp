// examples/janus/tests/test_data_parallel.cpp - data-parallel training (issue 11).
//
// In one process: GradientSync and ShardedAdamW (data_parallel.hpp) on a one-rank communicator
// against libtorch's own gradients and AdamW.
//
// Across processes: janus_trainer started twice with exactly the variables torchrun sets (rank
// 0 and 1, Gloo on 127.0.0.1) against the same run in one process: identical rollouts (the
// per-step digest of every sampled token), equal metrics, final weights equal within
// kWeightBound, rank 0 alone writing the run directory, bit-exact resume with the same world
// size, resume with another; the same with --shard-optimizer; a rank killed mid-step; a
// published-layout directory in bf16 (VQ pictures decoded on each rank and gathered).
#include "data_parallel.hpp"
#include "launch_util.hpp"
#include "safetensors.hpp"
#include "test_util.hpp"
#if defined(JANUS_LOOPBACK_SERVER)
#include "reward_test_util.hpp"
#endif

#include <nlohmann/json.hpp>

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <map>
#include <set>
#include <string>
#include <vector>

namespace fs = std::filesystem;
using janus_launch::Exit;
using janus_launch::free_port;
using janus_launch::slurp;
using janus_launch::spawn;
using janus_launch::torchrun_env;
using janus_launch::wait_for;

namespace {

// ---------------------------------------------------------------- one rank, in process

/// A world of one: every collective is the identity (the sum over one rank).
class Solo final : public janus::dist::Communicator {
 public:
  struct Done final : janus::dist::PendingCollective {
    void wait() override {}
  };
  int rank() const override { return 0; }
  int world_size() const override { return 1; }
  const std::string& backend() const override { return name_; }
  c10::Device device() const override { return c10::Device(c10::kCPU); }
  std::chrono::milliseconds timeout() const override { return std::chrono::milliseconds(1000); }
  std::size_t bucket_bytes() const override { return 1024; }
  std::size_t all_reduce_sum(const std::vector<at::Tensor>&, std::size_t) override { return 0; }
  void broadcast(const std::vector<at::Tensor>&) override {}
  void barrier() override {}
  std::vector<std::vector<double>> all_gather(const std::vector<double>& v) override { return {v}; }
  std::vector<std::vector<std::int64_t>> all_gather(const std::vector<std::int64_t>& v) override { return {v}; }
  void reduce_scatter_sum(const at::Tensor& in, const at::Tensor& out) override { out.copy_(in); }
  void all_gather(const at::Tensor& in, const at::Tensor& out) override { out.copy_(in); }
  std::unique_ptr<janus::dist::PendingCollective> start_all_reduce_sum(const at::Tensor&) override {
    ++started;
    return std::make_unique<Done>();
  }
  int started = 0;

 private:
  std::string name_ = "solo";
};

/// Three layers of different sizes; its parameters in registration order.
struct Net {
  torch::nn::Linear a{nullptr}, b{nullptr}, c{nullptr};
  std::vector<torch::Tensor> params;
  Net() {
    torch::manual_seed(3);
    a = torch::nn::Linear(6, 40);
    b = torch::nn::Linear(40, 30);
    c = torch::nn::Linear(30, 3);
    for (auto* l : {&a, &b, &c})
      for (auto& p : (*l)->parameters()) params.push_back(p);
  }
  torch::Tensor loss(const torch::Tensor& x) {
    return c->forward(torch::tanh(b->forward(torch::tanh(a->forward(x))))).pow(2).sum();
  }
};

}  // namespace

TEST_CASE("BucketLayout: reverse order, bounded buckets, padding to the world size", "[dp]") {
  Net net;  // sizes 240, 40, 1200, 30, 90, 3
  const auto l = janus::dp::BucketLayout::make(net.params, 1024 * sizeof(float), 3);
  // reverse order: c.bias (3), c.weight (90), b.bias (30), b.weight (1200: alone), a.bias (40), a.weight (240)
  REQUIRE(l.buckets.size() == 3);
  CHECK(l.buckets[0].params == std::vector<std::size_t>{5, 4, 3});
  CHECK(l.buckets[0].numel == 123);
  CHECK(l.buckets[1].params == std::vector<std::size_t>{2});
  CHECK(l.buckets[1].numel == 1200);
  CHECK(l.buckets[2].params == std::vector<std::size_t>{1, 0});
  CHECK(l.buckets[2].offsets == std::vector<std::int64_t>{0, 40});
  for (const auto& b : l.buckets) {
    CHECK(b.padded % 3 == 0);
    CHECK(b.padded >= b.numel);
    CHECK(b.padded - b.numel < 3);
  }
  // flatten / unflatten round trip
  const torch::Tensor flat = l.flatten(2, net.params);
  CHECK(torch::equal(flat.narrow(0, 40, 240).view({40, 6}), net.params[0].detach()));
  std::vector<torch::Tensor> copies;
  for (const auto& p : net.params) copies.push_back(torch::zeros_like(p).detach());
  l.unflatten(2, flat, copies);
  CHECK(torch::equal(copies[0], net.params[0].detach()));
  CHECK(torch::equal(copies[1], net.params[1].detach()));
  CHECK(copies[2].abs().sum().item<double>() == 0);  // another bucket's
  CHECK_THROWS_WITH(janus::dp::BucketLayout::make(net.params, 0, 1), Catch::Contains("bucket_bytes"));
}

TEST_CASE("GradientSync (one rank): libtorch's gradients, reduced while the backward runs", "[dp]") {
  Net net;
  Solo solo;
  const torch::Tensor x = torch::randn({5, 6});
  const auto expected = torch::autograd::grad({net.loss(x)}, net.params);
  for (const bool shard : {false, true}) {
    INFO("shard " << shard);
    solo.started = 0;
    janus::dp::GradientSync sync(solo, net.params, 400 * sizeof(float), shard);
    REQUIRE(sync.buckets() == 3);  // (3 + 90 + 30), (1200), (40 + 240)
    sync.arm();
    net.loss(x).backward();
    sync.finish();
    CHECK(solo.started == 3);
    CHECK(sync.started_during_backward() >= 2);  // the last bucket may wait for finish()
    for (const auto& p : net.params) CHECK_FALSE(p.grad().defined());  // released
    if (!shard) {
      for (std::size_t i = 0; i < net.params.size(); ++i) CHECK(janus_test::bit_equal(sync.summed()[i], expected[i]));
    } else {
      const auto& l = sync.layout();
      for (std::size_t b = 0; b < l.buckets.size(); ++b) CHECK(torch::equal(sync.shards()[b], l.flatten(b, expected)));
    }
    sync.release();
    // not armed: libtorch's gradients as usual
    net.loss(x).backward();
    CHECK(janus_test::bit_equal(net.params[0].grad(), expected[0]));
    for (auto& p : net.params) p.mutable_grad().reset();
  }
}

TEST_CASE("ShardedAdamW (one rank): AdamW's update, clip by the global norm, checkpoint round trip", "[dp]") {
  Net ref_net, net;
  Solo solo;
  const torch::Tensor x = torch::randn({5, 6});
  torch::optim::AdamW ref(ref_net.params, torch::optim::AdamWOptions(1e-2).weight_decay(0.1));
  janus::dp::GradientSync sync(solo, net.params, 400 * sizeof(float), true);
  janus::dp::AdamWSettings s;
  s.lr = 1e-2;
  s.weight_decay = 0.1;
  janus::dp::ShardedAdamW opt(solo, sync.layout(), net.params, s);
  CHECK(opt.step_count() == 0);
  for (int step = 0; step < 3; ++step) {
    ref.zero_grad();
    ref_net.loss(x).backward();
    const double ref_norm = torch::nn::utils::clip_grad_norm_(ref_net.params, 0.5);
    ref.step();
    sync.arm();
    net.loss(x).backward();
    sync.finish();
    const double norm = opt.grad_norm(sync.shards());
    CHECK(norm == Approx(ref_norm).epsilon(1e-6));
    REQUIRE(opt.step(sync.shards(), norm, 0.5, 1e-2, net.params));
    sync.release();
  }
  CHECK(opt.step_count() == 3);
  double worst = 0;
  for (std::size_t i = 0; i < net.params.size(); ++i)
    worst = std::max(worst, (net.params[i] - ref_net.params[i]).abs().max().item<double>());
  CHECK(worst < 1e-6);
  // gather -> scatter into a fresh optimizer continues identically
  const auto full = opt.gather();
  REQUIRE(full.exp_avg.size() == net.params.size());
  auto& state = ref.state();
  using Key = typename std::decay_t<decltype(state)>::key_type;
  for (std::size_t i = 0; i < net.params.size(); ++i) {
    const auto& st = static_cast<torch::optim::AdamWParamState&>(*state.at(janus::dp::optimizer_key<Key>(ref_net.params[i])));
    CHECK(torch::allclose(full.exp_avg[i].view(st.exp_avg().sizes()), st.exp_avg(), 1e-5, 1e-9));
    CHECK(torch::allclose(full.exp_avg_sq[i].view(st.exp_avg_sq().sizes()), st.exp_avg_sq(), 1e-5, 1e-12));
    CHECK(torch::equal(full.master[i].view(net.params[i].sizes()), net.params[i].detach()));
  }
  janus::dp::ShardedAdamW again(solo, sync.layout(), net.params, s);
  again.scatter(full);
  CHECK(again.step_count() == 3);
  const auto back = again.gather();
  for (std::size_t i = 0; i < net.params.size(); ++i) CHECK(torch::equal(back.exp_avg_sq[i], full.exp_avg_sq[i]));
}

// ---------------------------------------------------------------- janus_trainer across processes

namespace {

const std::string kTrainer = JANUS_TRAINER_BIN;
const std::string kWarm = std::string(JANUS_TEST_DATA_DIR) + "/warm_single_object_8x8.safetensors";

/// The largest |difference| of final weights allowed between runs on 1 and 2 processes (and
/// sharded vs unsharded) after 4 steps at lr 1e-3. The gradients differ by float32 summation
/// order (one batch's backward vs two halves' added; the global norm summed by shards), and
/// AdamW's first steps move a weight by about lr whatever its gradient's size, so round-off in
/// a gradient near zero could become a fraction of lr. Measured here: 1.2e-7 (one float32 ulp
/// of the largest weights) for both comparisons, while training moved the weights by 4.0e-3.
constexpr double kWeightBound = 2e-6;

std::vector<std::string> rl_args(const fs::path& out, int steps, const std::vector<std::string>& extra = {},
                                 const std::string& timeout_s = "60") {
  std::vector<std::string> a = {kTrainer, "-q", "rl", "--init", kWarm, "--grid", "8", "--prompts", "4", "--group", "4",
                                "--steps", std::to_string(steps), "--save-every", "2", "--image-every", "2",
                                "--eval-samples", "1", "--threads", "1", "--lr", "1e-3", "--reward", "partial",
                                // constant: these runs are resumed with a larger --steps and compared with
                                // straight runs, and a resume stretches a decaying schedule (the default, linear)
                                "--lr-schedule", "constant",
                                "--dist-timeout", timeout_s, "--out", out.string()};
  a.insert(a.end(), extra.begin(), extra.end());
  return a;
}

std::vector<std::string> resume_args(const fs::path& run, int steps) {
  return {kTrainer, "-q", "rl", "--resume", run.string(), "--steps", std::to_string(steps), "--threads", "1",
          "--dist-timeout", "60"};
}

struct Launch {
  std::vector<Exit> exits;
  std::vector<std::string> logs;
  std::string text() const {
    std::string t;
    for (std::size_t r = 0; r < logs.size(); ++r) t += "---- rank " + std::to_string(r) + " ----\n" + logs[r];
    return t;
  }
  bool ok() const {
    for (const auto& e : exits)
      if (!e.exited || e.code() != 0) return false;
    return true;
  }
};

/// Runs `args` as `world` processes (world 1: no launch variables at all) and waits.
Launch launch(int world, const std::vector<std::string>& args, const fs::path& logs, const std::string& name,
              const std::map<int, std::map<std::string, std::string>>& extra_env = {}, double limit_s = 300) {
  fs::create_directories(logs);
  const int port = free_port();
  std::vector<pid_t> pids;
  for (int r = 0; r < world; ++r) {
    std::map<std::string, std::string> env = world == 1 ? std::map<std::string, std::string>{} : torchrun_env(r, world, port);
    if (extra_env.count(r))
      for (const auto& kv : extra_env.at(r)) env[kv.first] = kv.second;
    pids.push_back(spawn(args, env, (logs / (name + ".rank" + std::to_string(r) + ".log")).string()));
  }
  Launch l;
  for (int r = 0; r < world; ++r) {
    l.exits.push_back(wait_for(pids[static_cast<std::size_t>(r)], limit_s));
    l.logs.push_back(slurp((logs / (name + ".rank" + std::to_string(r) + ".log")).string()));
  }
  return l;
}

std::vector<nlohmann::json> metrics_of(const fs::path& run) {
  std::vector<nlohmann::json> out;
  std::ifstream in(run / "metrics.jsonl");
  for (std::string line; std::getline(in, line);)
    if (!line.empty()) out.push_back(nlohmann::json::parse(line));
  return out;
}

/// Same steps, same rollouts (digest), the same rewards exactly; the other metrics within
/// float32 round-off of their sums.
void check_same_metrics(const std::vector<nlohmann::json>& a, const std::vector<nlohmann::json>& b) {
  REQUIRE(a.size() == b.size());
  for (std::size_t i = 0; i < a.size(); ++i) {
    INFO("metrics line " << i + 1 << "\n" << a[i].dump() << "\n" << b[i].dump());
    CHECK(a[i].at("step") == b[i].at("step"));
    CHECK(a[i].at("rollout_digest") == b[i].at("rollout_digest"));
    for (const char* k : {"reward", "reward_std", "accuracy", "lr"}) CHECK(a[i].at(k) == b[i].at(k));
    for (const char* k : {"loss", "kl", "kl_all", "weight_mean", "critical_fraction", "entropy", "similarity", "grad_norm"}) {
      const double x = a[i].at(k).get<double>(), y = b[i].at(k).get<double>();
      INFO(k << ": " << x << " vs " << y);
      CHECK(std::fabs(x - y) <= 1e-5 * std::max(std::fabs(x), std::fabs(y)) + 1e-9);
    }
  }
}

/// The largest |difference| between the float tensors of two safetensors files with the same
/// names (REQUIREs the same names, dtypes and shapes; other dtypes must be equal).
double weight_difference(const fs::path& a, const fs::path& b) {
  const auto x = janus::load_safetensors(a.string()), y = janus::load_safetensors(b.string());
  std::map<std::string, at::Tensor> ym(y.tensors.begin(), y.tensors.end());
  REQUIRE(x.tensors.size() == y.tensors.size());
  double worst = 0;
  for (const auto& [name, t] : x.tensors) {
    INFO(name);
    REQUIRE(ym.count(name));
    const at::Tensor& u = ym.at(name);
    REQUIRE(t.scalar_type() == u.scalar_type());
    REQUIRE(t.sizes() == u.sizes());
    if (!t.is_floating_point()) {
      if (name != "rng.torch_cpu") CHECK(torch::equal(t, u));
      continue;
    }
    if (t.numel() > 0) worst = std::max(worst, (t.to(torch::kDouble) - u.to(torch::kDouble)).abs().max().item<double>());
  }
  return worst;
}

/// A run of 2 steps on `first_world` processes (`first_args`), then resumed to 4 steps on
/// `resume_world` (REQUIREs both to succeed).
void run_then_resume(const fs::path& run, int first_world, const std::vector<std::string>& first_args, int resume_world,
                     const fs::path& logs, const std::string& name) {
  const Launch a = launch(first_world, first_args, logs, name);
  INFO(a.text());
  REQUIRE(a.ok());
  const Launch b = launch(resume_world, resume_args(run, 4), logs, name + "-resumed");
  INFO(b.text());
  REQUIRE(b.ok());
}

bool files_bit_equal(const fs::path& a, const fs::path& b) { return slurp(a.string()) == slurp(b.string()); }

std::set<std::string> entries(const fs::path& dir) {
  std::set<std::string> s;
  for (const auto& e : fs::directory_iterator(dir)) s.insert(e.path().filename().string());
  return s;
}

}  // namespace

TEST_CASE("data parallel, 2 Gloo processes: one process's rollouts, metrics and weights, one writer, resume",
          "[dp][slow]") {
  janus_test::TempDir tmp("dp_runs");
  const fs::path logs = tmp.path / "logs";
  // the reference: one process, 4 steps
  const Launch one = launch(1, rl_args(tmp.path / "one", 4), logs, "one");
  INFO(one.text());
  REQUIRE(one.ok());
  // two processes, 4 steps
  const Launch two = launch(2, rl_args(tmp.path / "two", 4), logs, "two");
  INFO(two.text());
  REQUIRE(two.ok());

  const auto m1 = metrics_of(tmp.path / "one"), m2 = metrics_of(tmp.path / "two");
  CHECK(m1.size() == 4);  // rank 0 alone appended
  check_same_metrics(m1, m2);
  for (const auto& m : m2) CHECK(m.at("world_size") == 2);
  const double diff = weight_difference(tmp.path / "one" / "model.safetensors", tmp.path / "two" / "model.safetensors");
  const double moved = weight_difference(kWarm, tmp.path / "one" / "model.safetensors");
  WARN("1 vs 2 processes after 4 steps: final weights differ by at most " << diff << " (bound " << kWeightBound
                                                                          << "); training moved them by up to " << moved);
  CHECK(diff <= kWeightBound);
  CHECK(moved > 1e-3);  // the comparison is not between untrained weights: about steps x lr

  // rank 0 alone wrote: the same files as one process's run, checkpoints once, no leftovers
  CHECK(entries(tmp.path / "two") == entries(tmp.path / "one"));
  CHECK(entries(tmp.path / "two" / "checkpoints") == std::set<std::string>{"latest", "step-000002", "step-000004"});
  CHECK(entries(tmp.path / "two" / "images") == entries(tmp.path / "one" / "images"));
  CHECK(entries(tmp.path / "two" / "eval") == entries(tmp.path / "one" / "eval"));
  CHECK(two.logs[0].find("summary") != std::string::npos);
  CHECK(two.logs[1].find("summary") == std::string::npos);
  // the held-out evaluation, split across ranks and gathered, is one process's
  for (const char* f : {"step-000000.json", "step-000004.json"}) {
    auto a = nlohmann::json::parse(slurp((tmp.path / "one" / "eval" / f).string()));
    auto b = nlohmann::json::parse(slurp((tmp.path / "two" / "eval" / f).string()));
    a.erase("seconds");
    b.erase("seconds");
    CHECK(a == b);
  }
  CHECK(files_bit_equal(tmp.path / "one" / "eval" / "step-000004.txt", tmp.path / "two" / "eval" / "step-000004.txt"));
  CHECK(files_bit_equal(tmp.path / "one" / "images" / "step-000004.txt", tmp.path / "two" / "images" / "step-000004.txt"));

  SECTION("resume with the same world size is bit-exact") {
    const fs::path half = tmp.path / "half";
    run_then_resume(half, 2, rl_args(half, 2), 2, logs, "half");
    CHECK(weight_difference(half / "model.safetensors", tmp.path / "two" / "model.safetensors") == 0);
    auto mh = metrics_of(half);
    REQUIRE(mh.size() == 4);
    for (std::size_t i = 0; i < 4; ++i) {
      mh[i].erase("resumed_from");
      auto ref = m2[i];
      for (const char* k : {"sample_time", "reward_time", "ops_time", "train_time", "step_time"}) {
        mh[i].erase(k);
        ref.erase(k);
      }
      CHECK(mh[i] == ref);
    }
  }
  SECTION("resume with another world size (2 -> 1) continues within the bound") {
    const fs::path half = tmp.path / "half1";
    run_then_resume(half, 2, rl_args(half, 2), 1, logs, "half1");
    const auto mh = metrics_of(half);
    check_same_metrics(mh, m1);
    CHECK(weight_difference(half / "model.safetensors", tmp.path / "one" / "model.safetensors") <= kWeightBound);
  }
}

TEST_CASE("data parallel, 2 Gloo processes: the sharded optimizer matches the unsharded run", "[dp][slow]") {
  janus_test::TempDir tmp("dp_sharded");
  const fs::path logs = tmp.path / "logs";
  const Launch plain = launch(2, rl_args(tmp.path / "plain", 4), logs, "plain");
  INFO(plain.text());
  REQUIRE(plain.ok());
  const Launch sharded = launch(2, rl_args(tmp.path / "sharded", 4, {"--shard-optimizer"}), logs, "sharded");
  INFO(sharded.text());
  REQUIRE(sharded.ok());
  CHECK(sharded.logs[0].find("sharded optimizer") != std::string::npos);
  check_same_metrics(metrics_of(tmp.path / "plain"), metrics_of(tmp.path / "sharded"));
  const double diff = weight_difference(tmp.path / "plain" / "model.safetensors", tmp.path / "sharded" / "model.safetensors");
  WARN("sharded vs unsharded optimizer, 2 processes, 4 steps: final weights differ by at most " << diff);
  CHECK(diff <= kWeightBound);
  // the checkpoint has the unsharded layout: the same tensors, moments within the bound
  const double state = weight_difference(tmp.path / "plain" / "checkpoints" / "step-000004" / "trainer.safetensors",
                                         tmp.path / "sharded" / "checkpoints" / "step-000004" / "trainer.safetensors");
  CHECK(state <= kWeightBound);

  SECTION("a sharded run resumes bit-exactly, sharded") {
    const fs::path half = tmp.path / "half";
    run_then_resume(half, 2, rl_args(half, 2, {"--shard-optimizer"}), 2, logs, "half");
    CHECK(weight_difference(half / "model.safetensors", tmp.path / "sharded" / "model.safetensors") == 0);
  }
  SECTION("a sharded checkpoint resumes in one process") {
    const fs::path half = tmp.path / "half1";
    run_then_resume(half, 2, rl_args(half, 2, {"--shard-optimizer"}), 1, logs, "half1");
    CHECK(weight_difference(half / "model.safetensors", tmp.path / "plain" / "model.safetensors") <= kWeightBound);
  }
}

TEST_CASE("data parallel: a rank killed mid-step stops the other with an error within the timeout", "[dp]") {
  janus_test::TempDir tmp("dp_kill");
  const fs::path logs = tmp.path / "logs";
  // rank 1 SIGKILLs itself in its second step, after sampling (GCPO_TRAINER_FAIL_AT, run_dir.hpp)
  const auto args = rl_args(tmp.path / "run", 4, {}, "20");
  const Launch l = launch(2, args, logs, "kill", {{1, {{"GCPO_TRAINER_FAIL_AT", "rl-after-rollouts@2"}}}}, 120);
  INFO(l.text());
  CHECK(l.exits[1].killed_by(SIGKILL));
  REQUIRE(l.exits[0].exited);
  CHECK(l.exits[0].code() == 1);
  // rank 0's whole life (start-up, the first evaluation, one step, the failure) within the
  // timeout plus a margin for a loaded machine: the failure is noticed, not waited out
  WARN("rank 0 exited " << l.exits[0].seconds << " s after both ranks started (collective timeout 20 s)");
  CHECK(l.exits[0].seconds < 20 + 30);
  CHECK(l.logs[0].find("janus::dist: all_gather failed on rank 0 of 2 (backend gloo, timeout 20 s") != std::string::npos);
  // rank 0 saw step 1 through; its last checkpoint-free state is left as the run's
  const auto m = metrics_of(tmp.path / "run");
  CHECK(m.size() == 1);
}

TEST_CASE("data parallel: settings that cannot be split are refused by name", "[dp]") {
  janus_test::TempDir tmp("dp_refused");
  const fs::path logs = tmp.path / "logs";
  auto args = rl_args(tmp.path / "run", 2);
  *(std::find(args.begin(), args.end(), "--prompts") + 1) = "3";
  const Launch l = launch(2, args, logs, "odd");
  INFO(l.text());
  for (const auto& e : l.exits) CHECK(e.code() == 2);
  CHECK(l.logs[0].find("--prompts (3) must be a multiple of the number of processes (2)") != std::string::npos);
  CHECK_FALSE(fs::exists(tmp.path / "run"));
  // sft is one process: refused under a launch of two, before anything is written
  const Launch sft = launch(2, {kTrainer, "-q", "sft", "--grid", "8", "--steps", "2", "--out", (tmp.path / "sft").string()},
                            logs, "sft");
  INFO(sft.text());
  for (const auto& e : sft.exits) CHECK(e.code() == 2);
  CHECK(sft.logs[1].find("sft runs in one process, but WORLD_SIZE is 2") != std::string::npos);
  CHECK_FALSE(fs::exists(tmp.path / "sft"));
}

TEST_CASE("data parallel, --model-dir in bf16: the first step's pictures of one process, sharded bf16 as unsharded",
          "[dp][slow]") {
  // A published-layout directory (tests/data/janus_tiny): the pictures are the VQ decoder's, so
  // the sample sheets show pictures decoded on both ranks and gathered on rank 0.
  janus_test::TempDir tmp("dp_model_dir");
  const fs::path logs = tmp.path / "logs";
  auto args = [&](const fs::path& out, const std::vector<std::string>& extra) {
    std::vector<std::string> a = {kTrainer, "-q", "rl", "--model-dir",
                                  std::string(JANUS_TEST_DATA_DIR) + "/janus_tiny/safetensors", "--grid", "8",
                                  "--dtype", "bf16", "--prompts", "2", "--group", "4", "--tags", "counting",
                                  "--reward", "partial", "--lr", "1e-3", "--steps", "2", "--save-every", "2",
                                  "--image-every", "1", "--eval-samples", "1", "--threads", "1", "--dist-timeout", "60",
                                  "--out", out.string()};
    a.insert(a.end(), extra.begin(), extra.end());
    return a;
  };
  const Launch one = launch(1, args(tmp.path / "one", {}), logs, "one");
  INFO(one.text());
  REQUIRE(one.ok());
  const Launch two = launch(2, args(tmp.path / "two", {}), logs, "two");
  INFO(two.text());
  REQUIRE(two.ok());
  const Launch sharded = launch(2, args(tmp.path / "sharded", {"--shard-optimizer"}), logs, "sharded");
  INFO(sharded.text());
  REQUIRE(sharded.ok());
  // bf16: the model's gradients are bf16, and another split of the batch rounds them
  // differently. The first step samples with the same weights: identical rollouts, pictures and
  // rewards, gradient norms within bf16 round-off; after the first update the runs agree within
  // bf16 round-off, not bitwise, so later rollouts may differ.
  const auto m1 = metrics_of(tmp.path / "one"), m2 = metrics_of(tmp.path / "two"), ms = metrics_of(tmp.path / "sharded");
  REQUIRE(m1.size() == 2);
  REQUIRE(m2.size() == 2);
  CHECK(m1[0].at("rollout_digest") == m2[0].at("rollout_digest"));
  CHECK(m1[0].at("reward") == m2[0].at("reward"));
  CHECK(m1[0].at("accuracy") == m2[0].at("accuracy"));
  const double g1 = m1[0].at("grad_norm").get<double>(), g2 = m2[0].at("grad_norm").get<double>();
  WARN("bf16, step 1: gradient norm " << g1 << " in one process, " << g2 << " in two");
  CHECK(std::fabs(g1 - g2) <= 1e-2 * g1);
  for (const char* f : {"images/step-000001.png", "eval/step-000000.png"}) {
    INFO(f);
    REQUIRE(fs::exists(tmp.path / "one" / f));
    CHECK(files_bit_equal(tmp.path / "one" / f, tmp.path / "two" / f));
  }
  // sharded vs unsharded on the same 2 ranks: the same bf16 gradients, summed in float32 alike;
  // only the global norm's summation order differs
  check_same_metrics(m2, ms);
  for (const char* f : {"images/step-000001.png", "images/step-000002.png", "eval/step-000000.png", "eval/step-000002.png"}) {
    INFO(f);
    CHECK(files_bit_equal(tmp.path / "two" / f, tmp.path / "sharded" / f));
  }
  const fs::path ckpt = fs::path("checkpoints") / "step-000002" / "trainer.safetensors";
  const double diff_sharded = weight_difference(tmp.path / "two" / ckpt, tmp.path / "sharded" / ckpt);
  WARN("bf16 --model-dir, 2 steps on 2 ranks: float32 master weights and moments of the sharded and the unsharded "
       "optimizer differ by at most " << diff_sharded);
  CHECK(diff_sharded <= kWeightBound);
}

#if defined(JANUS_LOOPBACK_SERVER)
// Real prompts and a reward server (issue 13) on 2 processes: each rank sends its own rows'
// pictures and the rewards are gathered, so the run is the one process's.
namespace {
std::vector<std::string> real_io_args(const fs::path& out, const std::string& prompts, int port,
                                      const std::vector<std::string>& extra = {}) {
  std::vector<std::string> a = {kTrainer, "-q", "rl", "--model-dir",
                                std::string(JANUS_TEST_DATA_DIR) + "/janus_tiny/safetensors", "--grid", "8",
                                "--prompts", prompts, "--prompts-per-step", "2", "--group", "4",
                                "--tokenizer", std::string(JANUS_TEST_DATA_DIR) + "/../fixtures/tokenizer/tiny.json",
                                "--reward-server", "http://127.0.0.1:" + std::to_string(port), "--lr", "1e-3",
                                "--steps", "3", "--seed", "1", "--save-every", "0", "--image-every", "0", "--threads", "1",
                                "--dist-timeout", "60", "--out", out.string()};
  a.insert(a.end(), extra.begin(), extra.end());
  return a;
}

std::string write_prompt_file(const fs::path& dir) {
  const fs::path p = dir / "prompts.jsonl";
  std::ofstream(p) << R"({"tag": "colors", "include": [{"class": "cat", "count": 1, "color": "red"}], "prompt": "a red cat"})" "\n"
                   << R"({"tag": "single_object", "include": [{"class": "cat", "count": 1}], "prompt": "a cat"})" "\n"
                   << R"({"tag": "two_object", "include": [{"class": "cat", "count": 1}, {"class": "dinosaur", "count": 1}], "prompt": "a cat and a red cat"})" "\n";
  return p.string();
}
}  // namespace

TEST_CASE("data parallel, a prompt file and a reward server: 2 processes score their rows, one process's run",
          "[dp][real-io]") {
  janus_test::TempDir tmp("dp_real_io");
  const fs::path logs = tmp.path / "logs";
  const std::string prompts = write_prompt_file(tmp.path);
  janus_rw_test::LoopbackServer server({"--request-log", (tmp.path / "requests.jsonl").string()},
                                       (tmp.path / "server.err").string());
  const Launch one = launch(1, real_io_args(tmp.path / "one", prompts, server.port()), logs, "one");
  INFO(one.text());
  REQUIRE(one.ok());
  const Launch two = launch(2, real_io_args(tmp.path / "two", prompts, server.port()), logs, "two");
  INFO(two.text());
  REQUIRE(two.ok());
  const auto m1 = metrics_of(tmp.path / "one"), m2 = metrics_of(tmp.path / "two");
  check_same_metrics(m1, m2);
  // Seed 1 draws, at some step, a prompt the scorer rewards (rank 0's rows) and one it does not
  // (rank 1's): only rewards gathered in row order give one process's metrics then.
  bool mixed = false;
  for (const auto& m : m1) mixed = mixed || (m.at("reward").get<double>() > 0 && m.at("reward").get<double>() < 1);
  CHECK(mixed);
  for (std::size_t i = 0; i < m2.size(); ++i) {
    // 8 pictures in requests of 2: 4 from one process, 2 from each of two
    CHECK(m1[i].at("reward_server").at("requests").get<double>() == 4);
    CHECK(m2[i].at("reward_server").at("requests").get<double>() == 4);
  }
  // 3 steps x 4 requests, twice
  std::ifstream req(tmp.path / "requests.jsonl");
  int n = 0;
  for (std::string line; std::getline(req, line);) n += line.empty() ? 0 : 1;
  CHECK(n == 24);
}

TEST_CASE("data parallel, a reward server that fails: every rank stops with the error, none hangs", "[dp][real-io]") {
  janus_test::TempDir tmp("dp_real_io_fail");
  const fs::path logs = tmp.path / "logs";
  const std::string prompts = write_prompt_file(tmp.path);
  janus_rw_test::LoopbackServer server({"--fault", "http500"}, (tmp.path / "server.err").string());
  const Launch two = launch(2,
                            real_io_args(tmp.path / "two", prompts, server.port(),
                                         {"--reward-retries", "0", "--reward-failures", "0"}),
                            logs, "fail", {}, 120);
  INFO(two.text());
  for (std::size_t r = 0; r < 2; ++r) {
    REQUIRE(two.exits[r].exited);
    CHECK(two.exits[r].code() == 1);
    CHECK(two.logs[r].find("HTTP status 500") != std::string::npos);  // each rank's own request failed
    CHECK(two.logs[r].find("--reward-failures 0") != std::string::npos);
  }
  const auto m = metrics_of(tmp.path / "two");
  REQUIRE(m.size() == 1);  // rank 0 wrote the skipped attempt, once
  CHECK(m[0].contains("skipped"));
}
#endif
