// examples/janus/trainer.cpp - janus_trainer: a Janus-Pro-architecture model learns the task
// "shapes" with a supervised warm-start and then GRPO or GCPO through gcpo's operators.
//
//   janus_trainer sft --out runs/sft --steps 300                       # warm-start from scratch
//   janus_trainer rl --algo gcpo --init runs/sft --out runs/gcpo       # RL from the warm-start
//   janus_trainer rl --resume runs/gcpo --steps 200                    # continue exactly (in runs/gcpo)
//   janus_trainer eval --model runs/gcpo --json acc.json --png sheet.png
//   janus_trainer sample --model runs/gcpo --prompt "a photo of a red circle" -n 8 --png s.png
//   janus_trainer rl --model-dir Janus-Pro-1B --device cuda --dtype bf16 --out runs/pro  # a published model
//   torchrun --nproc-per-node 2 --no-python janus_trainer rl ...     # data parallel (or scripts/launch.sh 2 ...)
//   janus_trainer forward --model-dir Janus-Pro-1B --input in.safetensors --output out.safetensors
//   janus_trainer rl --model-dir Janus-Pro-1B --prompts geneval_train_metadata.jsonl
//                    --reward-server http://127.0.0.1:18085 ...                      # real prompts and rewards
//   janus_trainer tokenize --tokenizer Janus-Pro-1B/tokenizer.json --input texts.txt --output ids.jsonl
#include <dlfcn.h>

#include <cerrno>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <exception>
#include <iostream>
#include <map>
#include <optional>
#include <sstream>
#include <string>

#include <CLI/CLI.hpp>
#include <torch/torch.h>

#include "pretrained.hpp"
#include "train.hpp"
#if defined(JANUS_HAVE_REAL_IO)
#include "tokenizer.hpp"
#endif

