// examples/janus/bench_pretrained.cpp - Janus-Pro at its real size without its weights (issue 10):
// a random-weight model directory in the published layout, then what loading and generating
// with it costs.
//
//   janus_bench_pretrained write DIR [--size 1b|7b|tiny] [--layers L]
//       config.json + model.safetensors (bf16; linear weights N(0, 0.02), norms 1, gen_embed and the
//       codebook N(0, 1)) with every text-to-image tensor of Janus-Pro-1B (or 7B) and the VQ-16 decoder;
//       --layers: the real widths with L decoder layers (per-layer figures where the whole model does
//       not fit the machine)
//   janus_bench_pretrained run DIR [--dtype f32|bf16] [--device cpu|cuda] [--tokens K] [--threads T]
//       loads DIR with load_pretrained (time; peak resident memory over the tensors kept; --tokens 0:
//       only that), then
//       K image tokens of one image with CFG and the KV cache (time per token; 576 tokens make an
//       image), one teacher-forced pass over a prompt of 16 and N = 576 image tokens (time),
//       one VQ decode of 24 x 24 tokens (time); on CUDA the peak device memory; prints one JSON object
//   janus_bench_pretrained rl DIR [--device cpu|cuda] [--dtype f32|bf16] [--prompts P] [--group G]
//                              [--grid HxW] [--steps S] [--grad-checkpoint] [--threads T]
//       the RL step with the trainer's own code (janus::Trainer, mode "rl", algo "gcpo", policy and
//       reference from DIR, P prompts x G images, N = H x W tokens, default 1 x 4 at 24 x 24 = 576):
//       S calls of train_step(), each printed with the trainer's phase times (sample_time,
//       reward_time, ops_time, train_time, step_time), tokens per second (P * G * N / step_time),
//       the operators' share of the step, the process's peak resident memory and on CUDA the peak
//       device memory; then one summary line and one JSON line
//
// Peak device memory (CUDA): the caching allocator's peak of allocated bytes where this libtorch
// exposes it to C++ (PyTorch >= 2.10: c10::DeviceAllocator; "unavailable" otherwise), and the
// device's used memory sampled every 5 ms through NVML (libnvidia-ml.so.1, loaded at run time:
// the CUDA context and the allocator's reserved cache included; "unavailable" without NVML).
//
// A benchmark, never a test: it asserts nothing about time. Its figures go into docs/performance.md.
#include <dlfcn.h>
#include <sys/resource.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include <nlohmann/json.hpp>
#include <torch/torch.h>
#include <torch/version.h>

#if TORCH_VERSION_MAJOR > 2 || (TORCH_VERSION_MAJOR == 2 && TORCH_VERSION_MINOR >= 10)
#if __has_include(<c10/core/CachingDeviceAllocator.h>)
#include <c10/core/CachingDeviceAllocator.h>
#define JANUS_BENCH_ALLOCATOR_STATS 1
#endif
#endif

#include "pretrained.hpp"
#include "safetensors.hpp"
#include "train.hpp"

namespace {

using janus::ModelConfig;

/// Peak resident set of this process so far, bytes.
std::int64_t peak_rss() {
  struct rusage u;
  getrusage(RUSAGE_SELF, &u);
  return static_cast<std::int64_t>(u.ru_maxrss) * 1024;
}

/// Current resident set, bytes (VmRSS).
std::int64_t current_rss() {
  std::ifstream f("/proc/self/status");
  std::string line;
  while (std::getline(f, line))
    if (line.rfind("VmRSS:", 0) == 0) return std::stoll(line.substr(6)) * 1024;
  return 0;
}

double seconds_since(std::chrono::steady_clock::time_point t0) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
}

#ifdef JANUS_BENCH_ALLOCATOR_STATS
/// The allocator libtorch registered for CUDA as a c10::DeviceAllocator (the caching allocator),
/// or nullptr.
c10::DeviceAllocator* cuda_allocator() {
  return dynamic_cast<c10::DeviceAllocator*>(c10::GetAllocator(c10::DeviceType::CUDA));
}
#endif

