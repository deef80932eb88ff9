// examples/janus/model.hpp - the Janus-Pro text-to-image generation path at configurable size,
// written with the libtorch C++ frontend (spec: shared/spec/janus-trainer.md sections 1-2).
//
// The module tree and parameter names are the real checkpoint's (section 1.5):
//   language_model.model.embed_tokens.weight                        [Vt, H]
//   language_model.model.layers.{i}.input_layernorm.weight          [H]
//   language_model.model.layers.{i}.self_attn.{q,k,v,o}_proj.weight [H, H]   (no bias)
//   language_model.model.layers.{i}.post_attention_layernorm.weight [H]
//   language_model.model.layers.{i}.mlp.{gate,up}_proj.weight       [I, H]
//   language_model.model.layers.{i}.mlp.down_proj.weight            [H, I]
//   language_model.model.norm.weight                                [H]
//   language_model.lm_head.weight                                   [Vt, H]  (unused by T2I)
//   gen_embed.weight                                                [V, 8]
//   gen_aligner.layers.{0,2}.{weight,bias}                          [H, 8], [H, H]
//   gen_head.output_mlp_projector.{weight,bias}                     [E, H]
//   gen_head.vision_head.{weight,bias}                              [V, E]
// The VQ decoder (gen_vision_model) is not part of this example: the "shapes" task decodes
// its own codebook to RGB.
//
// Decoder math (HF Llama, as pinned by GCPO): RMSNorm with fp32 statistics, rotate-half RoPE
// (theta 1e4) at absolute positions 0..L-1+k (pad slots keep their positions, they are masked
// keys), causal attention plus a key-padding mask, SwiGLU MLP, no biases. GELU is the exact
// (erf) one.
//
// Prompt layout (section 2.2): BOS, text tokens, right pads, <begin_of_image>; the prompt mask
// is 0 on the pads. Classifier-free guidance (section 2.3) runs conditional/unconditional row
// pairs [c0, u0, c1, u1, ...]; an unconditional row is BOS + pads + <begin_of_image> with an
// all-ones mask.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>
#include <torch/torch.h>

#include <gcpo/sampling.hpp>

namespace janus {

/// Sizes and special ids of a model. Serialised in the layout of Janus-Pro's config.json
/// (`language_config`, `gen_vision_config.params`, `gen_aligner_config.params`,
/// `gen_head_config.params`) plus the image grid and the special token ids.
struct ModelConfig {
  // language_config
  std::int64_t vocab_size = 0;          ///< text vocabulary Vt (special tokens included)
  std::int64_t hidden_size = 128;       ///< H
  std::int64_t num_hidden_layers = 4;
  std::int64_t num_attention_heads = 4;
  std::int64_t intermediate_size = 344; ///< I (SwiGLU)
  double rope_theta = 10000.0;
  double rms_norm_eps = 1e-6;
  // gen_vision_config.params / gen_head_config.params
  std::int64_t image_token_size = 0;   ///< V, the codebook
  std::int64_t gen_embed_dim = 8;      ///< n_embed of gen_embed
  std::int64_t image_token_embed = 0;  ///< E of gen_head (0: H)
  // image grid: N = height * width tokens in raster order
  std::int64_t image_height = 16;
  std::int64_t image_width = 16;
  // special token ids (looked up in the task's tokenizer)
  std::int64_t bos_id = 0;
  std::int64_t pad_id = 0;
  std::int64_t boi_id = 0;  ///< <begin_of_image>
  /// Whether `language_model.lm_head` exists. Text-to-image never uses it; a model loaded from a
  /// published directory leaves it out (on 7B it is 102400 x 4096 weights).
  bool text_head = true;