namespace {

using janus::TrainConfig;
namespace limits = janus::limits;

// ---- strict number checks (CLI11 2.1 converts "-1" to a huge unsigned, "inf" and "nan" to
// doubles and lets "99999999999" through to an int): each option's text is checked here, and
// the error names the option ---------------------------------------------------------------------

std::string range_text(long double lo, long double hi, bool lo_open = false) {
  std::ostringstream os;
  os << (lo_open ? "(" : "[") << static_cast<double>(lo) << ", " << static_cast<double>(hi) << "]";
  return os.str();
}

CLI::Validator integer_in(std::int64_t lo, std::int64_t hi) {
  return CLI::Validator(
      [lo, hi](std::string& s) -> std::string {
        errno = 0;
        char* end = nullptr;
        const long long v = s.empty() ? 0 : std::strtoll(s.c_str(), &end, 10);
        if (s.empty() || end == nullptr || *end != '\0') return "'" + s + "' is not an integer";
        if (errno == ERANGE || v < lo || v > hi)
          return s + " is out of range: it must be an integer in [" + std::to_string(lo) + ", " + std::to_string(hi) + "]";
        return {};
      },
      "in [" + std::to_string(lo) + ", " + std::to_string(hi) + "]");
}

CLI::Validator seed_value() {
  return CLI::Validator(
      [](std::string& s) -> std::string {
        bool digits = !s.empty();
        for (char c : s) digits = digits && c >= '0' && c <= '9';
        if (!digits) return "'" + s + "' is not a non-negative integer";
        errno = 0;
        (void)std::strtoull(s.c_str(), nullptr, 10);
        if (errno == ERANGE) return s + " is out of range: it must be an integer in [0, 2^64 - 1]";
        return {};
      },
      "in [0, 2^64 - 1]");
}

CLI::Validator real_in(double lo, double hi, bool lo_open = false) {
  return CLI::Validator(
      [lo, hi, lo_open](std::string& s) -> std::string {
        errno = 0;
        char* end = nullptr;
        const double v = s.empty() ? 0 : std::strtod(s.c_str(), &end);
        if (s.empty() || end == nullptr || *end != '\0') return "'" + s + "' is not a number";
        if (!std::isfinite(v) || errno == ERANGE || v < lo || v > hi || (lo_open && v == lo))
          return s + " is out of range: it must be a finite number in " + range_text(lo, hi, lo_open);
        return {};
      },
      "in " + range_text(lo, hi, lo_open));
}

/// Options every training command has.
void add_run_options(CLI::App* app, TrainConfig& c, int& threads) {
  app->add_option("--out", c.out, "run directory (metrics, checkpoints, images)")->capture_default_str();
  app->add_option("--seed", c.seed, "seed of every random choice of the run")->check(seed_value())->capture_default_str();
  app->add_option("--steps", c.steps, "total optimizer steps")->check(integer_in(0, limits::max_steps))->capture_default_str();
  app->add_option("--device", c.device, "cpu or cuda")->check(CLI::IsMember({"cpu", "cuda"}))->capture_default_str();
  app->add_option("--threads", threads, "torch and OpenBLAS threads (0: their defaults)")
      ->check(integer_in(0, limits::max_threads))
      ->capture_default_str();
  app->add_option("--init", c.init, "model.safetensors or run/checkpoint directory to start from");
  app->add_option("--save-every", c.save_every, "checkpoint every K steps (0: at the end only)")
      ->check(integer_in(0, limits::max_steps))
      ->capture_default_str();
  app->add_option("--image-every", c.image_every, "sample sheet PNG every K steps (0: never)")
      ->check(integer_in(0, limits::max_steps))
      ->capture_default_str();
  app->add_option("--eval-every", c.eval_every, "held-out evaluation every K steps (0: start/end)")
      ->check(integer_in(0, limits::max_steps))
      ->capture_default_str();
  app->add_option("--eval-samples", c.eval_samples, "images per held-out prompt")
      ->check(integer_in(1, limits::max_samples))
      ->capture_default_str();
  app->add_option("--eval-batch", c.eval_batch, "images per decode in evaluation")
      ->check(integer_in(1, limits::max_batch))
      ->capture_default_str();
  app->add_option("--lr", c.lr, "peak learning rate (AdamW)")->check(real_in(0, limits::max_lr))->capture_default_str();
  app->add_option("--lr-schedule", c.schedule, "constant, linear or cosine")
      ->check(CLI::IsMember({"constant", "linear", "cosine"}))
      ->capture_default_str();
  app->add_option("--warmup", c.warmup, "linear warm-up steps")->check(integer_in(0, limits::max_steps))->capture_default_str();
  app->add_option("--min-lr-ratio", c.min_lr_ratio, "floor of the decay, fraction of --lr")
      ->check(real_in(0, 1))
      ->capture_default_str();
  app->add_option("--weight-decay", c.weight_decay, "AdamW decoupled weight decay")->check(real_in(0, 1))->capture_default_str();
  app->add_option("--max-grad-norm", c.max_grad_norm, "gradient-norm clip (0: off)")
      ->check(real_in(0, limits::max_real))
      ->capture_default_str();
  app->add_option("--resume", "continue a run: its directory (latest checkpoint) or RUN/checkpoints/step-N");
  app->add_flag("--replace",
                "start afresh in a --out that holds a run: its files are moved into a new directory "
                "<out>.replaced-<time> first (nothing is deleted)");
}

void add_task_options(CLI::App* app, TrainConfig& c, std::int64_t& grid) {
  app->add_option("--grid", grid, "image grid side (H = W) of a fresh model")
      ->check(integer_in(limits::min_grid, limits::max_grid))
      ->capture_default_str();
  app->add_option("--heldout-fraction", c.heldout_fraction, "held-out prompts per tag")
      ->check(real_in(0, 0.95))
      ->capture_default_str();
  app->add_option("--split-seed", c.split_seed, "which prompts are held out")->check(seed_value())->capture_default_str();
  app->add_option("--tags", c.tags, "comma-separated tags to train/evaluate on (default: all)");
  app->add_option("--reward", c.reward, "binary, strict or partial (GenEval rules), or clean (binary and nothing unasked drawn)")
      ->check(CLI::IsMember({"binary", "strict", "partial", "clean"}))
      ->capture_default_str();
}

void add_sampling_options(CLI::App* app, TrainConfig& c) {
  app->add_option("--cfg", c.cfg_scale, "classifier-free guidance weight")->check(real_in(0, limits::max_cfg))->capture_default_str();
  app->add_option("--temperature", c.temperature, "sampling temperature")
      ->check(real_in(0, limits::max_temperature, true))
      ->capture_default_str();
  app->add_option("--top-k", c.top_k, "top-k (0: off; at most the model's image tokens)")
      ->check(integer_in(0, limits::max_top_k))
      ->capture_default_str();
  app->add_option("--top-p", c.top_p, "nucleus mass (1: off)")->check(real_in(0, 1, true))->capture_default_str();
}

/// Sets libtorch's intra-op threads and, when libtorch's BLAS is OpenBLAS (Debian), OpenBLAS's
/// own thread count, which libtorch does not control (looked up at run time: no link-time
/// dependency on OpenBLAS).
void set_threads(int n) {
  if (n <= 0) return;
  torch::set_num_threads(n);
  using setter = void (*)(int);
  if (void* f = ::dlsym(RTLD_DEFAULT, "openblas_set_num_threads")) reinterpret_cast<setter>(f)(n);
}

/// The flags a resume accepts (besides --resume itself): the settings that do not change what
/// the run computes (janus::resumable_settings) plus --threads, and --out naming the same
/// directory. Every other flag given with --resume is refused by name.
const std::map<std::string, std::string>& resume_flags() {
  static const std::map<std::string, std::string> flags = {
      {"--steps", "steps"},          {"--save-every", "save_every"},     {"--image-every", "image_every"},
      {"--eval-every", "eval_every"}, {"--eval-samples", "eval_samples"}, {"--eval-batch", "eval_batch"},
      {"--device", "device"},        {"--threads", ""},                  {"--out", ""},
      {"--grad-checkpoint", "grad_checkpoint"}, {"--shard-optimizer", "shard_optimizer"},
      {"--dist-backend", ""},        {"--dist-timeout", ""},             {"--bucket-mb", ""},
      {"--reward-server", "reward_server"}, {"--reward-timeout", "reward_timeout"},
      {"--reward-retries", "reward_retries"}, {"--reward-failures", "reward_failures"},
      {"--resume", ""}};
  return flags;
}

/// Builds RunOptions for `sft` / `rl` from what was given on the command line.
janus::RunOptions run_options(CLI::App* cmd, const TrainConfig& c, bool quiet, const std::string& program) {
  janus::RunOptions o;
  o.progress = !quiet;
  o.program = program;
  o.replace = cmd->count("--replace") > 0;
  if (cmd->count("--resume") > 0) {
    o.resume = cmd->get_option("--resume")->as<std::string>();
    std::string accepted;
    for (const auto& kv : resume_flags())
      if (kv.first != "--resume") accepted += (accepted.empty() ? "" : ", ") + kv.first;
    for (const CLI::Option* opt : cmd->get_options()) {
      if (opt->count() == 0) continue;
      const std::string name = opt->get_name();
      const auto it = resume_flags().find(name);
      if (it == resume_flags().end())
        throw janus::UsageError(name + " cannot be given with --resume: a resumed run continues with the settings "
                                "stored in its checkpoint (flags a resume accepts: " + accepted + ")");
      if (!it->second.empty()) o.resume_overrides.push_back(it->second);
    }
    o.out_given = cmd->count("--out") > 0;
  } else if (c.mode == "rl" && c.init.empty() && c.model_dir.empty()) {
    throw janus::UsageError(
        "rl needs --init (a warm start: model.safetensors or a run directory), --model-dir (a published Janus-Pro "
        "directory) or --resume");
  }
  return o;
}

/// Launch flags of data parallelism (not stored in checkpoints: a resume may change them).
struct DistFlags {
  std::string backend = "auto";
  double timeout_s = 300;
  double bucket_mb = 25;
};

/// The launch variables of torchrun / launch.sh / srun (none: one process). A trainer built
/// without janus_dist reads only WORLD_SIZE and refuses any value but 1.
std::optional<janus::dist::LaunchEnv> launch_env() {
#ifdef JANUS_HAVE_DIST
  try {
    return janus::dist::LaunchEnv::from_environment();
  } catch (const std::invalid_argument& e) {
    throw janus::UsageError(e.what());
  }
#else
  const char* w = std::getenv("WORLD_SIZE");
  if (w != nullptr && std::string(w) != "1")
    throw std::runtime_error("WORLD_SIZE is " + std::string(w) +
                             " but this janus_trainer was built without data parallelism (janus_dist: c10d's Gloo "
                             "headers were not found at configure time; install libgloo-dev and reconfigure)");
  return std::nullopt;
#endif
}

/// The process group of a torchrun / launch.sh / srun launch (RANK, WORLD_SIZE, ... set), or none
/// (one process; WORLD_SIZE=1 is one process too).
janus::Parallel make_parallel(const DistFlags& f, const TrainConfig& c) {
  const std::optional<janus::dist::LaunchEnv> env = launch_env();
  if (!env || env->world_size == 1) return {};
#ifdef JANUS_HAVE_DIST
  janus::dist::Options o;
  o.backend = f.backend;
  o.device = c.device == "cuda" ? c10::Device(c10::kCUDA, static_cast<c10::DeviceIndex>(env->local_rank)) : c10::Device(c10::kCPU);
  o.timeout = std::chrono::milliseconds(static_cast<long long>(f.timeout_s * 1000.0));
  o.bucket_bytes = static_cast<std::size_t>(f.bucket_mb * 1024.0 * 1024.0);
  janus::Parallel p;
  try {
    p.comm = std::make_shared<janus::dist::ProcessGroup>(*env, o);
  } catch (const std::invalid_argument& e) {
    throw janus::UsageError(std::string("--dist-backend / --device: ") + e.what());
  }
  p.local_rank = env->local_rank;
  return p;
#else
  (void)f;
  (void)c;
  return {};  // not reached: launch_env() refused WORLD_SIZE > 1
#endif
}

void add_dist_options(CLI::App* app, DistFlags& d, TrainConfig& c) {
  app->add_flag("--shard-optimizer", c.shard_optimizer,
                "data parallel: shard the optimizer state, master weights and gradients across the ranks (ZeRO 1-2)");
  app->add_option("--dist-backend", d.backend, "data parallel: c10d backend (auto: nccl with --device cuda, else gloo)")
      ->check(CLI::IsMember({"auto", "gloo", "nccl"}))
      ->capture_default_str();
  app->add_option("--dist-timeout", d.timeout_s,
                  "data parallel: seconds a rendezvous or a collective may take before the run stops with an error")
      ->check(real_in(0.1, 86400))
      ->capture_default_str();
  app->add_option("--bucket-mb", d.bucket_mb, "data parallel: MiB of float32 gradients per all-reduce bucket")
      ->check(real_in(0.001, 4096))
      ->capture_default_str();
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"janus_trainer: GRPO / GCPO on a Janus-Pro-architecture model with the task \"shapes\"\n"
               "exit codes: 0 done; 1 error; 2 bad command line; 3 a non-finite training step;\n"
               "130 / 143 stopped by SIGINT / SIGTERM after checkpointing (the message says how to resume)"};
  app.require_subcommand(1);
  bool quiet = false;
  app.add_flag("-q,--quiet", quiet, "no progress bar");