/// The CUDA caching allocator's peak of allocated bytes on device 0 since the last reset, where
/// this libtorch exposes it to C++; nullopt otherwise.
std::optional<std::int64_t> cuda_peak_allocated() {
#ifdef JANUS_BENCH_ALLOCATOR_STATS
  try {
    if (c10::DeviceAllocator* a = cuda_allocator()) return a->getDeviceStats(0).allocated_bytes[0].peak;  // [0]: aggregate
  } catch (const std::exception&) {
  }
#endif
  return std::nullopt;
}

void cuda_reset_peak() {
#ifdef JANUS_BENCH_ALLOCATOR_STATS
  try {
    if (c10::DeviceAllocator* a = cuda_allocator()) a->resetPeakStats(0);
  } catch (const std::exception&) {
  }
#endif
}

/// The device's used memory (NVML, device 0), sampled every 5 ms on a thread of its own; its
/// maximum since start. Loads libnvidia-ml.so.1 at run time: without it (no driver, a CPU
/// machine) available() is false.
class DeviceMemorySampler {
 public:
  DeviceMemorySampler() {
    lib_ = dlopen("libnvidia-ml.so.1", RTLD_NOW | RTLD_LOCAL);
    if (!lib_) return;
    using InitFn = int (*)();
    using HandleFn = int (*)(unsigned, void**);
    auto init = reinterpret_cast<InitFn>(dlsym(lib_, "nvmlInit_v2"));
    auto handle = reinterpret_cast<HandleFn>(dlsym(lib_, "nvmlDeviceGetHandleByIndex_v2"));
    memory_ = reinterpret_cast<MemoryFn>(dlsym(lib_, "nvmlDeviceGetMemoryInfo"));
    shutdown_ = reinterpret_cast<InitFn>(dlsym(lib_, "nvmlShutdown"));
    if (!init || !handle || !memory_ || !shutdown_ || init() != 0) return;
    if (handle(0, &device_) != 0 || used() < 0) {
      shutdown_();
      return;
    }
    ok_ = true;
    thread_ = std::thread([this] {
      while (!stop_.load()) {
        const std::int64_t u = used();
        if (u > peak_.load()) peak_.store(u);
        std::this_thread::sleep_for(std::chrono::milliseconds(5));
      }
    });
  }
  ~DeviceMemorySampler() {
    stop_.store(true);
    if (thread_.joinable()) thread_.join();
    if (ok_) shutdown_();
    if (lib_) dlclose(lib_);
  }
  DeviceMemorySampler(const DeviceMemorySampler&) = delete;
  DeviceMemorySampler& operator=(const DeviceMemorySampler&) = delete;
  bool available() const { return ok_; }
  std::int64_t peak() const { return peak_.load(); }

 private:
  struct Memory {  // nvmlMemory_t
    unsigned long long total, free, used;
  };
  using MemoryFn = int (*)(void*, Memory*);
  std::int64_t used() const {
    Memory m{};
    return memory_(device_, &m) == 0 ? static_cast<std::int64_t>(m.used) : -1;
  }
  void* lib_ = nullptr;
  void* device_ = nullptr;
  MemoryFn memory_ = nullptr;
  int (*shutdown_)() = nullptr;
  bool ok_ = false;
  std::atomic<bool> stop_{false};
  std::atomic<std::int64_t> peak_{0};
  std::thread thread_;
};

/// Bytes as "12.34 GB" (10^9).
std::string gb(std::int64_t bytes) {
  char b[32];
  std::snprintf(b, sizeof b, "%.2f GB", static_cast<double>(bytes) / 1e9);
  return b;
}

