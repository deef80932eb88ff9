// examples/janus/pretrained.cpp - published Janus-Pro directories (see pretrained.hpp).
#include "pretrained.hpp"

#include <chrono>
#include <cmath>
#include <map>
#include <stdexcept>

#include "safetensors.hpp"

#if defined(__GLIBC__)
#include <malloc.h>
#endif

namespace janus {

namespace {

/// Gives the pages of freed heap memory back to the system. Without it glibc keeps them resident
/// (its mmap threshold rises with the sizes freed, so the streamed tensors land on the heap):
/// loading a random-weight Janus-Pro-1B peaked at 1.55x the bytes kept, growing by every tensor
/// read; with it the resident set stays flat while the tensors stream in.
void release_freed_memory() {
#if defined(__GLIBC__)
  malloc_trim(0);
#endif
}

/// `d`, once its codebook is the size config.json gives the image tokens.
VqDecoder checked_codebook(VqDecoder d, const JanusConfig& config, const std::string& dir) {
  if (d.shape().codebook_size != config.image_token_size)
    throw std::runtime_error(dir + ": the VQ codebook has " + std::to_string(d.shape().codebook_size) +
                             " entries, `gen_vision_config.params.image_token_size` says " +
                             std::to_string(config.image_token_size));
  return d;
}

}  // namespace

ModelConfig model_config_of(const JanusConfig& c, std::int64_t grid_h, std::int64_t grid_w) {
  const LlamaConfig& l = c.language;
  auto unsupported = [](const std::string& key, const std::string& what) {
    throw std::invalid_argument("config.json: `" + key + "` " + what);
  };
  if (l.num_key_value_heads != l.num_attention_heads)
    unsupported("language_config.num_key_value_heads",
                "differs from num_attention_heads: grouped-query attention is not supported (Janus-Pro is MHA)");
  if (l.head_dim * l.num_attention_heads != l.hidden_size)
    unsupported("language_config.head_dim", "must be hidden_size / num_attention_heads");
  if (c.aligner_depth != 2) unsupported("gen_aligner_config.params.depth", "must be 2 (Janus-Pro's gen_aligner)");
  ModelConfig m;
  m.vocab_size = l.vocab_size;
  m.hidden_size = l.hidden_size;
  m.num_hidden_layers = l.num_hidden_layers;
  m.num_attention_heads = l.num_attention_heads;
  m.intermediate_size = l.intermediate_size;
  m.rope_theta = l.rope_theta;
  m.rms_norm_eps = l.rms_norm_eps;
  m.image_token_size = c.image_token_size;
  m.gen_embed_dim = c.gen_embed_dim;
  m.image_token_embed = c.head_image_token_embed;
  m.image_height = grid_h;
  m.image_width = grid_w;
  m.text_head = false;
  m.validate();
  return m;
}

Pretrained load_pretrained(const std::string& dir, const PretrainedOptions& opt) {
  if (opt.dtype != at::kFloat && opt.dtype != at::kBFloat16)
    throw std::invalid_argument(std::string("load_pretrained: dtype ") + c10::toString(opt.dtype) +
                                " is not supported (float32 or bfloat16)");
  const auto t0 = std::chrono::steady_clock::now();
  Pretrained p;
  p.config = read_janus_config(dir);
  p.files = find_weights(dir);
  p.model = make_model(model_config_of(p.config, opt.grid_h, opt.grid_w), opt.dtype);
  p.model->to(opt.device);
  // The model's own parameters are its list of what to load; their names are the checkpoint's.
  auto params = p.model->named_parameters();
  JanusWeightCheck check(p.config, dir);
  std::map<std::string, at::Tensor> vq;
  torch::NoGradGuard no_grad;
  for_each_weight(p.files, janus_t2i_wants, [&](const std::string& name, at::Tensor t, const std::string& file) {
    ++p.tensors_read;
    p.bytes_read += static_cast<std::int64_t>(t.numel() * t.element_size());
    if (VqDecoder::wants(name)) {  // kept as the decoder will hold it (load() then converts nothing)
      vq[name] = at::isFloatingType(t.scalar_type()) ? t.to(opt.device, opt.dtype).contiguous() : std::move(t);
      return;
    }
    if (!check.check(name, t, file)) return;  // a derived rotary buffer
    at::Tensor* dst = params.find(name);
    if (!dst) throw std::runtime_error(file + ": `" + name + "` has no place in the model");  // check() knows them all
    dst->copy_(t);
    t.reset();
    release_freed_memory();
  });
  check.finish();
  p.vq = checked_codebook(VqDecoder::load(vq, dir, opt.dtype, opt.device), p.config, dir);
  p.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  return p;
}

VqDecoder load_vq_decoder(const std::string& dir, at::ScalarType dtype, torch::Device device) {
  if (dtype != at::kFloat && dtype != at::kBFloat16)
    throw std::invalid_argument(std::string("load_vq_decoder: dtype ") + c10::toString(dtype) +
                                " is not supported (float32 or bfloat16)");
  const JanusConfig config = read_janus_config(dir);
  std::map<std::string, at::Tensor> vq;
  for_each_weight(find_weights(dir), [](const std::string& name) { return VqDecoder::wants(name); },
                  [&](const std::string& name, at::Tensor t, const std::string&) {
                    vq[name] = at::isFloatingType(t.scalar_type()) ? t.to(device, dtype).contiguous() : std::move(t);
                  });
  return checked_codebook(VqDecoder::load(vq, dir, dtype, device), config, dir);
}

namespace {

/// The input tensor `name`: int64, of rank 2, with `rows` rows when rows >= 0.
const at::Tensor& input_tensor(const SafeTensors& in, const std::string& file, const std::string& name,
                               std::int64_t rows) {
  if (!in.contains(name)) throw std::runtime_error(file + ": `" + name + "` is missing");
  const at::Tensor& t = in.at(name);
  if (t.scalar_type() != at::kLong)
    throw std::runtime_error(file + ": `" + name + "` has dtype " + c10::toString(t.scalar_type()) + "; int64 is required");
  if (t.dim() != 2 || (rows >= 0 && t.size(0) != rows))
    throw std::runtime_error(file + ": `" + name + "` has shape " + c10::str(t.sizes()) + "; [" +
                             (rows >= 0 ? std::to_string(rows) : std::string("B")) + ", n] is required");
  return t;
}

}  // namespace

void run_forward(const std::string& model_dir, const std::string& input, const std::string& output,
                 std::int64_t grid_h, std::int64_t grid_w, torch::Device device) {
  const SafeTensors in = load_safetensors(input);
  const at::Tensor& ids = input_tensor(in, input, "prompt_ids", -1);
  const std::int64_t B = ids.size(0), L = ids.size(1);
  const at::Tensor& mask = input_tensor(in, input, "attention_mask", B);
  const at::Tensor& tokens = input_tensor(in, input, "image_tokens", B);
  const std::int64_t N = tokens.size(1);
  if (mask.size(1) != L)
    throw std::runtime_error(input + ": `attention_mask` has shape " + c10::str(mask.sizes()) + ", `prompt_ids` " +
                             c10::str(ids.sizes()));
  if (L < 1 || N < 1) throw std::runtime_error(input + ": `prompt_ids` and `image_tokens` must not be empty");
  if (!((mask == 0) | (mask == 1)).all().item<bool>())
    throw std::runtime_error(input + ": `attention_mask` must hold only 0 and 1");
  if (grid_h <= 0 || grid_w <= 0) {
    const auto side = static_cast<std::int64_t>(std::llround(std::sqrt(static_cast<double>(N))));
    if (side * side != N)
      throw std::runtime_error(input + ": `image_tokens` has " + std::to_string(N) +
                               " tokens per image, not a square grid: give the grid (--grid HxW)");
    grid_h = grid_w = side;
  }
  if (grid_h * grid_w != N)
    throw std::runtime_error(input + ": `image_tokens` has " + std::to_string(N) + " tokens per image, the grid " +
                             std::to_string(grid_h) + "x" + std::to_string(grid_w) + " needs " +
                             std::to_string(grid_h * grid_w));

  PretrainedOptions opt;
  opt.grid_h = grid_h;
  opt.grid_w = grid_w;
  opt.device = device;
  Pretrained p = load_pretrained(model_dir, opt);
  const ModelConfig& cfg = p.model->cfg;
  auto check_ids = [&](const at::Tensor& t, const std::string& name, std::int64_t limit) {
    const at::Tensor bad = ((t < 0) | (t >= limit)).nonzero();
    if (bad.size(0))
      throw std::runtime_error(input + ": `" + name + "[" + std::to_string(bad[0][0].item<std::int64_t>()) + ", " +
                               std::to_string(bad[0][1].item<std::int64_t>()) + "]` is outside [0, " +
                               std::to_string(limit) + ")");
  };
  check_ids(ids, "prompt_ids", cfg.vocab_size);
  check_ids(tokens, "image_tokens", cfg.image_token_size);

  torch::NoGradGuard no_grad;
  PromptBatch batch{ids.to(device), mask.to(device)};
  const at::Tensor logits = p.model->image_logits(batch, tokens.to(device)).to(at::kCPU, at::kFloat).contiguous();
  const at::Tensor images = VqDecoder::to_uint8_images(p.vq.decode(tokens, grid_h, grid_w));
  save_safetensors(output, {{"logits", logits}, {"images", images}},
                   {{"model_dir", model_dir}, {"input", input}, {"weights", to_string(p.files.layout)}});
}

}  // namespace janus