  TrainConfig sft;
  sft.mode = "sft";
  sft.out = "runs/sft";
  sft.steps = 300;
  sft.lr = 2e-3;
  sft.schedule = "cosine";
  sft.warmup = 20;
  sft.min_lr_ratio = 0.05;
  int sft_threads = 0;
  std::int64_t sft_grid = sft.grid_height;
  CLI::App* c_sft = app.add_subcommand("sft", "supervised next-token warm-start on generated (prompt, grid) pairs");
  add_run_options(c_sft, sft, sft_threads);
  add_task_options(c_sft, sft, sft_grid);
  add_sampling_options(c_sft, sft);
  c_sft->add_option("--batch", sft.batch, "sequences per step")->check(integer_in(1, limits::max_batch))->capture_default_str();
  c_sft->add_option("--hidden", sft.hidden, "model width H")->check(integer_in(8, limits::max_hidden))->capture_default_str();
  c_sft->add_option("--layers", sft.layers, "decoder layers")->check(integer_in(1, limits::max_layers))->capture_default_str();
  c_sft->add_option("--heads", sft.heads, "attention heads")->check(integer_in(1, limits::max_hidden))->capture_default_str();
  c_sft->add_option("--intermediate", sft.intermediate, "SwiGLU width (0: 8/3 H)")
      ->check(integer_in(0, limits::max_intermediate))
      ->capture_default_str();
  c_sft->add_option("--uncond-prob", sft.uncond_prob, "prompt dropout for CFG")->check(real_in(0, 1))->capture_default_str();
  c_sft->add_flag("!--freeze-gen", sft.train_gen, "keep gen_embed / gen_aligner / gen_head frozen");

