// examples/janus/train.hpp - the example trainer's library: task set-up, prompt encoding,
// checkpoints (safetensors), the supervised warm-start step, the GRPO/GCPO step of the official
// Janus-Pro trainer (shared/spec/janus-trainer.md section 2), evaluation and sampling. The
// command-line front end is trainer.cpp; the tests drive this API directly.
//
// Reproducibility: every random choice of a step is a pure function of (seed, step): prompts
// and supervised pairs come from the task's seeded streams (shapes::derive_seed), tokens from
// gcpo's counter-based generation step (Philox keyed by a seed derived from (seed, step), counter
// = token position and row). A run is therefore reproduced by its seed, and a resumed run
// continues bit-exactly from the weights, the optimizer state and the step of its checkpoint.
#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>
#include <torch/torch.h>

#include "model.hpp"
#include "shapes_task.hpp"

namespace janus {

/// Everything that defines a run; stored in every checkpoint (trainer.safetensors metadata),
/// so `--resume` continues with exactly these settings.
struct TrainConfig {
  std::string mode = "rl";  ///< "sft" or "rl"

  // task
  int grid_height = 16;
  int grid_width = 16;
  double heldout_fraction = 0.2;
  std::uint64_t split_seed = 0;
  std::string reward = "binary";  ///< binary | strict | partial (GenEval rules) | clean
  bool chat_template = true;      ///< "User: <p>\n\nAssistant:" frame (official training form)
  std::string tags;               ///< comma-separated tags to train and evaluate on ("": all six)

  // model (used when not starting from `init`)
  std::int64_t hidden = 128;
  std::int64_t layers = 4;
  std::int64_t heads = 4;
  std::int64_t intermediate = 0;  ///< 0: 8/3 * hidden rounded up to a multiple of 8
  std::string init;               ///< model.safetensors or checkpoint directory to start from

  // run
  std::uint64_t seed = 0;
  std::int64_t steps = 100;
  std::string out = "runs/janus";
  std::string device = "cpu";  ///< cpu | cuda
  std::int64_t save_every = 50;   ///< checkpoint period (0: only at the end)
  std::int64_t image_every = 25;  ///< sample sheet period (0: never)
  std::int64_t eval_every = 0;    ///< held-out evaluation period (0: only at the start and end)
  std::int64_t eval_samples = 1;  ///< images per held-out prompt
  std::int64_t eval_batch = 64;   ///< images per decode during evaluation

  // optimizer (AdamW, gradient-norm clip, LR schedule)
  double lr = 1e-3;
  std::string schedule = "constant";  ///< constant | linear | cosine (after warm-up)
  std::int64_t warmup = 0;
  double min_lr_ratio = 0.0;  ///< floor of linear/cosine decay, as a fraction of lr
  double weight_decay = 0.0;
  double beta1 = 0.9, beta2 = 0.999, adam_eps = 1e-8;
  double max_grad_norm = 1.0;  ///< 0: no clipping

  // supervised warm-start
  std::int64_t batch = 32;
  double uncond_prob = 0.1;  ///< fraction of prompts replaced by the unconditional prompt (for CFG)
  bool train_gen = true;     ///< also train gen_embed / gen_aligner / gen_head

  // RL (GRPO / GCPO)
  std::string algo = "gcpo";  ///< gcpo | grpo
  std::int64_t prompts = 8;   ///< P prompts per step
  std::int64_t group = 4;     ///< G samples per prompt
  float cfg_scale = 5.0f;
  float temperature = 1.0f;
  std::int64_t top_k = 0;
  float top_p = 1.0f;
  float beta = 0.01f;         ///< KL coefficient
  float weight_clip = 0.5f;   ///< c of the dynamic weight (GCPO)
  bool detach_weight = false;
  double initial_frac = 0.1, gradient_frac = 0.1, similarity_frac = 0.1;
  double window_start_frac = 0.1, window_frac = 0.8;
  std::string adv_std = "unbiased";  ///< unbiased | biased | none
  double adv_eps = 1e-4;
  std::string ref_embeds = "policy";  ///< policy (official: the reference sees the policy's text embeddings) | ref

  nlohmann::json to_json() const;
  static TrainConfig from_json(const nlohmann::json& j);
  /// Throws std::invalid_argument naming the first bad setting.
  void validate() const;
};

/// The task "shapes" as the trainer uses it.
struct Task {
  shapes::TaskConfig config;
  shapes::PromptTokenizer tokenizer;
  shapes::PromptSplit split;  ///< train / held-out prompts
  shapes::ScoreOptions score;
  bool chat_template = true;

