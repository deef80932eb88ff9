// examples/janus/train.cpp - see train.hpp.
#include "train.hpp"

#include "data_parallel.hpp"

#include <signal.h>
#include <unistd.h>

#include <algorithm>
#include <cctype>
#include <csignal>
#include <cstring>
#include <ctime>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <limits>
#include <sstream>
#include <stdexcept>
#include <mutex>
#include <random>
#include <set>
#include <type_traits>

#include <ATen/CPUGeneratorImpl.h>
#include <c10/core/impl/DeviceGuardImplInterface.h>

#include "ops.hpp"
#include "pretrained.hpp"
#include "safetensors.hpp"
#if defined(JANUS_HAVE_REAL_IO)
#include "reward_client.hpp"
#include "tokenizer.hpp"
#endif

namespace janus {
namespace fs = std::filesystem;

namespace {

// Stream ids: each kind of randomness draws from its own seeded stream.
constexpr std::uint64_t kStreamInit = 0x1a17;
constexpr std::uint64_t kStreamSft = 0x5f7;
constexpr std::uint64_t kStreamUncond = 0x0c0d;
constexpr std::uint64_t kStreamPrompts = 0x9a0;
constexpr std::uint64_t kStreamRollout = 0x5a3e;
constexpr std::uint64_t kStreamEval = 0xe7a1;
constexpr std::uint64_t kStreamMask = 0x3a5c;

double seconds_since(std::chrono::steady_clock::time_point t0) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
}

void check_status(const gcpo::status& s, const std::string& what) {
  if (!s.ok()) throw std::runtime_error(what + ": " + s.message());
}

std::string step_name(std::int64_t step) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "step-%06lld", static_cast<long long>(step));
  return buf;
}

std::string fmt_duration(double s) {
  if (!std::isfinite(s) || s < 0) return "?";
  const long long t = static_cast<long long>(std::llround(s));
  char buf[32];
  if (t >= 3600) std::snprintf(buf, sizeof buf, "%lldh%02lldm", t / 3600, (t / 60) % 60);
  else if (t >= 60) std::snprintf(buf, sizeof buf, "%lldm%02llds", t / 60, t % 60);
  else std::snprintf(buf, sizeof buf, "%llds", t);
  return buf;
}

using dp::optimizer_key;

shapes::ScoreMode score_mode(const std::string& s) {
  if (s == "binary") return shapes::ScoreMode::binary;
  if (s == "strict") return shapes::ScoreMode::strict;
  if (s == "partial") return shapes::ScoreMode::partial;
  if (s == "clean") return shapes::ScoreMode::clean;
  throw std::invalid_argument("reward must be binary, strict, partial or clean, not '" + s + "'");
}

/// A progress bar with ETA on stderr (a redrawn line on a terminal, periodic lines otherwise).
class Progress {
 public:
  /// `silent`: not even notes (a data-parallel run's ranks other than 0).
  Progress(std::int64_t start, std::int64_t total, bool enabled, bool silent = false)
      : start_(start), total_(total), enabled_(enabled && !silent), silent_(silent), tty_(::isatty(2) != 0),
        t0_(std::chrono::steady_clock::now()) {}
  void update(std::int64_t done, const std::string& info) {
    if (!enabled_) return;
    const double el = seconds_since(t0_);
    const double per = done > start_ ? el / static_cast<double>(done - start_) : 0.0;
    const double eta = per * static_cast<double>(total_ - done);
    const int width = 24;
    const int filled = total_ > 0 ? static_cast<int>(width * done / total_) : width;
    std::string bar(static_cast<std::size_t>(filled), '=');
    if (filled < width) bar += '>';
    bar.resize(static_cast<std::size_t>(width), ' ');
    char head[160];
    std::snprintf(head, sizeof head, "[%s] %lld/%lld %.2fs/step elapsed %s ETA %s", bar.c_str(),
                  static_cast<long long>(done), static_cast<long long>(total_), per, fmt_duration(el).c_str(),
                  fmt_duration(eta).c_str());
    const std::int64_t every = std::max<std::int64_t>(1, total_ / 20);
    if (tty_) {
      std::fprintf(stderr, "\r\033[K%s %s", head, info.c_str());
      if (done >= total_) std::fprintf(stderr, "\n");
    } else if (done % every == 0 || done >= total_ || done == start_ + 1) {
      std::fprintf(stderr, "%s %s\n", head, info.c_str());
    }
    std::fflush(stderr);
  }
  /// Prints a line without breaking the bar.
  void note(const std::string& line) {
    if (silent_) return;
    if (tty_ && enabled_) std::fprintf(stderr, "\r\033[K");
    std::fprintf(stderr, "%s\n", line.c_str());
    std::fflush(stderr);
  }

 private:
  std::int64_t start_, total_;
  bool enabled_, silent_, tty_;
  std::chrono::steady_clock::time_point t0_;
};

}  // namespace

bool have_real_io() noexcept {
#if defined(JANUS_HAVE_REAL_IO)
  return true;
#else
  return false;
#endif
}

// ------------------------------------------------------------------------------------------
// TrainConfig

#define JANUS_CONFIG_FIELDS(X)                                                                                     \
  X(mode) X(grid_height) X(grid_width) X(tags) X(heldout_fraction) X(split_seed) X(reward) X(chat_template) X(hidden)   \
  X(layers) X(heads) X(intermediate) X(init) X(seed) X(steps) X(out) X(device) X(save_every) X(image_every)     \
  X(eval_every) X(eval_samples) X(eval_batch) X(lr) X(schedule) X(warmup) X(min_lr_ratio) X(weight_decay) X(beta1) \
  X(beta2) X(adam_eps) X(max_grad_norm) X(batch) X(uncond_prob) X(train_gen) X(algo) X(prompts) X(group)        \
  X(cfg_scale) X(temperature) X(top_k) X(top_p) X(beta) X(weight_clip) X(detach_weight) X(initial_frac)          \
  X(gradient_frac) X(similarity_frac) X(window_start_frac) X(window_frac) X(adv_std) X(adv_eps) X(ref_embeds)      \
  X(model_dir) X(dtype) X(grad_checkpoint) X(shard_optimizer) X(prompt_file) X(tokenizer) X(reward_server)       \
  X(reward_timeout) X(reward_retries) X(reward_batch) X(reward_failures) X(mask_mode) X(weight_mode)

nlohmann::json TrainConfig::to_json() const {
  nlohmann::json j;
#define X(f) j[#f] = f;
  JANUS_CONFIG_FIELDS(X)
#undef X
  return j;
}

