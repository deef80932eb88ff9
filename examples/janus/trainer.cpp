// examples/janus/trainer.cpp - janus_trainer: a Janus-Pro-architecture model learns the task
// "shapes" with a supervised warm-start and then GRPO or GCPO through gcpo's operators.
//
//   janus_trainer sft --out runs/sft --steps 300                       # warm-start from scratch
//   janus_trainer rl --algo gcpo --init runs/sft --out runs/gcpo       # RL from the warm-start
//   janus_trainer rl --resume runs/gcpo --steps 200                    # continue exactly
//   janus_trainer eval --model runs/gcpo --json acc.json --png sheet.png
//   janus_trainer sample --model runs/gcpo --prompt "a photo of a red circle" -n 8 --png s.png
#include <dlfcn.h>

#include <cstdio>
#include <exception>
#include <string>

#include <CLI/CLI.hpp>
#include <torch/torch.h>

#include "train.hpp"

namespace {

using janus::TrainConfig;

void add_run_options(CLI::App* app, TrainConfig& c, int& threads) {
  app->add_option("--out", c.out, "run directory (metrics, checkpoints, images)")->capture_default_str();
  app->add_option("--seed", c.seed, "seed of every random choice of the run")->capture_default_str();
  app->add_option("--steps", c.steps, "total optimizer steps")->capture_default_str();
  app->add_option("--device", c.device, "cpu or cuda")->capture_default_str();
  app->add_option("--threads", threads, "torch and OpenBLAS threads (0: their defaults)")->capture_default_str();
  app->add_option("--init", c.init, "model.safetensors or run/checkpoint directory to start from");
  app->add_option("--save-every", c.save_every, "checkpoint every K steps (0: at the end only)")->capture_default_str();
  app->add_option("--image-every", c.image_every, "sample sheet PNG every K steps (0: never)")->capture_default_str();
  app->add_option("--eval-every", c.eval_every, "held-out evaluation every K steps (0: start/end)")->capture_default_str();
  app->add_option("--eval-samples", c.eval_samples, "images per held-out prompt")->capture_default_str();
  app->add_option("--eval-batch", c.eval_batch, "images per decode in evaluation")->capture_default_str();
  app->add_option("--lr", c.lr, "peak learning rate (AdamW)")->capture_default_str();
  app->add_option("--lr-schedule", c.schedule, "constant, linear or cosine")->capture_default_str();
  app->add_option("--warmup", c.warmup, "linear warm-up steps")->capture_default_str();
  app->add_option("--min-lr-ratio", c.min_lr_ratio, "floor of the decay, fraction of --lr")->capture_default_str();
  app->add_option("--weight-decay", c.weight_decay, "AdamW decoupled weight decay")->capture_default_str();
  app->add_option("--max-grad-norm", c.max_grad_norm, "gradient-norm clip (0: off)")->capture_default_str();
}

void add_task_options(CLI::App* app, TrainConfig& c) {
  app->add_option("--grid", c.grid_height, "image grid side (H = W) of a fresh model")->capture_default_str()->each(
      [&c](const std::string& v) { c.grid_width = std::stoi(v); });
  app->add_option("--heldout-fraction", c.heldout_fraction, "held-out prompts per tag")->capture_default_str();
  app->add_option("--split-seed", c.split_seed, "which prompts are held out")->capture_default_str();
  app->add_option("--tags", c.tags, "comma-separated tags to train/evaluate on (default: all)");
  app->add_option("--reward", c.reward, "binary, strict or partial (GenEval rules), or clean (binary and nothing unasked drawn)")->capture_default_str();
}

void add_sampling_options(CLI::App* app, TrainConfig& c) {
  app->add_option("--cfg", c.cfg_scale, "classifier-free guidance weight")->capture_default_str();
  app->add_option("--temperature", c.temperature, "sampling temperature")->capture_default_str();
  app->add_option("--top-k", c.top_k, "top-k (0: off)")->capture_default_str();
  app->add_option("--top-p", c.top_p, "nucleus mass (1: off)")->capture_default_str();
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

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"janus_trainer: GRPO / GCPO on a Janus-Pro-architecture model with the task \"shapes\""};
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
  std::string sft_resume;
  CLI::App* c_sft = app.add_subcommand("sft", "supervised next-token warm-start on generated (prompt, grid) pairs");
  add_run_options(c_sft, sft, sft_threads);
  add_task_options(c_sft, sft);
  add_sampling_options(c_sft, sft);
  c_sft->add_option("--resume", sft_resume, "continue a run (run or checkpoint directory)");
  c_sft->add_option("--batch", sft.batch, "sequences per step")->capture_default_str();
  c_sft->add_option("--hidden", sft.hidden, "model width H")->capture_default_str();
  c_sft->add_option("--layers", sft.layers, "decoder layers")->capture_default_str();
  c_sft->add_option("--heads", sft.heads, "attention heads")->capture_default_str();
  c_sft->add_option("--intermediate", sft.intermediate, "SwiGLU width (0: 8/3 H)")->capture_default_str();
  c_sft->add_option("--uncond-prob", sft.uncond_prob, "prompt dropout for CFG")->capture_default_str();
  c_sft->add_flag("!--freeze-gen", sft.train_gen, "keep gen_embed / gen_aligner / gen_head frozen");

