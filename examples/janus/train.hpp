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
#include <functional>
#include <map>
#include <stdexcept>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>
#include <torch/torch.h>

#include "distributed.hpp"
#include "model.hpp"
#include "prompts.hpp"
#include "shapes_task.hpp"
#include "vq_decoder.hpp"

namespace janus {

class Tokenizer;
class RewardClient;
/// True when the trainer was built with the tokenizer and the reward-server client (PCRE2,
/// libcurl and libjpeg-turbo found): --prompts FILE, --tokenizer and --reward-server work.
bool have_real_io() noexcept;

namespace dp {
class GradientSync;
class ShardedAdamW;
}  // namespace dp

/// A data-parallel run's place (docs/trainer.md "Data parallelism"): the process group (null:
/// one process) and the rank on this host (picks the GPU with --device cuda).
struct Parallel {
  std::shared_ptr<dist::Communicator> comm;
  int local_rank = 0;
  int rank() const { return comm ? comm->rank() : 0; }
  int world() const { return comm ? comm->world_size() : 1; }
  bool leader() const { return rank() == 0; }
};

/// A bad command-line value or combination of flags (janus_trainer exits with 2). The message
/// names the flag.
struct UsageError : std::invalid_argument {
  using std::invalid_argument::invalid_argument;
};

/// An RL step whose rewards could not be had (the reward server failed after its retries).
/// Thrown before the model is changed; run_training skips the step (reward_failures).
struct RewardStepError : std::runtime_error {
  using std::runtime_error::runtime_error;
};

/// A training step whose loss, gradient norm or updated parameters are not finite (janus_trainer
/// exits with 3). Thrown before the model is changed: the trainer still holds the last good state.
struct NonFiniteStep : std::runtime_error {
  using std::runtime_error::runtime_error;
};

/// The ranges of the settings (TrainConfig::validate and the command line's checks).
namespace limits {
constexpr std::int64_t min_grid = 4, max_grid = 128;  ///< the task's grid sides
constexpr std::int64_t max_hidden = 8192, max_layers = 256, max_intermediate = 65536;
constexpr std::int64_t max_steps = 1000000000;
constexpr std::int64_t max_batch = 4096;     ///< sequences per step, rollouts per step, images per decode
constexpr std::int64_t max_samples = 10000;  ///< images per held-out prompt
constexpr std::int64_t max_top_k = 1 << 20;   ///< --top-k (checked against the model's codebook when it is built)
constexpr std::int64_t max_threads = 1024;
constexpr double max_lr = 10.0, max_cfg = 100.0, max_temperature = 100.0, max_real = 1e6;
}  // namespace limits

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
  /// A published Janus-Pro directory (config.json + weights in any of the four layouts): the
  /// policy starts from its language model and generation modules, and its VQ-16 decoder turns
  /// image tokens into the pictures the rewards score and the sample sheets show. Fresh runs
  /// only (a resumed run takes the weights from its checkpoint and the decoder from here).
  std::string model_dir;
  /// Model weights and activations: "f32" or "bf16". In bf16 the optimizer holds float32 master
  /// copies of the trainable weights (and its moments in float32): gradients are taken in bf16,
  /// cast to float32, clipped and applied to the masters, which are rounded back into the model.
  std::string dtype = "f32";
  bool grad_checkpoint = false;  ///< gradient checkpointing of the language model (RL's teacher-forced pass)
  /// Data parallelism: optimizer state, master weights and gradients sharded across the ranks
  /// (ZeRO stage 1-2 style, data_parallel.hpp). No effect in a one-process run.
  bool shard_optimizer = false;

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
  /// Ablations (issue 15): which tokens GCPO trains on. critical (the selection, official) |
  /// random (as many tokens per image as the selection picked, drawn uniformly from a stream
  /// seeded by (seed, step, row)) | complement (every token the selection did not pick) | all.
  std::string mask_mode = "critical";
  /// The dynamic weight: official (prefix mean, with its gradient) | detached (no gradient
  /// through it; as --detach-weight) | one (no weight: 1 on every token).
  std::string weight_mode = "official";
  double initial_frac = 0.1, gradient_frac = 0.1, similarity_frac = 0.1;
  double window_start_frac = 0.1, window_frac = 0.8;
  std::string adv_std = "unbiased";  ///< unbiased | biased | none
  double adv_eps = 1e-4;
  std::string ref_embeds = "policy";  ///< policy (official: the reference sees the policy's text embeddings) | ref