  explicit Task(const TrainConfig& c);
  /// Encodes prompts as section 2.2: BOS (+ "User:" frame) + words, right pads, <begin_of_image>.
  PromptBatch encode(const std::vector<std::string>& prompts, const torch::Device& device) const;
  /// The model configuration for this task at the given sizes.
  ModelConfig model_config(std::int64_t hidden, std::int64_t layers, std::int64_t heads,
                           std::int64_t intermediate) const;
};

/// `[B, N]` int64 tokens (any device) -> grids.
std::vector<shapes::Grid> to_grids(const torch::Tensor& tokens, int height, int width);

/// Saves the model as `path` (safetensors; parameter names of the real checkpoint, the config
/// JSON in the metadata under "config"). Atomic.
void save_model(const std::string& path, JanusModelImpl& model);
/// Reads a model saved by save_model (a file, or a checkpoint directory holding model.safetensors).
/// Refuses missing or unknown names and shape mismatches.
JanusModel load_model(const std::string& path, const torch::Device& device);
/// Copies `tensors` into `model` by name, refusing missing, unknown and mis-shaped entries.
void load_parameters(JanusModelImpl& model, const std::vector<std::pair<std::string, at::Tensor>>& tensors,
                     const std::string& prefix, const std::string& origin);

/// Learning rate at `step` of `total` under the config's schedule.
double lr_at(const TrainConfig& c, std::int64_t step, std::int64_t total);

/// What one step reports (one JSON line of metrics.jsonl).
struct StepMetrics {
  nlohmann::json json;
};

/// Outcome of a held-out evaluation.
struct EvalResult {
  shapes::EvalReport report;
  std::vector<shapes::Metadata> metas;
  std::vector<shapes::Grid> grids;
  std::vector<shapes::ScoreResult> scores;
  double seconds = 0;
};

/// Samples `samples_per_prompt` images for every prompt of `prompts` (CFG decode in batches of
/// at most `batch` images, seed derived per batch) and scores them.
EvalResult evaluate(JanusModelImpl& model, const Task& task, const std::vector<shapes::Metadata>& prompts,
                    std::int64_t samples_per_prompt, const GenerateOptions& gen, std::int64_t batch);

/// A JSON object of per-tag accuracies {"overall", "single_object", ...} of a report.
nlohmann::json accuracy_json(const shapes::EvalReport& r);

/// A supervised or RL training run: the policy, the frozen reference (RL), AdamW and the step.
class Trainer {
 public:
  /// Builds the task, the policy (from `config.init`, or fresh from the seed), the reference
  /// (RL: a frozen copy of the initial policy) and the optimizer.
  explicit Trainer(const TrainConfig& config);

  /// One optimizer step (supervised or RL by `config.mode`) at `step()`; then step() + 1.
  StepMetrics train_step();

  /// Writes a checkpoint directory (model.safetensors + trainer.safetensors), atomically: it is
  /// written as `<dir>.tmp` and renamed.
  void save_checkpoint(const std::string& dir);
  /// Restores weights, reference, optimizer state and step from a checkpoint directory.
  void load_checkpoint(const std::string& dir);

  std::int64_t step() const { return step_; }
  const TrainConfig& config() const { return config_; }
  TrainConfig& mutable_config() { return config_; }
  const Task& task() const { return task_; }
  JanusModel& policy() { return policy_; }
  JanusModel& reference() { return reference_; }
  torch::optim::AdamW& optimizer() { return *optimizer_; }
  torch::Device device() const { return device_; }

  /// The generation options of RL step `step` (seed derived from the run seed and the step).
  GenerateOptions rollout_options(std::int64_t step) const;
  /// The prompts of RL step `step` (P records, each to be sampled G times).
  std::vector<shapes::Metadata> rl_prompts(std::int64_t step) const;
  /// The rollouts of the last RL step (for sample sheets): grids, prompts and scores.
  const std::vector<shapes::Grid>& last_grids() const { return last_grids_; }
  const std::vector<shapes::Metadata>& last_metas() const { return last_metas_; }
  const std::vector<shapes::ScoreResult>& last_scores() const { return last_scores_; }

 private:
  StepMetrics sft_step();
  StepMetrics rl_step();
  void build_optimizer();
  void set_lr(double lr);

  TrainConfig config_;
  Task task_;
  torch::Device device_;
  JanusModel policy_{nullptr};
  JanusModel reference_{nullptr};
  std::vector<std::string> trainable_names_;
  std::vector<torch::Tensor> trainable_;
  std::unique_ptr<torch::optim::AdamW> optimizer_;
  std::int64_t step_ = 0;
  std::vector<shapes::Grid> last_grids_;
  std::vector<shapes::Metadata> last_metas_;
  std::vector<shapes::ScoreResult> last_scores_;
};

/// Command drivers (the CLI's subcommands). Each returns a process exit code.
/// `sft` / `rl`: run `config` (or resume from `resume`, a checkpoint or run directory, with
/// `steps_override` > 0 replacing the stored step count), writing under config.out:
/// metrics.jsonl, checkpoints/step-*/, images/*.png, eval/*.json, summary.json.
int run_training(TrainConfig config, const std::string& resume, std::int64_t steps_override, bool progress);
/// Held-out evaluation of a model: per-tag accuracy JSON (stdout and `json_path`) and a sample
/// sheet (`png_path`).
int run_eval(const std::string& model_path, const TrainConfig& config, const std::string& json_path,
             const std::string& png_path);
/// Samples `n` images of one prompt into a PNG sheet and prints each one's score.
int run_sample(const std::string& model_path, const TrainConfig& config, const std::string& prompt, std::int64_t n,
               const std::string& png_path);

}  // namespace janus