  TrainConfig rl;
  rl.mode = "rl";
  rl.out = "runs/rl";
  rl.steps = 100;
  rl.lr = 1e-4;
  rl.image_every = 10;
  int rl_threads = 0;
  std::string rl_resume;
  CLI::App* c_rl = app.add_subcommand("rl", "GRPO or GCPO from a warm-start (P prompts x G samples with CFG)");
  add_run_options(c_rl, rl, rl_threads);
  add_task_options(c_rl, rl);
  add_sampling_options(c_rl, rl);
  c_rl->add_option("--resume", rl_resume, "continue a run (run or checkpoint directory)");
  c_rl->add_option("--algo", rl.algo, "gcpo or grpo")->capture_default_str();
  c_rl->add_option("--prompts", rl.prompts, "P prompts per step")->capture_default_str();
  c_rl->add_option("--group", rl.group, "G samples per prompt")->capture_default_str();
  c_rl->add_option("--beta", rl.beta, "KL coefficient")->capture_default_str();
  c_rl->add_option("--weight-clip", rl.weight_clip, "clip of the dynamic weight's log-ratio")->capture_default_str();
  c_rl->add_flag("--detach-weight", rl.detach_weight, "no gradient through the dynamic weight");
  c_rl->add_option("--initial-frac", rl.initial_frac, "initial tokens")->capture_default_str();
  c_rl->add_option("--gradient-frac", rl.gradient_frac, "entropy-gradient tokens")->capture_default_str();
  c_rl->add_option("--similarity-frac", rl.similarity_frac, "low-similarity tokens")->capture_default_str();
  c_rl->add_option("--adv-std", rl.adv_std, "unbiased, biased or none")->capture_default_str();
  c_rl->add_option("--ref-embeds", rl.ref_embeds, "policy (official) or ref: text embeddings the reference sees")
      ->capture_default_str();

  TrainConfig ev;
  ev.mode = "rl";
  ev.eval_samples = 4;
  int ev_threads = 0;
  std::string ev_model, ev_json, ev_png;
  CLI::App* c_eval = app.add_subcommand("eval", "per-tag accuracy on the held-out prompts, sample sheet PNG");
  c_eval->add_option("--model", ev_model, "model.safetensors or run/checkpoint directory")->required();
  c_eval->add_option("--json", ev_json, "write the report here too");
  c_eval->add_option("--png", ev_png, "sample sheet");
  c_eval->add_option("--seed", ev.seed, "sampling seed")->capture_default_str();
  c_eval->add_option("--samples", ev.eval_samples, "images per held-out prompt")->capture_default_str();
  c_eval->add_option("--batch", ev.eval_batch, "images per decode")->capture_default_str();
  c_eval->add_option("--device", ev.device, "cpu or cuda")->capture_default_str();
  c_eval->add_option("--threads", ev_threads, "torch intra-op threads")->capture_default_str();
  c_eval->add_option("--heldout-fraction", ev.heldout_fraction, "as in training")->capture_default_str();
  c_eval->add_option("--split-seed", ev.split_seed, "as in training")->capture_default_str();
  add_sampling_options(c_eval, ev);

  TrainConfig sa;
  int sa_threads = 0;
  std::string sa_model, sa_prompt, sa_png = "sample.png";
  std::int64_t sa_n = 8;
  CLI::App* c_sample = app.add_subcommand("sample", "draw images for one prompt into a PNG sheet");
  c_sample->add_option("--model", sa_model, "model.safetensors or run/checkpoint directory")->required();
  c_sample->add_option("--prompt", sa_prompt, "e.g. \"a photo of a red circle\"")->required();
  c_sample->add_option("-n", sa_n, "images")->capture_default_str();
  c_sample->add_option("--png", sa_png, "output PNG")->capture_default_str();
  c_sample->add_option("--seed", sa.seed, "sampling seed")->capture_default_str();
  c_sample->add_option("--device", sa.device, "cpu or cuda")->capture_default_str();
  c_sample->add_option("--threads", sa_threads, "torch intra-op threads")->capture_default_str();
  add_sampling_options(c_sample, sa);

  CLI11_PARSE(app, argc, argv);
  try {
    auto threads = [](int n) { set_threads(n); };
    if (*c_sft) {
      threads(sft_threads);
      const std::int64_t override_steps = c_sft->count("--steps") ? sft.steps : 0;
      return janus::run_training(sft, sft_resume, override_steps, !quiet);
    }
    if (*c_rl) {
      threads(rl_threads);
      if (rl_resume.empty() && rl.init.empty()) throw std::invalid_argument("rl needs --init (a warm-start) or --resume");
      const std::int64_t override_steps = c_rl->count("--steps") ? rl.steps : 0;
      return janus::run_training(rl, rl_resume, override_steps, !quiet);
    }
    if (*c_eval) {
      threads(ev_threads);
      return janus::run_eval(ev_model, ev, ev_json, ev_png);
    }
    if (*c_sample) {
      threads(sa_threads);
      return janus::run_sample(sa_model, sa, sa_prompt, sa_n, sa_png);
    }
  } catch (const std::exception& e) {
    std::fprintf(stderr, "janus_trainer: error: %s\n", e.what());
    return 1;
  }
  return 0;
}
