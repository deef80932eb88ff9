// examples/janus/bench_pretrained.cpp - Janus-Pro at its real size without its weights (issue 10):
// a random-weight model directory in the published layout, then what loading and generating
// with it costs.
//
//   janus_bench_pretrained write DIR [--size 1b|7b|tiny]
//       config.json + model.safetensors (bf16; linear weights N(0, 0.02), norms 1, gen_embed and the
//       codebook N(0, 1)) with every text-to-image tensor of Janus-Pro-1B (or 7B) and the VQ-16 decoder
//   janus_bench_pretrained run DIR [--dtype f32|bf16] [--device cpu|cuda] [--tokens K] [--threads T]
//       loads DIR with load_pretrained (time; peak resident memory over the tensors kept), then
//       K image tokens of one image with CFG and the KV cache (time per token; 576 tokens make an
//       image), one teacher-forced pass over a prompt of 16 and N = 576 image tokens (time),
//       one VQ decode of 24 x 24 tokens (time); prints one JSON object
//
// A benchmark, never a test: it asserts nothing about time. Its figures go into docs/performance.md.
#include <sys/resource.h>

#include <chrono>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <string>

#include <nlohmann/json.hpp>
#include <torch/torch.h>

#include "pretrained.hpp"
#include "safetensors.hpp"

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

nlohmann::json config_json(const std::string& size) {
  std::int64_t H = 2048, layers = 24, heads = 16, inter = 5632, vocab = 102400, K = 16384;
  if (size == "7b") H = 4096, layers = 30, heads = 32, inter = 11008;
  if (size == "tiny") H = 256, layers = 2, heads = 4, inter = 688, vocab = 1000;
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

int write(const std::string& dir, const std::string& size) {
  namespace fs = std::filesystem;
  if (fs::exists(dir) && !fs::is_empty(dir)) {
    std::fprintf(stderr, "janus_bench_pretrained: %s exists and is not empty; give a new directory\n", dir.c_str());
    return 2;
  }
  fs::create_directories(dir);
  const nlohmann::json cfg = config_json(size);
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
  opt.grid_w = tokens;  // token hardly depends on its position: the weights dominate)
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
  out["vq_decode_seconds"] = seconds_since(t0);
  out["peak_rss_end"] = peak_rss();
  std::printf("%s\n", out.dump(2).c_str());
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  auto usage = [] {
    std::fprintf(stderr,
                 "usage: janus_bench_pretrained write DIR [--size 1b|7b|tiny]\n"
                 "       janus_bench_pretrained run DIR [--dtype f32|bf16] [--device cpu|cuda] [--tokens K] [--threads T]\n");
    return 2;
  };
  if (argc < 3) return usage();
  const std::string mode = argv[1], dir = argv[2];
  std::string size = "1b", dtype = "f32", device = "cpu";
  std::int64_t tokens = 16;
  for (int i = 3; i + 1 < argc; i += 2) {
    const std::string k = argv[i], v = argv[i + 1];
    if (k == "--size" && (v == "1b" || v == "7b" || v == "tiny")) size = v;
    else if (k == "--dtype" && (v == "f32" || v == "bf16")) dtype = v;
    else if (k == "--device" && (v == "cpu" || v == "cuda")) device = v;
    else if (k == "--tokens" && v.find_first_not_of("0123456789") == std::string::npos && v.size() < 5 && std::stoll(v) > 0)
      tokens = std::stoll(v);
    else if (k == "--threads" && v.find_first_not_of("0123456789") == std::string::npos && v.size() < 4 && std::stoi(v) > 0)
      at::set_num_threads(std::stoi(v));
    else return usage();
  }
  if ((argc - 3) % 2) return usage();
  try {
    if (mode == "write") return write(dir, size);
    if (mode == "run") return run(dir, dtype, device, tokens);
  } catch (const std::exception& e) {
    std::fprintf(stderr, "janus_bench_pretrained: error: %s\n", e.what());
    return 1;
  }
  return usage();
}