/// The config of `size`; `layers` > 0 replaces its decoder-layer count (the real widths with fewer
/// layers: per-layer costs measured where the whole model does not fit).
nlohmann::json config_json(const std::string& size, std::int64_t layers_override) {
  std::int64_t H = 2048, layers = 24, heads = 16, inter = 5632, vocab = 102400, K = 16384;
  if (size == "7b") H = 4096, layers = 30, heads = 32, inter = 11008;
  if (size == "tiny") H = 256, layers = 2, heads = 4, inter = 688, vocab = 1000;
  if (layers_override > 0) layers = layers_override;
  nlohmann::json j;
  j["architectures"] = {"MultiModalityCausalLM"};
  j["model_type"] = "multi_modality";
  j["language_config"] = {{"hidden_size", H},        {"intermediate_size", inter}, {"max_position_embeddings", 16384},
                          {"model_type", "llama"},   {"num_attention_heads", heads}, {"num_hidden_layers", layers},
                          {"num_key_value_heads", heads}, {"torch_dtype", "bfloat16"}, {"vocab_size", vocab}};
  j["gen_vision_config"] = {{"cls", "VQ-16"}, {"model_type", "gen_vision"}, {"params", {{"image_token_size", K}, {"n_embed", 8}}}};
  j["gen_aligner_config"] = {{"cls", "MlpProjector"}, {"model_type", "gen_aligner"},
                             {"params", {{"depth", 2}, {"input_dim", 8}, {"n_embed", H}, {"projector_type", "mlp_gelu"}}}};
  j["gen_head_config"] = {{"cls", "vision_head"}, {"model_type", "gen_head"},
                          {"params", {{"image_token_embed", H}, {"image_token_size", K}, {"n_embed", H}}}};
  return j;
}

int write(const std::string& dir, const std::string& size, std::int64_t layers) {
  namespace fs = std::filesystem;
  if (fs::exists(dir) && !fs::is_empty(dir)) {
    std::fprintf(stderr, "janus_bench_pretrained: %s exists and is not empty; give a new directory\n", dir.c_str());
    return 2;
  }
  fs::create_directories(dir);
  const nlohmann::json cfg = config_json(size, layers);
  std::ofstream(fs::path(dir) / "config.json") << cfg.dump(2) << "\n";
  const janus::JanusConfig jc = janus::read_janus_config(dir);
  const ModelConfig mc = janus::model_config_of(jc, 24, 24);
  torch::manual_seed(0);
  std::vector<std::pair<std::string, at::Tensor>> tensors;
  std::int64_t params = 0;
  auto add = [&](const std::string& name, const std::vector<std::int64_t>& shape) {
    at::Tensor t;
    const bool norm = name.find("norm") != std::string::npos;
    const bool bias = name.size() > 5 && name.compare(name.size() - 5, 5, ".bias") == 0;
    if (norm && !bias) t = torch::ones(shape);
    else if (bias) t = torch::zeros(shape);
    else if (name == "gen_embed.weight" || name.find("quantize.embedding") != std::string::npos) t = torch::randn(shape);
    else t = torch::randn(shape) * 0.02;
    params += t.numel();
    tensors.emplace_back(name, t.to(torch::kBFloat16));
  };
  for (const auto& e : janus::expected_parameters(mc)) add(e.first, e.second);
  for (const auto& e : janus::VqDecoder::layout(janus::VqDecoderShape::vq16())) add("gen_vision_model." + e.first, e.second);
  const auto t0 = std::chrono::steady_clock::now();
  janus::save_safetensors((fs::path(dir) / "model.safetensors").string(), tensors, {{"format", "pt"}});
  std::printf("{\"wrote\": \"%s\", \"size\": \"%s\", \"tensors\": %zu, \"parameters\": %lld, \"seconds\": %.1f}\n",
              dir.c_str(), size.c_str(), tensors.size(), static_cast<long long>(params), seconds_since(t0));
  return 0;
}