  // Real prompts and rewards (issue 13; docs/trainer.md "Real prompts and a reward server")
  /// A prompt file (GenEval metadata JSONL or prompt-only records, prompts.hpp): the prompts of
  /// every step are drawn from it (seeded epochs) instead of the task's, tokenized by the
  /// model's tokenizer and scored by `reward_server`. Needs `model_dir` and `reward_server`.
  std::string prompt_file;
  /// tokenizer.json of the model ("": <model_dir>/tokenizer.json).
  std::string tokenizer;
  /// URL of a GenEval reward server (the authors' protocol, reward_client.hpp): it scores the
  /// decoded pictures of every step. Needs `model_dir` (the pictures come from its VQ decoder).
  std::string reward_server;
  double reward_timeout = 120;         ///< seconds per request
  std::int64_t reward_retries = 3;     ///< retries of a failed request (backoff 1 s, doubling)
  std::int64_t reward_batch = 2;       ///< images per request (official: 2)
  /// Steps in a row whose rewards could not be had that are skipped (logged, a metrics line with
  /// "skipped") before the run stops with the server's error; 0: the first failure stops it.
  std::int64_t reward_failures = 3;

  nlohmann::json to_json() const;
  static TrainConfig from_json(const nlohmann::json& j);
  /// Throws UsageError naming the first bad setting by its flag: every number finite and in
  /// range (limits above), every name one of its choices.
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
  /// `length`: the batch's length L (0: the longest prompt's + 1); std::invalid_argument when
  /// shorter than that.
  PromptBatch encode(const std::vector<std::string>& prompts, const torch::Device& device, std::int64_t length = 0) const;
  /// The model configuration for this task at the given sizes.
  ModelConfig model_config(std::int64_t hidden, std::int64_t layers, std::int64_t heads,
                           std::int64_t intermediate) const;
};

/// `[B, N]` int64 tokens (any device) -> grids.
std::vector<shapes::Grid> to_grids(const torch::Tensor& tokens, int height, int width);

/// What the rewards see and the sample sheets show of sampled image tokens.
struct Pictures {
  std::vector<shapes::Grid> grids;    ///< the detector's view, one per image
  std::vector<shapes::Image> images;  ///< the VQ decoder's RGB pictures (empty without a decoder: the grids are painted)
};
/// `[B, height * width]` tokens -> pictures. Without `vq` the tokens are the task's codebook
/// (to_grids). With `vq` (a published model) each image is VQ-decoded and post-processed as the
/// official trainer does (VqDecoder::to_uint8_images), in chunks of `chunk` images, and the
/// detector sees shapes::grid_of_image of the picture at the token grid.
Pictures render(const torch::Tensor& tokens, int height, int width, const VqDecoder* vq, std::int64_t chunk = 8);

/// Saves the model as `path` (safetensors; parameter names of the real checkpoint, the config
/// JSON in the metadata under "config"). Atomic.
void save_model(const std::string& path, JanusModelImpl& model);
/// Reads a model saved by save_model (a file, or a checkpoint directory holding model.safetensors).
/// Refuses missing or unknown names, shape mismatches and mixed dtypes. The model takes the
/// file's floating-point dtype (float32 or bfloat16), or `dtype` when given.
JanusModel load_model(const std::string& path, const torch::Device& device,
                      std::optional<at::ScalarType> dtype = std::nullopt);
/// Copies `tensors` into `model` by name, refusing missing, unknown and mis-shaped entries.
void load_parameters(JanusModelImpl& model, const std::vector<std::pair<std::string, at::Tensor>>& tensors,
                     const std::string& prefix, const std::string& origin);

/// A uint8 `[R, N]` mask with counts[r] ones in row r at uniformly drawn positions, row r's
/// from the stream `derive_seed(seed, first + r)` (rows are numbered globally, so a split
/// batch draws what the whole one does): --mask-mode random.
torch::Tensor random_token_mask(const torch::Tensor& counts, std::int64_t N, std::uint64_t seed, std::uint64_t first);

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
  std::vector<shapes::Image> images;  ///< the VQ decoder's pictures (evaluate with a decoder)
  std::vector<shapes::ScoreResult> scores;
  double seconds = 0;
};

/// Samples `samples_per_prompt` images for every prompt of `prompts` (CFG decode in batches of
/// at most `batch` images, seed derived per batch) and scores them (render() with `vq`).
EvalResult evaluate(JanusModelImpl& model, const Task& task, const std::vector<shapes::Metadata>& prompts,
                    std::int64_t samples_per_prompt, const GenerateOptions& gen, std::int64_t batch,
                    const VqDecoder* vq = nullptr, const Parallel& parallel = {});