  TrainConfig rl;
  rl.mode = "rl";
  rl.out = "runs/rl";
  // The official run's schedule: Hugging Face Trainer's default, linear decay to 0 over the run's
  // steps, no warm-up (spec/janus-trainer.md 2.13). The weight clip's default, 0.5, is the official
  // code's (TR L794) and the paper's LlamaGen setting.
  rl.schedule = "linear";
  rl.steps = 100;
  rl.lr = 1e-4;
  rl.image_every = 10;
  int rl_threads = 0;
  std::int64_t rl_grid = rl.grid_height;
  CLI::App* c_rl = app.add_subcommand("rl", "GRPO or GCPO from a warm-start (P prompts x G samples with CFG)");
  add_run_options(c_rl, rl, rl_threads);
  add_task_options(c_rl, rl, rl_grid);
  add_sampling_options(c_rl, rl);
  c_rl->add_option("--model-dir", rl.model_dir,
                   "start from a published Janus-Pro directory (config.json + model.safetensors / pytorch_model.bin, "
                   "sharded or not); its VQ decoder draws the pictures (default grid 24: 384x384 pixels)");
  c_rl->add_option("--dtype", rl.dtype, "f32 or bf16 (bf16: float32 master weights in the optimizer)")
      ->check(CLI::IsMember({"f32", "bf16"}))
      ->capture_default_str();
  c_rl->add_flag("--grad-checkpoint", rl.grad_checkpoint,
                 "gradient checkpointing of the language model (less activation memory, one more forward)");
  DistFlags rl_dist;
  add_dist_options(c_rl, rl_dist, rl);
  c_rl->add_option("--algo", rl.algo, "gcpo or grpo")->check(CLI::IsMember({"gcpo", "grpo"}))->capture_default_str();
  // --prompts N (P prompts per step of the task) or --prompts FILE (a prompt file; P from
  // --prompts-per-step): a value of digits alone is a count (name a file "4" as ./4).
  std::string rl_prompts_arg;
  c_rl->add_option("--prompts", rl_prompts_arg,
                   "N: P prompts per step (default " + std::to_string(rl.prompts) + "); or FILE: a GenEval metadata "
                   "JSONL / prompt-only JSON(L) file to draw the prompts from (needs --model-dir and --reward-server)");
  c_rl->add_option("--prompts-per-step", rl.prompts, "P prompts per step (with --prompts FILE)")
      ->check(integer_in(1, limits::max_batch));
  c_rl->add_option("--tokenizer", rl.tokenizer, "tokenizer.json for --prompts FILE (default: <model-dir>/tokenizer.json)");
  c_rl->add_option("--reward-server", rl.reward_server,
                   "URL of a GenEval reward server (the authors' protocol) that scores every step's pictures "
                   "(needs --model-dir)");
  c_rl->add_option("--reward-timeout", rl.reward_timeout, "seconds per reward request")
      ->check(real_in(1e-3, 86400))->capture_default_str();
  c_rl->add_option("--reward-retries", rl.reward_retries, "retries of a failed reward request (backoff 1 s, doubling)")
      ->check(integer_in(0, 100))->capture_default_str();
  c_rl->add_option("--reward-batch", rl.reward_batch, "images per reward request (official: 2)")
      ->check(integer_in(1, limits::max_batch))->capture_default_str();
  c_rl->add_option("--reward-failures", rl.reward_failures,
                   "steps in a row skipped for want of rewards before the run stops (0: stop at the first)")
      ->check(integer_in(0, limits::max_steps))->capture_default_str();
  c_rl->add_option("--group", rl.group, "G samples per prompt")->check(integer_in(2, limits::max_batch))->capture_default_str();
  c_rl->add_option("--beta", rl.beta, "KL coefficient")->check(real_in(0, limits::max_real))->capture_default_str();
  c_rl->add_option("--weight-clip", rl.weight_clip, "clip of the dynamic weight's log-ratio")
      ->check(real_in(0, limits::max_real))
      ->capture_default_str();
  c_rl->add_flag("--detach-weight", rl.detach_weight, "no gradient through the dynamic weight (= --weight detached)");
  c_rl->add_option("--mask-mode", rl.mask_mode,
                   "ablation: the tokens GCPO trains on: critical (official), random (as many, uniformly), "
                   "complement (the others) or all")
      ->check(CLI::IsMember({"critical", "random", "complement", "all"}))
      ->capture_default_str();
  c_rl->add_option("--weight", rl.weight_mode,
                   "ablation: the dynamic weight: official (with its gradient), detached or one (no weight)")
      ->check(CLI::IsMember({"official", "detached", "one"}))
      ->capture_default_str();
  c_rl->add_option("--initial-frac", rl.initial_frac, "initial tokens")->check(real_in(0, 1))->capture_default_str();
  c_rl->add_option("--gradient-frac", rl.gradient_frac, "entropy-gradient tokens")->check(real_in(0, 1))->capture_default_str();
  c_rl->add_option("--similarity-frac", rl.similarity_frac, "low-similarity tokens")->check(real_in(0, 1))->capture_default_str();
  c_rl->add_option("--adv-std", rl.adv_std, "unbiased, biased or none")
      ->check(CLI::IsMember({"unbiased", "biased", "none"}))
      ->capture_default_str();
  c_rl->add_option("--ref-embeds", rl.ref_embeds, "policy (official) or ref: text embeddings the reference sees")
      ->check(CLI::IsMember({"policy", "ref"}))
      ->capture_default_str();

