// Run-safety tests of the janus_trainer command line (issue 8): the real binary is started as
// a child process (fork + exec) on bad flags, corrupted and mistyped checkpoints, a resume into
// a copy, two runs on one directory, SIGINT / SIGTERM mid-run, simulated crashes at named points
// of a checkpoint replacement (GCPO_TRAINER_FAIL_AT), and bad JSONL inputs. Every case asserts a
// clear message (the flag, file or tensor named), the exit status, and that no file of an
// earlier run changed or was lost: each earlier run directory is read in full (every file's
// bytes, every directory) before and after, and compared.
//
// The runs are tiny (8 x 8 grid, the 115k-parameter warm start of tests/data, 1 prompt x 2
// samples per step, one thread) so that the whole suite takes about a minute on 2 cores.
// Nothing here links libtorch: the safetensors files are edited as bytes + JSON header.
#include <catch2/catch.hpp>

#include <fcntl.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <functional>
#include <map>
#include <memory>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include <nlohmann/json.hpp>

namespace fs = std::filesystem;

namespace {

const std::string kTrainer = JANUS_TRAINER_BIN;
const std::string kWarm = std::string(JANUS_TEST_DATA_DIR) + "/warm_single_object_8x8.safetensors";

// ---- processes -------------------------------------------------------------------------------

struct Result {
  int rc = -1;          ///< exit status when it exited
  int signal = 0;       ///< the signal that ended it, 0 when it exited
  bool timed_out = false;
  std::string out, err;
  std::string text() const { return out + err; }
};

std::string read_all(const fs::path& p) {
  std::ifstream f(p, std::ios::binary);
  std::ostringstream os;
  os << f.rdbuf();
  return os.str();
}

void write_all(const fs::path& p, const std::string& bytes) {
  std::ofstream f(p, std::ios::binary | std::ios::trunc);
  f << bytes;
}

/// A scratch directory removed at the end of a test.
struct TempDir {
  fs::path path;
  explicit TempDir(const std::string& name) {
    path = fs::temp_directory_path() / ("janus_cli_" + name + "_" + std::to_string(::getpid()));
    fs::remove_all(path);
    fs::create_directories(path);
  }
  ~TempDir() {
    std::error_code ec;
    fs::remove_all(path, ec);
  }
  fs::path operator/(const std::string& s) const { return path / s; }
};

/// The trainer started in the background, its output in files.
class Child {
 public:
  Child(const std::vector<std::string>& args, const std::map<std::string, std::string>& env, const fs::path& logs) {
    static int serial = 0;
    const std::string tag = std::to_string(++serial);
    out_ = logs / ("stdout." + tag);
    err_ = logs / ("stderr." + tag);
    std::vector<std::string> argv = {kTrainer};
    argv.insert(argv.end(), args.begin(), args.end());
    pid_ = ::fork();
    REQUIRE(pid_ >= 0);
    if (pid_ == 0) {
      ::unsetenv("GCPO_TRAINER_FAIL_AT");
      for (const auto& kv : env) ::setenv(kv.first.c_str(), kv.second.c_str(), 1);
      const int o = ::open(out_.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
      const int e = ::open(err_.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
      if (o < 0 || e < 0) ::_exit(120);
      ::dup2(o, 1);
      ::dup2(e, 2);
      std::vector<char*> cargv;
      for (auto& a : argv) cargv.push_back(&a[0]);
      cargv.push_back(nullptr);
      ::execv(kTrainer.c_str(), cargv.data());
      ::_exit(121);
    }
  }
  void signal(int sig) const { ::kill(pid_, sig); }
  pid_t pid() const { return pid_; }
  /// Waits for the end (killing the child after `timeout_s`).
  Result wait(double timeout_s = 120) {
    Result r;
    const auto t0 = std::chrono::steady_clock::now();
    int status = 0;
    for (;;) {
      const pid_t w = ::waitpid(pid_, &status, WNOHANG);
      if (w == pid_) break;
      if (std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count() > timeout_s) {
        ::kill(pid_, SIGKILL);
        ::waitpid(pid_, &status, 0);
        r.timed_out = true;
        break;
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(10));
    }
    if (WIFEXITED(status)) r.rc = WEXITSTATUS(status);
    if (WIFSIGNALED(status)) r.signal = WTERMSIG(status);
    r.out = read_all(out_);
    r.err = read_all(err_);
    return r;
  }

 private:
  pid_t pid_ = -1;
  fs::path out_, err_;
};

Result run(const std::vector<std::string>& args, const fs::path& logs, const std::map<std::string, std::string>& env = {},
           double timeout_s = 120) {
  Child c(args, env, logs);
  return c.wait(timeout_s);
}

// ---- run directories -------------------------------------------------------------------------

/// Every file's bytes and every directory of `dir` (relative paths; directories as "<dir>").
std::map<std::string, std::string> snapshot(const fs::path& dir) {
  std::map<std::string, std::string> s;
  for (const auto& e : fs::recursive_directory_iterator(dir)) {
    const std::string rel = fs::relative(e.path(), dir).string();
    s[rel] = e.is_directory() ? std::string("<dir>") : read_all(e.path());
  }
  return s;
}

/// Names the first difference between two snapshots ("" when equal).
std::string difference(const std::map<std::string, std::string>& before, const std::map<std::string, std::string>& after) {
  for (const auto& kv : before) {
    const auto it = after.find(kv.first);
    if (it == after.end()) return "lost: " + kv.first;
    if (it->second != kv.second) return "changed: " + kv.first;
  }
  for (const auto& kv : after)
    if (!before.count(kv.first)) return "added: " + kv.first;
  return "";
}

/// The tiny RL settings of every run here.
std::vector<std::string> rl_args(const fs::path& out, int steps, int save_every) {
  return {"-q",           "rl",         "--init",         kWarm, "--grid",         "8",
          "--tags",       "single_object", "--prompts",   "1",   "--group",        "2",
          "--eval-samples", "1",        "--image-every",  "2",   "--threads",      "1",
          "--steps",      std::to_string(steps), "--save-every", std::to_string(save_every), "--out", out.string()};
}

/// A finished run of `steps` steps with checkpoints every `save_every`.
void make_run(const fs::path& out, const fs::path& logs, int steps = 4, int save_every = 2) {
  const Result r = run(rl_args(out, steps, save_every), logs);
  INFO(r.text());
  REQUIRE(r.rc == 0);
  REQUIRE(fs::exists(out / "checkpoints" / "latest"));
}

/// One finished run (4 steps, checkpoints at 2 and 4) shared by the sections of a test case
/// (Catch2 runs a test case's body once per section: the run is made on the first pass only).
/// Its directory lives until the end of the process.
const fs::path& shared_run(const std::string& name) {
  static std::map<std::string, std::unique_ptr<TempDir>> dirs;
  auto& d = dirs[name];
  if (!d) {
    d = std::make_unique<TempDir>("shared_" + name);
    make_run(d->path / "base", d->path);
  }
  static std::map<std::string, fs::path> bases;
  bases[name] = d->path / "base";
  return bases[name];
}

std::vector<std::string> lines_of(const fs::path& p) {
  std::vector<std::string> v;
  std::istringstream is(read_all(p));
  for (std::string l; std::getline(is, l);)
    if (!l.empty()) v.push_back(l);
  return v;
}

std::string latest(const fs::path& run) {
  std::string s = read_all(run / "checkpoints" / "latest");
  while (!s.empty() && (s.back() == '\n' || s.back() == ' ')) s.pop_back();
  return s;
}

bool has(const std::string& text, const std::string& what) { return text.find(what) != std::string::npos; }

/// Names under `dir` that contain `part`.
std::vector<std::string> names_with(const fs::path& dir, const std::string& part) {
  std::vector<std::string> v;
  for (const auto& e : fs::recursive_directory_iterator(dir))
    if (has(e.path().filename().string(), part)) v.push_back(fs::relative(e.path(), dir).string());
  return v;
}

/// A failed command's common checks: a clear message naming `what`, the status of a bad input
/// (1 or 2: an error, not a crash, an abort or a hang), and the earlier run untouched.
void expect_refused(const Result& r, const std::vector<std::string>& what, const fs::path& earlier,
                    const std::map<std::string, std::string>& before) {
  INFO("stderr: " << r.err);
  CHECK_FALSE(r.timed_out);
  CHECK(r.signal == 0);
  CHECK((r.rc == 1 || r.rc == 2));
  for (const auto& w : what) CHECK(has(r.err, w));
  CHECK(difference(before, snapshot(earlier)) == "");
}

// ---- safetensors as bytes ----------------------------------------------------------------------

struct StFile {
  nlohmann::json header;
  std::string data;
};

StFile read_st(const fs::path& p) {
  const std::string b = read_all(p);
  REQUIRE(b.size() >= 8);
  std::uint64_t n = 0;
  for (int i = 0; i < 8; ++i) n |= static_cast<std::uint64_t>(static_cast<unsigned char>(b[static_cast<std::size_t>(i)])) << (8 * i);
  StFile f;
  f.header = nlohmann::json::parse(b.substr(8, n));
  f.data = b.substr(8 + n);
  return f;
}

void write_st(const fs::path& p, const StFile& f) {
  std::string h = f.header.dump();
  while (h.size() % 8 != 0) h.push_back(' ');
  std::string b(8, '\0');
  for (int i = 0; i < 8; ++i) b[static_cast<std::size_t>(i)] = static_cast<char>((h.size() >> (8 * i)) & 0xff);
  write_all(p, b + h + f.data);
}

/// Writes `value` as the first element of float tensor `name`.
void poke_f32(StFile& f, const std::string& name, float value) {
  const auto begin = f.header.at(name).at("data_offsets").at(0).get<std::size_t>();
  std::memcpy(&f.data[begin], &value, 4);
}

void poke_i64(StFile& f, const std::string& name, std::int64_t value) {
  const auto begin = f.header.at(name).at("data_offsets").at(0).get<std::size_t>();
  std::memcpy(&f.data[begin], &value, 8);
}

/// The first tensor whose name starts with `prefix` and ends with `suffix`.
std::string tensor_named(const StFile& f, const std::string& prefix, const std::string& suffix) {
  for (auto it = f.header.begin(); it != f.header.end(); ++it) {
    const std::string& k = it.key();
    if (k.size() >= prefix.size() + suffix.size() && k.compare(0, prefix.size(), prefix) == 0 &&
        k.compare(k.size() - suffix.size(), suffix.size(), suffix) == 0)
      return k;
  }
  FAIL("no tensor " << prefix << "*" << suffix);
  return "";
}

pid_t dead_pid() {
  const pid_t p = ::fork();
  if (p == 0) ::_exit(0);
  int st = 0;
  ::waitpid(p, &st, 0);
  return p;
}

}  // namespace

// ================================================================================================

TEST_CASE("cli: every bad number or name is refused by its flag, and an earlier run is untouched", "[cli]") {
  TempDir t("flags");
  const fs::path runp = t / "run";
  make_run(runp, t.path);
  const auto before = snapshot(runp);
  const std::string R = runp.string();
  // {arguments, what the message must name}
  const std::vector<std::pair<std::vector<std::string>, std::string>> cases = {
      {{"rl", "--init", kWarm, "--out", R, "--lr", "inf"}, "--lr"},
      {{"rl", "--init", kWarm, "--out", R, "--lr", "nan"}, "--lr"},
      {{"rl", "--init", kWarm, "--out", R, "--lr", "1e400"}, "--lr"},
      {{"rl", "--init", kWarm, "--out", R, "--beta", "nan"}, "--beta"},
      {{"rl", "--init", kWarm, "--out", R, "--warmup", "-1"}, "--warmup"},
      {{"rl", "--init", kWarm, "--out", R, "--min-lr-ratio", "2"}, "--min-lr-ratio"},
      {{"rl", "--init", kWarm, "--out", R, "--seed", "-1"}, "--seed"},
      {{"rl", "--init", kWarm, "--out", R, "--seed", "abc"}, "--seed"},
      {{"rl", "--init", kWarm, "--out", R, "--seed", "99999999999999999999999"}, "--seed"},
      {{"rl", "--init", kWarm, "--out", R, "--split-seed", "1.5"}, "--split-seed"},
      {{"rl", "--init", kWarm, "--out", R, "--save-every", "-2"}, "--save-every"},
      {{"rl", "--init", kWarm, "--out", R, "--eval-every", "-1"}, "--eval-every"},
      {{"rl", "--init", kWarm, "--out", R, "--eval-samples", "0"}, "--eval-samples"},
      {{"rl", "--init", kWarm, "--out", R, "--eval-batch", "0"}, "--eval-batch"},
      {{"rl", "--init", kWarm, "--out", R, "--max-grad-norm", "inf"}, "--max-grad-norm"},
      {{"rl", "--init", kWarm, "--out", R, "--weight-decay", "nan"}, "--weight-decay"},
      {{"rl", "--init", kWarm, "--out", R, "--steps", "-5"}, "--steps"},
      {{"rl", "--init", kWarm, "--out", R, "--steps", "99999999999"}, "--steps"},
      {{"rl", "--init", kWarm, "--out", R, "--group", "0"}, "--group"},
      {{"rl", "--init", kWarm, "--out", R, "--prompts", "0"}, "--prompts"},
      {{"rl", "--init", kWarm, "--out", R, "--prompts", "4096", "--group", "4096"}, "--prompts"},
      {{"rl", "--init", kWarm, "--out", R, "--grid", "abc"}, "--grid"},
      {{"rl", "--init", kWarm, "--out", R, "--grid", "99999999999"}, "--grid"},
      {{"rl", "--init", kWarm, "--out", R, "--cfg", "nan"}, "--cfg"},
      {{"rl", "--init", kWarm, "--out", R, "--temperature", "0"}, "--temperature"},
      {{"rl", "--init", kWarm, "--out", R, "--top-k", "-1"}, "--top-k"},
      {{"rl", "--init", kWarm, "--out", R, "--top-p", "0"}, "--top-p"},
      {{"rl", "--init", kWarm, "--out", R, "--heldout-fraction", "1"}, "--heldout-fraction"},
      {{"rl", "--init", kWarm, "--out", R, "--weight-clip", "nan"}, "--weight-clip"},
      {{"rl", "--init", kWarm, "--out", R, "--initial-frac", "1.5"}, "--initial-frac"},
      {{"rl", "--init", kWarm, "--out", R, "--gradient-frac", "-0.1"}, "--gradient-frac"},
      {{"rl", "--init", kWarm, "--out", R, "--similarity-frac", "inf"}, "--similarity-frac"},
      {{"rl", "--init", kWarm, "--out", R, "--threads", "-1"}, "--threads"},
      {{"rl", "--init", kWarm, "--out", R, "--algo", "foo"}, "--algo"},
      {{"rl", "--init", kWarm, "--out", R, "--reward", "best"}, "--reward"},
      {{"rl", "--init", kWarm, "--out", R, "--lr-schedule", "exp"}, "--lr-schedule"},
      {{"rl", "--init", kWarm, "--out", R, "--device", "tpu"}, "--device"},
      {{"rl", "--init", kWarm, "--out", R, "--tags", "single_object,nope"}, "--tags"},
      {{"rl", "--init", (t / "missing.safetensors").string(), "--out", R}, "--init"},
      {{"rl", "--out", R}, "--init"},
      {{"sft", "--out", R, "--batch", "0"}, "--batch"},
      {{"sft", "--out", R, "--hidden", "0"}, "--hidden"},
      {{"sft", "--out", R, "--hidden", "30", "--heads", "4"}, "--hidden"},
      {{"sft", "--out", R, "--layers", "0"}, "--layers"},
      {{"sft", "--out", R, "--intermediate", "-1"}, "--intermediate"},
      {{"sft", "--out", R, "--uncond-prob", "1.5"}, "--uncond-prob"},
      {{"eval", "--model", R, "--batch", "0"}, "--batch"},
      {{"eval", "--model", R, "--samples", "0"}, "--samples"},
      {{"eval", "--model", R, "--cfg", "inf"}, "--cfg"},
      {{"eval", "--model", R, "--seed", "-3"}, "--seed"},
      {{"sample", "--model", R, "--prompt", "a photo of a square", "-n", "0"}, "-n"},
      {{"sample", "--model", R, "--prompt", "a photo of a square", "--temperature", "-1"}, "--temperature"},
  };
  for (const auto& [args, flag] : cases) {
    std::string line;
    for (const auto& a : args) line += a + " ";
    INFO(line);
    const Result r = run(args, t.path, {}, 60);
    INFO("stderr: " << r.err);
    CHECK_FALSE(r.timed_out);  // `eval --batch 0` used to hang
    CHECK(r.signal == 0);      // `--grid abc` used to abort (rc 134)
    CHECK(r.rc == 2);          // a command-line error
    CHECK(has(r.err, flag));
  }
  CHECK(difference(before, snapshot(runp)) == "");
  CHECK_FALSE(fs::exists(t / "run.replaced"));
}

TEST_CASE("cli: a fresh run refuses a directory holding a run, --replace moves it aside", "[cli]") {
  TempDir t("replace");
  const fs::path runp = t / "run";
  make_run(runp, t.path);
  write_all(runp / "notes.txt", "the user's own file\n");  // not the trainer's: left alone
  const auto before = snapshot(runp);
  Result r = run(rl_args(runp, 2, 1), t.path);
  expect_refused(r, {"already holds a run", "--replace", "--resume"}, runp, before);
  CHECK(r.rc == 2);

  r = run([&] {
    auto a = rl_args(runp, 2, 1);
    a.push_back("--replace");
    return a;
  }(), t.path);
  INFO(r.err);
  REQUIRE(r.rc == 0);
  std::vector<fs::path> aside;
  for (const auto& e : fs::directory_iterator(t.path))
    if (has(e.path().filename().string(), "run.replaced-")) aside.push_back(e.path());
  REQUIRE(aside.size() == 1);
  CHECK(has(r.err, aside[0].string()));
  // Every file of the earlier run is in the aside directory, unchanged (the lock file and the
  // user's file stayed in place).
  auto moved = before;
  moved.erase(".lock");
  moved.erase("notes.txt");
  CHECK(difference(moved, snapshot(aside[0])) == "");
  CHECK(read_all(runp / "notes.txt") == "the user's own file\n");
  CHECK(lines_of(runp / "metrics.jsonl").size() == 2);
  CHECK(latest(runp) == "step-000002");
}

TEST_CASE("cli: two runs on one directory: the second fails at once, the first is intact", "[cli]") {
  TempDir t("lock");
  const fs::path runp = t / "run";
  Child first(rl_args(runp, 100000, 1), {}, t.path);
  // Wait until the first run is under way (a metrics line and a checkpoint).
  for (int i = 0; i < 3000 && !(fs::exists(runp / "checkpoints" / "latest") && lines_of(runp / "metrics.jsonl").size() >= 2); ++i)
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  REQUIRE(fs::exists(runp / "checkpoints" / "latest"));
  const std::string config_before = read_all(runp / "config.json");
  const std::string lock_before = read_all(runp / ".lock");

  const auto t0 = std::chrono::steady_clock::now();
  Result second = run(rl_args(runp, 3, 1), t.path);
  auto add_replace = rl_args(runp, 3, 1);
  add_replace.push_back("--replace");
  Result third = run(add_replace, t.path);
  Result resume = run({"rl", "--resume", runp.string(), "--steps", "3"}, t.path);
  const double waited = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  for (const Result* r : {&second, &third, &resume}) {
    INFO(r->err);
    CHECK(r->rc == 1);
    CHECK(has(r->err, "in use by another janus_trainer"));
    CHECK(has(r->err, "pid " + std::to_string(first.pid())));
  }
  CHECK(waited < 30);  // they did not wait for the lock

  first.signal(SIGTERM);
  const Result r = first.wait();
  INFO(r.err);
  CHECK(r.rc == 143);
  // The first run's files: its config, its lock, and its steps 1..K each exactly once.
  CHECK(read_all(runp / "config.json") == config_before);
  CHECK(read_all(runp / ".lock") == lock_before);
  const auto lines = lines_of(runp / "metrics.jsonl");
  for (std::size_t i = 0; i < lines.size(); ++i) CHECK(nlohmann::json::parse(lines[i]).at("step") == i + 1);
  char name[32];
  std::snprintf(name, sizeof name, "step-%06zu", lines.size());
  CHECK(latest(runp) == name);
  CHECK_FALSE(fs::exists(runp.string() + ".replaced"));
  for (const auto& e : fs::directory_iterator(t.path)) CHECK_FALSE(has(e.path().filename().string(), ".replaced-"));
}

TEST_CASE("cli: a resume writes only into the directory it resumes and refuses other flags by name", "[cli]") {
  TempDir t("resume");
  const fs::path orig = t / "orig", copy = t / "copy";
  make_run(orig, t.path);
  fs::copy(orig, copy, fs::copy_options::recursive);
  const auto orig_before = snapshot(orig);
  const auto copy_before = snapshot(copy);

  // Flags that would change what the run computes, or where it writes, are refused by name.
  const std::vector<std::pair<std::vector<std::string>, std::string>> refused = {
      {{"--lr", "0.5"}, "--lr"},          {{"--lr", "nan"}, "--lr"},         {{"--group", "0"}, "--group"},
      {{"--group", "3"}, "--group"},      {{"--algo", "grpo"}, "--algo"},    {{"--init", kWarm}, "--init"},
      {{"--grid", "8"}, "--grid"},        {{"--seed", "3"}, "--seed"},       {{"--detach-weight"}, "--detach-weight"},
      {{"--replace"}, "--replace"},       {{"--beta", "0.1"}, "--beta"},     {{"--tags", "colors"}, "--tags"},
      {{"--out", orig.string()}, "--out"}, {{"--steps", "3"}, "--steps"},  // below the checkpoint's step 4
  };
  for (const auto& [extra, flag] : refused) {
    std::vector<std::string> args = {"rl", "--resume", copy.string()};
    args.insert(args.end(), extra.begin(), extra.end());
    INFO(flag);
    const Result r = run(args, t.path);
    expect_refused(r, {flag}, copy, copy_before);
    CHECK(r.rc == 2);
  }
  CHECK(difference(orig_before, snapshot(orig)) == "");

  // The copy continues in the copy, --out naming it is accepted; the original is untouched.
  const Result r = run({"-q", "rl", "--resume", copy.string(), "--out", copy.string(), "--steps", "6", "--threads", "1"},
                       t.path);
  INFO(r.err);
  REQUIRE(r.rc == 0);
  CHECK(difference(orig_before, snapshot(orig)) == "");
  CHECK(latest(copy) == "step-000006");
  CHECK(fs::exists(copy / "checkpoints" / "step-000006" / "trainer.safetensors"));
  const auto cfg = nlohmann::json::parse(read_all(copy / "config.json"));
  CHECK(fs::path(cfg.at("out").get<std::string>()) == fs::absolute(copy));
  CHECK(cfg.at("steps") == 6);
  // metrics.jsonl is only appended to: the copy's earlier lines stay byte for byte.
  const auto lines = lines_of(copy / "metrics.jsonl");
  REQUIRE(lines.size() == 6);
  const auto old_lines = lines_of(orig / "metrics.jsonl");
  for (std::size_t i = 0; i < 4; ++i) CHECK(lines[i] == old_lines[i]);
  CHECK(nlohmann::json::parse(lines[4]).at("step") == 5);
  CHECK(nlohmann::json::parse(lines[4]).at("resumed_from") == 4);
  // What a resume must refuse in its own checkpoint's records: a checkpoint outside a run.
  fs::copy(copy / "checkpoints" / "step-000006", t / "loose", fs::copy_options::recursive);
  const auto loose = snapshot(t / "loose");
  expect_refused(run({"rl", "--resume", (t / "loose").string()}, t.path), {"outside a run directory"}, t / "loose", loose);
}

TEST_CASE("cli: corrupted or mistyped checkpoints and models are refused naming the file and the tensor", "[cli]") {
  TempDir t("corrupt");
  const fs::path base = shared_run("corrupt");
  const std::string ck = "checkpoints/step-000004/";
  const StFile trainer0 = read_st(base / (ck + "trainer.safetensors"));
  const std::string opt_step = tensor_named(trainer0, "optimizer.", ".step");
  const std::string ref = tensor_named(trainer0, "reference.", "norm.weight");

  struct Case {
    std::string name, file;  // file edited, under the latest checkpoint
    std::function<void(StFile&)> edit;
    std::vector<std::string> expect;
  };
  const std::string bias = "gen_head.vision_head.bias", norm = "language_model.model.norm.weight";
  const std::vector<Case> cases = {
      {"F32 -> I32", "model.safetensors", [&](StFile& f) { f.header[bias]["dtype"] = "I32"; },
       {"model.safetensors", bias, "I32"}},
      {"shape [1e30]", "model.safetensors", [&](StFile& f) { f.header[bias]["shape"] = nlohmann::json::array({1e30}); },
       {"model.safetensors", bias, "shape"}},
      {"shape 2^64 - 1", "model.safetensors",
       [&](StFile& f) { f.header[bias]["shape"] = nlohmann::json::array({UINT64_MAX}); }, {"model.safetensors", bias, "shape"}},
      {"shape overflowing int64", "model.safetensors",
       [&](StFile& f) { f.header[bias]["shape"] = {4294967296LL, 4294967296LL, 4}; }, {"model.safetensors", bias, "shape"}},
      {"negative extent", "model.safetensors", [&](StFile& f) { f.header[bias]["shape"] = {-22}; },
       {"model.safetensors", bias, "shape"}},
      {"offsets past the end", "model.safetensors",
       [&](StFile& f) {
         const auto n = f.data.size();
         f.header[bias]["data_offsets"] = {n, n + 88};
       },
       {"model.safetensors", bias, "data_offsets"}},
      {"NaN weight", "model.safetensors", [&](StFile& f) { poke_f32(f, norm, std::nanf("")); },
       {"model.safetensors", norm, "non-finite"}},
      {"Inf reference weight", "trainer.safetensors", [&](StFile& f) { poke_f32(f, ref, INFINITY); },
       {"trainer.safetensors", ref, "non-finite"}},
      {"step \"-3\"", "trainer.safetensors", [&](StFile& f) { f.header["__metadata__"]["step"] = "-3"; },
       {"trainer.safetensors", "'step'", "-3"}},
      {"step \"4abc\"", "trainer.safetensors", [&](StFile& f) { f.header["__metadata__"]["step"] = "4abc"; },
       {"trainer.safetensors", "'step'", "4abc"}},
      {"optimizer step -5", "trainer.safetensors", [&](StFile& f) { poke_i64(f, opt_step, -5); },
       {"trainer.safetensors", opt_step, "-5"}},
      {"optimizer step as F64", "trainer.safetensors", [&](StFile& f) { f.header[opt_step]["dtype"] = "F64"; },
       {"trainer.safetensors", opt_step, "F64"}},
      {"lr null in the config", "trainer.safetensors",
       [&](StFile& f) {
         auto c = nlohmann::json::parse(f.header["__metadata__"]["config"].get<std::string>());
         c["lr"] = nullptr;
         f.header["__metadata__"]["config"] = c.dump();
       },
       {"trainer.safetensors", "'config'"}},
      {"lr -1 in the config", "trainer.safetensors",
       [&](StFile& f) {
         auto c = nlohmann::json::parse(f.header["__metadata__"]["config"].get<std::string>());
         c["lr"] = -1.0;
         f.header["__metadata__"]["config"] = c.dump();
       },
       {"trainer.safetensors", "'config'", "--lr"}},
  };
  for (const auto& cs : cases) {
    DYNAMIC_SECTION(cs.name) {
      const fs::path run_dir = t / "c";
      fs::remove_all(run_dir);
      fs::copy(base, run_dir, fs::copy_options::recursive);
      const fs::path file = run_dir / (ck + cs.file);
      StFile f = read_st(file);
      cs.edit(f);
      write_st(file, f);
      const auto before = snapshot(run_dir);
      Result r = run({"rl", "--resume", run_dir.string(), "--steps", "6"}, t.path);
      expect_refused(r, cs.expect, run_dir, before);
      if (cs.file == "model.safetensors") {
        // The same file read as a model (eval) and as a warm start (rl --init) is refused alike.
        r = run({"eval", "--model", file.string()}, t.path);
        expect_refused(r, cs.expect, run_dir, before);
        r = run({"rl", "--init", file.string(), "--grid", "8", "--out", (t / "fresh").string()}, t.path);
        expect_refused(r, cs.expect, run_dir, before);
        CHECK_FALSE(fs::exists(t / "fresh"));  // nothing created for a bad input
      }
    }
  }
  SECTION("latest naming something else than a checkpoint") {
    const fs::path run_dir = t / "c";
    fs::remove_all(run_dir);
    fs::copy(base, run_dir, fs::copy_options::recursive);
    write_all(run_dir / "checkpoints" / "latest", "../../../etc\n");
    const auto before = snapshot(run_dir);
    expect_refused(run({"rl", "--resume", run_dir.string()}, t.path), {"latest", "../../../etc"}, run_dir, before);
  }
}

TEST_CASE("cli: a non-finite step stops the run, keeping the last good checkpoint", "[cli]") {
  TempDir t("nonfinite");
  const fs::path runp = t / "run";
  // The test-only switch poisons step 3's gradient with a NaN.
  Result r = run(rl_args(runp, 4, 2), t.path, {{"GCPO_TRAINER_FAIL_AT", "nan-gradient@3"}});
  INFO(r.err);
  CHECK(r.rc == 3);
  CHECK(has(r.err, "step 3"));
  CHECK(has(r.err, "not finite"));
  CHECK(has(r.err, "step-000002"));
  CHECK(latest(runp) == "step-000002");
  CHECK_FALSE(fs::exists(runp / "checkpoints" / "step-000003"));
  CHECK_FALSE(fs::exists(runp / "checkpoints" / "step-000004"));
  CHECK_FALSE(fs::exists(runp / "model.safetensors"));
  CHECK(lines_of(runp / "metrics.jsonl").size() == 2);
  // The kept checkpoint is good: resuming it finishes the run (no poison this time).
  const auto before = snapshot(runp);
  r = run({"-q", "rl", "--resume", runp.string(), "--threads", "1"}, t.path);
  INFO(r.err);
  CHECK(r.rc == 0);
  CHECK(latest(runp) == "step-000004");
  const auto after = snapshot(runp);
  for (const std::string f : {"checkpoints/step-000002/model.safetensors", "checkpoints/step-000002/trainer.safetensors"})
    CHECK(after.at(f) == before.at(f));
  CHECK(lines_of(runp / "metrics.jsonl").size() == 4);
}

TEST_CASE("cli: SIGINT and SIGTERM finish the step, checkpoint it, and say how to resume", "[cli]") {
  for (const int sig : {SIGINT, SIGTERM}) {
    DYNAMIC_SECTION((sig == SIGINT ? "SIGINT" : "SIGTERM")) {
      TempDir t(sig == SIGINT ? "sigint" : "sigterm");
      const fs::path runp = t / "run";
      Child c(rl_args(runp, 100000, 0), {}, t.path);
      for (int i = 0; i < 3000 && lines_of(runp / "metrics.jsonl").size() < 2; ++i)
        std::this_thread::sleep_for(std::chrono::milliseconds(10));
      c.signal(sig);
      Result r = c.wait();
      INFO(r.err);
      CHECK(r.rc == 128 + sig);
      const std::size_t k = lines_of(runp / "metrics.jsonl").size();
      REQUIRE(k >= 2);
      char name[32];
      std::snprintf(name, sizeof name, "step-%06zu", k);
      CHECK(latest(runp) == name);  // the step in progress was finished and checkpointed
      CHECK(has(r.err, name));
      const std::string hint = "rl --resume " + fs::absolute(runp).string();
      CHECK(has(r.err, hint));
      CHECK(names_with(runp, ".janus-").empty());
      // The printed command continues the run from that checkpoint.
      const auto before = snapshot(runp);
      r = run({"-q", "rl", "--resume", runp.string(), "--steps", std::to_string(k + 2), "--threads", "1"}, t.path);
      INFO(r.err);
      CHECK(r.rc == 0);
      const auto lines = lines_of(runp / "metrics.jsonl");
      REQUIRE(lines.size() == k + 2);
      CHECK(nlohmann::json::parse(lines[k]).at("step") == k + 1);
      CHECK(nlohmann::json::parse(lines[k]).at("resumed_from") == k);
      const auto after = snapshot(runp);
      CHECK(after.at(std::string("checkpoints/") + name + "/trainer.safetensors") ==
            before.at(std::string("checkpoints/") + name + "/trainer.safetensors"));
    }
  }
}

TEST_CASE("cli: a crash anywhere in a checkpoint replacement leaves a complete checkpoint, and resume works", "[cli]") {
  TempDir t("crash");
  const fs::path base = shared_run("crash");  // checkpoints at steps 2 and 4
  const auto base_files = snapshot(base);
  const std::string m4 = "checkpoints/step-000004/model.safetensors";
  for (const std::string point : {"checkpoint-written", "checkpoint-between-renames", "checkpoint-renamed",
                                  "checkpoint-before-cleanup", "after-step"}) {
    DYNAMIC_SECTION(point) {
      const fs::path runp = t / "run";
      fs::remove_all(runp);
      fs::copy(base, runp, fs::copy_options::recursive);
      // Resuming step 2 redoes steps 3 and 4 and replaces checkpoint step-000004: crash there.
      Result r = run({"-q", "rl", "--resume", (runp / "checkpoints" / "step-000002").string(), "--threads", "1"}, t.path,
                     {{"GCPO_TRAINER_FAIL_AT", point == "after-step" ? "after-step@2" : point}});
      INFO(r.err);
      REQUIRE(r.signal == SIGKILL);
      CHECK(has(r.err, "simulated crash at '" + point + "'"));
      // Some complete checkpoint of step 4 exists (in place, or aside during the replacement),
      // bit-identical to the one the uninterrupted run wrote.
      bool found = false;
      for (const auto& e : fs::directory_iterator(runp / "checkpoints")) {
        const std::string n = e.path().filename().string();
        if (n == "step-000004" || n.rfind("step-000004.janus-old-", 0) == 0)
          found = found || read_all(e.path() / "model.safetensors") == base_files.at(m4);
      }
      CHECK(found);
      // A model reader finds it even before the clean-up ...
      r = run({"eval", "--model", runp.string(), "--samples", "1"}, t.path);
      INFO(r.err);
      CHECK(r.rc == 0);
      // ... and resume recovers and completes the run.
      r = run({"-q", "rl", "--resume", runp.string(), "--threads", "1"}, t.path);
      INFO(r.err);
      REQUIRE(r.rc == 0);
      CHECK(latest(runp) == "step-000004");
      CHECK(names_with(runp, ".janus-").empty());
      CHECK(read_all(runp / m4) == base_files.at(m4));
      // metrics.jsonl kept every earlier line (append-only); the redone steps follow.
      const auto lines = lines_of(runp / "metrics.jsonl");
      const auto old_lines = lines_of(base / "metrics.jsonl");
      REQUIRE(lines.size() >= 4);
      for (std::size_t i = 0; i < 4; ++i) CHECK(lines[i] == old_lines[i]);
      CHECK(nlohmann::json::parse(lines.back()).at("step") == 4);
    }
  }
}

TEST_CASE("cli: stale temporaries are cleaned at start-up, only the trainer's own", "[cli]") {
  TempDir t("stale");
  const fs::path runp = t / "run";
  make_run(runp, t.path);
  const std::string pid = std::to_string(dead_pid());
  fs::create_directories(runp / "checkpoints" / ("step-000006.janus-tmp-" + pid));
  write_all(runp / "checkpoints" / ("step-000006.janus-tmp-" + pid) / "model.safetensors", "half");
  write_all(runp / ("summary.json.janus-tmp-" + pid), "{");
  fs::copy(runp / "checkpoints" / "step-000002", runp / "checkpoints" / ("step-000002.janus-old-" + pid),
           fs::copy_options::recursive);
  write_all(runp / "mine.janus-tmp-draft", "user file");  // not a trainer name (no pid)
  write_all(runp / "notes.tmp", "user file");
  const Result r = run({"-q", "rl", "--resume", runp.string(), "--steps", "5", "--threads", "1"}, t.path);
  INFO(r.err);
  REQUIRE(r.rc == 0);
  CHECK(has(r.err, "removed the unfinished temporary"));
  CHECK(names_with(runp, ".janus-tmp-" + pid).empty());
  CHECK(names_with(runp, ".janus-old-").empty());
  CHECK(read_all(runp / "mine.janus-tmp-draft") == "user file");
  CHECK(read_all(runp / "notes.tmp") == "user file");
  CHECK(latest(runp) == "step-000005");
}

TEST_CASE("cli: sample sheets and JSON outputs are replaced atomically", "[cli]") {
  TempDir t("atomic");
  const fs::path runp = t / "run";
  make_run(runp, t.path);
  write_all(t / "sheet.png", "the previous sheet");
  write_all(t / "report.json", "the previous report");
  // A crash just before the rename leaves the previous file whole.
  Result r = run({"eval", "--model", runp.string(), "--samples", "1", "--png", (t / "sheet.png").string()}, t.path,
                 {{"GCPO_TRAINER_FAIL_AT", "write-before-rename"}});
  CHECK(r.signal == SIGKILL);
  CHECK(read_all(t / "sheet.png") == "the previous sheet");
  r = run({"eval", "--model", runp.string(), "--samples", "1", "--json", (t / "report.json").string()}, t.path,
          {{"GCPO_TRAINER_FAIL_AT", "write-before-rename"}});
  CHECK(r.signal == SIGKILL);
  CHECK(read_all(t / "report.json") == "the previous report");
  // Without a crash, both are replaced and this process leaves no temporary (the crashed ones
  // left theirs: nothing cleans outside a run directory).
  const auto leftovers = names_with(t.path, ".janus-tmp-");
  CHECK(leftovers.size() == 2);
  r = run({"eval", "--model", runp.string(), "--samples", "1", "--png", (t / "sheet.png").string(), "--json",
           (t / "report.json").string()},
          t.path);
  INFO(r.err);
  REQUIRE(r.rc == 0);
  CHECK(read_all(t / "sheet.png").substr(1, 3) == "PNG");
  CHECK(nlohmann::json::parse(read_all(t / "report.json")).contains("accuracy"));
  CHECK(names_with(t.path, ".janus-tmp-") == leftovers);
  // No trainer output of a finished run carries a temporary name.
  CHECK(names_with(runp, ".janus-").empty());
}

TEST_CASE("cli: a directory as a JSONL file, and a record with an empty include, are refused", "[cli]") {
  TempDir t("jsonl");
  fs::create_directories(t / "prompts.jsonl");
  Result r = run({"eval", "--model", kWarm, "--metadata", (t / "prompts.jsonl").string()}, t.path);
  INFO(r.err);
  CHECK(r.rc == 1);
  CHECK(has(r.err, "prompts.jsonl"));
  CHECK(has(r.err, "is a directory"));
  write_all(t / "two.jsonl",
            "{\"tag\": \"single_object\", \"include\": [{\"class\": \"square\", \"count\": 1}], \"prompt\": \"a photo of a square\"}\n"
            "{\"tag\": \"two_object\", \"include\": [], \"prompt\": \"a photo of a square and a circle\"}\n");
  r = run({"eval", "--model", kWarm, "--metadata", (t / "two.jsonl").string()}, t.path);
  INFO(r.err);
  CHECK(r.rc == 1);
  CHECK(has(r.err, "two.jsonl:2:"));
  CHECK(has(r.err, "`include` is empty"));
  // The same file without the bad record is evaluated.
  write_all(t / "one.jsonl",
            "{\"tag\": \"single_object\", \"include\": [{\"class\": \"square\", \"count\": 1}], \"prompt\": \"a photo of a square\"}\n");
  r = run({"eval", "--model", kWarm, "--metadata", (t / "one.jsonl").string(), "--samples", "2"}, t.path);
  INFO(r.err);
  CHECK(r.rc == 0);
  CHECK(has(r.out, "\"single_object\""));
}