/// With `parallel.comm`, evaluate() splits the decode batches across the ranks (batch c on rank
/// c mod world, each with the seed of batch c, so the images are those of one process) and
/// gathers the grids, pictures and scores: every rank returns the whole result.

/// A JSON object of per-tag accuracies {"overall", "single_object", ...} of a report.
nlohmann::json accuracy_json(const shapes::EvalReport& r);

/// A supervised or RL training run: the policy, the frozen reference (RL), AdamW and the step.
class Trainer {
 public:
  /// Builds the task, the policy (from `config.init`, from `config.model_dir`, or fresh from the
  /// seed), the reference (RL: a frozen copy of the initial policy) and the optimizer. With a
  /// model directory the task's prompt vocabulary is placed at the first ids of the model's text
  /// vocabulary (its special ids become the model's), until the model's own tokenizer is read.
  /// With `parallel.comm` (several processes): every rank builds the same trainer; rank 0's
  /// initial weights are broadcast; each RL step samples and trains on this rank's whole groups
  /// (prompts / world of them) and the gradients are summed over ranks (data_parallel.hpp).
  explicit Trainer(const TrainConfig& config, Parallel parallel = {});
  ~Trainer();

  /// One optimizer step (supervised or RL by `config.mode`) at `step()`; then step() + 1.
  StepMetrics train_step();

  /// Writes a checkpoint directory (model.safetensors + trainer.safetensors) so that a complete
  /// checkpoint exists at every moment: written and fsynced as "<dir>.janus-tmp-<pid>", an
  /// existing `dir` renamed aside, the new one renamed in, `before_cleanup` called (the run
  /// updates checkpoints/latest there), then the old one removed (run_dir.hpp).
  /// Data parallel: every rank calls it (a sharded optimizer's state is gathered), rank 0 alone
  /// writes, and every rank returns once the checkpoint is complete (a barrier).
  void save_checkpoint(const std::string& dir, const std::function<void()>& before_cleanup = {});
  /// Restores weights, reference, optimizer state and step from a checkpoint directory (or a
  /// run directory: its latest checkpoint). Validates everything against this trainer's model:
  /// dtypes, shapes, finite values, the optimizer state's names, steps and moments, the
  /// metadata's `step` (a non-negative integer) and `config`; errors name the file and the
  /// tensor or key.
  void load_checkpoint(const std::string& dir);

  std::int64_t step() const { return step_; }
  const TrainConfig& config() const { return config_; }
  TrainConfig& mutable_config() { return config_; }
  const Task& task() const { return task_; }
  JanusModel& policy() { return policy_; }
  JanusModel& reference() { return reference_; }
  torch::optim::AdamW& optimizer() { return *optimizer_; }
  torch::Device device() const { return device_; }
  /// The picture decoder of a model-directory run (null for the task's own codebook).
  const VqDecoder* vq() const { return vq_.get(); }
  /// The floating-point dtype of the model (float32 or bfloat16).
  at::ScalarType dtype() const { return dtype_; }

  /// The generation options of RL step `step` (seed derived from the run seed and the step).
  GenerateOptions rollout_options(std::int64_t step) const;
  /// The prompts of RL step `step` (P records, each to be sampled G times).
  std::vector<shapes::Metadata> rl_prompts(std::int64_t step) const;
  /// The rollouts of the last RL step (for sample sheets): grids, prompts and scores.
  const std::vector<shapes::Grid>& last_grids() const { return last_pictures_.grids; }
  const Pictures& last_pictures() const { return last_pictures_; }
  const std::vector<shapes::Metadata>& last_metas() const { return last_metas_; }
  const std::vector<shapes::ScoreResult>& last_scores() const { return last_scores_; }
  /// A prompt-file run: the records of the last RL step's rows (every rank's), else empty.
  const std::vector<PromptRecord>& last_records() const { return last_records_; }
  /// The records of the prompt file (empty without one).
  const std::vector<PromptRecord>& records() const { return records_; }
  /// The last RL step's pictures of every rank, in row order (a collective in a data-parallel
  /// run: every rank calls it; the grids and scores are already global, the decoded images are
  /// gathered here).
  Pictures gathered_pictures();
  const Parallel& parallel() const { return parallel_; }