  TrainConfig ev;
  ev.mode = "rl";
  ev.eval_samples = 4;
  int ev_threads = 0;
  std::string ev_model, ev_json, ev_png, ev_metadata;
  CLI::App* c_eval = app.add_subcommand("eval", "per-tag accuracy on the held-out prompts, sample sheet PNG");
  std::int64_t ev_grid = 24;
  c_eval->add_option("--model", ev_model, "model.safetensors or run/checkpoint directory");
  c_eval->add_option("--model-dir", ev.model_dir,
                     "a published Janus-Pro directory: its model (without --model) and its VQ decoder draw the pictures");
  c_eval->add_option("--dtype", ev.dtype, "f32 or bf16")->check(CLI::IsMember({"f32", "bf16"}))->capture_default_str();
  c_eval->add_option("--grid", ev_grid, "image grid side of a --model-dir model (without --model)")
      ->check(integer_in(limits::min_grid, limits::max_grid))
      ->capture_default_str();
  c_eval->add_option("--json", ev_json, "write the report here too");
  c_eval->add_option("--png", ev_png, "sample sheet");
  c_eval->add_option("--metadata", ev_metadata, "evaluate on the records of this GenEval JSONL file instead of the held-out prompts");
  c_eval->add_option("--seed", ev.seed, "sampling seed")->check(seed_value())->capture_default_str();
  c_eval->add_option("--samples", ev.eval_samples, "images per held-out prompt")
      ->check(integer_in(1, limits::max_samples))
      ->capture_default_str();
  c_eval->add_option("--batch", ev.eval_batch, "images per decode")->check(integer_in(1, limits::max_batch))->capture_default_str();
  c_eval->add_option("--device", ev.device, "cpu or cuda")->check(CLI::IsMember({"cpu", "cuda"}))->capture_default_str();
  c_eval->add_option("--threads", ev_threads, "torch intra-op threads")->check(integer_in(0, limits::max_threads))->capture_default_str();
  c_eval->add_option("--heldout-fraction", ev.heldout_fraction, "as in training")->check(real_in(0, 0.95))->capture_default_str();
  c_eval->add_option("--split-seed", ev.split_seed, "as in training")->check(seed_value())->capture_default_str();
  add_sampling_options(c_eval, ev);