  std::int64_t head_dim() const { return hidden_size / num_attention_heads; }
  std::int64_t image_tokens() const { return image_height * image_width; }
  std::int64_t head_embed() const { return image_token_embed > 0 ? image_token_embed : hidden_size; }
  /// Throws std::invalid_argument naming the first bad field.
  void validate() const;
  nlohmann::json to_json() const;
  static ModelConfig from_json(const nlohmann::json& j);
  /// LLaMA's 8/3 * H rounded up to a multiple of 8.
  static std::int64_t default_intermediate(std::int64_t hidden) { return (hidden * 8 / 3 + 7) / 8 * 8; }
};

// ------------------------------------------------------------------------------------------
// Modules (names = attribute names of the real model)

/// y = weight * (x * rsqrt(mean(x^2) + eps)), statistics in fp32, cast back before the weight.
struct RMSNormImpl : torch::nn::Module {
  RMSNormImpl(std::int64_t dim, double eps);
  torch::Tensor forward(const torch::Tensor& x);
  torch::Tensor weight;
  double eps;
};
TORCH_MODULE(RMSNorm);

/// Preallocated key/value cache of one layer: `[B, heads, capacity, head_dim]`.
struct LayerCache {
  torch::Tensor k, v;
};

/// The KV cache of a decode: per-layer buffers, the key mask `[B, capacity]` and how many
/// positions are filled.
struct KVCache {
  std::vector<LayerCache> layers;
  torch::Tensor key_mask;  ///< float `[B, capacity]`, 1 real, 0 pad
  std::int64_t length = 0;
};

struct LlamaAttentionImpl : torch::nn::Module {
  explicit LlamaAttentionImpl(const ModelConfig& c);
  /// x `[B, T, H]`, cos/sin `[T, hd]`, bias `[B, 1, T, Tk]` additive; with `cache`, writes the
  /// new keys/values at [pos, pos + T) and attends over [0, pos + T).
  torch::Tensor forward(const torch::Tensor& x, const torch::Tensor& cos, const torch::Tensor& sin,
                        const torch::Tensor& bias, LayerCache* cache, std::int64_t pos);
  torch::nn::Linear q_proj{nullptr}, k_proj{nullptr}, v_proj{nullptr}, o_proj{nullptr};
  std::int64_t heads, head_dim;
};
TORCH_MODULE(LlamaAttention);

struct LlamaMLPImpl : torch::nn::Module {
  explicit LlamaMLPImpl(const ModelConfig& c);
  torch::Tensor forward(const torch::Tensor& x);  ///< down(silu(gate(x)) * up(x))
  torch::nn::Linear gate_proj{nullptr}, up_proj{nullptr}, down_proj{nullptr};
};
TORCH_MODULE(LlamaMLP);

struct LlamaDecoderLayerImpl : torch::nn::Module {
  explicit LlamaDecoderLayerImpl(const ModelConfig& c);
  torch::Tensor forward(const torch::Tensor& x, const torch::Tensor& cos, const torch::Tensor& sin,
                        const torch::Tensor& bias, LayerCache* cache, std::int64_t pos);
  RMSNorm input_layernorm{nullptr};
  LlamaAttention self_attn{nullptr};
  RMSNorm post_attention_layernorm{nullptr};
  LlamaMLP mlp{nullptr};
};
TORCH_MODULE(LlamaDecoderLayer);

/// `language_model.model`: embeddings, decoder layers and the final norm.
struct LlamaModelImpl : torch::nn::Module {
  explicit LlamaModelImpl(const ModelConfig& c);
  /// Post-norm hidden states `[B, T, H]` of `inputs_embeds` `[B, T, H]` at positions
  /// [past, past + T). `key_mask` float `[B, past + T]` (1 real, 0 pad) covers every key.
  /// With `cache` the new keys/values are appended at `past` (cache->length must equal past).
  torch::Tensor forward(const torch::Tensor& inputs_embeds, const torch::Tensor& key_mask, std::int64_t past,
                        KVCache* cache);
  torch::nn::Embedding embed_tokens{nullptr};
  torch::nn::ModuleList layers{nullptr};
  RMSNorm norm{nullptr};
  std::vector<LlamaDecoderLayer> layer_refs;
  torch::Tensor inv_freq;  ///< `[hd / 2]` float32 buffer (non-persistent in HF: checkpoints hold parameters only)
  /// Gradient checkpointing of the decoder layers (JanusModelImpl::set_gradient_checkpointing).
  bool gradient_checkpointing = false;
  ModelConfig cfg;
};
TORCH_MODULE(LlamaModel);

/// `language_model`: HF LlamaForCausalLM (the text head is unused by text-to-image).
struct LlamaForCausalLMImpl : torch::nn::Module {
  explicit LlamaForCausalLMImpl(const ModelConfig& c);
  LlamaModel model{nullptr};
  torch::nn::Linear lm_head{nullptr};  ///< null when !ModelConfig::text_head
};
TORCH_MODULE(LlamaForCausalLM);

/// `gen_aligner`: MlpProjector "mlp_gelu", depth 2 = Sequential(Linear(8, H), GELU, Linear(H, H)).
struct MlpProjectorImpl : torch::nn::Module {
  MlpProjectorImpl(std::int64_t in, std::int64_t out);
  torch::Tensor forward(const torch::Tensor& x) { return layers->forward(x); }
  torch::nn::Sequential layers{nullptr};
};
TORCH_MODULE(MlpProjector);

/// `gen_head`: vision_head = Linear(H, E), GELU, Linear(E, V).
struct VisionHeadImpl : torch::nn::Module {
  VisionHeadImpl(std::int64_t n_embed, std::int64_t image_token_embed, std::int64_t image_token_size);
  torch::Tensor forward(const torch::Tensor& x);
  torch::nn::Linear output_mlp_projector{nullptr};
  torch::nn::GELU vision_activation{nullptr};
  torch::nn::Linear vision_head{nullptr};
};
TORCH_MODULE(VisionHead);

/// Options of a KV-cache decode with classifier-free guidance.
struct GenerateOptions {
  bool cfg = true;            ///< run conditional/unconditional row pairs
  float cfg_scale = 5.0f;     ///< guidance weight (official run: 5)
  float temperature = 1.0f;   ///< official: 1
  std::int64_t top_k = 0;     ///< 0: off
  float top_p = 1.0f;         ///< 1: off
  std::uint64_t seed = 0;     ///< Philox key of gcpo's generation step (row = image index, step = token)
  /// Philox row of this batch's first image (its global index when a batch is split across
  /// processes, so that every image draws what it would in one process).
  std::uint64_t first_row = 0;
  bool keep_logits = false;   ///< also return the per-step conditional and guided logits
};

/// What a decode produced. Per-token statistics are those of the distribution sampled from
/// (the guided one), computed by gcpo's fused generation step.
struct GenerateResult {
  torch::Tensor tokens;         ///< int64 `[B, N]`
  torch::Tensor logprob;        ///< float `[B, N]`
  torch::Tensor entropy;        ///< float `[B, N]`
  torch::Tensor cond_logits;    ///< float `[B, N, V]` (keep_logits only)
  torch::Tensor uncond_logits;  ///< float `[B, N, V]` (keep_logits and cfg only)
  torch::Tensor guided_logits;  ///< float `[B, N, V]` uncond + s (cond - uncond) (keep_logits only)
};

/// A tokenised, right-padded prompt batch: BOS, text, pads, <begin_of_image>.
struct PromptBatch {
  torch::Tensor ids;   ///< int64 `[B, L]`
  torch::Tensor mask;  ///< int64 `[B, L]`, 0 on pad slots
};

/// `MultiModalityCausalLM` restricted to text-to-image generation.
struct JanusModelImpl : torch::nn::Module {
  explicit JanusModelImpl(const ModelConfig& c);