TrainConfig TrainConfig::from_json(const nlohmann::json& j) {
  TrainConfig c;
#define X(f) \
  if (j.contains(#f)) j.at(#f).get_to(c.f);
  JANUS_CONFIG_FIELDS(X)
#undef X
  return c;
}

namespace {

std::string num(double v) {
  char b[64];
  std::snprintf(b, sizeof b, "%.17g", v);
  return b;
}

void need_real(double v, const char* flag, double lo, double hi, bool lo_open = false) {
  if (!std::isfinite(v) || v < lo || v > hi || (lo_open && v == lo))
    throw UsageError(std::string(flag) + " (" + num(v) + ") must be a finite number in " + (lo_open ? "(" : "[") +
                     num(lo) + ", " + num(hi) + "]");
}

void need_int(std::int64_t v, const char* flag, std::int64_t lo, std::int64_t hi) {
  if (v < lo || v > hi)
    throw UsageError(std::string(flag) + " (" + std::to_string(v) + ") must be an integer in [" + std::to_string(lo) +
                     ", " + std::to_string(hi) + "]");
}

}  // namespace

void TrainConfig::validate() const {
  auto need = [](bool ok, const std::string& what) {
    if (!ok) throw UsageError(what);
  };
  need(mode == "sft" || mode == "rl", "mode must be sft or rl");
  need(algo == "gcpo" || algo == "grpo", "--algo must be gcpo or grpo, not '" + algo + "'");
  need(device == "cpu" || device == "cuda", "--device must be cpu or cuda, not '" + device + "'");
  need(schedule == "constant" || schedule == "linear" || schedule == "cosine",
       "--lr-schedule must be constant, linear or cosine, not '" + schedule + "'");
  need(adv_std == "unbiased" || adv_std == "biased" || adv_std == "none",
       "--adv-std must be unbiased, biased or none, not '" + adv_std + "'");
  need(ref_embeds == "policy" || ref_embeds == "ref", "--ref-embeds must be policy or ref, not '" + ref_embeds + "'");
  need(reward == "binary" || reward == "strict" || reward == "partial" || reward == "clean",
       "--reward must be binary, strict, partial or clean, not '" + reward + "'");
  need(!out.empty(), "--out must not be empty");
  need(dtype == "f32" || dtype == "bf16", "--dtype must be f32 or bf16, not '" + dtype + "'");
  need(model_dir.empty() || mode == "rl",
       "--model-dir: only rl runs start from a published model (the supervised warm-start trains the task's own "
       "codebook)");
  // Every number finite and in range (limits in train.hpp, shared with the command line).
  need_int(grid_height, "--grid", limits::min_grid, limits::max_grid);
  need_int(grid_width, "--grid", limits::min_grid, limits::max_grid);
  need_real(heldout_fraction, "--heldout-fraction", 0.0, 0.95);
  need_int(hidden, "--hidden", 8, limits::max_hidden);
  need_int(layers, "--layers", 1, limits::max_layers);
  need_int(heads, "--heads", 1, hidden);
  need(hidden % heads == 0 && (hidden / heads) % 2 == 0,
       "--hidden (" + std::to_string(hidden) + ") must be a multiple of --heads (" + std::to_string(heads) +
           ") with an even quotient (RoPE)");
  need_int(intermediate, "--intermediate", 0, limits::max_intermediate);
  need_int(steps, "--steps", 0, limits::max_steps);
  need_int(save_every, "--save-every", 0, limits::max_steps);
  need_int(image_every, "--image-every", 0, limits::max_steps);
  need_int(eval_every, "--eval-every", 0, limits::max_steps);
  need_int(eval_samples, "--eval-samples", 1, limits::max_samples);
  need_int(eval_batch, "--eval-batch", 1, limits::max_batch);
  need_real(lr, "--lr", 0.0, limits::max_lr);
  need_int(warmup, "--warmup", 0, limits::max_steps);
  need_real(min_lr_ratio, "--min-lr-ratio", 0.0, 1.0);
  need_real(weight_decay, "--weight-decay", 0.0, 1.0);
  need_real(beta1, "beta1", 0.0, 1.0);
  need_real(beta2, "beta2", 0.0, 1.0);
  need_real(adam_eps, "adam_eps", 0.0, 1.0, true);
  need_real(max_grad_norm, "--max-grad-norm", 0.0, limits::max_real);
  need_int(batch, "--batch", 1, limits::max_batch);
  need_real(uncond_prob, "--uncond-prob", 0.0, 1.0);
  need_int(prompts, "--prompts", 1, limits::max_batch);
  need_int(group, "--group", 2, limits::max_batch);
  need(prompts * group <= limits::max_batch, "--prompts x --group (" + std::to_string(prompts) + " x " +
                                                 std::to_string(group) + ") must be at most " +
                                                 std::to_string(limits::max_batch) + " rollouts per step");
  need_real(cfg_scale, "--cfg", 0.0, limits::max_cfg);
  need_real(temperature, "--temperature", 0.0, limits::max_temperature, true);
  need_int(top_k, "--top-k", 0, limits::max_top_k);
  need_real(top_p, "--top-p", 0.0, 1.0, true);
  need_real(beta, "--beta", 0.0, limits::max_real);
  need_real(weight_clip, "--weight-clip", 0.0, limits::max_real);
  need_real(initial_frac, "--initial-frac", 0.0, 1.0);
  need_real(gradient_frac, "--gradient-frac", 0.0, 1.0);
  need_real(similarity_frac, "--similarity-frac", 0.0, 1.0);
  need_real(window_start_frac, "window_start_frac", 0.0, 1.0);
  need_real(window_frac, "window_frac", 0.0, 1.0);
  need_real(adv_eps, "adv_eps", 0.0, 1.0, true);
  // ablations
  need(mask_mode == "critical" || mask_mode == "random" || mask_mode == "complement" || mask_mode == "all",
       "--mask-mode must be critical, random, complement or all, not '" + mask_mode + "'");
  need(weight_mode == "official" || weight_mode == "detached" || weight_mode == "one",
       "--weight must be official, detached or one, not '" + weight_mode + "'");
  need(algo == "gcpo" || (mask_mode == "critical" && weight_mode == "official"),
       "--mask-mode and --weight are GCPO's ablations: --algo grpo trains every token with weight 1");
  // real prompts and rewards
  need(prompt_file.empty() || mode == "rl", "--prompts FILE: only rl runs draw prompts from a file");
  need(prompt_file.empty() || !model_dir.empty(),
       "--prompts FILE needs --model-dir (the model's tokenizer and its VQ decoder, whose pictures the reward "
       "server scores)");
  need(prompt_file.empty() || !reward_server.empty(),
       "--prompts FILE needs --reward-server URL: the trainer has no detector for arbitrary GenEval classes");
  need(reward_server.empty() || !model_dir.empty(),
       "--reward-server needs --model-dir (the server scores the pictures of the model's VQ decoder)");
  need(tokenizer.empty() || !prompt_file.empty(), "--tokenizer is used with --prompts FILE only");
  need((prompt_file.empty() && reward_server.empty()) || have_real_io(),
       "--prompts FILE / --reward-server: this janus_trainer was built without the tokenizer and the reward "
       "client (PCRE2, libcurl, libjpeg-turbo were not found at configuration: scripts/install-deps.sh --trainer)");
  need_real(reward_timeout, "--reward-timeout", 0.0, 86400.0, true);
  need_int(reward_retries, "--reward-retries", 0, 100);
  need_int(reward_batch, "--reward-batch", 1, limits::max_batch);
  need_int(reward_failures, "--reward-failures", 0, limits::max_steps);
}

// ------------------------------------------------------------------------------------------
// Task

Task::Task(const TrainConfig& c) : chat_template(c.chat_template) {
  config.height = c.grid_height;
  config.width = c.grid_width;
  check_status(shapes::validate(config), "task");
  shapes::SplitOptions so;
  so.heldout_fraction = c.heldout_fraction;
  so.seed = c.split_seed;
  check_status(shapes::split_prompts(config, so, split), "task split");
  if (!c.tags.empty()) {
    std::array<bool, shapes::kNumTags> keep{};
    std::stringstream ss(c.tags);
    std::string t;
    while (std::getline(ss, t, ',')) {
      const auto tag = shapes::tag_from_name(t);
      if (!tag)
        throw UsageError("--tags: unknown tag '" + t +
                         "' (single_object, two_object, counting, colors, position, color_attr)");
      keep[static_cast<int>(*tag)] = true;
    }
    auto filter = [&](std::vector<shapes::Metadata>& v) {
      v.erase(std::remove_if(v.begin(), v.end(), [&](const shapes::Metadata& m) { return !keep[static_cast<int>(m.tag)]; }),
              v.end());
    };
    filter(split.train);
    filter(split.heldout);
  }
  if (split.train.empty()) throw std::invalid_argument("no training prompt at this grid size and --tags");
  score.mode = score_mode(c.reward);
}

PromptBatch Task::encode(const std::vector<std::string>& prompts, const torch::Device& device, std::int64_t length) const {
  shapes::EncodeOptions eo;
  eo.add_bos = true;
  eo.chat_template = chat_template;
  eo.add_boi = false;
  std::vector<std::vector<int>> ids(prompts.size());
  std::size_t longest = 0;
  for (std::size_t i = 0; i < prompts.size(); ++i) {
    check_status(tokenizer.encode(prompts[i], ids[i], eo), "prompt '" + prompts[i] + "'");
    longest = std::max(longest, ids[i].size());
  }
  if (length != 0 && length < static_cast<std::int64_t>(longest) + 1)
    throw std::invalid_argument("Task::encode: length " + std::to_string(length) + " is below the longest prompt's " +
                                std::to_string(longest + 1) + " tokens (with <begin_of_image>)");
  const std::int64_t B = static_cast<std::int64_t>(prompts.size());
  const std::int64_t L = length != 0 ? length : static_cast<std::int64_t>(longest) + 1;
  torch::Tensor t = torch::full({B, L}, static_cast<std::int64_t>(shapes::PromptTokenizer::pad_id), torch::kLong);
  torch::Tensor m = torch::zeros({B, L}, torch::kLong);
  auto ta = t.accessor<std::int64_t, 2>();
  auto ma = m.accessor<std::int64_t, 2>();
  for (std::int64_t b = 0; b < B; ++b) {
    for (std::size_t k = 0; k < ids[static_cast<std::size_t>(b)].size(); ++k) {
      ta[b][static_cast<std::int64_t>(k)] = ids[static_cast<std::size_t>(b)][k];
      ma[b][static_cast<std::int64_t>(k)] = 1;
    }
    ta[b][L - 1] = shapes::PromptTokenizer::boi_id;  // appended after the pads (section 2.2)
    ma[b][L - 1] = 1;
  }
  return PromptBatch{t.to(device), m.to(device)};
}

ModelConfig Task::model_config(std::int64_t hidden, std::int64_t layers, std::int64_t heads,
                               std::int64_t intermediate) const {
  ModelConfig c;
  c.vocab_size = tokenizer.vocab_size();
  c.hidden_size = hidden;
  c.num_hidden_layers = layers;
  c.num_attention_heads = heads;
  c.intermediate_size = intermediate > 0 ? intermediate : ModelConfig::default_intermediate(hidden);
  c.image_token_size = shapes::codebook_size();
  c.gen_embed_dim = 8;
  c.image_token_embed = hidden;
  c.image_height = config.height;
  c.image_width = config.width;
  c.bos_id = shapes::PromptTokenizer::bos_id;
  c.pad_id = shapes::PromptTokenizer::pad_id;
  c.boi_id = shapes::PromptTokenizer::boi_id;
  c.validate();
  return c;
}

std::vector<shapes::Grid> to_grids(const torch::Tensor& tokens, int height, int width) {
  const torch::Tensor t = tokens.to(torch::kCPU).to(torch::kLong).contiguous();
  std::vector<shapes::Grid> grids;
  const std::int64_t B = t.size(0), N = t.size(1);
  TORCH_CHECK(N == static_cast<std::int64_t>(height) * width, "tokens do not match the grid");
  const std::int64_t* p = t.data_ptr<std::int64_t>();
  for (std::int64_t b = 0; b < B; ++b) grids.push_back(shapes::Grid::from_tokens(height, width, p + b * N));
  return grids;
}

Pictures render(const torch::Tensor& tokens, int height, int width, const VqDecoder* vq, std::int64_t chunk) {
  Pictures out;
  if (vq == nullptr) {
    out.grids = to_grids(tokens, height, width);
    return out;
  }
  const std::int64_t B = tokens.size(0);
  chunk = std::max<std::int64_t>(1, chunk);
  torch::NoGradGuard ng;
  for (std::int64_t first = 0; first < B; first += chunk) {
    const std::int64_t n = std::min(chunk, B - first);
    const at::Tensor rgb = VqDecoder::to_uint8_images(vq->decode(tokens.narrow(0, first, n), height, width));  // [n, Hp, Wp, 3]
    const int hp = static_cast<int>(rgb.size(1)), wp = static_cast<int>(rgb.size(2));
    const std::uint8_t* p = rgb.data_ptr<std::uint8_t>();
    for (std::int64_t i = 0; i < n; ++i) {
      shapes::Image img(wp, hp);
      std::memcpy(img.rgb.data(), p + i * static_cast<std::int64_t>(hp) * wp * 3, img.rgb.size());
      shapes::Grid g;
      check_status(shapes::grid_of_image(img, height, width, g), "the detector's view of a decoded picture");
      out.grids.push_back(std::move(g));
      out.images.push_back(std::move(img));
    }
  }
  return out;
}

// ------------------------------------------------------------------------------------------
// Model files

void save_model(const std::string& path, JanusModelImpl& model) {
  std::vector<std::pair<std::string, at::Tensor>> tensors;
  for (const auto& kv : model.named_parameters()) tensors.emplace_back(kv.key(), kv.value());
  save_safetensors(path, tensors, {{"format", "pt"}, {"config", model.cfg.to_json().dump()}});
}

namespace {

const char* dtype_text(at::ScalarType t) {
  switch (t) {
    case at::kFloat: return "F32";
    case at::kDouble: return "F64";
    case at::kHalf: return "F16";
    case at::kBFloat16: return "BF16";
    case at::kLong: return "I64";
    case at::kInt: return "I32";
    case at::kShort: return "I16";
    case at::kChar: return "I8";
    case at::kByte: return "U8";
    case at::kBool: return "BOOL";
    default: return "?";
  }
}

/// Refuses a tensor of another dtype or shape than `like`, or with a NaN or an infinity.
void check_tensor(const at::Tensor& t, at::ScalarType dtype, at::IntArrayRef shape, const std::string& file,
                  const std::string& name) {
  if (t.scalar_type() != dtype)
    throw std::runtime_error(file + ": tensor '" + name + "' has dtype " + dtype_text(t.scalar_type()) +
                             ", expected " + dtype_text(dtype));
  if (t.sizes() != shape)
    throw std::runtime_error(file + ": tensor '" + name + "' has shape " + c10::str(t.sizes()) + ", expected " +
                             c10::str(shape));
  if (!all_finite(t))
    throw std::runtime_error(file + ": tensor '" + name + "' holds " +
                             std::to_string(t.numel() - torch::isfinite(t).sum().item<std::int64_t>()) +
                             " non-finite values (NaN or infinity)");
}

/// A metadata value that must be a non-negative decimal integer (no sign, no other character).
std::int64_t metadata_count(const std::map<std::string, std::string>& md, const std::string& key,
                            const std::string& file) {
  const auto it = md.find(key);
  if (it == md.end()) throw std::runtime_error(file + ": metadata key '" + key + "' is missing");
  const std::string& v = it->second;
  bool ok = !v.empty() && v.size() <= 12;
  for (char c : v) ok = ok && c >= '0' && c <= '9';
  if (!ok)
    throw std::runtime_error(file + ": metadata key '" + key + "' is \"" + v.substr(0, 40) +
                             "\", not a non-negative integer");
  return std::stoll(v);
}

/// The checkpoint named by RUN/checkpoints/latest; the name must be "step-<digits>".
std::string latest_checkpoint(const std::string& run) {
  const fs::path latest = fs::path(run) / "checkpoints" / "latest";
  std::ifstream in(latest);
  if (!in) throw std::runtime_error(run + ": not a run directory with a checkpoint (no readable checkpoints/latest)");
  std::string name, extra;
  in >> name >> extra;
  bool ok = name.size() > 5 && name.compare(0, 5, "step-") == 0 && extra.empty();
  for (std::size_t i = 5; ok && i < name.size(); ++i) ok = name[i] >= '0' && name[i] <= '9';
  if (!ok)
    throw std::runtime_error(latest.string() + ": holds \"" + name.substr(0, 60) +
                             "\", not the name of a checkpoint (step-NNNNNN)");
  const fs::path dir = fs::path(run) / "checkpoints" / name;
  if (fs::is_directory(dir)) return dir.string();
  // A replacement of this checkpoint was interrupted between its two renames: the previous
  // copy is still complete under its aside name (run_dir.hpp). A run restores it under its lock.
  for (const auto& e : fs::directory_iterator(fs::path(run) / "checkpoints"))
    if (e.is_directory() && e.path().filename().string().rfind(name + ".janus-old-", 0) == 0) return e.path().string();
  throw std::runtime_error(latest.string() + ": names " + name + ", which does not exist");
}

std::string model_file(const std::string& path) {
  if (fs::is_directory(path)) {
    if (fs::exists(fs::path(path) / "model.safetensors")) return (fs::path(path) / "model.safetensors").string();
    if (fs::exists(fs::path(path) / "checkpoints" / "latest"))
      return (fs::path(latest_checkpoint(path)) / "model.safetensors").string();
    throw std::runtime_error(path + ": no model.safetensors and no checkpoints/latest in this directory");
  }
  return path;
}

/// A checkpoint directory from a checkpoint or run directory.
std::string checkpoint_dir(const std::string& path) {
  if (fs::exists(fs::path(path) / "trainer.safetensors")) return path;
  if (fs::exists(fs::path(path) / "checkpoints" / "latest")) return latest_checkpoint(path);
  throw std::runtime_error(path + ": not a checkpoint (no trainer.safetensors) nor a run directory (no checkpoints/latest)");
}

/// The model configuration in a safetensors file's metadata, validated.
ModelConfig model_config_of(const SafeTensors& st, const std::string& file) {
  auto it = st.metadata.find("config");
  if (it == st.metadata.end()) throw std::runtime_error(file + ": metadata key 'config' (the model config) is missing");
  try {
    ModelConfig c = ModelConfig::from_json(nlohmann::json::parse(it->second));
    if (c.image_height > limits::max_grid || c.image_width > limits::max_grid)
      throw std::invalid_argument("image grid larger than " + std::to_string(limits::max_grid));
    return c;
  } catch (const std::exception& e) {
    throw std::runtime_error(file + ": metadata key 'config' is not a valid model config: " + e.what());
  }
}

/// The run settings in a checkpoint's metadata, validated; errors name the file and the key.
TrainConfig checkpoint_config(const SafeTensors& st, const std::string& file) {
  const auto it = st.metadata.find("config");
  if (it == st.metadata.end()) throw std::runtime_error(file + ": metadata key 'config' (the run settings) is missing");
  TrainConfig c;
  try {
    c = TrainConfig::from_json(nlohmann::json::parse(it->second));
  } catch (const std::exception& e) {
    throw std::runtime_error(file + ": metadata key 'config' is not valid run settings: " + e.what());
  }
  try {
    c.validate();
  } catch (const std::exception& e) {
    throw std::runtime_error(file + ": metadata key 'config' holds a bad setting: " + e.what());
  }
  return c;
}

}  // namespace

namespace {

/// The entries of `tensors` under `prefix` by parameter name, once every parameter of `model` is
/// there with its dtype and shape, finite, and nothing else is.
std::map<std::string, const at::Tensor*> checked_parameters(JanusModelImpl& model,
                                                            const std::vector<std::pair<std::string, at::Tensor>>& tensors,
                                                            const std::string& prefix, const std::string& origin) {
  auto params = model.named_parameters();
  std::map<std::string, const at::Tensor*> given;
  for (const auto& kv : tensors)
    if (kv.first.compare(0, prefix.size(), prefix) == 0) given[kv.first.substr(prefix.size())] = &kv.second;
  for (const auto& kv : given)
    if (!params.contains(kv.first)) throw std::runtime_error(origin + ": unknown parameter '" + prefix + kv.first + "'");
  for (auto& kv : params) {
    auto it = given.find(kv.key());
    if (it == given.end()) throw std::runtime_error(origin + ": missing parameter '" + prefix + kv.key() + "'");
    const at::Tensor& src = *it->second;
    if (src.sizes() != kv.value().sizes())
      throw std::runtime_error(origin + ": parameter '" + prefix + kv.key() + "' has shape " + c10::str(src.sizes()) +
                               ", the model expects " + c10::str(kv.value().sizes()));
    check_tensor(src, kv.value().scalar_type(), kv.value().sizes(), origin, prefix + kv.key());
  }
  return given;
}

}  // namespace

void load_parameters(JanusModelImpl& model, const std::vector<std::pair<std::string, at::Tensor>>& tensors,
                     const std::string& prefix, const std::string& origin) {
  torch::NoGradGuard no_grad;
  const auto given = checked_parameters(model, tensors, prefix, origin);
  for (auto& kv : model.named_parameters()) kv.value().copy_(*given.at(kv.key()));
}

JanusModel load_model(const std::string& path, const torch::Device& device, std::optional<at::ScalarType> dtype) {
  const std::string file = model_file(path);
  const SafeTensors st = load_safetensors(file);
  const ModelConfig cfg = model_config_of(st, file);
  // The file's dtype: every floating-point tensor's (float32 or bfloat16).
  at::ScalarType stored = at::kFloat;
  std::string first;
  for (const auto& kv : st.tensors) {
    const at::ScalarType t = kv.second.scalar_type();
    if (t != at::kFloat && t != at::kBFloat16)
      throw std::runtime_error(file + ": tensor '" + kv.first + "' has dtype " + dtype_text(t) + ", expected F32 or BF16");
    if (first.empty()) {
      first = kv.first;
      stored = t;
    } else if (t != stored) {
      throw std::runtime_error(file + ": tensor '" + kv.first + "' has dtype " + dtype_text(t) + " but '" + first +
                               "' has " + dtype_text(stored) + " (one dtype per model file)");
    }
  }
  // Names and shapes against the config before the model is allocated (a config that claims a
  // huge model next to small tensors is refused here, not by an allocation failure).
  std::map<std::string, const at::Tensor*> have;
  for (const auto& kv : st.tensors) have[kv.first] = &kv.second;
  for (const auto& e : expected_parameters(cfg)) {
    const auto it = have.find(e.first);
    if (it == have.end()) throw std::runtime_error(file + ": missing parameter '" + e.first + "'");
    if (it->second->sizes().vec() != e.second)
      throw std::runtime_error(file + ": parameter '" + e.first + "' has shape " + c10::str(it->second->sizes()) +
                               ", the model config expects " + c10::str(at::IntArrayRef(e.second)));
  }
  JanusModel m = make_model(cfg, stored);
  load_parameters(*m, st.tensors, "", file);
  m->to(device, dtype.value_or(stored));
  return m;
}

double lr_at(const TrainConfig& c, std::int64_t step, std::int64_t total) {
  if (c.warmup > 0 && step < c.warmup) return c.lr * static_cast<double>(step + 1) / static_cast<double>(c.warmup + 1);
  if (c.schedule == "constant") return c.lr;
  const std::int64_t span = std::max<std::int64_t>(1, total - c.warmup);
  const double progress = std::min(1.0, static_cast<double>(step - c.warmup) / static_cast<double>(span));
  const double f = c.schedule == "linear" ? 1.0 - progress : 0.5 * (1.0 + std::cos(3.14159265358979323846 * progress));
  return c.lr * (c.min_lr_ratio + (1.0 - c.min_lr_ratio) * f);
}

// ------------------------------------------------------------------------------------------
// Evaluation

nlohmann::json accuracy_json(const shapes::EvalReport& r) {
  nlohmann::json j;
  j["overall"] = r.overall();
  j["all"] = r.all.accuracy();
  for (int t = 0; t < shapes::kNumTags; ++t)
    if (r.per_tag[t].n > 0) j[shapes::name(static_cast<shapes::Tag>(t))] = r.per_tag[t].accuracy();
  return j;
}

namespace {

// Pictures travel between ranks as bytes: per grid its height, width and tokens (int32), per
// image its width, height and RGB bytes.
template <class T>
void put(std::vector<std::uint8_t>& out, T v) {
  const auto* b = reinterpret_cast<const std::uint8_t*>(&v);
  out.insert(out.end(), b, b + sizeof(T));
}
template <class T>
T take(const std::vector<std::uint8_t>& in, std::size_t& at) {
  if (at + sizeof(T) > in.size()) throw std::runtime_error("janus: a gathered picture message is truncated");
  T v;
  std::memcpy(&v, in.data() + at, sizeof(T));
  at += sizeof(T);
  return v;
}

std::vector<std::uint8_t> pack(const std::vector<shapes::Grid>& grids, const std::vector<shapes::Image>& images) {
  std::vector<std::uint8_t> out;
  put<std::uint64_t>(out, grids.size());
  for (const auto& g : grids) {
    put<std::int32_t>(out, g.height);
    put<std::int32_t>(out, g.width);
    for (int t : g.tokens) put<std::int32_t>(out, t);
  }
  put<std::uint64_t>(out, images.size());
  for (const auto& im : images) {
    put<std::int32_t>(out, im.width);
    put<std::int32_t>(out, im.height);
    out.insert(out.end(), im.rgb.begin(), im.rgb.end());
  }
  return out;
}

void unpack(const std::vector<std::uint8_t>& in, std::vector<shapes::Grid>& grids, std::vector<shapes::Image>& images) {
  std::size_t at = 0;
  const auto n_grids = take<std::uint64_t>(in, at);
  for (std::uint64_t k = 0; k < n_grids; ++k) {
    const int h = take<std::int32_t>(in, at), w = take<std::int32_t>(in, at);
    shapes::Grid g(h, w);
    for (auto& t : g.tokens) t = take<std::int32_t>(in, at);
    grids.push_back(std::move(g));
  }
  const auto n_images = take<std::uint64_t>(in, at);
  for (std::uint64_t k = 0; k < n_images; ++k) {
    const int w = take<std::int32_t>(in, at), h = take<std::int32_t>(in, at);
    shapes::Image im(w, h);
    if (at + im.rgb.size() > in.size()) throw std::runtime_error("janus: a gathered picture message is truncated");
    std::memcpy(im.rgb.data(), in.data() + at, im.rgb.size());
    at += im.rgb.size();
    images.push_back(std::move(im));
  }
}

/// Every rank's bytes, index = rank (two collectives: the lengths, then the padded bytes).
std::vector<std::vector<std::uint8_t>> gather_bytes(dist::Communicator& comm, const std::vector<std::uint8_t>& mine) {
  const auto lengths = comm.all_gather(std::vector<std::int64_t>{static_cast<std::int64_t>(mine.size())});
  std::int64_t longest = 1;
  for (const auto& l : lengths) longest = std::max(longest, l.at(0));
  torch::Tensor in = torch::zeros({longest}, torch::kByte);
  if (!mine.empty()) std::memcpy(in.data_ptr<std::uint8_t>(), mine.data(), mine.size());
  const torch::Tensor out = torch::empty({longest * comm.world_size()}, torch::TensorOptions().dtype(torch::kByte).device(comm.device()));
  comm.all_gather(in.to(comm.device()), out);
  const torch::Tensor host = out.to(torch::kCPU);
  std::vector<std::vector<std::uint8_t>> result;
  for (int r = 0; r < comm.world_size(); ++r) {
    const std::uint8_t* first = host.data_ptr<std::uint8_t>() + r * longest;
    result.emplace_back(first, first + lengths[static_cast<std::size_t>(r)].at(0));
  }
  return result;
}

}  // namespace

Pictures Trainer::gathered_pictures() {
  if (parallel_.world() == 1) return last_pictures_;
  // the grids are every rank's already (rl_step); the decoded images (none without a decoder) are gathered
  Pictures all;
  all.grids = last_pictures_.grids;
  std::vector<shapes::Grid> unused;
  for (const auto& bytes : gather_bytes(*parallel_.comm, pack({}, last_pictures_.images))) unpack(bytes, unused, all.images);
  return all;
}

EvalResult evaluate(JanusModelImpl& model, const Task& task, const std::vector<shapes::Metadata>& prompts,
                    std::int64_t samples_per_prompt, const GenerateOptions& gen, std::int64_t batch,
                    const VqDecoder* vq, const Parallel& parallel) {
  if (batch < 1 || samples_per_prompt < 1)
    throw UsageError("evaluation needs at least one image per prompt and per decode (batch " + std::to_string(batch) +
                     ", samples " + std::to_string(samples_per_prompt) + ")");
  const auto t0 = std::chrono::steady_clock::now();
  EvalResult res;
  for (const auto& m : prompts)
    for (std::int64_t s = 0; s < samples_per_prompt; ++s) res.metas.push_back(m);
  const auto device = model.gen_embed->weight.device();
  const int world = parallel.world(), rank = parallel.rank();
  for (std::size_t first = 0, chunk = 0; first < res.metas.size(); first += static_cast<std::size_t>(batch), ++chunk) {
    if (static_cast<int>(chunk % static_cast<std::size_t>(world)) != rank) continue;  // another rank's batch
    const std::size_t last = std::min(res.metas.size(), first + static_cast<std::size_t>(batch));
    std::vector<std::string> texts;
    for (std::size_t i = first; i < last; ++i) texts.push_back(res.metas[i].prompt);
    GenerateOptions g = gen;
    g.seed = shapes::derive_seed(gen.seed, chunk);
    g.keep_logits = false;
    const GenerateResult out = model.generate(task.encode(texts, device), g);
    Pictures pics = render(out.tokens, task.config.height, task.config.width, vq);
    for (auto& grid : pics.grids) res.grids.push_back(std::move(grid));
    for (auto& img : pics.images) res.images.push_back(std::move(img));
  }
  if (world > 1) {
    // rank r evaluated batches r, r + world, ...: gathered, then put back in batch order
    std::vector<std::vector<shapes::Grid>> grids(static_cast<std::size_t>(world));
    std::vector<std::vector<shapes::Image>> images(static_cast<std::size_t>(world));
    const auto all = gather_bytes(*parallel.comm, pack(res.grids, res.images));
    for (int r = 0; r < world; ++r) unpack(all[static_cast<std::size_t>(r)], grids[static_cast<std::size_t>(r)], images[static_cast<std::size_t>(r)]);
    res.grids.clear();
    res.images.clear();
    std::vector<std::size_t> next_grid(static_cast<std::size_t>(world), 0), next_image(next_grid);
    for (std::size_t first = 0, chunk = 0; first < res.metas.size(); first += static_cast<std::size_t>(batch), ++chunk) {
      const auto r = chunk % static_cast<std::size_t>(world);
      const std::size_t n = std::min(res.metas.size(), first + static_cast<std::size_t>(batch)) - first;
      for (std::size_t k = 0; k < n; ++k) {
        if (next_grid[r] >= grids[r].size())
          throw std::runtime_error("janus: evaluation: rank " + std::to_string(r) + " sent fewer pictures than its batches hold");
        res.grids.push_back(std::move(grids[r][next_grid[r]++]));
        if (!images[r].empty()) res.images.push_back(std::move(images[r][next_image[r]++]));
      }
    }
  }
  for (std::size_t i = 0; i < res.metas.size(); ++i) res.scores.push_back(shapes::score(res.grids[i], res.metas[i], task.score));
  check_status(shapes::evaluate(res.metas, res.grids, task.score, res.report), "evaluate");
  res.seconds = seconds_since(t0);
  return res;
}

namespace {

/// A published model prompted with the task's words: the task's prompt vocabulary takes the
/// first ids of the model's text vocabulary and its special ids become the model's.
void use_task_vocabulary(ModelConfig& mc, const Task& task, const std::string& dir) {
  if (mc.vocab_size < task.tokenizer.vocab_size())
    throw std::runtime_error("--model-dir " + dir + ": the text vocabulary (" + std::to_string(mc.vocab_size) +
                             " ids) is smaller than the task's prompt vocabulary (" +
                             std::to_string(task.tokenizer.vocab_size()) + " words)");
  mc.bos_id = shapes::PromptTokenizer::bos_id;
  mc.pad_id = shapes::PromptTokenizer::pad_id;
  mc.boi_id = shapes::PromptTokenizer::boi_id;
}

/// A model that draws pictures: the language and generation modules, and the VQ decoder of a
/// published directory (null for the task's own codebook).
struct DrawingModel {
  JanusModel model{nullptr};
  std::shared_ptr<VqDecoder> vq;
};

/// Everything of a published directory, at the task's grid, prompted with the task's words.
DrawingModel load_published(const std::string& dir, const Task& task, at::ScalarType dtype, torch::Device device) {
  PretrainedOptions po;
  po.grid_h = task.config.height;
  po.grid_w = task.config.width;
  po.dtype = dtype;
  po.device = device;
  Pretrained p = load_pretrained(dir, po);
  use_task_vocabulary(p.model->cfg, task, dir);
  return {p.model, std::make_shared<VqDecoder>(std::move(p.vq))};
}

/// The VQ decoder of `dir` for model `m` (read from `origin`): its codebook must be m's image tokens.
std::shared_ptr<VqDecoder> decoder_for(const std::string& dir, const JanusModelImpl& m, const std::string& origin,
                                       at::ScalarType dtype, torch::Device device) {
  auto vq = std::make_shared<VqDecoder>(load_vq_decoder(dir, dtype, device));
  if (vq->shape().codebook_size != m.cfg.image_token_size)
    throw std::runtime_error("--model-dir " + dir + ": the VQ codebook has " + std::to_string(vq->shape().codebook_size) +
                             " entries, the model in " + origin + " draws " + std::to_string(m.cfg.image_token_size) +
                             " image tokens");
  return vq;
}

}  // namespace

// ------------------------------------------------------------------------------------------
// Trainer

Trainer::Trainer(const TrainConfig& config, Parallel parallel)
    : config_(config), parallel_(std::move(parallel)), task_(config), device_(torch::kCPU) {
  config_.validate();
  const int world = parallel_.world();
  if (world > 1) {
    if (config_.mode != "rl")
      throw UsageError("sft runs in one process: data parallelism (" + std::to_string(world) +
                       " processes) is for rl; start sft without torchrun / launch.sh");
    if (config_.prompts % world != 0)
      throw UsageError("--prompts (" + std::to_string(config_.prompts) + ") must be a multiple of the number of processes (" +
                       std::to_string(world) + "): each rank samples and trains on whole groups of equally many prompts");
  }
  if (config_.device == "cuda") {
    if (!torch::cuda::is_available()) throw std::runtime_error("--device cuda: libtorch sees no CUDA device");
    if (!ops::cuda_available())
      throw std::runtime_error("--device cuda: this trainer was built without gcpo::cuda (configure with CUDA)");
    if (world > 1) {
      const auto n = static_cast<int>(torch::cuda::device_count());
      if (parallel_.local_rank >= n)
        throw std::runtime_error("--device cuda: LOCAL_RANK " + std::to_string(parallel_.local_rank) + " but this host has " +
                                 std::to_string(n) + " CUDA device(s): start at most that many processes per host");
      device_ = torch::Device(torch::kCUDA, static_cast<c10::DeviceIndex>(parallel_.local_rank));
      // this process's current device: kernels without an explicit device (gcpo's, on the
      // current stream) run where the tensors are
      c10::impl::getDeviceGuardImpl(c10::DeviceType::CUDA)->setDevice(device_);
    } else {
      device_ = torch::Device(torch::kCUDA);
    }
  }
  dtype_ = config_.dtype == "bf16" ? at::kBFloat16 : at::kFloat;
  if (!config_.model_dir.empty()) {
    // A published model: the language model and generation modules from the directory (or, on
    // resume, from the checkpoint in `init`), the VQ decoder from the directory.
    torch::manual_seed(shapes::derive_seed(config_.seed, kStreamInit));  // the modules' initialisation, overwritten
    if (config_.init.empty()) {
      DrawingModel d = load_published(config_.model_dir, task_, dtype_, device_);
      policy_ = d.model;
      vq_ = d.vq;
    } else {
      policy_ = load_model(config_.init, device_, dtype_);
      vq_ = decoder_for(config_.model_dir, *policy_, config_.init, dtype_, device_);
    }
    if (policy_->cfg.image_height != task_.config.height || policy_->cfg.image_width != task_.config.width)
      throw std::runtime_error(config_.init + " draws " + std::to_string(policy_->cfg.image_height) + "x" +
                               std::to_string(policy_->cfg.image_width) + " grids but the task is " +
                               std::to_string(task_.config.height) + "x" + std::to_string(task_.config.width));
  } else if (!config_.init.empty()) {
    policy_ = load_model(config_.init, device_, dtype_);
    if (policy_->cfg.image_height != task_.config.height || policy_->cfg.image_width != task_.config.width)
      throw std::runtime_error("--init model draws " + std::to_string(policy_->cfg.image_height) + "x" +
                               std::to_string(policy_->cfg.image_width) + " grids but the task is " +
                               std::to_string(task_.config.height) + "x" + std::to_string(task_.config.width) +
                               " (pass --grid to match)");
  } else {
    torch::manual_seed(shapes::derive_seed(config_.seed, kStreamInit));
    policy_ = JanusModel(task_.model_config(config_.hidden, config_.layers, config_.heads, config_.intermediate));
    init_weights(*policy_);
    policy_->to(device_, dtype_);
  }
  if (!config_.prompt_file.empty()) {
#if defined(JANUS_HAVE_REAL_IO)
    records_ = read_prompt_file(config_.prompt_file);
    const std::string tok = config_.tokenizer.empty() ? (fs::path(config_.model_dir) / "tokenizer.json").string()
                                                      : config_.tokenizer;
    if (config_.tokenizer.empty() && !fs::exists(tok))
      throw UsageError("--prompts FILE: the model directory has no tokenizer.json (" + tok +
                       "): name the model's tokenizer with --tokenizer");
    tokenizer_ = std::make_shared<const Tokenizer>(Tokenizer::from_file(tok));
    if (tokenizer_->vocab_size() > policy_->cfg.vocab_size)
      throw std::runtime_error(tok + ": its ids reach " + std::to_string(tokenizer_->vocab_size() - 1) +
                               " but the model's text vocabulary has " + std::to_string(policy_->cfg.vocab_size) +
                               " entries (" + config_.model_dir + "/config.json `language_config.vocab_size`): "
                               "not this model's tokenizer");
    encode_prompts(*tokenizer_, {records_.front().prompt});  // the special tokens are there, or an error naming one
    // Every prompt is tokenized once now, so that a prompt the tokenizer cannot take stops the
    // run before its first step, naming its line, not hours into it.
    for (const PromptRecord& r : records_) {
      try {
        (void)tokenizer_->encode(janus_prompt_text(r.prompt));
      } catch (const std::exception& e) {
        throw std::runtime_error(config_.prompt_file + ":" + std::to_string(r.line) + ": the prompt cannot be tokenized: " +
                                 e.what());
      }
    }
#endif
  }
  if (!config_.reward_server.empty()) {
#if defined(JANUS_HAVE_REAL_IO)
    RewardServerOptions ro;
    ro.url = config_.reward_server;
    ro.timeout_s = config_.reward_timeout;
    ro.max_retries = static_cast<int>(config_.reward_retries);
    ro.batch = static_cast<int>(config_.reward_batch);
    try {
      reward_client_ = std::make_shared<RewardClient>(ro);
    } catch (const std::invalid_argument& e) {
      throw UsageError(std::string("--reward-server: ") + e.what());
    }
#endif
  }
  if (config_.top_k > policy_->cfg.image_token_size)
    throw UsageError("--top-k (" + std::to_string(config_.top_k) + ") exceeds the model's " +
                     std::to_string(policy_->cfg.image_token_size) + " image tokens");
  policy_->set_gradient_checkpointing(config_.grad_checkpoint);
  if (world > 1) broadcast_initial_weights();
  if (config_.mode == "rl" || !config_.train_gen) policy_->freeze_generation_modules();
  if (config_.mode == "rl") {
    // The frozen reference: a copy of the initial policy, no parameter requires grad.
    reference_ = make_model(policy_->cfg, dtype_);
    reference_->to(device_);
    reference_->copy_from(*policy_);
    for (auto& p : reference_->parameters()) p.set_requires_grad(false);
    reference_->eval();
  }
  build_optimizer();
}

Trainer::~Trainer() = default;

void Trainer::broadcast_initial_weights() {
  // Every rank built the same weights from the same seed or files; rank 0's are broadcast
  // anyway (as PyTorch's DDP does), so no rank can start from others. bf16 tensors travel as
  // their bits viewed as float16 (Gloo in libtorch 1.13 carries no bf16 and no int16; a
  // broadcast copies bits, no arithmetic).
  torch::NoGradGuard ng;
  std::vector<torch::Tensor> tensors;
  for (auto& p : policy_->parameters())
    tensors.push_back(p.scalar_type() == at::kBFloat16 ? p.view(torch::kHalf) : p);
  parallel_.comm->broadcast(tensors);
}

void Trainer::build_optimizer() {
  trainable_names_.clear();
  trainable_.clear();
  for (auto& kv : policy_->named_parameters())
    if (kv.value().requires_grad()) {
      trainable_names_.push_back(kv.key());
      trainable_.push_back(kv.value());
    }
  const bool sharded = parallel_.world() > 1 && config_.shard_optimizer;
  master_.clear();
  if (dtype_ != at::kFloat && !sharded)
    for (const auto& p : trainable_) master_.push_back(p.detach().to(at::kFloat).clone());
  torch::optim::AdamWOptions o(config_.lr);
  o.betas(std::make_tuple(config_.beta1, config_.beta2)).eps(config_.adam_eps).weight_decay(config_.weight_decay);
  // (sharded: never stepped, holds no state; the shards' optimizer is sharded_)
  optimizer_ = std::make_unique<torch::optim::AdamW>(optimized(), o);
  if (parallel_.world() > 1) {
    if (!sync_) sync_ = std::make_unique<dp::GradientSync>(*parallel_.comm, trainable_, parallel_.comm->bucket_bytes(), sharded);
    sharded_.reset();
    if (sharded) {
      dp::AdamWSettings a;
      a.lr = config_.lr;
      a.beta1 = config_.beta1;
      a.beta2 = config_.beta2;
      a.eps = config_.adam_eps;
      a.weight_decay = config_.weight_decay;
      sharded_ = std::make_unique<dp::ShardedAdamW>(*parallel_.comm, sync_->layout(), trainable_, a);
    }
  }
}

void Trainer::zero_grads() {
  optimizer_->zero_grad();
  if (!master_.empty())
    for (auto& p : trainable_) p.mutable_grad().reset();
}

void Trainer::set_lr(double lr) {
  for (auto& g : optimizer_->param_groups()) static_cast<torch::optim::AdamWOptions&>(g.options()).lr(lr);
}

double Trainer::checked_update(double loss) {
  // The gradient norm over all trainable parameters (clip_grad_norm_ with an infinite bound
  // only measures it), checked before the update: a non-finite loss or gradient leaves the
  // model and the optimizer as they were. The test-only failure point "nan-gradient" poisons
  // the gradient (run_dir.hpp).
  if (failure_injected("nan-gradient") && trainable_.front().grad().defined())
    trainable_.front().grad().fill_(std::numeric_limits<double>::quiet_NaN());
  if (sharded_) return synced_update(loss);
  const double bound = config_.max_grad_norm > 0 ? config_.max_grad_norm : std::numeric_limits<double>::infinity();
  if (sync_) {
    // data parallel: the float32 gradients summed over ranks (views into the buckets) are the
    // optimizer's, for the model's weights (float32) or their masters (bf16)
    for (std::size_t i = 0; i < trainable_.size(); ++i) optimized()[i].mutable_grad() = sync_->summed()[i];
  } else {
    // bf16: the model's gradients, cast to float32, become the masters' (clipped and applied
    // there); each bf16 gradient is released once cast, so the two sets never coexist whole.
    for (std::size_t i = 0; i < master_.size(); ++i) {
      master_[i].mutable_grad() = trainable_[i].grad().defined() ? trainable_[i].grad().to(at::kFloat) : torch::Tensor();
      trainable_[i].mutable_grad().reset();
    }
  }
  std::vector<torch::Tensor> with_grad;
  for (auto& p : optimized())
    if (p.grad().defined()) with_grad.push_back(p);
  const double grad_norm = with_grad.empty() ? 0.0 : torch::nn::utils::clip_grad_norm_(with_grad, bound);
  const std::string at = "step " + std::to_string(step_ + 1) + ": ";
  if (!std::isfinite(loss) || !std::isfinite(grad_norm))
    throw NonFiniteStep(at + "the loss (" + num(loss) + ") or the gradient norm (" + num(grad_norm) +
                        ") is not finite; the model was not updated");
  const double lr = lr_at(config_, step_, config_.steps);
  set_lr(lr);
  optimizer_->step();
  for (std::size_t i = 0; i < trainable_.size(); ++i)
    if (!torch::isfinite(optimized()[i]).all().item<bool>())
      throw NonFiniteStep(at + "the update made parameter '" + trainable_names_[i] +
                          "' non-finite; this trainer's state is no longer usable");
  if (!master_.empty()) {
    torch::NoGradGuard ng;
    for (std::size_t i = 0; i < trainable_.size(); ++i) trainable_[i].copy_(master_[i]);  // round to bf16
  }
  // Gradients live only from the backward pass to the update: released here, not kept (zeroed)
  // until the next step, which would hold a gradient per trainable weight for the whole step.
  for (auto& p : optimized()) p.mutable_grad().reset();
  if (sync_) sync_->release();
  ++step_;
  return config_.max_grad_norm > 0 ? grad_norm : 0.0;
}

double Trainer::synced_update(double loss) {
  // The sharded optimizer: this rank's gradient shards, the global norm (every rank the same),
  // AdamW on the shards, the updated shards gathered into the model.
  const std::string at = "step " + std::to_string(step_ + 1) + ": ";
  const double grad_norm = sharded_->grad_norm(sync_->shards());
  if (!std::isfinite(loss) || !std::isfinite(grad_norm)) {
    sync_->release();
    throw NonFiniteStep(at + "the loss (" + num(loss) + ") or the gradient norm (" + num(grad_norm) +
                        ") is not finite; the model was not updated");
  }
  const double lr = lr_at(config_, step_, config_.steps);
  const bool ok = sharded_->step(sync_->shards(), grad_norm, config_.max_grad_norm, lr, trainable_);
  sync_->release();
  if (!ok)
    throw NonFiniteStep(at + "the update made a parameter shard non-finite on some rank; this trainer's state is no "
                             "longer usable");
  ++step_;
  return config_.max_grad_norm > 0 ? grad_norm : 0.0;
}

StepMetrics Trainer::train_step() { return config_.mode == "sft" ? sft_step() : rl_step(); }

GenerateOptions Trainer::rollout_options(std::int64_t step) const {
  GenerateOptions g;
  g.cfg = true;
  g.cfg_scale = config_.cfg_scale;
  g.temperature = config_.temperature;
  g.top_k = config_.top_k;
  g.top_p = config_.top_p;
  g.seed = shapes::derive_seed(shapes::derive_seed(config_.seed, kStreamRollout), static_cast<std::uint64_t>(step));
  return g;
}

std::vector<shapes::Metadata> Trainer::rl_prompts(std::int64_t step) const {
  std::vector<shapes::Metadata> out;
  const std::uint64_t stream = shapes::derive_seed(config_.seed, kStreamPrompts);
  for (std::int64_t i = 0; i < config_.prompts; ++i) {
    std::size_t k = 0;
    check_status(shapes::pick_prompt(task_.split.train, stream, static_cast<std::uint64_t>(step * config_.prompts + i), k),
                 "pick_prompt");
    out.push_back(task_.split.train[k]);
  }
  return out;
}

StepMetrics Trainer::sft_step() {
  const auto t0 = std::chrono::steady_clock::now();
  const std::int64_t B = config_.batch, N = policy_->cfg.image_tokens(), V = policy_->cfg.image_token_size;
  std::vector<shapes::Sample> samples;
  check_status(shapes::make_samples(task_.split.train, task_.config, shapes::derive_seed(config_.seed, kStreamSft),
                                    static_cast<std::uint64_t>(step_ * B), static_cast<std::size_t>(B), samples),
               "make_samples");
  std::vector<std::string> texts;
  torch::Tensor tokens = torch::empty({B, N}, torch::kLong);
  for (std::int64_t b = 0; b < B; ++b) {
    texts.push_back(samples[static_cast<std::size_t>(b)].meta.prompt);
    const auto& g = samples[static_cast<std::size_t>(b)].grid.tokens;
    for (std::int64_t t = 0; t < N; ++t) tokens[b][t] = static_cast<std::int64_t>(g[static_cast<std::size_t>(t)]);
  }
  PromptBatch batch = task_.encode(texts, torch::kCPU);
  // Prompt dropout: the unconditional prompt (BOS, pads, <begin_of_image>, all-ones mask), so
  // that classifier-free guidance has an unconditional distribution to push away from.
  const PromptBatch uncond = policy_->unconditional(batch);
  std::int64_t n_uncond = 0;
  for (std::int64_t b = 0; b < B; ++b) {
    const std::uint64_t h = shapes::derive_seed(shapes::derive_seed(config_.seed, kStreamUncond),
                                                static_cast<std::uint64_t>(step_ * B + b));
    if (static_cast<double>(h >> 11) * (1.0 / 9007199254740992.0) < config_.uncond_prob) {
      batch.ids[b].copy_(uncond.ids[b]);
      batch.mask[b].copy_(uncond.mask[b]);
      ++n_uncond;
    }
  }
  batch.ids = batch.ids.to(device_);
  batch.mask = batch.mask.to(device_);
  tokens = tokens.to(device_);

  policy_->train();
  const torch::Tensor logits = policy_->image_logits(batch, tokens).to(torch::kFloat);  // [B, N, V]
  const torch::Tensor loss = torch::nn::functional::cross_entropy(logits.reshape({B * N, V}), tokens.reshape({B * N}));
  zero_grads();
  loss.backward();
  const double grad_norm = checked_update(loss.item<double>());

  StepMetrics m;
  const double lr = lr_at(config_, step_ - 1, config_.steps);
  const double acc = logits.detach().argmax(-1).eq(tokens).to(torch::kFloat).mean().item<double>();
  m.json = {{"step", step_},
            {"mode", "sft"},
            {"loss", loss.item<double>()},
            {"token_accuracy", acc},
            {"uncond_fraction", static_cast<double>(n_uncond) / static_cast<double>(B)},
            {"lr", lr},
            {"grad_norm", grad_norm},
            {"step_time", seconds_since(t0)}};
  return m;
}

torch::Tensor random_token_mask(const torch::Tensor& counts, std::int64_t N, std::uint64_t seed, std::uint64_t first) {
  const auto R = counts.size(0);
  torch::Tensor mask = torch::zeros({R, N}, torch::kUInt8);
  std::uint8_t* m = mask.data_ptr<std::uint8_t>();
  const torch::Tensor c = counts.to(torch::kLong).contiguous();
  std::vector<std::int64_t> pos(static_cast<std::size_t>(N));
  for (std::int64_t r = 0; r < R; ++r) {
    const std::int64_t k = c.data_ptr<std::int64_t>()[r];
    if (k < 0 || k > N) throw std::invalid_argument("random_token_mask: a count outside [0, N]");
    for (std::int64_t i = 0; i < N; ++i) pos[static_cast<std::size_t>(i)] = i;
    std::mt19937_64 rng(shapes::derive_seed(seed, first + static_cast<std::uint64_t>(r)));
    for (std::int64_t i = 0; i < k; ++i) {  // the first k of a seeded partial Fisher-Yates shuffle
      const auto j = i + static_cast<std::int64_t>(rng() % static_cast<std::uint64_t>(N - i));
      std::swap(pos[static_cast<std::size_t>(i)], pos[static_cast<std::size_t>(j)]);
      m[r * N + pos[static_cast<std::size_t>(i)]] = 1;
    }
  }
  return mask;
}

StepMetrics Trainer::rl_step() {
  const auto t0 = std::chrono::steady_clock::now();
  // Data parallel: this rank's prompts are [p0, p0 + P / world) of the step's P, its rows
  // [p0 * G, (p0 + P / world) * G) of the global batch; every choice that is random depends on
  // the global indices only, so 1, 2 or 4 processes sample the same tokens.
  const int world = parallel_.world(), rank = parallel_.rank();
  const std::int64_t P = config_.prompts, G = config_.group, Pl = P / world, p0 = rank * Pl;
  const std::int64_t R = Pl * G, R_all = P * G, row0 = p0 * G;
  const std::int64_t N = policy_->cfg.image_tokens();
  const int H = static_cast<int>(policy_->cfg.image_height), W = static_cast<int>(policy_->cfg.image_width);

  // 1. Prompts, each repeated G times (rows p0g0, p0g1, ..., section 2.2); last_metas_ holds
  //    every rank's rows.
  //    A prompt-file run draws its records (seeded epochs) and tokenizes them with the model's
  //    tokenizer; last_records_ then holds the rows' records and last_metas_ stays empty.
  std::vector<std::string> texts, distinct;
  last_metas_.clear();
  last_records_.clear();
  if (!records_.empty()) {
    for (std::size_t i : prompt_indices_for_step(records_.size(), P, config_.seed, step_)) {
      distinct.push_back(records_[i].prompt);
      last_records_.insert(last_records_.end(), static_cast<std::size_t>(G), records_[i]);
    }
  } else {
    const std::vector<shapes::Metadata> prompts = rl_prompts(step_);
    for (const auto& m : prompts) {
      distinct.push_back(m.prompt);
      last_metas_.insert(last_metas_.end(), static_cast<std::size_t>(G), m);
    }
  }
  for (std::int64_t p = p0; p < p0 + Pl; ++p)
    for (std::int64_t g = 0; g < G; ++g) texts.push_back(distinct[static_cast<std::size_t>(p)]);
  // Every rank pads to the length of the step's longest prompt, as one process would: the
  // image tokens' positions (RoPE) depend on it.
  PromptBatch batch;
  if (tokenizer_) {
#if defined(JANUS_HAVE_REAL_IO)
    const std::int64_t longest = static_cast<std::int64_t>(encode_prompts(*tokenizer_, distinct).ids.at(0).size());
    const PromptIds ids = encode_prompts(*tokenizer_, texts, longest - 1);  // + <begin_of_image>
    const auto rows = static_cast<std::int64_t>(ids.ids.size());
    std::vector<std::int64_t> flat_ids, flat_mask;
    for (std::int64_t r = 0; r < rows; ++r) {
      flat_ids.insert(flat_ids.end(), ids.ids[static_cast<std::size_t>(r)].begin(), ids.ids[static_cast<std::size_t>(r)].end());
      flat_mask.insert(flat_mask.end(), ids.attention_mask[static_cast<std::size_t>(r)].begin(),
                       ids.attention_mask[static_cast<std::size_t>(r)].end());
    }
    batch.ids = torch::tensor(flat_ids, torch::kLong).view({rows, longest}).to(device_);
    batch.mask = torch::tensor(flat_mask, torch::kLong).view({rows, longest}).to(device_);
#endif
  } else {
    batch = task_.encode(texts, device_, task_.encode(distinct, torch::kCPU).ids.size(1));
  }
  const std::int64_t L = batch.ids.size(1);

  // Phase times: on CUDA the device is synchronised at each boundary so that each phase's
  // kernels are counted in it.
  auto synced_now = [&] {  // the device idle, then the clock: what follows is timed alone
    if (device_.is_cuda()) torch::cuda::synchronize();
    return std::chrono::steady_clock::now();
  };
  auto phase_end = [&](std::chrono::steady_clock::time_point start) {
    if (device_.is_cuda()) torch::cuda::synchronize();
    return seconds_since(start);
  };
  double ops_time = 0;

  // 2. Rollouts with CFG through gcpo's generation step; entropy collected while sampling.
  policy_->eval();
  GenerateOptions go = rollout_options(step_);
  go.first_row = static_cast<std::uint64_t>(row0);
  const GenerateResult gen = policy_->generate(batch, go);
  const double sample_time = phase_end(t0);
  crash_point("rl-after-rollouts");

  // 3. Rewards (GenEval rules on the detector's view of each picture: the grid itself, or the
  //    VQ decoder's picture read at the token grid). Data parallel: the grids and tokens of
  //    every rank are gathered (small), so every rank scores every row and the reward metrics
  //    are those of the whole batch.
  const auto t_reward = std::chrono::steady_clock::now();
  last_pictures_ = render(gen.tokens, H, W, vq_.get());
  const torch::Tensor tokens_cpu = gen.tokens.to(torch::kCPU).contiguous();
  std::vector<std::int64_t> all_tokens(tokens_cpu.data_ptr<std::int64_t>(),
                                       tokens_cpu.data_ptr<std::int64_t>() + tokens_cpu.numel());
  if (world > 1) {
    std::vector<std::int64_t> mine = all_tokens;
    for (const auto& g : last_pictures_.grids) mine.insert(mine.end(), g.tokens.begin(), g.tokens.end());
    const auto gathered = parallel_.comm->all_gather(mine);
    all_tokens.clear();
    std::vector<shapes::Grid> grids;
    for (const auto& v : gathered) {
      const auto split = v.begin() + R * N;
      all_tokens.insert(all_tokens.end(), v.begin(), split);
      for (std::int64_t r = 0; r < R; ++r) grids.push_back(shapes::Grid::from_tokens(H, W, &*(split + r * H * W)));
    }
    last_pictures_.grids = std::move(grids);  // every rank's; the images stay this rank's (gathered_pictures)
  }
  last_scores_.clear();
  std::vector<float> rw;
  std::array<int, shapes::kNumTags> n_tag{}, ok_tag{};
  nlohmann::json server_metrics;
  if (reward_client_) {
    rw = server_rewards(R, row0, server_metrics);  // every rank's rows; throws RewardStepError
  } else {
    for (std::int64_t r = 0; r < R_all; ++r) {
      last_scores_.push_back(shapes::score(last_pictures_.grids[static_cast<std::size_t>(r)],
                                           last_metas_[static_cast<std::size_t>(r)], task_.score));
      rw.push_back(static_cast<float>(last_scores_.back().reward));
    }
  }
  for (std::int64_t r = 0; r < R_all; ++r) {
    const auto tag = last_records_.empty() ? std::optional<shapes::Tag>(last_metas_[static_cast<std::size_t>(r)].tag)
                                           : shapes::tag_from_name(last_records_[static_cast<std::size_t>(r)].tag);
    if (!tag) continue;  // a prompt-only record has no GenEval tag
    ++n_tag[static_cast<int>(*tag)];
    ok_tag[static_cast<int>(*tag)] += last_scores_[static_cast<std::size_t>(r)].correct ? 1 : 0;
  }
  const torch::Tensor all_rewards = torch::from_blob(rw.data(), {R_all}, torch::kFloat).clone();
  const torch::Tensor rewards = all_rewards.narrow(0, row0, R).to(device_);
  const double reward_time = phase_end(t_reward);

  // 4. Group similarity of the sampled tokens' gen_aligner(gen_embed) embeddings, advantages,
  //    critical tokens (each group whole on its rank).
  torch::Tensor table;
  {
    torch::NoGradGuard ng;
    table = policy_->image_embed_table().contiguous();
  }
  auto t_ops = synced_now();
  const torch::Tensor sim = ops::group_similarity_from_tokens(gen.tokens, table, G);
  gcpo::advantage_options ao;
  ao.group = G;
  ao.eps = static_cast<float>(config_.adv_eps);
  ao.std = config_.adv_std == "unbiased" ? gcpo::advantage_std::unbiased
           : config_.adv_std == "biased" ? gcpo::advantage_std::biased
                                         : gcpo::advantage_std::none;
  const torch::Tensor adv = ops::group_advantages(rewards, ao);
  const bool is_gcpo = config_.algo == "gcpo";
  torch::Tensor mask;
  double mask_count = static_cast<double>(R * N);
  if (is_gcpo) {
    gcpo::selection_options so;
    so.grid = gcpo::grid_shape{H, W};
    so.initial_frac = config_.initial_frac;
    so.gradient_frac = config_.gradient_frac;
    so.similarity_frac = config_.similarity_frac;
    so.window_start_frac = config_.window_start_frac;
    so.window_frac = config_.window_frac;
    const ops::Selection sel = ops::select_critical_tokens(gen.entropy, sim, so);
    mask = sel.critical;
    mask_count = sel.counts.to(torch::kDouble).sum().item<double>();
    // Ablations (--mask-mode): the same number of tokens drawn at random, the other tokens, or all.
    if (config_.mask_mode == "complement") {
      mask = (sel.critical == 0).to(sel.critical.scalar_type());
      mask_count = static_cast<double>(R * N) - mask_count;
    } else if (config_.mask_mode == "all") {
      mask = torch::Tensor();
      mask_count = static_cast<double>(R * N);
    } else if (config_.mask_mode == "random") {
      mask = random_token_mask(sel.counts.to(torch::kCPU), N, shapes::derive_seed(config_.seed, kStreamMask),
                               static_cast<std::uint64_t>(step_) * static_cast<std::uint64_t>(R_all) +
                                   static_cast<std::uint64_t>(row0))
                 .to(sel.critical.device(), sel.critical.scalar_type());
    }
  }
  ops_time += phase_end(t_ops);
  // The loss's normaliser: the official token mean over the whole batch. Data parallel: the
  // trained tokens of every rank, so that the summed gradients are those of one process.
  double total_count = mask_count;
  if (world > 1) {
    total_count = 0;
    for (const auto& v : parallel_.comm->all_gather(std::vector<double>{mask_count})) total_count += v.at(0);
  }

  // 5. Teacher-forced policy log-probs (with grad) and reference log-probs (section 2.8). The
  //    logits enter gcpo's operators in float32 (bf16 models: cast, with the cast's gradient).
  const auto t_train = std::chrono::steady_clock::now();
  double train_ops_time = 0;  // the operators' share inside the training phase
  policy_->train();
  const auto tf = policy_->teacher_forced_inputs(batch, gen.tokens);
  const torch::Tensor logits = policy_->image_logits_from_inputs(tf.first, tf.second, L).to(torch::kFloat);
  torch::Tensor ref_lp;
  {
    torch::NoGradGuard ng;
    const torch::Tensor ref_in =
        config_.ref_embeds == "policy" ? tf.first.detach() : reference_->teacher_forced_inputs(batch, gen.tokens).first;
    const torch::Tensor ref_logits = reference_->image_logits_from_inputs(ref_in, tf.second, L).to(torch::kFloat);
    t_ops = synced_now();  // the reference pass's kernels are training time, not the operators'
    ref_lp = ops::token_stats(ref_logits.contiguous(), gen.tokens).logprob;
    train_ops_time += phase_end(t_ops);
  }

  // 6. The loss and its backward through gcpo (the loss's own backward first, to dL/dlogits,
  //    then the model's from there: the same gradients as one backward call, timed apart),
  //    gradients summed over ranks while the backward runs (data parallel), AdamW with
  //    gradient-norm clip and LR schedule.
  gcpo::loss_options lo;
  lo.algo = is_gcpo && config_.weight_mode != "one" ? gcpo::algorithm::gcpo : gcpo::algorithm::grpo;
  lo.beta = config_.beta;
  lo.weight_clip = config_.weight_clip;
  lo.detach_weight = config_.detach_weight || config_.weight_mode == "detached";
  if (world > 1) {
    lo.aggregation = gcpo::loss_aggregation::external;
    lo.denominator = total_count > 0 ? total_count : 1.0;  // no trained token anywhere: the loss is 0
  }
  t_ops = synced_now();
  const ops::LossResult loss = ops::policy_loss(logits, gen.tokens, ref_lp, adv, mask, lo);
  const torch::Tensor dlogits = torch::autograd::grad({loss.loss}, {logits}).at(0);
  train_ops_time += phase_end(t_ops);
  const torch::Tensor stats = loss.stats.to(torch::kCPU);
  // The k3 KL on every token, trained or not: what the policy moved away from the reference
  // (`kl` is over the trained tokens only, the official metric, so GCPO's and GRPO's differ in
  // what they average).
  double kl_all_sum = 0;
  {
    torch::NoGradGuard ng;
    t_ops = synced_now();
    const torch::Tensor d = (ref_lp - ops::token_stats(logits.detach().contiguous(), gen.tokens).logprob).to(torch::kDouble);
    kl_all_sum = (d.exp() - d - 1).sum().item<double>();
    train_ops_time += phase_end(t_ops);
  }
  // Sums of this rank's statistics, added over ranks in rank order (every rank the same values).
  std::vector<double> sums{stats[gcpo::loss_stat_loss].item<double>(),
                           stats[gcpo::loss_stat_kl_mean].item<double>() * mask_count,
                           stats[gcpo::loss_stat_weight_mean].item<double>() * mask_count,
                           gen.entropy.to(torch::kDouble).sum().item<double>(),
                           sim.to(torch::kDouble).sum().item<double>(),
                           static_cast<double>(sim.numel()),
                           kl_all_sum};
  if (world > 1) {
    std::vector<double> total(sums.size(), 0.0);
    for (const auto& v : parallel_.comm->all_gather(sums))
      for (std::size_t k = 0; k < total.size(); ++k) total[k] += v.at(k);
    sums = total;
  }
  const double loss_value = sums[0];
  zero_grads();
  if (sync_) sync_->arm();
  logits.backward(dlogits);
  if (sync_) sync_->finish();
  const double grad_norm = checked_update(loss_value);
  const double lr = lr_at(config_, step_ - 1, config_.steps);
  const double train_time = phase_end(t_train) - train_ops_time;
  ops_time += train_ops_time;

  // 7. Metrics (of the whole batch, the same on every rank).
  const torch::Tensor grouped = all_rewards.view({P, G});
  nlohmann::json acc;
  int n_all = 0, ok_all = 0;
  for (int t = 0; t < shapes::kNumTags; ++t)
    if (n_tag[t] > 0) {
      acc[shapes::name(static_cast<shapes::Tag>(t))] = static_cast<double>(ok_tag[t]) / n_tag[t];
      n_all += n_tag[t];
      ok_all += ok_tag[t];
    }
  acc["all"] = n_all ? static_cast<double>(ok_all) / n_all : 0.0;
  // FNV-1a of every sampled token in row order: equal digests, equal rollouts (any world size)
  std::uint64_t digest = 1469598103934665603ull;
  for (const std::int64_t t : all_tokens) {
    for (int b = 0; b < 8; ++b) {
      digest ^= (static_cast<std::uint64_t>(t) >> (8 * b)) & 0xffu;
      digest *= 1099511628211ull;
    }
  }
  char digest_hex[17];
  std::snprintf(digest_hex, sizeof digest_hex, "%016llx", static_cast<unsigned long long>(digest));
  StepMetrics m;
  m.json = {{"step", step_},
            {"mode", "rl"},
            {"algo", config_.algo},
            {"reward", grouped.mean().item<double>()},
            {"reward_std", grouped.std({1}, /*unbiased=*/true).mean().item<double>()},
            {"accuracy", acc},
            {"loss", loss_value},
            {"kl", total_count > 0 ? sums[1] / total_count : 0.0},
            {"kl_all", sums[6] / static_cast<double>(R_all * N)},
            {"weight_mean", total_count > 0 ? sums[2] / total_count : (is_gcpo ? 0.0 : 1.0)},
            {"critical_fraction", total_count / static_cast<double>(R_all * N)},
            {"entropy", sums[3] / static_cast<double>(R_all * N)},
            {"similarity", sums[5] > 0 ? sums[4] / sums[5] : 0.0},
            {"rollout_digest", digest_hex},
            {"lr", lr},
            {"grad_norm", grad_norm},
            {"sample_time", sample_time},
            {"reward_time", reward_time},
            {"ops_time", ops_time},
            {"train_time", train_time},
            {"step_time", seconds_since(t0)}};
  if (world > 1) m.json["world_size"] = world;
  if (!server_metrics.is_null()) m.json["reward_server"] = server_metrics;
  return m;
}

std::vector<float> Trainer::server_rewards(std::int64_t R, std::int64_t row0, nlohmann::json& metrics) {
  // This rank's rows go to the server (their decoded pictures and metadata); then every rank's
  // rewards are gathered as [ok, R rewards, R scores, R strict, seconds, requests, retries]
  // (ok 0: that rank's request failed, the rest unset), so every rank fails or goes on together.
  std::vector<double> mine(static_cast<std::size_t>(3 * R + 4), 0.0);
  std::string error;
#if defined(JANUS_HAVE_REAL_IO)
  try {
    std::vector<Image> images;
    std::vector<nlohmann::json> metas;
    for (std::int64_t r = 0; r < R; ++r) {
      const shapes::Image& pic = last_pictures_.images.at(static_cast<std::size_t>(r));
      images.push_back(Image{pic.height, pic.width, pic.rgb});
      const auto row = static_cast<std::size_t>(row0 + r);
      metas.push_back(last_records_.empty() ? nlohmann::json::parse(shapes::to_json_line(last_metas_.at(row)))
                                            : last_records_.at(row).meta);
    }
    const RewardReply reply = reward_client_->score(images, metas);
    mine[0] = 1;
    for (std::int64_t r = 0; r < R; ++r) {
      const auto i = static_cast<std::size_t>(r);
      mine[1 + i] = reply.rewards.at(i);
      mine[1 + R + i] = reply.scores.empty() ? reply.rewards.at(i) : reply.scores.at(i);
      mine[1 + 2 * R + i] = reply.strict_rewards.empty() ? reply.rewards.at(i) : reply.strict_rewards.at(i);
    }
    mine[1 + 3 * R] = reply.seconds;
    mine[2 + 3 * R] = reply.requests;
    mine[3 + 3 * R] = reply.retries;
  } catch (const RewardServerError& e) {
    error = e.what();
  }
#else
  (void)row0;
  error = "this janus_trainer was built without the reward client";
#endif
  const std::vector<std::vector<double>> all =
      parallel_.comm ? parallel_.comm->all_gather(mine) : std::vector<std::vector<double>>{mine};
  for (std::size_t k = 0; k < all.size(); ++k)
    if (all[k].at(0) != 1.0)
      throw RewardStepError(error.empty() ? "reward server " + config_.reward_server + ": the request of rank " +
                                                std::to_string(k) + " failed (its log says why)"
                                          : error);  // the client's message names the server
  std::vector<float> rewards;
  double seconds = 0, requests = 0, retries = 0;
  last_scores_.clear();
  for (const auto& v : all) {
    for (std::int64_t r = 0; r < R; ++r) {
      const auto i = static_cast<std::size_t>(r);
      shapes::ScoreResult sr;
      sr.reward = v[1 + i];
      sr.partial = v[1 + R + i];
      sr.correct = v[1 + i] >= 0.5;  // GenEval's rewards are 1 (correct) or 0
      sr.strict_correct = v[1 + 2 * R + i] >= 0.5;
      last_scores_.push_back(sr);
      rewards.push_back(static_cast<float>(v[1 + i]));
    }
    seconds = std::max(seconds, v[1 + 3 * R]);
    requests += v[2 + 3 * R];
    retries += v[3 + 3 * R];
  }
  metrics = {{"seconds", seconds}, {"requests", requests}, {"retries", retries}};
  return rewards;
}

void Trainer::save_checkpoint(const std::string& dir, const std::function<void()>& before_cleanup) {
  // Data parallel: the sharded optimizer's state is gathered on every rank (a collective), rank
  // 0 writes, and no rank goes on before the checkpoint is complete.
  dp::ShardedAdamW::Full full;
  if (sharded_) full = sharded_->gather(parallel_.leader());  // assembled on rank 0 only
  if (!parallel_.leader()) {
    parallel_.comm->barrier();
    return;
  }
  const fs::path final_dir(dir);
  const fs::path tmp = temporary_name(final_dir.string());
  fs::remove_all(tmp);
  fs::create_directories(tmp);
  save_model((tmp / "model.safetensors").string(), *policy_);

  std::vector<std::pair<std::string, at::Tensor>> tensors;
  if (reference_)
    for (const auto& kv : reference_->named_parameters()) tensors.emplace_back("reference." + kv.key(), kv.value());
  auto& state = optimizer_->state();
  using Key = typename std::decay_t<decltype(state)>::key_type;
  for (std::size_t i = 0; i < master_.size(); ++i) tensors.emplace_back("master." + trainable_names_[i], master_[i]);
  for (std::size_t i = 0; sharded_ && i < trainable_.size(); ++i) {
    // the unsharded layout: the same file as an unsharded run's
    const auto shape = trainable_[i].sizes();
    if (dtype_ != at::kFloat) tensors.emplace_back("master." + trainable_names_[i], full.master[i].view(shape));
    if (full.step == 0) continue;
    const std::string p = "optimizer." + trainable_names_[i] + ".";
    tensors.emplace_back(p + "step", torch::full({1}, full.step, torch::kLong));
    tensors.emplace_back(p + "exp_avg", full.exp_avg[i].view(shape));
    tensors.emplace_back(p + "exp_avg_sq", full.exp_avg_sq[i].view(shape));
  }
  for (std::size_t i = 0; !sharded_ && i < trainable_.size(); ++i) {
    auto it = state.find(optimizer_key<Key>(optimized()[i]));
    if (it == state.end()) continue;
    auto& s = static_cast<torch::optim::AdamWParamState&>(*it->second);
    const std::string p = "optimizer." + trainable_names_[i] + ".";
    tensors.emplace_back(p + "step", torch::full({1}, static_cast<std::int64_t>(s.step()), torch::kLong));
    tensors.emplace_back(p + "exp_avg", s.exp_avg());
    tensors.emplace_back(p + "exp_avg_sq", s.exp_avg_sq());
    if (s.max_exp_avg_sq().defined()) tensors.emplace_back(p + "max_exp_avg_sq", s.max_exp_avg_sq());
  }
  tensors.emplace_back("rng.torch_cpu", at::detail::getDefaultCPUGenerator().get_state());
  save_safetensors((tmp / "trainer.safetensors").string(), tensors,
                   {{"format", "janus-trainer/1"}, {"step", std::to_string(step_)}, {"config", config_.to_json().dump()}});
  crash_point("checkpoint-written");
  const std::string aside = replace_directory(tmp.string(), final_dir.string());
  if (before_cleanup) before_cleanup();
  remove_aside(aside);
  if (parallel_.comm) parallel_.comm->barrier();
}

void Trainer::load_checkpoint(const std::string& dir_in) {
  const std::string dir = checkpoint_dir(dir_in);
  const std::string mfile = (fs::path(dir) / "model.safetensors").string();
  const std::string tfile = (fs::path(dir) / "trainer.safetensors").string();
  const SafeTensors model_st = load_safetensors(mfile);
  const SafeTensors st = load_safetensors(tfile);
  // Metadata first: what the file claims to be.
  {
    const auto f = st.metadata.find("format");
    if (f == st.metadata.end() || f->second != "janus-trainer/1")
      throw std::runtime_error(tfile + ": metadata key 'format' is " +
                               (f == st.metadata.end() ? std::string("missing") : "\"" + f->second + "\"") +
                               ", expected \"janus-trainer/1\"");
  }
  const std::int64_t step = metadata_count(st.metadata, "step", tfile);
  if (step > limits::max_steps)
    throw std::runtime_error(tfile + ": metadata key 'step' (" + std::to_string(step) + ") is beyond " +
                             std::to_string(limits::max_steps));
  (void)checkpoint_config(st, tfile);
  {
    const ModelConfig mc = model_config_of(model_st, mfile);
    if (mc.to_json() != policy_->cfg.to_json())
      throw std::runtime_error(mfile + ": metadata key 'config' describes another model than this run's");
  }
  // Every tensor checked (name, dtype, shape, finite) before anything is changed.
  auto params = policy_->named_parameters();
  std::map<std::string, const at::Tensor*> given;
  for (const auto& kv : st.tensors) given[kv.first] = &kv.second;
  std::set<std::string> known;
  if (reference_)
    for (const auto& kv : reference_->named_parameters()) known.insert("reference." + kv.key());
  known.insert("rng.torch_cpu");
  struct OptState {
    std::int64_t step;
    const at::Tensor *exp_avg, *exp_avg_sq, *max_exp_avg_sq;
  };
  std::vector<std::pair<std::size_t, OptState>> opt;
  // bf16 runs: the float32 master weights, one per trainable parameter, finite.
  std::vector<const at::Tensor*> masters;
  const std::size_t n_masters = dtype_ != at::kFloat ? trainable_.size() : 0;  // sharded or not
  for (std::size_t i = 0; i < n_masters; ++i) {
    const std::string name = "master." + trainable_names_[i];
    known.insert(name);
    const auto it = given.find(name);
    if (it == given.end())
      throw std::runtime_error(tfile + ": tensor '" + name + "' (the float32 master weight of a bf16 run) is missing");
    check_tensor(*it->second, at::kFloat, trainable_[i].sizes(), tfile, name);
    masters.push_back(it->second);
  }
  for (std::size_t i = 0; i < trainable_.size(); ++i) {
    const std::string p = "optimizer." + trainable_names_[i] + ".";
    for (const char* k : {"step", "exp_avg", "exp_avg_sq", "max_exp_avg_sq"}) known.insert(p + k);
    const auto s_it = given.find(p + "step");
    if (s_it == given.end()) {
      for (const char* k : {"exp_avg", "exp_avg_sq", "max_exp_avg_sq"})
        if (given.count(p + k))
          throw std::runtime_error(tfile + ": tensor '" + p + k + "' without '" + p + "step'");
      continue;
    }
    check_tensor(*s_it->second, at::kLong, {1}, tfile, p + "step");
    OptState o{s_it->second->item<std::int64_t>(), nullptr, nullptr, nullptr};
    if (o.step < 0 || o.step > step)
      throw std::runtime_error(tfile + ": tensor '" + p + "step' is " + std::to_string(o.step) +
                               ", expected an optimizer step count in [0, " + std::to_string(step) + "]");
    for (const char* k : {"exp_avg", "exp_avg_sq"})
      if (!given.count(p + k)) throw std::runtime_error(tfile + ": tensor '" + p + k + "' is missing");
    o.exp_avg = given.at(p + "exp_avg");
    o.exp_avg_sq = given.at(p + "exp_avg_sq");
    const auto shape = trainable_[i].sizes();  // moments are float32 (bf16 runs: the masters')
    check_tensor(*o.exp_avg, at::kFloat, shape, tfile, p + "exp_avg");
    check_tensor(*o.exp_avg_sq, at::kFloat, shape, tfile, p + "exp_avg_sq");
    if (o.exp_avg_sq->numel() > 0 && o.exp_avg_sq->min().item<double>() < 0)
      throw std::runtime_error(tfile + ": tensor '" + p + "exp_avg_sq' has negative values");
    if (given.count(p + "max_exp_avg_sq")) {
      o.max_exp_avg_sq = given.at(p + "max_exp_avg_sq");
      check_tensor(*o.max_exp_avg_sq, at::kFloat, shape, tfile, p + "max_exp_avg_sq");
    }
    opt.emplace_back(i, o);
  }
  for (const auto& kv : st.tensors)
    if (!known.count(kv.first)) throw std::runtime_error(tfile + ": unknown tensor '" + kv.first + "'");
  const auto rng = given.find("rng.torch_cpu");
  if (rng != given.end() &&
      (rng->second->scalar_type() != at::kByte || rng->second->dim() != 1 ||
       rng->second->numel() != at::detail::getDefaultCPUGenerator().get_state().numel()))
    throw std::runtime_error(tfile + ": tensor 'rng.torch_cpu' must be a CPU generator state (U8, " +
                             std::to_string(at::detail::getDefaultCPUGenerator().get_state().numel()) + " bytes)");
  // The policy and reference weights checked before anything of this trainer changes.
  (void)checked_parameters(*policy_, model_st.tensors, "", mfile);
  if (reference_) (void)checked_parameters(*reference_, st.tensors, "reference.", tfile);

  // The sharded optimizer takes one step count for all its shards: every parameter's state at
  // the same step, or none (what this trainer writes).
  if (parallel_.world() > 1 && config_.shard_optimizer && !opt.empty()) {
    if (opt.size() != trainable_.size())
      throw std::runtime_error(tfile + ": optimizer state for " + std::to_string(opt.size()) + " of " +
                               std::to_string(trainable_.size()) +
                               " trainable parameters; the sharded optimizer (--shard-optimizer) needs all or none");
    for (const auto& [i, o] : opt)
      if (o.step != opt.front().second.step || o.max_exp_avg_sq)
        throw std::runtime_error(tfile + ": tensor 'optimizer." + trainable_names_[i] +
                                 ".*' holds another step count or amsgrad state than the others; the sharded "
                                 "optimizer (--shard-optimizer) needs one step count for all");
  }
  load_parameters(*policy_, model_st.tensors, "", mfile);
  if (reference_) load_parameters(*reference_, st.tensors, "reference.", tfile);
  build_optimizer();
  if (sharded_) {
    dp::ShardedAdamW::Full full;
    for (std::size_t i = 0; i < trainable_.size(); ++i)
      full.master.push_back(masters.empty() ? trainable_[i].detach().to(at::kFloat) : masters[i]->to(device_));
    if (!opt.empty()) {
      full.step = opt.front().second.step;
      for (const auto& [i, o] : opt) {
        full.exp_avg.push_back(o.exp_avg->to(device_));
        full.exp_avg_sq.push_back(o.exp_avg_sq->to(device_));
      }
    }
    sharded_->scatter(full);
    opt.clear();
    masters.clear();
  }
  {
    torch::NoGradGuard ng;
    for (std::size_t i = 0; i < masters.size(); ++i) master_[i].copy_(*masters[i]);
  }
  auto& state = optimizer_->state();
  using Key = typename std::decay_t<decltype(state)>::key_type;
  for (const auto& [i, o] : opt) {
    auto s = std::make_unique<torch::optim::AdamWParamState>();
    s->step(o.step);
    s->exp_avg(o.exp_avg->to(device_).clone());
    s->exp_avg_sq(o.exp_avg_sq->to(device_).clone());
    if (o.max_exp_avg_sq) s->max_exp_avg_sq(o.max_exp_avg_sq->to(device_).clone());
    state[optimizer_key<Key>(optimized()[i])] = std::move(s);
  }
  if (rng != given.end()) {
    at::Generator gen = at::detail::getDefaultCPUGenerator();  // a handle to the global generator
    std::lock_guard<std::mutex> lock(gen.mutex());
    try {
      gen.set_state(*rng->second);
    } catch (const std::exception& e) {
      throw std::runtime_error(tfile + ": tensor 'rng.torch_cpu' is not a CPU generator state: " + e.what());
    }
  }
  step_ = step;
}

// ------------------------------------------------------------------------------------------
// Drivers

namespace {

/// `image` enlarged `k` times (nearest neighbour).
shapes::Image enlarged(const shapes::Image& image, int k) {
  shapes::Image out(image.width * k, image.height * k);
  for (int y = 0; y < out.height; ++y)
    for (int x = 0; x < out.width; ++x) out.set(x, y, image.at(x / k, y / k));
  return out;
}

/// A sample sheet: the decoded pictures when there are (small ones enlarged to at least 96
/// pixels a side), else the grids painted; framed green / red by the scores.
void write_sheet(const std::string& path, const std::vector<shapes::Grid>& grids, const std::vector<shapes::Image>& images,
                 const std::vector<shapes::ScoreResult>& scores, int columns) {
  std::vector<shapes::Mark> marks;
  for (const auto& s : scores) marks.push_back(shapes::mark_of(s));
  shapes::SheetOptions so;
  so.columns = columns;
  if (!images.empty()) {
    std::vector<shapes::Image> shown;
    for (const auto& im : images) {
      const int side = std::max(1, std::min(im.width, im.height));
      shown.push_back(side >= 96 ? im : enlarged(im, (96 + side - 1) / side));
    }
    check_status(shapes::write_png(path, shapes::tile(shown, marks, so)), "write " + path);
    return;
  }
  so.patch = grids.empty() || grids[0].width >= 16 ? 6 : 10;
  check_status(shapes::write_png(path, shapes::sample_sheet(grids, marks, so)), "write " + path);
}

void write_prompts(const std::string& path, const std::vector<shapes::Metadata>& metas,
                   const std::vector<shapes::ScoreResult>& scores) {
  std::ostringstream os;
  for (std::size_t i = 0; i < metas.size(); ++i)
    os << i << '\t' << (i < scores.size() && scores[i].correct ? "correct" : "wrong") << '\t' << metas[i].prompt << '\n';
  write_file_atomic(path, os.str());
}

/// A short preview set: the first two held-out prompts of every tag.
std::vector<shapes::Metadata> preview_prompts(const Task& task) {
  std::vector<shapes::Metadata> out;
  std::array<int, shapes::kNumTags> seen{};
  for (const auto& m : task.split.heldout)
    if (seen[static_cast<int>(m.tag)]++ < 2) out.push_back(m);
  return out;
}

GenerateOptions eval_options(const TrainConfig& c) {
  GenerateOptions g;
  g.cfg = true;
  g.cfg_scale = c.cfg_scale;
  g.temperature = c.temperature;
  g.top_k = c.top_k;
  g.top_p = c.top_p;
  g.seed = shapes::derive_seed(c.seed, kStreamEval);
  return g;
}

nlohmann::json run_heldout_eval(Trainer& tr, const std::string& out, Progress& progress, bool write_images) {
  const TrainConfig& c = tr.config();
  if (!c.prompt_file.empty() || !c.reward_server.empty()) {
    // The held-out set is the task's, scored by its own detector: meaningless for a run on real
    // prompts scored by a server (evaluate that with the server's own benchmark instead).
    if (tr.step() == 0)
      progress.note("no held-out evaluation: the prompts come from " +
                    (c.prompt_file.empty() ? std::string("the task") : c.prompt_file) + " and the rewards from " +
                    c.reward_server);
    return nlohmann::json{{"step", tr.step()}, {"skipped", "prompt-file / reward-server run"}};
  }
  EvalResult ev = evaluate(*tr.policy(), tr.task(), tr.task().split.heldout, c.eval_samples, eval_options(c),
                           c.eval_batch, tr.vq(), tr.parallel());
  nlohmann::json j = nlohmann::json::parse(ev.report.to_json());
  j["step"] = tr.step();
  j["seconds"] = ev.seconds;
  if (!tr.parallel().leader()) return j;  // rank 0 writes
  const std::string base = (fs::path(out) / "eval" / step_name(tr.step())).string();
  write_file_atomic(base + ".json", j.dump() + "\n");
  if (write_images) {
    write_sheet(base + ".png", ev.grids, ev.images, ev.scores, 8);
    write_prompts(base + ".txt", ev.metas, ev.scores);
  }
  char line[200];
  std::snprintf(line, sizeof line,
                "eval @ step %lld: held-out accuracy %.3f (GenEval overall %.3f; clean %.3f) over %zu images, %.1fs",
                static_cast<long long>(tr.step()), ev.report.all.accuracy(), ev.report.overall(),
                ev.report.all.clean_accuracy(), ev.grids.size(), ev.seconds);
  progress.note(line);
  return j;
}

// ---- run safety: signals, the run directory, resume --------------------------------------------

volatile std::sig_atomic_t g_stop_signal = 0;

extern "C" void on_stop_signal(int sig) {
  if (g_stop_signal != 0) {  // a second signal: stop at once (checkpoints are crash-safe)
    ::signal(sig, SIG_DFL);
    ::raise(sig);
    return;
  }
  g_stop_signal = sig;
  static const char msg[] =
      "\njanus_trainer: stop requested: finishing the current step, then writing a checkpoint (send the signal "
      "again to stop at once)\n";
  (void)!::write(2, msg, sizeof msg - 1);
}

/// SIGINT and SIGTERM set a flag the training loop reads after each step (while it is alive).
class StopSignals {
 public:
  StopSignals() {
    g_stop_signal = 0;
    struct sigaction sa {};
    sa.sa_handler = on_stop_signal;
    sigemptyset(&sa.sa_mask);
    sa.sa_flags = SA_RESTART;
    ::sigaction(SIGINT, &sa, &old_int_);
    ::sigaction(SIGTERM, &sa, &old_term_);
  }
  ~StopSignals() {
    ::sigaction(SIGINT, &old_int_, nullptr);
    ::sigaction(SIGTERM, &old_term_, nullptr);
  }
  StopSignals(const StopSignals&) = delete;
  StopSignals& operator=(const StopSignals&) = delete;
  int pending() const { return g_stop_signal; }

 private:
  struct sigaction old_int_ {}, old_term_ {};
};

/// The files and folders of a run (what makes a directory "hold a run").
const char* const kRunEntries[] = {"metrics.jsonl", "config.json", "summary.json", "model.safetensors",
                                   "checkpoints",   "images",      "eval"};

fs::path normal_dir(const std::string& p) {
  fs::path a = fs::absolute(fs::path(p)).lexically_normal();
  if (a.filename().empty()) a = a.parent_path();
  return a;
}

std::string shell_quote(const std::string& s) {
  bool plain = !s.empty();
  for (char ch : s) plain = plain && (std::isalnum(static_cast<unsigned char>(ch)) || std::strchr("/._-+=:,@", ch));
  if (plain) return s;
  std::string q = "'";
  for (char ch : s) q += ch == '\'' ? std::string("'\\''") : std::string(1, ch);
  return q + "'";
}

std::vector<std::string> run_entries_in(const fs::path& dir) {
  std::vector<std::string> held;
  for (const char* e : kRunEntries)
    if (fs::exists(dir / e) || fs::is_symlink(dir / e)) held.push_back(e);
  return held;
}

std::string join(const std::vector<std::string>& v, const char* sep) {
  std::string out;
  for (const auto& x : v) out += (out.empty() ? "" : sep) + x;
  return out;
}

/// Moves a run's entries out of `dir` into a new sibling "<dir>.replaced-<UTC time>"; returns it.
std::string move_run_aside(const fs::path& dir, const std::vector<std::string>& entries) {
  char stamp[32];
  const std::time_t now = std::time(nullptr);
  std::tm tm {};
  ::gmtime_r(&now, &tm);
  std::strftime(stamp, sizeof stamp, "%Y%m%d-%H%M%S", &tm);
  fs::path target = dir.string() + ".replaced-" + stamp;
  for (int k = 2; fs::exists(target); ++k) target = dir.string() + ".replaced-" + stamp + "-" + std::to_string(k);
  fs::create_directory(target);
  for (const auto& e : entries) {
    std::error_code ec;
    fs::rename(dir / e, target / e, ec);
    if (ec)
      throw std::runtime_error("--replace: cannot move " + (dir / e).string() + " to " + target.string() + ": " +
                               ec.message() + " (the previous run's files are now split between the two)");
  }
  fsync_directory(target.string());
  fsync_directory(dir.string());
  return target.string();
}

/// What --resume names: the run directory, and the checkpoint when one was named.
struct ResumePoint {
  fs::path run;
  std::string checkpoint;  ///< "" : the run's latest
};

ResumePoint locate_resume(const std::string& arg) {
  const fs::path p = normal_dir(arg);
  if (!fs::is_directory(p)) throw UsageError("--resume " + arg + ": no such directory");
  if (fs::exists(p / "trainer.safetensors")) {
    if (p.parent_path().filename() != "checkpoints")
      throw UsageError("--resume " + arg +
                       ": a checkpoint outside a run directory (a resume continues a run: give RUN or "
                       "RUN/checkpoints/step-N)");
    return {p.parent_path().parent_path(), p.string()};
  }
  if (!fs::exists(p / "checkpoints" / "latest"))
    throw UsageError("--resume " + arg + ": not a run directory with a checkpoint (no checkpoints/latest) nor a checkpoint");
  return {p, ""};
}

/// Copies the settings a resume may change from `given` into `stored`.
void apply_resume_overrides(TrainConfig& stored, const TrainConfig& given, const std::vector<std::string>& names) {
  for (const auto& n : names) {
    if (n == "steps") stored.steps = given.steps;
    else if (n == "save_every") stored.save_every = given.save_every;
    else if (n == "image_every") stored.image_every = given.image_every;
    else if (n == "eval_every") stored.eval_every = given.eval_every;
    else if (n == "eval_samples") stored.eval_samples = given.eval_samples;
    else if (n == "eval_batch") stored.eval_batch = given.eval_batch;
    else if (n == "device") stored.device = given.device;
    else if (n == "grad_checkpoint") stored.grad_checkpoint = given.grad_checkpoint;
    else if (n == "shard_optimizer") stored.shard_optimizer = given.shard_optimizer;
    else if (n == "reward_server") stored.reward_server = given.reward_server;
    else if (n == "reward_timeout") stored.reward_timeout = given.reward_timeout;
    else if (n == "reward_retries") stored.reward_retries = given.reward_retries;
    else if (n == "reward_failures") stored.reward_failures = given.reward_failures;
    else throw UsageError("the setting '" + n + "' cannot be changed on resume");
  }
}

}  // namespace

const std::vector<std::string>& resumable_settings() {
  static const std::vector<std::string> names = {"steps",        "save_every", "image_every", "eval_every",
                                                 "eval_samples", "eval_batch", "device",      "grad_checkpoint",
                                                 "shard_optimizer", "reward_server", "reward_timeout",
                                                 "reward_retries", "reward_failures"};
  return names;
}

namespace {

/// Data parallel: every rank says whether its part of a phase succeeded (a collective). A rank
/// that failed rethrows its own error (rank 0's run-directory errors keep their kind and exit
/// code); the others stop with an error naming the failed rank.
void agree(const Parallel& par, const std::exception_ptr& err, const std::string& phase) {
  if (par.world() == 1) {
    if (err) std::rethrow_exception(err);
    return;
  }
  const auto all = par.comm->all_gather(std::vector<std::int64_t>{err ? 1 : 0});
  if (err) std::rethrow_exception(err);
  for (std::size_t r = 0; r < all.size(); ++r)
    if (all[r].at(0) != 0)
      throw std::runtime_error("rank " + std::to_string(r) + " failed while " + phase +
                               " (its error is on its stderr); rank " + std::to_string(par.rank()) + " stops too");
}

/// The stop signal every rank acts on: the first one any rank received (0: none).
int agreed_stop(const Parallel& par, int mine) {
  if (par.world() == 1) return mine;
  int sig = 0;
  for (const auto& v : par.comm->all_gather(std::vector<std::int64_t>{mine}))
    if (sig == 0 && v.at(0) != 0) sig = static_cast<int>(v.at(0));
  return sig;
}

}  // namespace

int run_training(TrainConfig config, const RunOptions& o, const Parallel& par) {
  const bool leader = par.leader();
  const bool resuming = !o.resume.empty();
  std::string resume_ckpt, original_init;
  std::int64_t resume_step = -1;
  fs::path run;
  std::unique_ptr<RunLock> lock;
  std::unique_ptr<Trainer> trainer;
  auto note_cleanup = [](const std::string& report) {
    if (!report.empty()) std::fprintf(stderr, "janus_trainer: cleaned up after an interrupted run:\n%s", report.c_str());
  };
  if (resuming) {
    const ResumePoint rp = locate_resume(o.resume);
    run = rp.run;
    if (o.out_given) {
      std::error_code ec;
      const fs::path out = normal_dir(config.out);
      if (out != run && !fs::equivalent(out, run, ec))
        throw UsageError("--out " + config.out + " is not the run directory being resumed (" + run.string() +
                         "): a resumed run writes only into its own directory (copy the run directory to continue "
                         "it elsewhere, then resume the copy)");
    }
    std::exception_ptr err;
    try {
      if (leader) {
        lock = std::make_unique<RunLock>(run.string());
        note_cleanup(clean_stale_temporaries(run.string()));
      }
    } catch (...) {
      err = std::current_exception();
    }
    agree(par, err, "locking the run directory " + run.string());
    resume_ckpt = rp.checkpoint.empty() ? latest_checkpoint(run.string()) : rp.checkpoint;
    const std::string tfile = (fs::path(resume_ckpt) / "trainer.safetensors").string();
    const SafeTensors st = load_safetensors(tfile);
    TrainConfig stored = checkpoint_config(st, tfile);
    resume_step = metadata_count(st.metadata, "step", tfile);
    apply_resume_overrides(stored, config, o.resume_overrides);
    stored.out = run.string();  // this directory, whatever the checkpoint recorded
    stored.validate();
    if (stored.steps < resume_step)
      throw UsageError("--steps (" + std::to_string(stored.steps) + ") is below the step of the checkpoint resumed (" +
                       std::to_string(resume_step) + ", " + resume_ckpt + ")");
    config = stored;
    original_init = config.init;
    config.init = resume_ckpt;  // the architecture and weights come from the checkpoint
  } else {
    config.validate();
    run = normal_dir(config.out);
    if (fs::exists(run) && !fs::is_directory(run))
      throw UsageError("--out " + config.out + " exists and is not a directory");
    if (!config.init.empty() && !fs::exists(config.init))
      throw UsageError("--init " + config.init + ": no such file or directory");
    if (!config.model_dir.empty() && !config.init.empty())
      throw UsageError("--init and --model-dir: give one (--model-dir starts from a published model, --init from a "
                       "model of this trainer)");
    if (!config.model_dir.empty() && !fs::is_directory(config.model_dir))
      throw UsageError("--model-dir " + config.model_dir + ": no such directory");
    config.out = run.string();
    // Read and validate every input (the --init model) before anything is created on disk.
    trainer = std::make_unique<Trainer>(config, par);
    std::exception_ptr err;
    try {
      if (leader) {  // rank 0 alone owns the run directory
        fs::create_directories(run);
        lock = std::make_unique<RunLock>(run.string());
        const std::vector<std::string> held = run_entries_in(run);
        if (!held.empty() && !o.replace)
          throw UsageError("--out " + config.out + " already holds a run (" + join(held, ", ") +
                           "): continue it with --resume " + shell_quote(run.string()) +
                           ", choose another --out, or pass --replace to move its files aside into a new directory " +
                           config.out + ".replaced-<time> and start afresh");
        if (!held.empty()) {
          const std::string aside = move_run_aside(run, held);
          std::fprintf(stderr, "janus_trainer: --replace: the previous run's files (%s) are now in %s\n",
                       join(held, ", ").c_str(), aside.c_str());
        }
        note_cleanup(clean_stale_temporaries(run.string()));
      }
    } catch (...) {
      err = std::current_exception();
    }
    agree(par, err, "setting up the run directory " + run.string());
    original_init = config.init;
  }
  const auto t_start = std::chrono::steady_clock::now();
  const std::string resume_command =
      o.program + " " + config.mode + " --resume " + shell_quote(run.string());

  if (resuming) {
    // Build the trainer and load the checkpoint (reads and validates every input) before
    // changing anything on disk.
    trainer = std::make_unique<Trainer>(config, par);
    trainer->load_checkpoint(resume_ckpt);
  }
  Trainer& tr = *trainer;
  tr.mutable_config().init = original_init;
  StopSignals stop;
  const std::string metrics_path = (run / "metrics.jsonl").string();
  std::unique_ptr<AppendLog> metrics;  // rank 0's
  {
    std::exception_ptr err;
    try {
      if (leader) {
        for (const char* sub : {"checkpoints", "images", "eval"}) fs::create_directories(run / sub);
        fsync_directory(run.string());
        metrics = std::make_unique<AppendLog>(metrics_path);
        write_file_atomic((run / "config.json").string(), tr.config().to_json().dump(2) + "\n");
      }
    } catch (...) {
      err = std::current_exception();
    }
    agree(par, err, "writing config.json into " + run.string());
  }

  const TrainConfig& c = tr.config();
  const std::int64_t first_step = tr.step();
  if (leader) std::fprintf(stderr, "janus_trainer %s%s: %lld parameters (%lld trainable), %lldx%lld grid, %s, steps %lld..%lld -> %s\n",
               c.mode.c_str(), c.mode == "rl" ? (" --algo " + c.algo).c_str() : "",
               static_cast<long long>(count_parameters(*tr.policy())),
               static_cast<long long>(count_parameters(*tr.policy(), true)), static_cast<long long>(c.grid_height),
               static_cast<long long>(c.grid_width), c.device.c_str(), static_cast<long long>(first_step),
               static_cast<long long>(c.steps), c.out.c_str());
  if (leader && par.world() > 1)
    std::fprintf(stderr, "janus_trainer: data parallel, %d processes (%s), %lld prompts per rank%s\n", par.world(),
                 par.comm->backend().c_str(), static_cast<long long>(c.prompts / par.world()),
                 c.shard_optimizer ? ", sharded optimizer" : "");
  Progress progress(first_step, c.steps, o.progress, !leader);
  if (resuming)
    progress.note("resumed from " + resume_ckpt + " (step " + std::to_string(first_step) +
                  "); metrics.jsonl lines of this process carry \"resumed_from\": " + std::to_string(first_step));
  nlohmann::json eval_first, eval_last;
  if (first_step == 0 && c.mode == "rl") eval_first = run_heldout_eval(tr, c.out, progress, true);

  std::vector<double> rewards, step_times;
  const fs::path ckpt_root = run / "checkpoints";
  // A resumed run does not write its starting checkpoint again.
  std::int64_t last_saved = resuming && fs::is_directory(ckpt_root / step_name(first_step)) ? first_step : -1;
  std::string last_checkpoint = last_saved >= 0 ? (ckpt_root / step_name(first_step)).string() : std::string();
  auto save = [&]() {
    if (metrics) metrics->sync();  // the metrics of every step up to the checkpoint are on disk before it
    const std::string name = step_name(tr.step());
    tr.save_checkpoint((ckpt_root / name).string(),
                       [&] { write_file_atomic((ckpt_root / "latest").string(), name + "\n"); });
    last_saved = tr.step();
    last_checkpoint = (ckpt_root / name).string();
  };
  int stopping = agreed_stop(par, stop.pending());
  std::int64_t reward_failures = 0;  // steps in a row skipped because the reward server failed
  try {
    while (tr.step() < c.steps && !stopping) {
      StepMetrics m;
      try {
        m = tr.train_step();
        reward_failures = 0;
      } catch (const RewardStepError& e) {
        // Nothing was changed: the step is retried (the same prompts and samples) unless the
        // server has failed too many steps in a row; either way the reason is in the log and
        // in metrics.jsonl, never a reward of 0.
        ++reward_failures;
        nlohmann::json skipped = {{"step", tr.step() + 1}, {"skipped", e.what()}, {"failures_in_a_row", reward_failures}};
        if (metrics) metrics->append_line(skipped.dump());
        progress.note("step " + std::to_string(tr.step() + 1) + " skipped (" + std::to_string(reward_failures) + " of " +
                      std::to_string(c.reward_failures) + " allowed in a row): " + e.what());
        if (reward_failures > c.reward_failures) {
          if (metrics) metrics->sync();
          throw std::runtime_error(std::string(e.what()) + "; " + std::to_string(reward_failures) +
                                   " steps in a row without rewards (--reward-failures " +
                                   std::to_string(c.reward_failures) + "): the run stops; its last checkpoint is " +
                                   (last_checkpoint.empty() ? std::string("none") : last_checkpoint));
        }
        stopping = agreed_stop(par, stop.pending());
        continue;
      }
      if (resuming) m.json["resumed_from"] = first_step;
      if (metrics) metrics->append_line(m.json.dump());
      crash_point("after-step");
      step_times.push_back(m.json.at("step_time").get<double>());
      char info[160];
      if (c.mode == "rl") {
        rewards.push_back(m.json.at("reward").get<double>());
        std::snprintf(info, sizeof info, "reward %.3f kl %.4f crit %.2f H %.3f", m.json.at("reward").get<double>(),
                      m.json.at("kl").get<double>(), m.json.at("critical_fraction").get<double>(),
                      m.json.at("entropy").get<double>());
      } else {
        std::snprintf(info, sizeof info, "loss %.4f acc %.3f", m.json.at("loss").get<double>(),
                      m.json.at("token_accuracy").get<double>());
      }
      progress.update(tr.step(), info);
      stopping = agreed_stop(par, stop.pending());
      const std::int64_t s = tr.step();
      if (c.image_every > 0 && s % c.image_every == 0) {
        const std::string base = (fs::path(c.out) / "images" / step_name(s)).string();
        if (c.mode == "rl") {
          const Pictures pics = tr.gathered_pictures();  // every rank's rows (a collective)
          if (leader) {
            write_sheet(base + ".png", pics.grids, pics.images, tr.last_scores(), static_cast<int>(c.group));
            if (tr.last_records().empty()) {
              write_prompts(base + ".txt", tr.last_metas(), tr.last_scores());
            } else {
              std::vector<shapes::Metadata> shown(tr.last_records().size());
              for (std::size_t i = 0; i < shown.size(); ++i) shown[i].prompt = tr.last_records()[i].prompt;
              write_prompts(base + ".txt", shown, tr.last_scores());
            }
          }
        } else {
          EvalResult ev = evaluate(*tr.policy(), tr.task(), preview_prompts(tr.task()), 2, eval_options(c), c.eval_batch);
          write_sheet(base + ".png", ev.grids, ev.images, ev.scores, 2);
          write_prompts(base + ".txt", ev.metas, ev.scores);
        }
      }
      if (c.eval_every > 0 && s % c.eval_every == 0 && s < c.steps && !stopping)
        eval_last = run_heldout_eval(tr, c.out, progress, true);
      if (c.save_every > 0 && s % c.save_every == 0) save();
    }
  } catch (const NonFiniteStep& e) {
    if (metrics) metrics->sync();
    throw NonFiniteStep(std::string(e.what()) + ". The run stops; nothing was saved after its last checkpoint (" +
                        (last_checkpoint.empty() ? std::string("none was written") : last_checkpoint) +
                        "), whose weights are finite: resuming it repeats this step; start again from it or "
                        "earlier with other settings (e.g. a lower --lr)");
  }
  if (last_saved != tr.step()) save();
  if (metrics) metrics->sync();
  if (const int sig = stopping) {
    if (leader) std::fprintf(stderr,
                 "\njanus_trainer: stopped by %s after step %lld of %lld; checkpoint %s written.\n"
                 "To continue: %s\n",
                 sig == SIGINT ? "SIGINT" : "SIGTERM", static_cast<long long>(tr.step()),
                 static_cast<long long>(c.steps), last_checkpoint.c_str(), resume_command.c_str());
    return 128 + sig;
  }
  eval_last = run_heldout_eval(tr, c.out, progress, true);
  if (!leader) return 0;  // rank 0 writes the model and the summary
  save_model((fs::path(c.out) / "model.safetensors").string(), *tr.policy());

  // Summary.
  auto mean_of = [](const std::vector<double>& v, std::size_t from, std::size_t to) {
    if (from >= to) return 0.0;
    double s = 0;
    for (std::size_t i = from; i < to; ++i) s += v[i];
    return s / static_cast<double>(to - from);
  };
  nlohmann::json summary;
  summary["mode"] = c.mode;
  if (c.mode == "rl") {
    summary["algo"] = c.algo;
    summary["mask_mode"] = c.mask_mode;
    summary["weight_mode"] = c.detach_weight && c.weight_mode == "official" ? "detached" : c.weight_mode;
  }
  summary["steps"] = tr.step();
  summary["steps_this_run"] = tr.step() - first_step;
  summary["seed"] = c.seed;
  summary["wall_seconds"] = seconds_since(t_start);
  summary["mean_step_seconds"] = mean_of(step_times, 0, step_times.size());
  if (!rewards.empty()) {
    const std::size_t k = std::min<std::size_t>(10, rewards.size());
    summary["reward_first10"] = mean_of(rewards, 0, k);
    summary["reward_last10"] = mean_of(rewards, rewards.size() - k, rewards.size());
  }
  if (!eval_first.is_null()) summary["eval_initial"] = eval_first;
  summary["eval_final"] = eval_last;
  summary["parameters"] = count_parameters(*tr.policy());
  summary["world_size"] = par.world();
  summary["files"] = {{"metrics", metrics_path},
                      {"model", (fs::path(c.out) / "model.safetensors").string()},
                      {"checkpoints", (fs::path(c.out) / "checkpoints").string()},
                      {"images", (fs::path(c.out) / "images").string()},
                      {"eval", (fs::path(c.out) / "eval").string()}};
  summary["config"] = c.to_json();
  const std::string summary_path = (fs::path(c.out) / "summary.json").string();
  write_file_atomic(summary_path, summary.dump(2) + "\n");

  std::fprintf(stderr, "\n== summary (%s) ==\n", summary_path.c_str());
  std::fprintf(stderr, "steps %lld in %s (%.2f s/step)\n", static_cast<long long>(tr.step() - first_step),
               fmt_duration(summary["wall_seconds"].get<double>()).c_str(), summary["mean_step_seconds"].get<double>());
  if (!rewards.empty())
    std::fprintf(stderr, "train reward: first 10 steps %.3f, last 10 steps %.3f\n", summary["reward_first10"].get<double>(),
                 summary["reward_last10"].get<double>());
  if (eval_last.contains("skipped"))
    std::fprintf(stderr, "held-out accuracy: none (%s)\n", eval_last.at("skipped").get<std::string>().c_str());
  else if (!eval_first.is_null())
    std::fprintf(stderr,
                 "held-out accuracy: %.3f at start -> %.3f at end (GenEval overall %.3f -> %.3f; clean, nothing "
                 "unasked drawn: %.3f -> %.3f)\n",
                 eval_first.at("accuracy").get<double>(), eval_last.at("accuracy").get<double>(),
                 eval_first.at("overall").get<double>(), eval_last.at("overall").get<double>(),
                 eval_first.at("clean_accuracy").get<double>(), eval_last.at("clean_accuracy").get<double>());
  else
    std::fprintf(stderr, "held-out accuracy: %.3f (GenEval overall %.3f)\n", eval_last.at("accuracy").get<double>(),
                 eval_last.at("overall").get<double>());
  std::fprintf(stderr, "metrics %s\nmodel %s\nsample sheets %s/ and %s/\n", metrics_path.c_str(),
               (fs::path(c.out) / "model.safetensors").c_str(), (fs::path(c.out) / "images").c_str(),
               (fs::path(c.out) / "eval").c_str());
  return 0;
}

namespace {

/// The model `eval` and `sample` draw with: a saved model (`model_path`), a published directory
/// (`c.model_dir`: its language model and its VQ decoder), or both (a model trained from the
/// directory, drawn through the directory's decoder). Sets c's grid to the model's.
DrawingModel load_inference_model(const std::string& model_path, TrainConfig& c) {
  if (model_path.empty() && c.model_dir.empty()) throw UsageError("give --model, --model-dir or both");
  const torch::Device device = c.device == "cuda" ? torch::Device(torch::kCUDA) : torch::Device(torch::kCPU);
  if (c.device == "cuda" && !torch::cuda::is_available()) throw UsageError("--device cuda: no CUDA device is available");
  const at::ScalarType dtype = c.dtype == "bf16" ? at::kBFloat16 : at::kFloat;
  if (model_path.empty()) return load_published(c.model_dir, Task(c), dtype, device);
  DrawingModel im;
  im.model = load_model(model_path, device, dtype);
  c.grid_height = static_cast<int>(im.model->cfg.image_height);
  c.grid_width = static_cast<int>(im.model->cfg.image_width);
  if (!c.model_dir.empty()) im.vq = decoder_for(c.model_dir, *im.model, model_path, dtype, device);
  return im;
}

}  // namespace

int run_eval(const std::string& model_path, const TrainConfig& config_in, const std::string& json_path,
             const std::string& png_path, const std::string& metadata_path) {
  TrainConfig c = config_in;
  // The prompts first (cheap to check), then the model.
  std::vector<shapes::Metadata> records;
  if (!metadata_path.empty()) {
    check_status(shapes::read_jsonl(metadata_path, records), "--metadata");
    if (records.empty()) throw UsageError("--metadata " + metadata_path + ": the file holds no record");
    const shapes::PromptTokenizer tok;
    for (std::size_t i = 0; i < records.size(); ++i) {
      std::vector<int> ids;
      const gcpo::status st = tok.encode(records[i].prompt, ids, shapes::EncodeOptions{});
      if (!st.ok())
        throw std::runtime_error("--metadata " + metadata_path + ": record " + std::to_string(i + 1) + " (\"" +
                                 records[i].prompt + "\"): " + st.message());
    }
  }
  DrawingModel im = load_inference_model(model_path, c);
  JanusModel& m = im.model;
  const Task task(c);
  m->eval();
  if (metadata_path.empty()) records = task.split.heldout;
  EvalResult ev = evaluate(*m, task, records, c.eval_samples, eval_options(c), c.eval_batch, im.vq.get());
  nlohmann::json j = nlohmann::json::parse(ev.report.to_json());
  j["model"] = model_path.empty() ? c.model_dir : model_path;
  j["seconds"] = ev.seconds;
  j["cfg_scale"] = c.cfg_scale;
  j["samples_per_prompt"] = c.eval_samples;
  std::printf("%s\n", j.dump(2).c_str());
  if (!json_path.empty()) write_file_atomic(json_path, j.dump() + "\n");
  if (!png_path.empty()) write_sheet(png_path, ev.grids, ev.images, ev.scores, 8);
  return 0;
}

int run_sample(const std::string& model_path, const TrainConfig& config_in, const std::string& prompt, std::int64_t n,
               const std::string& png_path) {
  TrainConfig c = config_in;
  DrawingModel im = load_inference_model(model_path, c);
  JanusModel& m = im.model;
  const Task task(c);
  m->eval();
  GenerateOptions g = eval_options(c);
  const torch::Device device = m->gen_embed->weight.device();
  const GenerateResult out = m->generate(task.encode(std::vector<std::string>(static_cast<std::size_t>(n), prompt), device), g);
  const Pictures pics = render(out.tokens, c.grid_height, c.grid_width, im.vq.get());
  const auto& grids = pics.grids;
  // Score when the prompt is one of the task's.
  const shapes::Metadata* meta = nullptr;
  const auto all = shapes::enumerate_prompts();
  for (const auto& r : all)
    if (r.prompt == prompt) meta = &r;
  std::vector<shapes::ScoreResult> scores;
  int correct = 0;
  for (std::size_t i = 0; i < grids.size(); ++i) {
    if (meta) {
      scores.push_back(shapes::score(grids[i], *meta, task.score));
      correct += scores.back().correct ? 1 : 0;
      std::printf("%zu\t%s\t%s\n", i, scores.back().correct ? "correct" : "wrong",
                  scores.back().reason.empty() ? "" : scores.back().reason.c_str());
    }
  }
  if (meta) std::printf("%d of %zu correct for \"%s\"\n", correct, grids.size(), prompt.c_str());
  else std::printf("\"%s\" is not one of the task's prompts: not scored\n", prompt.c_str());
  write_sheet(png_path, grids, pics.images, scores, 0);
  std::printf("wrote %s\n", png_path.c_str());
  return 0;
}

}  // namespace janus