  TrainConfig sa;
  int sa_threads = 0;
  std::string sa_model, sa_prompt, sa_png = "sample.png";
  std::int64_t sa_n = 8;
  CLI::App* c_sample = app.add_subcommand("sample", "draw images for one prompt into a PNG sheet");
  std::int64_t sa_grid = 24;
  c_sample->add_option("--model", sa_model, "model.safetensors or run/checkpoint directory");
  c_sample->add_option("--model-dir", sa.model_dir,
                       "a published Janus-Pro directory: its model (without --model) and its VQ decoder draw the pictures");
  c_sample->add_option("--dtype", sa.dtype, "f32 or bf16")->check(CLI::IsMember({"f32", "bf16"}))->capture_default_str();
  c_sample->add_option("--grid", sa_grid, "image grid side of a --model-dir model (without --model)")
      ->check(integer_in(limits::min_grid, limits::max_grid))
      ->capture_default_str();
  c_sample->add_option("--prompt", sa_prompt, "e.g. \"a photo of a red circle\"")->required();
  c_sample->add_option("-n", sa_n, "images")->check(integer_in(1, limits::max_batch))->capture_default_str();
  c_sample->add_option("--png", sa_png, "output PNG")->capture_default_str();
  c_sample->add_option("--seed", sa.seed, "sampling seed")->check(seed_value())->capture_default_str();
  c_sample->add_option("--device", sa.device, "cpu or cuda")->check(CLI::IsMember({"cpu", "cuda"}))->capture_default_str();
  c_sample->add_option("--threads", sa_threads, "torch intra-op threads")->check(integer_in(0, limits::max_threads))->capture_default_str();
  add_sampling_options(c_sample, sa);

