// examples/janus/model.cpp - see model.hpp.
#include "model.hpp"

#include <cmath>
#include <limits>
#include <stdexcept>
#include <algorithm>
#include <vector>

#include "ops.hpp"

namespace janus {

// ------------------------------------------------------------------------------------------
// ModelConfig

void ModelConfig::validate() const {
  auto need = [](bool ok, const char* what) {
    if (!ok) throw std::invalid_argument(std::string("model config: ") + what);
  };
  need(vocab_size > 0, "vocab_size must be > 0");
  need(hidden_size > 0, "hidden_size must be > 0");
  need(num_hidden_layers > 0, "num_hidden_layers must be > 0");
  need(num_attention_heads > 0 && hidden_size % num_attention_heads == 0,
       "num_attention_heads must divide hidden_size");
  need(head_dim() % 2 == 0, "head_dim (hidden_size / num_attention_heads) must be even for RoPE");
  need(intermediate_size > 0, "intermediate_size must be > 0");
  need(rope_theta > 0 && rms_norm_eps > 0, "rope_theta and rms_norm_eps must be > 0");
  need(image_token_size > 0, "image_token_size must be > 0");
  need(gen_embed_dim > 0, "gen_embed_dim must be > 0");
  need(image_height > 0 && image_width > 0, "image grid must be at least 1 x 1");
  need(bos_id >= 0 && bos_id < vocab_size, "bos_id must be a text token id");
  need(pad_id >= 0 && pad_id < vocab_size, "pad_id must be a text token id");
  need(boi_id >= 0 && boi_id < vocab_size, "boi_id must be a text token id");
  // Upper bounds far above any model this trainer runs: a corrupted config must not make the
  // loader allocate (or enumerate) an absurd model.
  need(vocab_size <= (1 << 22) && image_token_size <= (1 << 22), "vocab_size and image_token_size must be <= 2^22");
  need(hidden_size <= (1 << 16) && intermediate_size <= (1 << 18) && gen_embed_dim <= (1 << 16) &&
           image_token_embed >= 0 && image_token_embed <= (1 << 16),
       "hidden_size, gen_embed_dim and image_token_embed must be <= 2^16, intermediate_size <= 2^18");
  need(num_hidden_layers <= 1024, "num_hidden_layers must be <= 1024");
  need(image_height <= 4096 && image_width <= 4096, "image grid must be at most 4096 x 4096");
}

nlohmann::json ModelConfig::to_json() const {
  nlohmann::json j;
  j["model_type"] = "multi_modality";
  j["language_config"] = {{"vocab_size", vocab_size},
                          {"hidden_size", hidden_size},
                          {"num_hidden_layers", num_hidden_layers},
                          {"num_attention_heads", num_attention_heads},
                          {"num_key_value_heads", num_attention_heads},
                          {"intermediate_size", intermediate_size},
                          {"rope_theta", rope_theta},
                          {"rms_norm_eps", rms_norm_eps},
                          {"hidden_act", "silu"},
                          {"tie_word_embeddings", false}};
  j["gen_vision_config"] = {{"cls", "shapes"}, {"params", {{"image_token_size", image_token_size}, {"n_embed", gen_embed_dim}}}};
  j["gen_aligner_config"] = {{"cls", "MlpProjector"},
                             {"params", {{"depth", 2}, {"input_dim", gen_embed_dim}, {"n_embed", hidden_size},
                                         {"projector_type", "mlp_gelu"}}}};
  j["gen_head_config"] = {{"cls", "vision_head"},
                          {"params", {{"image_token_embed", head_embed()}, {"image_token_size", image_token_size},
                                      {"n_embed", hidden_size}}}};
  j["image_grid"] = {image_height, image_width};
  j["special_tokens"] = {{"bos", bos_id}, {"pad", pad_id}, {"begin_of_image", boi_id}};
  if (!text_head) j["text_head"] = false;
  return j;
}

ModelConfig ModelConfig::from_json(const nlohmann::json& j) {
  ModelConfig c;
  const auto& lc = j.at("language_config");
  c.vocab_size = lc.at("vocab_size").get<std::int64_t>();
  c.hidden_size = lc.at("hidden_size").get<std::int64_t>();
  c.num_hidden_layers = lc.at("num_hidden_layers").get<std::int64_t>();
  c.num_attention_heads = lc.at("num_attention_heads").get<std::int64_t>();
  if (lc.contains("num_key_value_heads") && lc.at("num_key_value_heads").get<std::int64_t>() != c.num_attention_heads)
    throw std::invalid_argument("model config: grouped-query attention is not supported (Janus-Pro is MHA)");
  c.intermediate_size = lc.at("intermediate_size").get<std::int64_t>();
  c.rope_theta = lc.value("rope_theta", 10000.0);
  c.rms_norm_eps = lc.value("rms_norm_eps", 1e-6);
  const auto& gv = j.at("gen_vision_config").at("params");
  c.image_token_size = gv.at("image_token_size").get<std::int64_t>();
  c.gen_embed_dim = gv.at("n_embed").get<std::int64_t>();
  c.image_token_embed = j.at("gen_head_config").at("params").at("image_token_embed").get<std::int64_t>();
  const auto& grid = j.at("image_grid");
  c.image_height = grid.at(0).get<std::int64_t>();
  c.image_width = grid.at(1).get<std::int64_t>();
  const auto& st = j.at("special_tokens");
  c.bos_id = st.at("bos").get<std::int64_t>();
  c.pad_id = st.at("pad").get<std::int64_t>();
  c.boi_id = st.at("begin_of_image").get<std::int64_t>();
  c.text_head = j.value("text_head", true);
  c.validate();
  return c;
}

// ------------------------------------------------------------------------------------------
// Modules

RMSNormImpl::RMSNormImpl(std::int64_t dim, double eps_) : eps(eps_) {
  weight = register_parameter("weight", torch::ones({dim}));
}

torch::Tensor RMSNormImpl::forward(const torch::Tensor& x) {
  torch::Tensor h = x.to(torch::kFloat);
  const torch::Tensor var = h.pow(2).mean(-1, /*keepdim=*/true);
  h = h * torch::rsqrt(var + eps);
  return weight * h.to(x.scalar_type());
}

namespace {

torch::nn::Linear linear(std::int64_t in, std::int64_t out, bool bias) {
  return torch::nn::Linear(torch::nn::LinearOptions(in, out).bias(bias));
}

/// rotate_half(x) = cat(-x[..., d/2:], x[..., :d/2]).
torch::Tensor rotate_half(const torch::Tensor& x) {
  const std::int64_t h = x.size(-1) / 2;
  return torch::cat({-x.narrow(-1, h, h), x.narrow(-1, 0, h)}, -1);
}

/// Additive attention bias `[B, 1, T, Tk]`: 0 where query i (absolute position past + i) may
/// see key j (j <= past + i and key_mask[b, j] = 1), the lowest float elsewhere (as HF).
torch::Tensor attention_bias(const torch::Tensor& key_mask, std::int64_t past, std::int64_t T) {
  const std::int64_t Tk = key_mask.size(1);
  auto iopt = torch::TensorOptions().dtype(torch::kLong).device(key_mask.device());
  const torch::Tensor qpos = torch::arange(past, past + T, iopt).unsqueeze(1);  // [T, 1]
  const torch::Tensor kpos = torch::arange(0, Tk, iopt).unsqueeze(0);           // [1, Tk]
  const torch::Tensor causal = kpos.le(qpos);                                    // [T, Tk]
  const torch::Tensor allowed = causal.unsqueeze(0).unsqueeze(0).logical_and(key_mask.gt(0.5).unsqueeze(1).unsqueeze(1));
  const torch::Tensor zero = torch::zeros({}, key_mask.options().dtype(torch::kFloat));
  const torch::Tensor low = torch::full({}, std::numeric_limits<float>::lowest(), key_mask.options().dtype(torch::kFloat));
  return torch::where(allowed, zero, low);
}

/// Attention of one query per row over the first `Tk` cached keys (no grad, float32, CPU):
/// softmax(q.k_j + bias_j) weighted sum of v_j, per row and head, q already scaled by
/// 1/sqrt(hd). `bias` float `[B, 1, 1, Tk]` additive. Returns `[B, 1, heads, hd]`.
torch::Tensor decode_attention_cpu(const torch::Tensor& q_in, const LayerCache& cache, std::int64_t Tk,
                                   const torch::Tensor& bias_in) {
  const torch::Tensor q = q_in.contiguous();                       // [B, h, 1, hd]
  const torch::Tensor bias = bias_in.to(torch::kFloat).contiguous();  // [B, 1, 1, Tk]
  const std::int64_t B = q.size(0), heads = q.size(1), hd = q.size(3), cap = cache.k.size(2);
  TORCH_CHECK(cache.k.is_contiguous() && cache.v.is_contiguous(), "KV cache must be contiguous");
  torch::Tensor out = torch::empty({B, 1, heads, hd}, q.options());
  const float* qp = q.data_ptr<float>();
  const float* kp = cache.k.data_ptr<float>();
  const float* vp = cache.v.data_ptr<float>();
  const float* bp = bias.data_ptr<float>();
  float* op = out.data_ptr<float>();
  std::vector<float> s(static_cast<std::size_t>(Tk));
  for (std::int64_t b = 0; b < B; ++b)
    for (std::int64_t h = 0; h < heads; ++h) {
      const float* qv = qp + (b * heads + h) * hd;
      const float* kb = kp + (b * heads + h) * cap * hd;
      const float* vb = vp + (b * heads + h) * cap * hd;
      float mx = -std::numeric_limits<float>::infinity();
      for (std::int64_t j = 0; j < Tk; ++j) {
        const float* kj = kb + j * hd;
        // Eight partial sums: the compiler vectorises them (a single float sum it may not reorder).
        float acc[8] = {0, 0, 0, 0, 0, 0, 0, 0};
        std::int64_t e = 0;
        for (; e + 8 <= hd; e += 8)
          for (int i = 0; i < 8; ++i) acc[i] += qv[e + i] * kj[e + i];
        float d = ((acc[0] + acc[4]) + (acc[1] + acc[5])) + ((acc[2] + acc[6]) + (acc[3] + acc[7]));
        for (; e < hd; ++e) d += qv[e] * kj[e];
        s[static_cast<std::size_t>(j)] = d + bp[b * Tk + j];
        mx = std::max(mx, s[static_cast<std::size_t>(j)]);
      }
      float sum = 0.0f;
      for (std::int64_t j = 0; j < Tk; ++j) {
        const float e = std::exp(s[static_cast<std::size_t>(j)] - mx);
        s[static_cast<std::size_t>(j)] = e;
        sum += e;
      }
      float* o = op + (b * heads + h) * hd;  // out[b, 0, h, :]
      for (std::int64_t e = 0; e < hd; ++e) o[e] = 0.0f;
      for (std::int64_t j = 0; j < Tk; ++j) {
        const float w = s[static_cast<std::size_t>(j)] / sum;
        const float* vj = vb + j * hd;
        for (std::int64_t e = 0; e < hd; ++e) o[e] += w * vj[e];
      }
    }
  return out;
}

}  // namespace

LlamaAttentionImpl::LlamaAttentionImpl(const ModelConfig& c) : heads(c.num_attention_heads), head_dim(c.head_dim()) {
  const std::int64_t H = c.hidden_size;
  q_proj = register_module("q_proj", linear(H, H, false));
  k_proj = register_module("k_proj", linear(H, H, false));
  v_proj = register_module("v_proj", linear(H, H, false));
  o_proj = register_module("o_proj", linear(H, H, false));
}

torch::Tensor LlamaAttentionImpl::forward(const torch::Tensor& x, const torch::Tensor& cos, const torch::Tensor& sin,
                                          const torch::Tensor& bias, LayerCache* cache, std::int64_t pos) {
  const std::int64_t B = x.size(0), T = x.size(1);
  torch::Tensor q = q_proj(x).view({B, T, heads, head_dim}).transpose(1, 2);
  torch::Tensor k = k_proj(x).view({B, T, heads, head_dim}).transpose(1, 2);
  torch::Tensor v = v_proj(x).view({B, T, heads, head_dim}).transpose(1, 2);
  // The 1/sqrt(hd) of the scores is applied to q (T x hd) rather than to the T x Tk scores:
  // the same value up to rounding, one pass fewer over the largest tensor of the layer.
  const double scale = 1.0 / std::sqrt(static_cast<double>(head_dim));
  q = (q * cos + rotate_half(q) * sin) * scale;
  k = k * cos + rotate_half(k) * sin;
  if (cache != nullptr) {
    cache->k.narrow(2, pos, T).copy_(k);
    cache->v.narrow(2, pos, T).copy_(v);
    k = cache->k.narrow(2, 0, pos + T);
    v = cache->v.narrow(2, 0, pos + T);
  }
  torch::Tensor o;
  if (T == 1 && cache != nullptr && x.device().is_cpu() && x.scalar_type() == torch::kFloat && !x.requires_grad()) {
    // KV-cache decode on the CPU: libtorch 1.13's bmm runs B * heads separate 1-row GEMMs (an
    // op dispatch each), which dominated the decode; a direct loop over the cache takes about
    // half the time (it is bound by reading the cache).
    o = decode_attention_cpu(q, *cache, pos + 1, bias);  // [B, 1, h, hd]
  } else {
    const torch::Tensor scores = torch::matmul(q, k.transpose(2, 3)) + bias;
    const torch::Tensor attn = torch::softmax(scores, -1, torch::kFloat).to(q.scalar_type());
    o = torch::matmul(attn, v).transpose(1, 2);  // [B, T, h, hd]
  }
  return o_proj(o.reshape({B, T, heads * head_dim}));
}

LlamaMLPImpl::LlamaMLPImpl(const ModelConfig& c) {
  gate_proj = register_module("gate_proj", linear(c.hidden_size, c.intermediate_size, false));
  up_proj = register_module("up_proj", linear(c.hidden_size, c.intermediate_size, false));
  down_proj = register_module("down_proj", linear(c.intermediate_size, c.hidden_size, false));
}

torch::Tensor LlamaMLPImpl::forward(const torch::Tensor& x) {
  return down_proj(torch::silu(gate_proj(x)) * up_proj(x));
}

LlamaDecoderLayerImpl::LlamaDecoderLayerImpl(const ModelConfig& c) {
  input_layernorm = register_module("input_layernorm", RMSNorm(c.hidden_size, c.rms_norm_eps));
  self_attn = register_module("self_attn", LlamaAttention(c));
  post_attention_layernorm = register_module("post_attention_layernorm", RMSNorm(c.hidden_size, c.rms_norm_eps));
  mlp = register_module("mlp", LlamaMLP(c));
}

torch::Tensor LlamaDecoderLayerImpl::forward(const torch::Tensor& x, const torch::Tensor& cos, const torch::Tensor& sin,
                                             const torch::Tensor& bias, LayerCache* cache, std::int64_t pos) {
  torch::Tensor h = x + self_attn(input_layernorm(x), cos, sin, bias, cache, pos);
  return h + mlp(post_attention_layernorm(h));
}

LlamaModelImpl::LlamaModelImpl(const ModelConfig& c) : cfg(c) {
  embed_tokens = register_module("embed_tokens", torch::nn::Embedding(c.vocab_size, c.hidden_size));
  layers = register_module("layers", torch::nn::ModuleList());
  for (std::int64_t i = 0; i < c.num_hidden_layers; ++i) {
    LlamaDecoderLayer l(c);
    layers->push_back(l);
    layer_refs.push_back(l);
  }
  norm = register_module("norm", RMSNorm(c.hidden_size, c.rms_norm_eps));
  // HF: inv_freq = 1 / base ** (arange(0, dim, 2, int64).float() / dim), float32.
  const std::int64_t hd = c.head_dim();
  const torch::Tensor expo = torch::arange(0, hd, 2, torch::kLong).to(torch::kFloat) / static_cast<double>(hd);
  inv_freq = register_buffer("inv_freq", 1.0 / torch::pow(torch::scalar_tensor(c.rope_theta, torch::kFloat), expo));
}

namespace {

/// A decoder layer whose activations are not kept for the backward pass (gradient
/// checkpointing, as torch.utils.checkpoint's reentrant variant that the official trainer's
/// `gradient_checkpointing_enable()` uses): the forward runs without autograd and keeps only its
/// input; the backward runs the layer again with autograd and back-propagates through it, which
/// accumulates the layer's parameter gradients and returns the input's. The layer has no
/// randomness (no dropout), so the recomputation is the forward exactly.
struct CheckpointedLayer : torch::autograd::Function<CheckpointedLayer> {
  static torch::Tensor forward(torch::autograd::AutogradContext* ctx, const torch::Tensor& x, const torch::Tensor& cos,
                               const torch::Tensor& sin, const torch::Tensor& bias, LlamaDecoderLayerImpl* layer,
                               std::int64_t pos) {
    ctx->saved_data["layer"] = reinterpret_cast<std::int64_t>(layer);
    ctx->saved_data["pos"] = pos;
    ctx->save_for_backward({x, cos, sin, bias});
    return layer->forward(x, cos, sin, bias, nullptr, pos);  // autograd is off inside Function::forward
  }
  static torch::autograd::variable_list backward(torch::autograd::AutogradContext* ctx,
                                                 torch::autograd::variable_list grad_out) {
    const auto saved = ctx->get_saved_variables();
    auto* layer = reinterpret_cast<LlamaDecoderLayerImpl*>(ctx->saved_data["layer"].toInt());
    const torch::Tensor x = saved[0].detach().requires_grad_(true);
    torch::Tensor y;
    {
      torch::AutoGradMode on(true);
      y = layer->forward(x, saved[1], saved[2], saved[3], nullptr, ctx->saved_data["pos"].toInt());
    }
    torch::autograd::backward({y}, {grad_out[0]});
    return {x.grad(), torch::Tensor(), torch::Tensor(), torch::Tensor(), torch::Tensor(), torch::Tensor()};
  }
};

}  // namespace

torch::Tensor LlamaModelImpl::forward(const torch::Tensor& x, const torch::Tensor& key_mask, std::int64_t past,
                                      KVCache* cache) {
  const std::int64_t T = x.size(1);
  TORCH_CHECK(key_mask.size(1) == past + T, "key_mask must cover past + T positions");
  TORCH_CHECK(cache == nullptr || cache->length == past, "cache length must equal past");
  // RoPE tables at absolute positions [past, past + T) (HF default cache_position).
  const torch::Tensor& inv = inv_freq;
  const torch::Tensor pos = torch::arange(past, past + T, torch::TensorOptions().dtype(torch::kLong).device(x.device()))
                                .to(torch::kFloat);
  const torch::Tensor freqs = pos.unsqueeze(1) * inv.unsqueeze(0);  // [T, hd/2]
  const torch::Tensor emb = torch::cat({freqs, freqs}, -1);
  const torch::Tensor cos = emb.cos().to(x.scalar_type());
  const torch::Tensor sin = emb.sin().to(x.scalar_type());
  const torch::Tensor bias = attention_bias(key_mask, past, T).to(x.scalar_type());
  torch::Tensor h = x;
  // Checkpointing only where there is a backward pass to save memory for (a teacher-forced pass
  // with autograd); a layer whose input needs no gradient runs plainly (its parameters would get
  // no gradient through the checkpoint).
  const bool checkpoint = gradient_checkpointing && cache == nullptr && torch::GradMode::is_enabled();
  for (std::size_t i = 0; i < layer_refs.size(); ++i) {
    if (checkpoint && h.requires_grad())
      h = CheckpointedLayer::apply(h, cos, sin, bias, layer_refs[i].get(), past);
    else
      h = layer_refs[i]->forward(h, cos, sin, bias, cache ? &cache->layers[i] : nullptr, past);
  }
  if (cache) cache->length = past + T;
  return norm(h);
}

LlamaForCausalLMImpl::LlamaForCausalLMImpl(const ModelConfig& c) {
  model = register_module("model", LlamaModel(c));
  if (c.text_head) lm_head = register_module("lm_head", linear(c.hidden_size, c.vocab_size, false));
}

MlpProjectorImpl::MlpProjectorImpl(std::int64_t in, std::int64_t out) {
  layers = register_module(
      "layers", torch::nn::Sequential(linear(in, out, true), torch::nn::GELU(torch::nn::GELUOptions().approximate("none")),
                                      linear(out, out, true)));
}

VisionHeadImpl::VisionHeadImpl(std::int64_t n_embed, std::int64_t image_token_embed, std::int64_t image_token_size) {
  output_mlp_projector = register_module("output_mlp_projector", linear(n_embed, image_token_embed, true));
  vision_activation = register_module("vision_activation", torch::nn::GELU(torch::nn::GELUOptions().approximate("none")));
  vision_head = register_module("vision_head", linear(image_token_embed, image_token_size, true));
}

torch::Tensor VisionHeadImpl::forward(const torch::Tensor& x) {
  return vision_head(vision_activation(output_mlp_projector(x)));
}

// ------------------------------------------------------------------------------------------
// JanusModel

JanusModelImpl::JanusModelImpl(const ModelConfig& c) : cfg(c) {
  cfg.validate();
  language_model = register_module("language_model", LlamaForCausalLM(cfg));
  gen_embed = register_module("gen_embed", torch::nn::Embedding(cfg.image_token_size, cfg.gen_embed_dim));
  gen_aligner = register_module("gen_aligner", MlpProjector(cfg.gen_embed_dim, cfg.hidden_size));
  gen_head = register_module("gen_head", VisionHead(cfg.hidden_size, cfg.head_embed(), cfg.image_token_size));
}

PromptBatch JanusModelImpl::unconditional(const PromptBatch& p) const {
  const std::int64_t L = p.ids.size(1);
  PromptBatch u{p.ids.clone(), torch::ones_like(p.mask)};
  if (L > 2) u.ids.narrow(1, 1, L - 2).fill_(cfg.pad_id);  // keep BOS (0) and <begin_of_image> (L-1)
  return u;
}

torch::Tensor JanusModelImpl::image_embeds(const torch::Tensor& ids) { return gen_aligner(gen_embed(ids)); }

torch::Tensor JanusModelImpl::image_embed_table() { return gen_aligner(gen_embed->weight); }

std::pair<torch::Tensor, torch::Tensor> JanusModelImpl::teacher_forced_inputs(const PromptBatch& prompts,
                                                                                const torch::Tensor& tokens) {
  const std::int64_t B = tokens.size(0), N = tokens.size(1);
  const torch::Tensor text = language_model->model->embed_tokens(prompts.ids);
  const torch::Tensor img = image_embeds(tokens.narrow(1, 0, N - 1));
  const torch::Tensor x = torch::cat({text, img.to(text.scalar_type())}, 1);
  const torch::Tensor mask =
      torch::cat({prompts.mask.to(torch::kFloat), torch::ones({B, N - 1}, prompts.mask.options().dtype(torch::kFloat))}, 1);
  return {x, mask};
}

torch::Tensor JanusModelImpl::image_logits_from_inputs(const torch::Tensor& x, const torch::Tensor& key_mask,
                                                       std::int64_t L) {
  const torch::Tensor hid = language_model->model->forward(x, key_mask, 0, nullptr);
  const std::int64_t N = x.size(1) - L + 1;
  return gen_head(hid.narrow(1, L - 1, N));
}

torch::Tensor JanusModelImpl::image_logits(const PromptBatch& prompts, const torch::Tensor& tokens) {
  auto in = teacher_forced_inputs(prompts, tokens);
  return image_logits_from_inputs(in.first, in.second, prompts.ids.size(1));
}

GenerateResult JanusModelImpl::generate(const PromptBatch& prompts, const GenerateOptions& opt) {
  torch::NoGradGuard no_grad;
  const std::int64_t B = prompts.ids.size(0), L = prompts.ids.size(1);
  const std::int64_t N = cfg.image_tokens(), V = cfg.image_token_size, H = cfg.hidden_size;
  const std::int64_t rows = opt.cfg ? 2 * B : B;
  const auto dev = prompts.ids.device();
  auto fopt = torch::TensorOptions().dtype(torch::kFloat).device(dev);
  auto lopt = torch::TensorOptions().dtype(torch::kLong).device(dev);

  // Prefill inputs: rows [c0, u0, c1, u1, ...] (CFG) or [c0, c1, ...].
  torch::Tensor x = language_model->model->embed_tokens(prompts.ids);  // [B, L, H]
  torch::Tensor key_mask = prompts.mask.to(torch::kFloat);
  if (opt.cfg) {
    const PromptBatch u = unconditional(prompts);
    const torch::Tensor xu = language_model->model->embed_tokens(u.ids);
    x = torch::stack({x, xu}, 1).reshape({rows, L, H});
    key_mask = torch::stack({key_mask, u.mask.to(torch::kFloat)}, 1).reshape({rows, L});
  }
  // Preallocated cache: the prompt plus N - 1 image tokens (the last one is never fed).
  const std::int64_t capacity = L + N - 1;
  KVCache cache;
  const std::int64_t heads = cfg.num_attention_heads, hd = cfg.head_dim();
  for (std::int64_t i = 0; i < cfg.num_hidden_layers; ++i)
    cache.layers.push_back(LayerCache{torch::zeros({rows, heads, capacity, hd}, x.options()),
                                      torch::zeros({rows, heads, capacity, hd}, x.options())});
  cache.key_mask = torch::ones({rows, capacity}, fopt);
  cache.key_mask.narrow(1, 0, L).copy_(key_mask);

  const torch::Tensor table = image_embed_table();  // [V, H], frozen
  GenerateResult res;
  res.tokens = torch::empty({B, N}, lopt);
  res.logprob = torch::empty({B, N}, fopt);
  res.entropy = torch::empty({B, N}, fopt);
  if (opt.keep_logits) {
    res.cond_logits = torch::empty({B, N, V}, fopt);
    res.guided_logits = torch::empty({B, N, V}, fopt);
    if (opt.cfg) res.uncond_logits = torch::empty({B, N, V}, fopt);
  }
  gcpo::sampling_options so;
  so.cfg_scale = opt.cfg_scale;
  so.temperature = opt.temperature;
  so.top_k = opt.top_k;
  so.top_p = opt.top_p;
  so.seed = opt.seed;
  so.first_row = opt.first_row;
  torch::Tensor tok = torch::empty({B}, lopt), lp = torch::empty({B}, fopt), ent = torch::empty({B}, fopt);

  torch::Tensor cur = x;
  for (std::int64_t k = 0; k < N; ++k) {
    const std::int64_t past = cache.length;
    const torch::Tensor hid = language_model->model->forward(cur, cache.key_mask.narrow(1, 0, past + cur.size(1)), past, &cache);
    const torch::Tensor logits = gen_head(hid.select(1, hid.size(1) - 1)).to(torch::kFloat).contiguous();  // [rows, V]
    so.step = static_cast<std::uint64_t>(k);
    ops::generation_step(logits, opt.cfg, so, tok, lp, ent);
    res.tokens.select(1, k).copy_(tok);
    res.logprob.select(1, k).copy_(lp);
    res.entropy.select(1, k).copy_(ent);
    if (opt.keep_logits) {
      const torch::Tensor c = opt.cfg ? logits.slice(0, 0, rows, 2) : logits;
      res.cond_logits.select(1, k).copy_(c);
      if (opt.cfg) {
        const torch::Tensor u = logits.slice(0, 1, rows, 2);
        res.uncond_logits.select(1, k).copy_(u);
        res.guided_logits.select(1, k).copy_(u + opt.cfg_scale * (c - u));
      } else {
        res.guided_logits.select(1, k).copy_(c);
      }
    }
    if (k + 1 == N) break;
    // Feed the sampled token to both rows of its pair (section 2.4).
    torch::Tensor e = table.index_select(0, tok);  // [B, H]
    if (opt.cfg) e = e.repeat_interleave(2, 0);
    cur = e.unsqueeze(1).to(x.scalar_type());
  }
  return res;
}

JanusModel make_model(const ModelConfig& c, at::ScalarType dtype) {
  TORCH_CHECK(dtype == at::kFloat || dtype == at::kBFloat16, "make_model: float32 or bfloat16, not ", dtype);
  struct DefaultDtype {  // restores the default dtype however the construction ends
    caffe2::TypeMeta saved = torch::get_default_dtype();
    explicit DefaultDtype(at::ScalarType t) { torch::set_default_dtype(caffe2::TypeMeta::fromScalarType(t)); }
    ~DefaultDtype() { torch::set_default_dtype(saved); }
  } scoped(dtype);
  JanusModel m(c);
  m->to(dtype);  // the float32 buffers (RoPE's inv_freq) too, as a `.to(dtype)` of the whole model does
  return m;
}

void JanusModelImpl::set_gradient_checkpointing(bool on) { language_model->model->gradient_checkpointing = on; }

void JanusModelImpl::freeze_generation_modules() {
  for (auto* m : {static_cast<torch::nn::Module*>(gen_embed.get()), static_cast<torch::nn::Module*>(gen_aligner.get()),
                  static_cast<torch::nn::Module*>(gen_head.get())})
    for (auto& p : m->parameters()) p.set_requires_grad(false);
}

void JanusModelImpl::copy_from(JanusModelImpl& other) {
  torch::NoGradGuard no_grad;
  auto src = other.named_parameters();
  for (auto& kv : named_parameters()) kv.value().copy_(src[kv.key()]);
  auto srcb = other.named_buffers();
  for (auto& kv : named_buffers()) kv.value().copy_(srcb[kv.key()]);
}

std::vector<std::pair<std::string, std::vector<std::int64_t>>> expected_parameters(const ModelConfig& c) {
  const std::int64_t H = c.hidden_size, I = c.intermediate_size, Vt = c.vocab_size, V = c.image_token_size;
  const std::int64_t E = c.head_embed(), D = c.gen_embed_dim;
  std::vector<std::pair<std::string, std::vector<std::int64_t>>> e;
  e.push_back({"language_model.model.embed_tokens.weight", {Vt, H}});
  for (std::int64_t i = 0; i < c.num_hidden_layers; ++i) {
    const std::string p = "language_model.model.layers." + std::to_string(i) + ".";
    e.push_back({p + "input_layernorm.weight", {H}});
    for (const char* n : {"q_proj", "k_proj", "v_proj", "o_proj"}) e.push_back({p + "self_attn." + n + ".weight", {H, H}});
    e.push_back({p + "post_attention_layernorm.weight", {H}});
    e.push_back({p + "mlp.gate_proj.weight", {I, H}});
    e.push_back({p + "mlp.up_proj.weight", {I, H}});
    e.push_back({p + "mlp.down_proj.weight", {H, I}});
  }
  e.push_back({"language_model.model.norm.weight", {H}});
  if (c.text_head) e.push_back({"language_model.lm_head.weight", {Vt, H}});
  e.push_back({"gen_embed.weight", {V, D}});
  e.push_back({"gen_aligner.layers.0.weight", {H, D}});
  e.push_back({"gen_aligner.layers.0.bias", {H}});
  e.push_back({"gen_aligner.layers.2.weight", {H, H}});
  e.push_back({"gen_aligner.layers.2.bias", {H}});
  e.push_back({"gen_head.output_mlp_projector.weight", {E, H}});
  e.push_back({"gen_head.output_mlp_projector.bias", {E}});
  e.push_back({"gen_head.vision_head.weight", {V, E}});
  e.push_back({"gen_head.vision_head.bias", {V}});
  return e;
}

void init_weights(JanusModelImpl& m) {
  torch::NoGradGuard no_grad;
  for (auto& kv : m.named_parameters()) {
    const std::string& n = kv.key();
    torch::Tensor& p = kv.value();
    const bool is_norm = n.find("layernorm") != std::string::npos || n.find("model.norm.") != std::string::npos;
    if (is_norm) p.fill_(1.0);
    else if (n == "gen_embed.weight") p.normal_(0.0, 1.0);  // nn.Embedding's default: a codebook-like table
    else if (n.size() >= 5 && n.compare(n.size() - 5, 5, ".bias") == 0) p.zero_();
    else p.normal_(0.0, 0.02);
  }
}

std::int64_t count_parameters(torch::nn::Module& m, bool trainable_only) {
  std::int64_t n = 0;
  for (const auto& p : m.parameters())
    if (!trainable_only || p.requires_grad()) n += p.numel();
  return n;
}

}  // namespace janus