int run(const std::string& dir, const std::string& dtype_name, const std::string& device_name, std::int64_t tokens) {
  const torch::Device device = device_name == "cuda" ? torch::Device(torch::kCUDA) : torch::Device(torch::kCPU);
  std::optional<DeviceMemorySampler> sampler;
  if (device_name == "cuda") sampler.emplace();
  const at::ScalarType dtype = dtype_name == "bf16" ? at::kBFloat16 : at::kFloat;
  nlohmann::json out;
  out["dir"] = dir;
  out["dtype"] = dtype_name;
  out["device"] = device_name;
  out["threads"] = at::get_num_threads();
  const std::int64_t rss0 = current_rss();
  janus::PretrainedOptions opt;
  opt.dtype = dtype;
  opt.device = device;
  opt.grid_h = 1;  // generate() draws grid_h * grid_w tokens: `tokens` of them here (the cost of a
  opt.grid_w = std::max<std::int64_t>(tokens, 1);  // token hardly depends on its position: the weights dominate)
  janus::Pretrained p = janus::load_pretrained(dir, opt);
  std::int64_t kept = 0;
  for (const auto& t : p.model->parameters()) kept += t.numel() * t.element_size();
  for (const auto& t : p.model->buffers()) kept += t.numel() * t.element_size();
  std::int64_t vq_params = 0;
  for (const auto& e : janus::VqDecoder::layout(p.vq.shape())) {
    std::int64_t n = 1;
    for (auto x : e.second) n *= x;
    vq_params += n;
  }
  kept += vq_params * static_cast<std::int64_t>(c10::elementSize(dtype));
  out["load_seconds"] = p.seconds;
  out["layout"] = janus::to_string(p.files.layout);
  out["tensors_read"] = p.tensors_read;
  out["bytes_read"] = p.bytes_read;
  out["bytes_kept"] = kept;
  out["rss_before_load"] = rss0;
  out["peak_rss"] = peak_rss();
  if (device_name == "cpu") out["peak_over_kept"] = static_cast<double>(peak_rss() - rss0) / static_cast<double>(kept);
  out["model_parameters"] = janus::count_parameters(*p.model);
  if (tokens == 0) {  // --tokens 0: the load alone
    std::printf("%s\n", out.dump(2).c_str());
    return 0;
  }

  torch::NoGradGuard no_grad;
  const ModelConfig& c = p.model->cfg;
  const std::int64_t L = 16, N = 576;
  janus::PromptBatch prompt{torch::randint(10, c.vocab_size, {1, L}, torch::kLong).to(device),
                            torch::ones({1, L}, torch::kLong).to(device)};
  // generation: `tokens` steps with CFG (2 rows), the KV cache, gcpo's sampling step
  janus::GenerateOptions g;  // CFG 5, temperature 1: the official run's
  auto t0 = std::chrono::steady_clock::now();
  (void)p.model->generate(prompt, g);
  if (device_name == "cuda") torch::cuda::synchronize();
  const double gen_s = seconds_since(t0);
  out["generate_tokens"] = tokens;
  out["generate_seconds"] = gen_s;
  out["seconds_per_token"] = gen_s / static_cast<double>(tokens);
  out["images_per_second_estimate"] = static_cast<double>(tokens) / gen_s / static_cast<double>(N);
  // one teacher-forced pass (the RL step's log-prob forward) over L + N - 1 positions
  const torch::Tensor img = torch::randint(0, c.image_token_size, {1, N}, torch::kLong).to(device);
  t0 = std::chrono::steady_clock::now();
  (void)p.model->image_logits(prompt, img);
  if (device_name == "cuda") torch::cuda::synchronize();
  out["teacher_forced_seconds"] = seconds_since(t0);
  t0 = std::chrono::steady_clock::now();
  (void)p.vq.decode(img, 24, 24);
  if (device_name == "cuda") torch::cuda::synchronize();
  out["vq_decode_seconds"] = seconds_since(t0);
  out["peak_rss_end"] = peak_rss();
  if (device_name == "cuda") {
    const auto a = cuda_peak_allocated();
    out["peak_cuda_allocated_bytes"] = a ? nlohmann::json(*a) : nlohmann::json("unavailable");
    out["peak_device_used_bytes"] = sampler->available() ? nlohmann::json(sampler->peak()) : nlohmann::json("unavailable");
  }
  std::printf("%s\n", out.dump(2).c_str());
  return 0;
}