  /// The unconditional batch of section 2.3: BOS, pads, <begin_of_image>, mask all ones.
  PromptBatch unconditional(const PromptBatch& prompts) const;

  /// `prepare_gen_img_embeds`: gen_aligner(gen_embed(ids)) for int64 ids of any shape.
  torch::Tensor image_embeds(const torch::Tensor& ids);
  /// gen_aligner(gen_embed.weight): `[V, H]`, the table group similarity uses.
  torch::Tensor image_embed_table();

  /// Teacher-forced inputs of section 2.8: embeddings `[B, L + N - 1, H]` of the prompt and the
  /// first N - 1 image tokens, and the key mask (prompt mask, then ones) as float.
  std::pair<torch::Tensor, torch::Tensor> teacher_forced_inputs(const PromptBatch& prompts, const torch::Tensor& tokens);
  /// Image-token logits `[B, N, V]` from teacher-forced inputs (positions L-1 .. L+N-2 predict
  /// tokens 0 .. N-1). `prompt_len` = L.
  torch::Tensor image_logits_from_inputs(const torch::Tensor& inputs_embeds, const torch::Tensor& key_mask,
                                         std::int64_t prompt_len);
  /// `image_logits_from_inputs(teacher_forced_inputs(prompts, tokens))`.
  torch::Tensor image_logits(const PromptBatch& prompts, const torch::Tensor& tokens);

  /// KV-cache decode of N image tokens per prompt row, with CFG row pairs when `opt.cfg`,
  /// sampling through gcpo's generation step (host or CUDA twin by the tensors' device).
  /// Runs without gradient.
  GenerateResult generate(const PromptBatch& prompts, const GenerateOptions& opt);

  /// Gradient checkpointing of the language model (the official trainer's
  /// `language_model.gradient_checkpointing_enable()`, TR L221-222): a pass with autograd keeps
  /// only each decoder layer's input and recomputes the layer during the backward pass. The
  /// gradients are the same; the activation memory of the teacher-forced pass drops from every
  /// layer's intermediate tensors to one [B, T, H] tensor per layer, for one more forward pass.
  void set_gradient_checkpointing(bool on);

  /// Sets requires_grad(false) on gen_embed, gen_aligner and gen_head (TR L216-219).
  void freeze_generation_modules();
  /// Copies every parameter and buffer of `other` (same config) into this model.
  void copy_from(JanusModelImpl& other);

  ModelConfig cfg;
  LlamaForCausalLM language_model{nullptr};
  torch::nn::Embedding gen_embed{nullptr};
  MlpProjector gen_aligner{nullptr};
  VisionHead gen_head{nullptr};
};
TORCH_MODULE(JanusModel);

/// A model of config `c` whose parameters are created in `dtype` (float32 or bfloat16) from the
/// start: libtorch's default dtype is `dtype` while the modules are built, so a bf16 model is
/// never allocated in float32 first (that would double the peak memory of loading Janus-Pro).
/// Its values are the modules' default initialisation, to be overwritten.
JanusModel make_model(const ModelConfig& c, at::ScalarType dtype);

/// Every parameter name and shape the model must have (section 1.5), in registration order.
std::vector<std::pair<std::string, std::vector<std::int64_t>>> expected_parameters(const ModelConfig& c);

/// Initialises a fresh model: normal(0, 0.02) for linear weights and the text embeddings (HF
/// initializer_range), normal(0, 1) for gen_embed (nn.Embedding's default; at 0.02 the 8-dim
/// image-token embeddings are nearly equal and the model learns to tell tokens apart very
/// slowly), zero biases, unit norms; deterministic for a given torch seed.
void init_weights(JanusModelImpl& m);

/// Number of parameters (all, or only those that require grad).
std::int64_t count_parameters(torch::nn::Module& m, bool trainable_only = false);

}  // namespace janus
