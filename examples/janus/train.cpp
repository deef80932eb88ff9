// examples/janus/train.cpp - see train.hpp.
#include "train.hpp"

#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <sstream>
#include <stdexcept>
#include <mutex>
#include <type_traits>

#include <ATen/CPUGeneratorImpl.h>

#include "ops.hpp"
#include "safetensors.hpp"

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

/// The key under which torch::optim keeps a parameter's state: a string of the TensorImpl
/// address in libtorch 1.x, the address itself in 2.x.
template <class Key>
Key optimizer_key(const torch::Tensor& p) {
  if constexpr (std::is_same<Key, std::string>::value) {
    std::ostringstream os;
    os << p.unsafeGetTensorImpl();
    return os.str();
  } else {
    return reinterpret_cast<Key>(p.unsafeGetTensorImpl());
  }
}

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
  Progress(std::int64_t start, std::int64_t total, bool enabled)
      : start_(start), total_(total), enabled_(enabled), tty_(::isatty(2) != 0), t0_(std::chrono::steady_clock::now()) {}
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
    if (tty_ && enabled_) std::fprintf(stderr, "\r\033[K");
    std::fprintf(stderr, "%s\n", line.c_str());
    std::fflush(stderr);
  }

 private:
  std::int64_t start_, total_;
  bool enabled_, tty_;
  std::chrono::steady_clock::time_point t0_;
};

}  // namespace

// ------------------------------------------------------------------------------------------
// TrainConfig

#define JANUS_CONFIG_FIELDS(X)                                                                                     \
  X(mode) X(grid_height) X(grid_width) X(tags) X(heldout_fraction) X(split_seed) X(reward) X(chat_template) X(hidden)   \
  X(layers) X(heads) X(intermediate) X(init) X(seed) X(steps) X(out) X(device) X(save_every) X(image_every)     \
  X(eval_every) X(eval_samples) X(eval_batch) X(lr) X(schedule) X(warmup) X(min_lr_ratio) X(weight_decay) X(beta1) \
  X(beta2) X(adam_eps) X(max_grad_norm) X(batch) X(uncond_prob) X(train_gen) X(algo) X(prompts) X(group)        \
  X(cfg_scale) X(temperature) X(top_k) X(top_p) X(beta) X(weight_clip) X(detach_weight) X(initial_frac)          \
  X(gradient_frac) X(similarity_frac) X(window_start_frac) X(window_frac) X(adv_std) X(adv_eps) X(ref_embeds)

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

