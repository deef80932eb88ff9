// examples/janus/model_dir.hpp - a Janus-Pro model directory as published on the Hugging Face hub
// (shared/spec/janus-trainer.md section 1): `config.json` with its nested configs, and the
// weights in any of the four layouts
//
//   model.safetensors                         one safetensors file
//   model.safetensors.index.json              shards named by its "weight_map"
//   pytorch_model.bin                         one torch.save zip archive (torch_bin.hpp)
//   pytorch_model.bin.index.json              shards named by its "weight_map"
//
// (safetensors first when a directory holds both, as transformers does). Only the tensors a
// caller wants are read, each straight into its own memory, so loading the text-to-image part of
// a 7B checkpoint never holds the understanding side (vision_model.*, aligner.*) or the VQ
// encoder in memory. Every error names the file and, where one is at fault, the tensor or key.
#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <set>
#include <string>
#include <vector>

#include <ATen/ATen.h>

namespace janus {

/// `language_config`, completed with transformers' LlamaConfig defaults where a key is absent.
struct LlamaConfig {
  std::int64_t vocab_size = 32000;
  std::int64_t hidden_size = 4096;
  std::int64_t intermediate_size = 11008;
  std::int64_t num_hidden_layers = 32;
  std::int64_t num_attention_heads = 32;
  std::int64_t num_key_value_heads = 32;  ///< default: num_attention_heads
  std::int64_t head_dim = 128;            ///< hidden_size / num_attention_heads
  std::int64_t max_position_embeddings = 2048;
  double rms_norm_eps = 1e-6;
  double rope_theta = 10000.0;
  std::string hidden_act = "silu";
  bool attention_bias = false, mlp_bias = false, tie_word_embeddings = false;
};

/// The parts of config.json a text-to-image trainer uses.
struct JanusConfig {
  LlamaConfig language;
  // gen_vision_config: {"cls": "VQ-16", "params": {"image_token_size", "n_embed"}}
  std::string gen_vision_cls;
  std::int64_t image_token_size = 0;  ///< codebook size K: gen_embed rows, gen_head outputs
  std::int64_t gen_embed_dim = 0;     ///< gen_embed width (8)
  // gen_aligner_config: {"params": {"projector_type": "mlp_gelu", "depth", "input_dim", "n_embed"}}
  std::string aligner_type;
  std::int64_t aligner_depth = 0, aligner_input_dim = 0, aligner_n_embed = 0;
  // gen_head_config: {"params": {"n_embed", "image_token_embed", "image_token_size"}}
  std::int64_t head_n_embed = 0, head_image_token_embed = 0, head_image_token_size = 0;
};

/// Reads `<dir>/config.json`. Throws std::runtime_error naming the file and the key when it is
/// missing, of the wrong type or out of range, or when the nested configs disagree (the
/// aligner's input must be gen_embed's width, its output and the head's input the LM's width,
/// the head's output the codebook; only "VQ-16" and "mlp_gelu" are supported).
JanusConfig read_janus_config(const std::string& dir);

enum class WeightLayout { safetensors, safetensors_sharded, torch_bin, torch_bin_sharded };
const char* to_string(WeightLayout l);

/// The weight files of a model directory.
struct WeightFiles {
  std::string dir;
  WeightLayout layout = WeightLayout::safetensors;
  std::vector<std::string> files;             ///< paths, in shard order
  std::map<std::string, std::string> owner;   ///< sharded: tensor name -> path (from the index)
};

/// Finds the weights of `dir` (see above for the order). Throws naming the directory when none
/// of the four is there, or naming the index when it is not JSON, has no "weight_map", or names
/// a shard outside the directory (an absolute path or "..") or one that does not exist.
WeightFiles find_weights(const std::string& dir);

/// Tensors read from a model directory, with the file each came from (for messages).
struct Weights {
  std::map<std::string, at::Tensor> tensors;
  std::map<std::string, std::string> file;
  std::string source;  ///< the model directory
  /// The path of the file `name` came from.
  std::string where(const std::string& name) const;
};

/// Reads the tensors `want` accepts (all when empty) from `files`, one at a time, as CPU tensors in
/// their stored dtype, and hands each to `visit(name, tensor, file)`. Shards without a wanted
/// tensor are not opened. Throws naming the file and the tensor when the index names a tensor
/// its shard does not hold, or a tensor appears in two files.
void for_each_weight(const WeightFiles& files, const std::function<bool(const std::string&)>& want,
                     const std::function<void(const std::string&, at::Tensor, const std::string&)>& visit);

/// for_each_weight into a map (every wanted tensor in memory at once).
Weights load_weights(const WeightFiles& files, const std::function<bool(const std::string&)>& want = {});

/// The tensors text-to-image generation and training use: the language model but its lm_head,
/// gen_embed, gen_aligner, gen_head, and the VQ decoder's (VqDecoder::wants).
bool janus_t2i_wants(const std::string& name);

/// Checks tensors one at a time against what `config` says the language model, gen_embed,
/// gen_aligner and gen_head hold (for loaders that stream: see check_janus_weights).
class JanusWeightCheck {
 public:
  JanusWeightCheck(const JanusConfig& config, std::string source);
  /// True when `name` is one of the config's tensors and `t` suits it (floating point, its
  /// shape, finite); false for a tensor outside these modules (the caller's to check) or a
  /// derived rotary buffer. Throws naming `file` and the tensor otherwise.
  bool check(const std::string& name, const at::Tensor& t, const std::string& file);
  /// Throws naming the directory and the first expected tensor never checked.
  void finish() const;
  /// Names under language_model.model., gen_embed., gen_aligner., gen_head.
  static bool covers(const std::string& name);

 private:
  std::string source_;
  std::map<std::string, std::vector<std::int64_t>> expect_;
  std::set<std::string> seen_;
};

/// Checks the language model, gen_embed, gen_aligner and gen_head tensors of `w` against
/// `config`: each present, floating point, of the shape the config gives, finite; and nothing
/// else under their prefixes (but the `rotary_emb.inv_freq` buffers older transformers saved,
/// which are derived, not loaded). Throws naming the tensor and its file. (The VQ decoder's
/// tensors are checked by VqDecoder::load.)
void check_janus_weights(const JanusConfig& config, const Weights& w);

}  // namespace janus