  std::string fw_dir, fw_in, fw_out, fw_grid, fw_device = "cpu";
  int fw_threads = 0;
  CLI::App* c_forward = app.add_subcommand(
      "forward", "a published Janus-Pro directory's teacher-forced image logits and VQ decodes, in float32, for "
                 "checking against other implementations");
  c_forward->add_option("--model-dir", fw_dir, "config.json + model.safetensors / pytorch_model.bin (sharded or not)")
      ->required();
  c_forward->add_option("--input", fw_in, "safetensors: prompt_ids [B, L], attention_mask [B, L], image_tokens [B, N] (int64)")
      ->required();
  c_forward->add_option("--output", fw_out, "safetensors written: logits [B, N, V] float32, images [B, H, W, 3] uint8")
      ->required();
  c_forward->add_option("--grid", fw_grid, "image tokens HxW (default: the square root of N)");
  c_forward->add_option("--device", fw_device, "cpu or cuda")->check(CLI::IsMember({"cpu", "cuda"}))->capture_default_str();
  c_forward->add_option("--threads", fw_threads, "torch intra-op threads")->check(integer_in(0, limits::max_threads))->capture_default_str();

  std::string tk_tokenizer, tk_input, tk_output;
  bool tk_overwrite = false;
  CLI::App* c_tokenize = app.add_subcommand(
      "tokenize", "token ids of texts by a tokenizer.json (one text per line; \\n, \\t, \\\\ decoded), as JSON lines");
  c_tokenize->add_option("--tokenizer", tk_tokenizer, "tokenizer.json (Hugging Face format)")->required();
  c_tokenize->add_option("--input", tk_input, "texts, one per line")->required();
  c_tokenize->add_option("--output", tk_output, "JSON lines {\"ids\": [...]} written (refused if it exists)")->required();
  c_tokenize->add_flag("--overwrite", tk_overwrite, "replace an existing --output");

  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    const int rc = app.exit(e);  // prints the help, or the error naming the option
    return rc == 0 ? 0 : 2;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "janus_trainer: error: %s\n", e.what());
    return 2;
  }
  const std::string program = argc > 0 ? argv[0] : "janus_trainer";
  try {
    if (*c_sft) {
      sft.grid_height = sft.grid_width = static_cast<int>(sft_grid);
      const janus::RunOptions o = run_options(c_sft, sft, quiet, program);
      // sft is one process: a launch of several would run it several times into one directory
      if (const auto env = launch_env(); env && env->world_size > 1)
        throw janus::UsageError("sft runs in one process, but WORLD_SIZE is " + std::to_string(env->world_size) +
                                ": start sft without torchrun / launch.sh / srun (data parallelism is for rl)");
      set_threads(sft_threads);
      return janus::run_training(sft, o);
    }
    if (*c_rl) {
      // A published model draws 384x384 pictures (24 x 24 tokens of 16 pixels) unless --grid says otherwise.
      if (!rl.model_dir.empty() && c_rl->count("--grid") == 0) rl_grid = 24;
      if (!rl_prompts_arg.empty()) {
        if (rl_prompts_arg.find_first_not_of("0123456789") == std::string::npos) {
          if (c_rl->count("--prompts-per-step") > 0)
            throw janus::UsageError("--prompts " + rl_prompts_arg + " and --prompts-per-step both give P: give one");
          if (rl_prompts_arg.size() > 5 || std::stoll(rl_prompts_arg) < 1 || std::stoll(rl_prompts_arg) > limits::max_batch)
            throw janus::UsageError("--prompts (" + rl_prompts_arg + ") must be an integer in [1, " +
                                    std::to_string(limits::max_batch) + "] or a prompt file");
          rl.prompts = std::stoll(rl_prompts_arg);
        } else {
          rl.prompt_file = rl_prompts_arg;
        }
      }
      rl.grid_height = rl.grid_width = static_cast<int>(rl_grid);
      janus::RunOptions o = run_options(c_rl, rl, quiet, program);
      set_threads(rl_threads);
      const janus::Parallel par = make_parallel(rl_dist, rl);
      if (par.world() > 1)
        o.program = "torchrun --nproc-per-node " + std::to_string(par.world()) + " --no-python " + program;
      return janus::run_training(rl, o, par);
    }
    if (*c_eval) {
      ev.grid_height = ev.grid_width = static_cast<int>(ev_grid);
      set_threads(ev_threads);
      return janus::run_eval(ev_model, ev, ev_json, ev_png, ev_metadata);
    }
    if (*c_sample) {
      sa.grid_height = sa.grid_width = static_cast<int>(sa_grid);
      set_threads(sa_threads);
      return janus::run_sample(sa_model, sa, sa_prompt, sa_n, sa_png);
    }
    if (*c_tokenize) {
#if defined(JANUS_HAVE_REAL_IO)
      return janus::tokenize_file(tk_tokenizer, tk_input, tk_output, std::cerr, tk_overwrite);
#else
      throw janus::UsageError("tokenize: this janus_trainer was built without the tokenizer (PCRE2 was not found at "
                              "configuration: scripts/install-deps.sh --trainer)");
#endif
    }
    if (*c_forward) {
      std::int64_t gh = 0, gw = 0;
      if (!fw_grid.empty()) {  // "H" or "HxW", each 1..4096
        const std::size_t x = fw_grid.find('x');
        auto side = [&](const std::string& t) -> std::int64_t {
          if (t.empty() || t.size() > 4 || t.find_first_not_of("0123456789") != std::string::npos || std::stoll(t) < 1 ||
              std::stoll(t) > 4096)
            throw janus::UsageError("--grid: \"" + fw_grid + "\" is not H or HxW with sides in 1..4096");
          return std::stoll(t);
        };
        gh = side(fw_grid.substr(0, x));
        gw = x == std::string::npos ? gh : side(fw_grid.substr(x + 1));
      }
      if (fw_device == "cuda" && !torch::cuda::is_available())
        throw janus::UsageError("--device cuda: no CUDA device is available");
      set_threads(fw_threads);
      janus::run_forward(fw_dir, fw_in, fw_out, gh, gw, fw_device == "cuda" ? torch::Device(torch::kCUDA) : torch::Device(torch::kCPU));
      if (!quiet) std::printf("forward: wrote %s\n", fw_out.c_str());
      return 0;
    }
  } catch (const janus::UsageError& e) {
    std::fprintf(stderr, "janus_trainer: error: %s\n", e.what());
    return 2;
  } catch (const janus::NonFiniteStep& e) {
    std::fprintf(stderr, "janus_trainer: error: %s\n", e.what());
    return 3;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "janus_trainer: error: %s\n", e.what());
    return 1;
  } catch (...) {
    std::fprintf(stderr, "janus_trainer: error: an unknown exception\n");
    return 1;
  }
  return 0;
}