void TrainConfig::validate() const {
  auto need = [](bool ok, const std::string& what) {
    if (!ok) throw std::invalid_argument(what);
  };
  need(mode == "sft" || mode == "rl", "mode must be sft or rl");
  need(algo == "gcpo" || algo == "grpo", "--algo must be gcpo or grpo");
  need(device == "cpu" || device == "cuda", "--device must be cpu or cuda");
  need(schedule == "constant" || schedule == "linear" || schedule == "cosine",
       "--lr-schedule must be constant, linear or cosine");
  need(adv_std == "unbiased" || adv_std == "biased" || adv_std == "none", "--adv-std must be unbiased, biased or none");
  need(ref_embeds == "policy" || ref_embeds == "ref", "--ref-embeds must be policy or ref");
  score_mode(reward);
  need(steps >= 0, "--steps must be >= 0");
  need(lr >= 0, "--lr must be >= 0");
  need(batch >= 1, "--batch must be >= 1");
  need(prompts >= 1, "--prompts must be >= 1");
  need(group >= 2, "--group must be >= 2 (group advantages and similarity need two samples)");
  need(eval_samples >= 1 && eval_batch >= 1, "--eval-samples and --eval-batch must be >= 1");
  need(uncond_prob >= 0 && uncond_prob <= 1, "--uncond-prob must be in [0, 1]");
  need(hidden >= 8 && layers >= 1 && heads >= 1 && hidden % heads == 0, "--hidden must be a multiple of --heads");
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
      if (!tag) throw std::invalid_argument("--tags: unknown tag '" + t + "'");
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

PromptBatch Task::encode(const std::vector<std::string>& prompts, const torch::Device& device) const {
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
  const std::int64_t B = static_cast<std::int64_t>(prompts.size()), L = static_cast<std::int64_t>(longest) + 1;
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

// ------------------------------------------------------------------------------------------
// Model files

void save_model(const std::string& path, JanusModelImpl& model) {
  std::vector<std::pair<std::string, at::Tensor>> tensors;
  for (const auto& kv : model.named_parameters()) tensors.emplace_back(kv.key(), kv.value());
  save_safetensors(path, tensors, {{"format", "pt"}, {"config", model.cfg.to_json().dump()}});
}

void load_parameters(JanusModelImpl& model, const std::vector<std::pair<std::string, at::Tensor>>& tensors,
                     const std::string& prefix, const std::string& origin) {
  torch::NoGradGuard no_grad;
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
    kv.value().copy_(src);
  }
}

namespace {
std::string model_file(const std::string& path) {
  if (fs::is_directory(path)) {
    if (fs::exists(fs::path(path) / "model.safetensors")) return (fs::path(path) / "model.safetensors").string();
    const fs::path latest = fs::path(path) / "checkpoints" / "latest";
    if (fs::exists(latest)) {
      std::ifstream in(latest);
      std::string name;
      in >> name;
      return (fs::path(path) / "checkpoints" / name / "model.safetensors").string();
    }
    throw std::runtime_error(path + ": no model.safetensors and no checkpoints/latest in this directory");
  }
  return path;
}

/// A checkpoint directory from a checkpoint or run directory.
std::string checkpoint_dir(const std::string& path) {
  if (fs::exists(fs::path(path) / "trainer.safetensors")) return path;
  const fs::path latest = fs::path(path) / "checkpoints" / "latest";
  if (fs::exists(latest)) {
    std::ifstream in(latest);
    std::string name;
    in >> name;
    return (fs::path(path) / "checkpoints" / name).string();
  }
  throw std::runtime_error(path + ": not a checkpoint (no trainer.safetensors) nor a run directory (no checkpoints/latest)");
}
}  // namespace

JanusModel load_model(const std::string& path, const torch::Device& device) {
  const std::string file = model_file(path);
  const SafeTensors st = load_safetensors(file);
  auto it = st.metadata.find("config");
  if (it == st.metadata.end()) throw std::runtime_error(file + ": no model config in the safetensors metadata");
  JanusModel m(ModelConfig::from_json(nlohmann::json::parse(it->second)));
  load_parameters(*m, st.tensors, "", file);
  m->to(device);
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

EvalResult evaluate(JanusModelImpl& model, const Task& task, const std::vector<shapes::Metadata>& prompts,
                    std::int64_t samples_per_prompt, const GenerateOptions& gen, std::int64_t batch) {
  const auto t0 = std::chrono::steady_clock::now();
  EvalResult res;
  for (const auto& m : prompts)
    for (std::int64_t s = 0; s < samples_per_prompt; ++s) res.metas.push_back(m);
  const auto device = model.gen_embed->weight.device();
  for (std::size_t first = 0, chunk = 0; first < res.metas.size(); first += static_cast<std::size_t>(batch), ++chunk) {
    const std::size_t last = std::min(res.metas.size(), first + static_cast<std::size_t>(batch));
    std::vector<std::string> texts;
    for (std::size_t i = first; i < last; ++i) texts.push_back(res.metas[i].prompt);
    GenerateOptions g = gen;
    g.seed = shapes::derive_seed(gen.seed, chunk);
    g.keep_logits = false;
    const GenerateResult out = model.generate(task.encode(texts, device), g);
    for (auto& grid : to_grids(out.tokens, task.config.height, task.config.width)) res.grids.push_back(std::move(grid));
  }
  for (std::size_t i = 0; i < res.metas.size(); ++i) res.scores.push_back(shapes::score(res.grids[i], res.metas[i], task.score));
  check_status(shapes::evaluate(res.metas, res.grids, task.score, res.report), "evaluate");
  res.seconds = seconds_since(t0);
  return res;
}

// ------------------------------------------------------------------------------------------
// Trainer

Trainer::Trainer(const TrainConfig& config) : config_(config), task_(config), device_(torch::kCPU) {
  config_.validate();
  if (config_.device == "cuda") {
    if (!torch::cuda::is_available()) throw std::runtime_error("--device cuda: libtorch sees no CUDA device");
    if (!ops::cuda_available())
      throw std::runtime_error("--device cuda: this trainer was built without gcpo::cuda (configure with CUDA)");
    device_ = torch::Device(torch::kCUDA);
  }
  if (!config_.init.empty()) {
    policy_ = load_model(config_.init, device_);
    if (policy_->cfg.image_height != task_.config.height || policy_->cfg.image_width != task_.config.width)
      throw std::runtime_error("--init model draws " + std::to_string(policy_->cfg.image_height) + "x" +
                               std::to_string(policy_->cfg.image_width) + " grids but the task is " +
                               std::to_string(task_.config.height) + "x" + std::to_string(task_.config.width) +
                               " (pass --grid to match)");
  } else {
    torch::manual_seed(shapes::derive_seed(config_.seed, kStreamInit));
    policy_ = JanusModel(task_.model_config(config_.hidden, config_.layers, config_.heads, config_.intermediate));
    init_weights(*policy_);
    policy_->to(device_);
  }
  if (config_.mode == "rl" || !config_.train_gen) policy_->freeze_generation_modules();
  if (config_.mode == "rl") {
    // The frozen reference: a copy of the initial policy, no parameter requires grad.
    reference_ = JanusModel(policy_->cfg);
    reference_->to(device_);
    reference_->copy_from(*policy_);
    for (auto& p : reference_->parameters()) p.set_requires_grad(false);
    reference_->eval();
  }
  build_optimizer();
}

void Trainer::build_optimizer() {
  trainable_names_.clear();
  trainable_.clear();
  for (auto& kv : policy_->named_parameters())
    if (kv.value().requires_grad()) {
      trainable_names_.push_back(kv.key());
      trainable_.push_back(kv.value());
    }
  torch::optim::AdamWOptions o(config_.lr);
  o.betas(std::make_tuple(config_.beta1, config_.beta2)).eps(config_.adam_eps).weight_decay(config_.weight_decay);
  optimizer_ = std::make_unique<torch::optim::AdamW>(trainable_, o);
}

void Trainer::set_lr(double lr) {
  for (auto& g : optimizer_->param_groups()) static_cast<torch::optim::AdamWOptions&>(g.options()).lr(lr);
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
  const torch::Tensor logits = policy_->image_logits(batch, tokens);  // [B, N, V]
  const torch::Tensor loss = torch::nn::functional::cross_entropy(logits.reshape({B * N, V}), tokens.reshape({B * N}));
  optimizer_->zero_grad();
  loss.backward();
  const double grad_norm =
      config_.max_grad_norm > 0 ? torch::nn::utils::clip_grad_norm_(trainable_, config_.max_grad_norm) : 0.0;
  const double lr = lr_at(config_, step_, config_.steps);
  set_lr(lr);
  optimizer_->step();
  ++step_;

  StepMetrics m;
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

StepMetrics Trainer::rl_step() {
  const auto t0 = std::chrono::steady_clock::now();
  const std::int64_t P = config_.prompts, G = config_.group, R = P * G;
  const std::int64_t N = policy_->cfg.image_tokens();
  const int H = static_cast<int>(policy_->cfg.image_height), W = static_cast<int>(policy_->cfg.image_width);

  // 1. Prompts, each repeated G times (rows p0g0, p0g1, ..., section 2.2).
  const std::vector<shapes::Metadata> prompts = rl_prompts(step_);
  std::vector<std::string> texts;
  last_metas_.clear();
  for (const auto& m : prompts)
    for (std::int64_t g = 0; g < G; ++g) {
      texts.push_back(m.prompt);
      last_metas_.push_back(m);
    }
  const PromptBatch batch = task_.encode(texts, device_);
  const std::int64_t L = batch.ids.size(1);

  // 2. Rollouts with CFG through gcpo's generation step; entropy collected while sampling.
  policy_->eval();
  const GenerateResult gen = policy_->generate(batch, rollout_options(step_));
  const double sample_time = seconds_since(t0);

  // 3. Rewards (GenEval rules on the detector's view of each grid).
  last_grids_ = to_grids(gen.tokens, H, W);
  last_scores_.clear();
  std::vector<float> rw;
  std::array<int, shapes::kNumTags> n_tag{}, ok_tag{};
  for (std::int64_t r = 0; r < R; ++r) {
    last_scores_.push_back(shapes::score(last_grids_[static_cast<std::size_t>(r)], last_metas_[static_cast<std::size_t>(r)], task_.score));
    rw.push_back(static_cast<float>(last_scores_.back().reward));
    const int t = static_cast<int>(last_metas_[static_cast<std::size_t>(r)].tag);
    ++n_tag[t];
    ok_tag[t] += last_scores_.back().correct ? 1 : 0;
  }
  const torch::Tensor rewards = torch::from_blob(rw.data(), {R}, torch::kFloat).clone().to(device_);

  // 4. Group similarity of the sampled tokens' gen_aligner(gen_embed) embeddings, advantages,
  //    critical tokens.
  torch::Tensor table;
  {
    torch::NoGradGuard ng;
    table = policy_->image_embed_table().contiguous();
  }
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
  double critical_fraction = 1.0;
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
    critical_fraction = sel.counts.to(torch::kDouble).sum().item<double>() / static_cast<double>(R * N);
  }

  // 5. Teacher-forced policy log-probs (with grad) and reference log-probs (section 2.8).
  policy_->train();
  const auto tf = policy_->teacher_forced_inputs(batch, gen.tokens);
  const torch::Tensor logits = policy_->image_logits_from_inputs(tf.first, tf.second, L);
  torch::Tensor ref_lp;
  {
    torch::NoGradGuard ng;
    const torch::Tensor ref_in =
        config_.ref_embeds == "policy" ? tf.first.detach() : reference_->teacher_forced_inputs(batch, gen.tokens).first;
    const torch::Tensor ref_logits = reference_->image_logits_from_inputs(ref_in, tf.second, L);
    ref_lp = ops::token_stats(ref_logits.contiguous(), gen.tokens).logprob;
  }

  // 6. The loss and its backward through gcpo, AdamW with gradient-norm clip and LR schedule.
  gcpo::loss_options lo;
  lo.algo = is_gcpo ? gcpo::algorithm::gcpo : gcpo::algorithm::grpo;
  lo.beta = config_.beta;
  lo.weight_clip = config_.weight_clip;
  lo.detach_weight = config_.detach_weight;
  const ops::LossResult loss = ops::policy_loss(logits, gen.tokens, ref_lp, adv, mask, lo);
  optimizer_->zero_grad();
  loss.loss.backward();
  const double grad_norm =
      config_.max_grad_norm > 0 ? torch::nn::utils::clip_grad_norm_(trainable_, config_.max_grad_norm) : 0.0;
  const double lr = lr_at(config_, step_, config_.steps);
  set_lr(lr);
  optimizer_->step();
  ++step_;

  // 7. Metrics.
  const torch::Tensor stats = loss.stats.to(torch::kCPU);
  const torch::Tensor grouped = rewards.to(torch::kCPU).view({P, G});
  nlohmann::json acc;
  int n_all = 0, ok_all = 0;
  for (int t = 0; t < shapes::kNumTags; ++t)
    if (n_tag[t] > 0) {
      acc[shapes::name(static_cast<shapes::Tag>(t))] = static_cast<double>(ok_tag[t]) / n_tag[t];
      n_all += n_tag[t];
      ok_all += ok_tag[t];
    }
  acc["all"] = n_all ? static_cast<double>(ok_all) / n_all : 0.0;
  StepMetrics m;
  m.json = {{"step", step_},
            {"mode", "rl"},
            {"algo", config_.algo},
            {"reward", grouped.mean().item<double>()},
            {"reward_std", grouped.std({1}, /*unbiased=*/true).mean().item<double>()},
            {"accuracy", acc},
            {"loss", stats[gcpo::loss_stat_loss].item<double>()},
            {"kl", stats[gcpo::loss_stat_kl_mean].item<double>()},
            {"weight_mean", stats[gcpo::loss_stat_weight_mean].item<double>()},
            {"critical_fraction", critical_fraction},
            {"entropy", gen.entropy.mean().item<double>()},
            {"similarity", sim.mean().item<double>()},
            {"lr", lr},
            {"grad_norm", grad_norm},
            {"sample_time", sample_time},
            {"step_time", seconds_since(t0)}};
  return m;
}

void Trainer::save_checkpoint(const std::string& dir) {
  const fs::path final_dir(dir);
  const fs::path tmp = final_dir.string() + ".tmp";
  fs::remove_all(tmp);
  fs::create_directories(tmp);
  save_model((tmp / "model.safetensors").string(), *policy_);

  std::vector<std::pair<std::string, at::Tensor>> tensors;
  if (reference_)
    for (const auto& kv : reference_->named_parameters()) tensors.emplace_back("reference." + kv.key(), kv.value());
  auto& state = optimizer_->state();
  using Key = typename std::decay_t<decltype(state)>::key_type;
  for (std::size_t i = 0; i < trainable_.size(); ++i) {
    auto it = state.find(optimizer_key<Key>(trainable_[i]));
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
  fs::remove_all(final_dir);
  fs::rename(tmp, final_dir);
}

void Trainer::load_checkpoint(const std::string& dir_in) {
  const std::string dir = checkpoint_dir(dir_in);
  const std::string mfile = (fs::path(dir) / "model.safetensors").string();
  const std::string tfile = (fs::path(dir) / "trainer.safetensors").string();
  const SafeTensors model_st = load_safetensors(mfile);
  load_parameters(*policy_, model_st.tensors, "", mfile);
  const SafeTensors st = load_safetensors(tfile);
  if (reference_) load_parameters(*reference_, st.tensors, "reference.", tfile);
  // Optimizer state, by parameter name.
  build_optimizer();
  auto& state = optimizer_->state();
  using Key = typename std::decay_t<decltype(state)>::key_type;
  for (std::size_t i = 0; i < trainable_.size(); ++i) {
    const std::string p = "optimizer." + trainable_names_[i] + ".";
    if (!st.contains(p + "step")) continue;
    auto s = std::make_unique<torch::optim::AdamWParamState>();
    s->step(st.at(p + "step").item<std::int64_t>());
    s->exp_avg(st.at(p + "exp_avg").to(device_).clone());
    s->exp_avg_sq(st.at(p + "exp_avg_sq").to(device_).clone());
    if (st.contains(p + "max_exp_avg_sq")) s->max_exp_avg_sq(st.at(p + "max_exp_avg_sq").to(device_).clone());
    state[optimizer_key<Key>(trainable_[i])] = std::move(s);
  }
  if (st.contains("rng.torch_cpu")) {
    at::Generator gen = at::detail::getDefaultCPUGenerator();  // a handle to the global generator
    std::lock_guard<std::mutex> lock(gen.mutex());
    gen.set_state(st.at("rng.torch_cpu"));
  }
  step_ = std::stoll(st.metadata.at("step"));
}

// ------------------------------------------------------------------------------------------
// Drivers

namespace {

void write_sheet(const std::string& path, const std::vector<shapes::Grid>& grids,
                 const std::vector<shapes::ScoreResult>& scores, int columns) {
  std::vector<shapes::Mark> marks;
  for (const auto& s : scores) marks.push_back(shapes::mark_of(s));
  shapes::SheetOptions so;
  so.columns = columns;
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
  EvalResult ev = evaluate(*tr.policy(), tr.task(), tr.task().split.heldout, c.eval_samples, eval_options(c), c.eval_batch);
  nlohmann::json j = nlohmann::json::parse(ev.report.to_json());
  j["step"] = tr.step();
  j["seconds"] = ev.seconds;
  const std::string base = (fs::path(out) / "eval" / step_name(tr.step())).string();
  write_file_atomic(base + ".json", j.dump() + "\n");
  if (write_images) {
    write_sheet(base + ".png", ev.grids, ev.scores, 8);
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

/// Keeps the metrics lines of steps <= `step` (a resumed run rewrites what followed its checkpoint).
void truncate_metrics(const std::string& path, std::int64_t step) {
  std::ifstream in(path);
  if (!in) return;
  std::ostringstream keep;
  std::string line;
  while (std::getline(in, line)) {
    if (line.empty()) continue;
    try {
      if (nlohmann::json::parse(line).at("step").get<std::int64_t>() <= step) keep << line << '\n';
    } catch (const std::exception&) {
    }
  }
  in.close();
  write_file_atomic(path, keep.str());
}

}  // namespace

int run_training(TrainConfig config, const std::string& resume, std::int64_t steps_override, bool show_progress) {
  std::string resume_dir;
  if (!resume.empty()) {
    resume_dir = checkpoint_dir(resume);
    const SafeTensors st = load_safetensors((fs::path(resume_dir) / "trainer.safetensors").string());
    const std::string out = config.out;
    config = TrainConfig::from_json(nlohmann::json::parse(st.metadata.at("config")));
    if (steps_override > 0) config.steps = steps_override;
    (void)out;
  }
  config.validate();
  const auto t_start = std::chrono::steady_clock::now();
  fs::create_directories(fs::path(config.out) / "checkpoints");
  fs::create_directories(fs::path(config.out) / "images");
  fs::create_directories(fs::path(config.out) / "eval");

  // Build the trainer; on resume the model architecture comes from the checkpoint.
  if (!resume_dir.empty()) config.init = resume_dir;
  Trainer tr(config);
  if (!resume_dir.empty()) tr.load_checkpoint(resume_dir);
  const std::string metrics_path = (fs::path(config.out) / "metrics.jsonl").string();
  if (!resume_dir.empty()) truncate_metrics(metrics_path, tr.step());
  else write_file_atomic(metrics_path, "");
  write_file_atomic((fs::path(config.out) / "config.json").string(), tr.config().to_json().dump(2) + "\n");

  const TrainConfig& c = tr.config();
  const std::int64_t first_step = tr.step();
  std::fprintf(stderr, "janus_trainer %s%s: %lld parameters (%lld trainable), %lldx%lld grid, %s, steps %lld..%lld -> %s\n",
               c.mode.c_str(), c.mode == "rl" ? (" --algo " + c.algo).c_str() : "",
               static_cast<long long>(count_parameters(*tr.policy())),
               static_cast<long long>(count_parameters(*tr.policy(), true)), static_cast<long long>(c.grid_height),
               static_cast<long long>(c.grid_width), c.device.c_str(), static_cast<long long>(first_step),
               static_cast<long long>(c.steps), c.out.c_str());
  Progress progress(first_step, c.steps, show_progress);
  nlohmann::json eval_first, eval_last;
  if (first_step == 0 && c.mode == "rl") eval_first = run_heldout_eval(tr, c.out, progress, true);

  std::ofstream metrics(metrics_path, std::ios::app);
  std::vector<double> rewards, step_times;
  std::int64_t last_saved = -1;
  auto save = [&]() {
    const std::string dir = (fs::path(c.out) / "checkpoints" / step_name(tr.step())).string();
    tr.save_checkpoint(dir);
    write_file_atomic((fs::path(c.out) / "checkpoints" / "latest").string(), step_name(tr.step()) + "\n");
    last_saved = tr.step();
  };
  while (tr.step() < c.steps) {
    const StepMetrics m = tr.train_step();
    metrics << m.json.dump() << '\n';
    metrics.flush();
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
    const std::int64_t s = tr.step();
    if (c.image_every > 0 && s % c.image_every == 0) {
      const std::string base = (fs::path(c.out) / "images" / step_name(s)).string();
      if (c.mode == "rl") {
        write_sheet(base + ".png", tr.last_grids(), tr.last_scores(), static_cast<int>(c.group));
        write_prompts(base + ".txt", tr.last_metas(), tr.last_scores());
      } else {
        EvalResult ev = evaluate(*tr.policy(), tr.task(), preview_prompts(tr.task()), 2, eval_options(c), c.eval_batch);
        write_sheet(base + ".png", ev.grids, ev.scores, 2);
        write_prompts(base + ".txt", ev.metas, ev.scores);
      }
    }
    if (c.eval_every > 0 && s % c.eval_every == 0 && s < c.steps) eval_last = run_heldout_eval(tr, c.out, progress, true);
    if (c.save_every > 0 && s % c.save_every == 0) save();
  }
  if (last_saved != tr.step()) save();
  eval_last = run_heldout_eval(tr, c.out, progress, true);
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
  if (c.mode == "rl") summary["algo"] = c.algo;
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
  if (!eval_first.is_null())
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

int run_eval(const std::string& model_path, const TrainConfig& config_in, const std::string& json_path,
             const std::string& png_path) {
  TrainConfig c = config_in;
  const torch::Device device = c.device == "cuda" ? torch::Device(torch::kCUDA) : torch::Device(torch::kCPU);
  JanusModel m = load_model(model_path, device);
  c.grid_height = static_cast<int>(m->cfg.image_height);
  c.grid_width = static_cast<int>(m->cfg.image_width);
  const Task task(c);
  m->eval();
  EvalResult ev = evaluate(*m, task, task.split.heldout, c.eval_samples, eval_options(c), c.eval_batch);
  nlohmann::json j = nlohmann::json::parse(ev.report.to_json());
  j["model"] = model_path;
  j["seconds"] = ev.seconds;
  j["cfg_scale"] = c.cfg_scale;
  j["samples_per_prompt"] = c.eval_samples;
  std::printf("%s\n", j.dump(2).c_str());
  if (!json_path.empty()) write_file_atomic(json_path, j.dump() + "\n");
  if (!png_path.empty()) write_sheet(png_path, ev.grids, ev.scores, 8);
  return 0;
}

int run_sample(const std::string& model_path, const TrainConfig& config_in, const std::string& prompt, std::int64_t n,
               const std::string& png_path) {
  TrainConfig c = config_in;
  const torch::Device device = c.device == "cuda" ? torch::Device(torch::kCUDA) : torch::Device(torch::kCPU);
  JanusModel m = load_model(model_path, device);
  c.grid_height = static_cast<int>(m->cfg.image_height);
  c.grid_width = static_cast<int>(m->cfg.image_width);
  const Task task(c);
  m->eval();
  GenerateOptions g = eval_options(c);
  const GenerateResult out = m->generate(task.encode(std::vector<std::string>(static_cast<std::size_t>(n), prompt), device), g);
  const auto grids = to_grids(out.tokens, c.grid_height, c.grid_width);
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
  write_sheet(png_path, grids, scores, 0);
  std::printf("wrote %s\n", png_path.c_str());
  return 0;
}

}  // namespace janus