 private:
  StepMetrics sft_step();
  StepMetrics rl_step();
  /// Checks the loss and the gradient norm, clips, steps AdamW, checks the parameters, ++step_;
  /// returns the gradient norm (0 without clipping). Throws NonFiniteStep.
  double checked_update(double loss);
  void build_optimizer();
  void set_lr(double lr);
  /// Clears the model's gradients and the master weights' (bf16).
  void zero_grads();
  /// What AdamW updates: the float32 masters in bf16, else the trainable parameters themselves.
  std::vector<torch::Tensor>& optimized() { return master_.empty() ? trainable_ : master_; }

  /// Data parallel: gradients into the optimizer (summed, or sharded with the sharded optimizer).
  double synced_update(double loss);
  void broadcast_initial_weights();

  TrainConfig config_;
  Parallel parallel_;
  std::unique_ptr<dp::GradientSync> sync_;
  std::unique_ptr<dp::ShardedAdamW> sharded_;
  Task task_;
  torch::Device device_;
  JanusModel policy_{nullptr};
  JanusModel reference_{nullptr};
  std::vector<std::string> trainable_names_;
  std::vector<torch::Tensor> trainable_;
  std::vector<torch::Tensor> master_;  ///< float32 copies of trainable_ (bf16 runs)
  at::ScalarType dtype_ = at::kFloat;
  std::shared_ptr<VqDecoder> vq_;
  std::unique_ptr<torch::optim::AdamW> optimizer_;
  std::int64_t step_ = 0;
  Pictures last_pictures_;
  std::vector<shapes::Metadata> last_metas_;
  std::vector<shapes::ScoreResult> last_scores_;
  std::vector<PromptRecord> records_;       ///< the prompt file's
  std::vector<PromptRecord> last_records_;  ///< the last step's rows (prompt-file runs)
  std::shared_ptr<const Tokenizer> tokenizer_;
  std::shared_ptr<RewardClient> reward_client_;
  /// Rewards of this rank's rows by the reward server, gathered over the ranks; throws
  /// RewardStepError when any rank's request failed. Fills last_scores_ and the metrics.
  std::vector<float> server_rewards(std::int64_t R, std::int64_t row0, nlohmann::json& metrics);
};

/// How run_training starts (docs/trainer.md "Run safety").
struct RunOptions {
  /// Continue this run: a run directory (its checkpoints/latest) or one of its checkpoints
  /// (RUN/checkpoints/step-N). The run continues in that run directory, whatever the
  /// checkpoint's metadata says, with the settings stored in the checkpoint except those in
  /// `resume_overrides`.
  std::string resume;
  /// Settings a resume may change (field names of TrainConfig: steps, save_every, image_every,
  /// eval_every, eval_samples, eval_batch, device, grad_checkpoint), taken from run_training's `config`.
  std::vector<std::string> resume_overrides;
  /// --out was given with --resume: it must name the run directory being resumed.
  bool out_given = false;
  /// A fresh run into a directory that holds a run's files: move them aside to
  /// "<out>.replaced-<UTC time>" instead of refusing.
  bool replace = false;
  bool progress = true;
  /// How to call the trainer again (the resume hint printed on a signal or an error).
  std::string program = "janus_trainer";
};

/// The settings a resume may change, as TrainConfig field names.
const std::vector<std::string>& resumable_settings();

/// Command drivers (the CLI's subcommands). Each returns a process exit code.
/// `sft` / `rl`: run `config` (or resume, see RunOptions) under config.out, holding the run
/// directory's lock: metrics.jsonl (appended to), checkpoints/step-*/ and checkpoints/latest,
/// images/*.png, eval/*.json, summary.json, model.safetensors. Returns 0; 128 + the signal
/// after SIGINT / SIGTERM (the step finished and checkpointed). Throws UsageError (bad
/// settings), NonFiniteStep (a non-finite step: the run stops, its last checkpoint is kept) or
/// std::runtime_error.
int run_training(TrainConfig config, const RunOptions& options, const Parallel& parallel = {});
/// Held-out evaluation of a model: per-tag accuracy JSON (stdout and `json_path`) and a sample
/// sheet (`png_path`). With `metadata_path`, the records of that GenEval JSONL file instead of
/// the held-out prompts.
int run_eval(const std::string& model_path, const TrainConfig& config, const std::string& json_path,
             const std::string& png_path, const std::string& metadata_path = "");
/// Samples `n` images of one prompt into a PNG sheet and prints each one's score.
int run_sample(const std::string& model_path, const TrainConfig& config, const std::string& prompt, std::int64_t n,
               const std::string& png_path);

}  // namespace janus