/// `rl`: the options of the RL-step measurement.
struct RlOptions {
  std::string device = "cpu", dtype = "f32";
  std::int64_t prompts = 1, group = 4, steps = 2;
  int grid_h = 24, grid_w = 24;
  bool grad_checkpoint = false;
};

double metric(const nlohmann::json& m, const char* key) {
  if (!m.contains(key) || !m[key].is_number())
    throw std::runtime_error(std::string("the trainer's step metrics have no number `") + key + "`: " + m.dump());
  return m[key].get<double>();
}

int rl(const std::string& dir, const RlOptions& o) {
  namespace fs = std::filesystem;
  const bool cuda = o.device == "cuda";
  if (cuda && !torch::cuda::is_available()) {
    std::fprintf(stderr, "janus_bench_pretrained: --device cuda: no CUDA device is available\n");
    return 2;
  }
  std::optional<DeviceMemorySampler> sampler;
  if (cuda) sampler.emplace();
  // The trainer's run directory: a fresh temporary one, removed at the end (train_step writes
  // nothing there; the trainer only needs it named).
  std::string tmpl = (fs::temp_directory_path() / "janus-bench-rl-XXXXXX").string();
  if (!mkdtemp(tmpl.data())) throw std::runtime_error("cannot create a temporary directory under " + fs::temp_directory_path().string());
  struct RemoveAll {
    std::string path;
    ~RemoveAll() {
      std::error_code ec;
      std::filesystem::remove_all(path, ec);
    }
  } remove_out{tmpl};

  janus::TrainConfig c;
  c.mode = "rl";
  c.algo = "gcpo";
  c.model_dir = dir;
  c.dtype = o.dtype;
  c.grad_checkpoint = o.grad_checkpoint;
  c.device = o.device;
  c.prompts = o.prompts;
  c.group = o.group;
  c.grid_height = o.grid_h;
  c.grid_width = o.grid_w;
  c.steps = o.steps;
  c.lr = 3e-6;  // the official GenEval run's (spec 2.0); CFG 5, beta 0.01: TrainConfig's defaults
  c.out = (fs::path(tmpl) / "run").string();
  c.validate();

  const std::int64_t N = static_cast<std::int64_t>(o.grid_h) * o.grid_w, rows = o.prompts * o.group;
  const std::int64_t rss0 = current_rss();
  auto t0 = std::chrono::steady_clock::now();
  janus::Trainer tr(c);
  if (cuda) torch::cuda::synchronize();
  const double setup_s = seconds_since(t0);
  std::printf("rl: %s, %s on %s, P %lld x G %lld = %lld rows, N = %dx%d = %lld, grad checkpoint %s; policy + reference "
              "+ optimizer set up in %.2f s (resident %s)\n",
              dir.c_str(), o.dtype.c_str(), o.device.c_str(), static_cast<long long>(o.prompts),
              static_cast<long long>(o.group), static_cast<long long>(rows), o.grid_h, o.grid_w,
              static_cast<long long>(N), o.grad_checkpoint ? "on" : "off", setup_s, gb(current_rss()).c_str());
  std::fflush(stdout);

  nlohmann::json steps = nlohmann::json::array();
  for (std::int64_t s = 0; s < o.steps; ++s) {
    if (cuda) cuda_reset_peak();
    const janus::StepMetrics m = tr.train_step();
    nlohmann::json r;
    for (const char* k : {"sample_time", "reward_time", "ops_time", "train_time", "step_time"}) r[k] = metric(m.json, k);
    const double step_time = r["step_time"].get<double>();
    r["step"] = s + 1;
    r["tokens_per_second"] = static_cast<double>(rows * N) / step_time;
    r["ops_share"] = r["ops_time"].get<double>() / step_time;
    r["peak_rss_bytes"] = peak_rss();
    std::string dev;
    if (cuda) {
      const auto a = cuda_peak_allocated();
      r["peak_cuda_allocated_bytes"] = a ? nlohmann::json(*a) : nlohmann::json("unavailable");
      r["peak_device_used_bytes"] = sampler->available() ? nlohmann::json(sampler->peak()) : nlohmann::json("unavailable");
      dev = "; peak CUDA allocated " + (a ? gb(*a) : std::string("unavailable")) + " (this step), device used " +
            (sampler->available() ? gb(sampler->peak()) : std::string("unavailable")) + " (NVML, so far)";
    }
    for (const char* k : {"loss", "kl", "reward", "critical_fraction", "grad_norm"})
      if (m.json.contains(k)) r[k] = m.json[k];
    std::printf("rl step %lld/%lld: sample %.3f s, reward %.3f s, ops %.3f s, train %.3f s, step %.3f s; %.1f tokens/s; "
                "operators %.2f%% of the step; peak RSS %s%s\n",
                static_cast<long long>(s + 1), static_cast<long long>(o.steps), r["sample_time"].get<double>(),
                r["reward_time"].get<double>(), r["ops_time"].get<double>(), r["train_time"].get<double>(), step_time,
                r["tokens_per_second"].get<double>(), 100.0 * r["ops_share"].get<double>(), gb(peak_rss()).c_str(),
                dev.c_str());
    std::fflush(stdout);
    steps.push_back(r);
  }
  // Summary: the steps after the first (which also pays one-time costs: kernels' first launches,
  // the allocator's growth), or the only one.
  const std::size_t from = steps.size() > 1 ? 1 : 0;
  double step_sum = 0, ops_sum = 0, sample_sum = 0, train_sum = 0;
  for (std::size_t i = from; i < steps.size(); ++i) {
    step_sum += steps[i]["step_time"].get<double>();
    ops_sum += steps[i]["ops_time"].get<double>();
    sample_sum += steps[i]["sample_time"].get<double>();
    train_sum += steps[i]["train_time"].get<double>();
  }
  const double n = static_cast<double>(steps.size() - from);
  nlohmann::json sum = {{"dir", dir},
                        {"device", o.device},
                        {"dtype", o.dtype},
                        {"prompts", o.prompts},
                        {"group", o.group},
                        {"rows", rows},
                        {"tokens_per_image", N},
                        {"grad_checkpoint", o.grad_checkpoint},
                        {"steps", o.steps},
                        {"setup_seconds", setup_s},
                        {"rss_before_setup", rss0},
                        {"first_step_seconds", steps.empty() ? 0.0 : steps[0]["step_time"].get<double>()},
                        {"mean_step_seconds", step_sum / n},
                        {"mean_sample_seconds", sample_sum / n},
                        {"mean_train_seconds", train_sum / n},
                        {"mean_ops_seconds", ops_sum / n},
                        {"ops_share", ops_sum / step_sum},
                        {"tokens_per_second", static_cast<double>(rows * N) * n / step_sum},
                        {"steps_averaged", steps.size() - from},
                        {"peak_rss_bytes", peak_rss()},
                        {"per_step", steps}};
  std::string dev;
  if (cuda) {
    std::int64_t peak = -1;
    for (const auto& r : steps)
      if (r["peak_cuda_allocated_bytes"].is_number()) peak = std::max(peak, r["peak_cuda_allocated_bytes"].get<std::int64_t>());
    sum["peak_cuda_allocated_bytes"] = peak >= 0 ? nlohmann::json(peak) : nlohmann::json("unavailable");
    sum["peak_device_used_bytes"] = sampler->available() ? nlohmann::json(sampler->peak()) : nlohmann::json("unavailable");
    dev = ", peak CUDA allocated " + (peak >= 0 ? gb(peak) : std::string("unavailable")) + ", device used " +
          (sampler->available() ? gb(sampler->peak()) : std::string("unavailable"));
  }
  std::printf("rl summary: %lld rows x %lld tokens, %s, %s: %.3f s per step (mean of %lld%s; first %.3f s), %.1f tokens/s, "
              "operators %.2f%% of the step, setup %.2f s, peak RSS %s%s\n",
              static_cast<long long>(rows), static_cast<long long>(N), o.dtype.c_str(), o.device.c_str(), step_sum / n,
              static_cast<long long>(steps.size() - from), from ? " after the first" : "",
              sum["first_step_seconds"].get<double>(), sum["tokens_per_second"].get<double>(),
              100.0 * ops_sum / step_sum, setup_s, gb(peak_rss()).c_str(), dev.c_str());
  std::printf("%s\n", nlohmann::json({{"rl_summary", sum}}).dump().c_str());
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  auto usage = [] {
    std::fprintf(stderr,
                 "usage: janus_bench_pretrained write DIR [--size 1b|7b|tiny] [--layers L]\n"
                 "       janus_bench_pretrained run DIR [--dtype f32|bf16] [--device cpu|cuda] [--tokens K] [--threads T]\n"
                 "       janus_bench_pretrained rl DIR [--device cpu|cuda] [--dtype f32|bf16] [--prompts P] [--group G]\n"
                 "                                 [--grid HxW] [--steps S] [--grad-checkpoint] [--threads T]\n");
    return 2;
  };
  if (argc < 3) return usage();
  const std::string mode = argv[1], dir = argv[2];
  std::string size = "1b", dtype = "f32", device = "cpu";
  std::int64_t tokens = 16, layers = 0;
  RlOptions ro;
  // a decimal count in [lo, hi]
  auto count = [](const std::string& v, std::int64_t lo, std::int64_t hi, std::int64_t& out) {
    if (v.empty() || v.size() > 6 || v.find_first_not_of("0123456789") != std::string::npos) return false;
    const std::int64_t x = std::stoll(v);
    if (x < lo || x > hi) return false;
    out = x;
    return true;
  };
  for (int i = 3; i < argc; ++i) {
    const std::string k = argv[i];
    if (k == "--grad-checkpoint" && mode == "rl") {
      ro.grad_checkpoint = true;
      continue;
    }
    if (i + 1 >= argc) return usage();
    const std::string v = argv[++i];
    std::int64_t x = 0;
    if (k == "--size" && (v == "1b" || v == "7b" || v == "tiny")) size = v;
    else if (k == "--dtype" && (v == "f32" || v == "bf16")) dtype = v;
    else if (k == "--device" && (v == "cpu" || v == "cuda")) device = v;
    else if (k == "--tokens" && count(v, 0, 9999, x)) tokens = x;
    else if (mode == "write" && k == "--layers" && count(v, 1, 256, x)) layers = x;
    else if (k == "--threads" && count(v, 1, 999, x)) at::set_num_threads(static_cast<int>(x));
    else if (mode == "rl" && k == "--prompts" && count(v, 1, 1024, x)) ro.prompts = x;
    else if (mode == "rl" && k == "--group" && count(v, 1, 1024, x)) ro.group = x;
    else if (mode == "rl" && k == "--steps" && count(v, 1, 10000, x)) ro.steps = x;
    else if (mode == "rl" && k == "--grid") {
      const std::size_t p = v.find('x');
      std::int64_t h = 0, w = 0;
      if (!count(v.substr(0, p), 1, 4096, h) || !count(p == std::string::npos ? v : v.substr(p + 1), 1, 4096, w))
        return usage();
      ro.grid_h = static_cast<int>(h);
      ro.grid_w = static_cast<int>(w);
    } else
      return usage();
  }
  ro.device = device;
  ro.dtype = dtype;
  try {
    if (mode == "write") return write(dir, size, layers);
    if (mode == "run") return run(dir, dtype, device, tokens);
    if (mode == "rl") return rl(dir, ro);
  } catch (const std::exception& e) {
    std::fprintf(stderr, "janus_bench_pretrained: error: %s\n", e.what());
    return 1;
  }
  return usage();
}
